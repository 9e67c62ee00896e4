"""The dashboard in a real Chromium, against the real app on real parts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.dashboard.seed import BIG_MARKER, XSS

pytestmark = pytest.mark.timeout(240)


def _api_count(live, key, **params) -> int:
    with live.api(key) as api:
        return len(api.get("/api/v1/traces", params={"limit": 500, **params}).json()["data"])


def test_traces_table_lists_sent_traces_and_model_filter_narrows_to_api_count(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/traces")
    page.get_by_test_id("traces-table").wait_for()
    expected = _api_count(live, data.key)
    assert expected == 15
    assert page.get_by_test_id("row-count").inner_text() == f"{expected} traces"
    shown = set(page.eval_on_selector_all("[data-testid=trace-row]", "rows => rows.map(r => r.dataset.traceId)"))
    with live.api(data.key) as api:
        assert shown == {t["trace_id"] for t in api.get("/api/v1/traces", params={"limit": 500}).json()["data"]}
    page.get_by_label("Model", exact=True).fill("gpt-4o")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**model=gpt-4o**")
    narrowed = _api_count(live, data.key, model="gpt-4o")
    assert 0 < narrowed < expected
    page.get_by_test_id("row-count").filter(has_text=f"{narrowed} traces").wait_for()
    assert page.locator("[data-testid=trace-row]").count() == narrowed
    assert not page.js_errors


def test_trace_shows_tree_timeline_and_chat_messages_with_a_tool_call(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/traces/{data.chat_trace}")
    page.get_by_test_id("span-tree").wait_for()
    assert page.locator("[data-testid=span-row]").count() == 4
    assert page.locator("[data-testid=timeline-bar] .bar").count() == 4
    page.locator("[data-testid=span-row]", has_text="llm-call").first.click()
    panel = page.get_by_test_id("span-panel")
    panel.get_by_test_id("tool-call").wait_for()
    roles = panel.locator("[data-testid=message]").evaluate_all("ms => ms.map(m => m.dataset.role)")
    assert roles == ["system", "user", "assistant"]
    assert "get_weather" in panel.get_by_test_id("tool-call").inner_text()
    assert "Weather in Paris? (0)" in panel.inner_text()
    assert panel.get_by_test_id("ttft").inner_text() == "210 ms"
    tokens = panel.get_by_test_id("token-table").inner_text()
    assert "cost" in tokens and "1,200" in tokens  # uncached input tokens of the first call
    # the follow-up call renders the tool's result as a tool message
    page.locator("[data-testid=span-row]", has_text="llm-call").nth(1).click()
    page.get_by_test_id("tool-result").wait_for()
    page.screenshot(path="/tmp/dash-trace.png")
    # an attribute pill filters the traces table by that attribute
    page.locator("[data-testid=span-row]", has_text="llm-call").first.click()
    page.get_by_role("button", name="metadata.region eu").click()
    page.wait_for_url("**attribute=metadata.region%3Deu**")
    page.get_by_test_id("row-count").filter(has_text="12 traces").wait_for()
    assert not page.js_errors


def test_offloaded_payload_opens_in_full(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/traces/{data.big_trace}")
    text = page.get_by_test_id("input-text")
    text.wait_for()
    assert text.inner_text().rstrip("\n").endswith(BIG_MARKER)
    assert len(text.inner_text()) >= len(data.big_text) - 5


def test_ten_thousand_span_trace_opens_and_scrolls(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/traces/{data.huge_trace}")
    page.get_by_test_id("span-tree").wait_for()
    assert page.get_by_test_id("span-count").inner_text() == "10,000"
    drawn = page.locator("[data-testid=span-row]").count()
    assert 0 < drawn < 200  # virtualised: only the visible rows are in the DOM
    page.get_by_test_id("span-tree").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    page.locator("[data-testid=span-row]", has_text="step-98-").last.wait_for()
    page.get_by_label("Search in trace").fill("step-42-7")
    page.get_by_role("status").filter(has_text="11 matching spans").wait_for()  # step-42-7 and step-42-70..79
    assert not page.js_errors


def test_span_content_with_html_renders_as_text_and_runs_nothing(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/traces/{data.xss_trace}")
    panel = page.get_by_test_id("span-panel")
    panel.get_by_test_id("message").wait_for()
    assert XSS in panel.get_by_test_id("input-text").inner_text()
    assert XSS in panel.get_by_test_id("message").inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    page.goto(f"/projects/{data.project_id}/traces")
    page.get_by_test_id("traces-table").wait_for()
    assert page.evaluate("window.__xss") is None


def test_dashboard_plots_the_values_of_the_metrics_api(live, data, page_for):
    page = page_for(data.key)
    with page.expect_request(lambda r: "/api/v1/metrics" in r.url and "metric=requests" in r.url
                             and "interval=" in r.url) as req:
        page.goto(f"/projects/{data.project_id}/dashboard?range=24h")
    with live.api(data.key) as api:  # the score chart is drawn once a score exists (another test adds one)
        n_charts = 6 if api.get("/api/v1/scores/summary").json()["data"] else 5
    charts = page.locator("figure.chart[data-drawn='1']")
    charts.nth(n_charts - 1).wait_for()  # requests, error rate, latency, tokens, cost (+ score average)
    assert charts.count() == n_charts
    table = page.get_by_test_id("chart-Requests").get_by_test_id("chart-data")
    plotted = table.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [Number(r.cells[0].dataset.x), Number(r.cells[1].dataset.value)])")
    query = req.value.url.split("?", 1)[1]
    with live.api(data.key) as api:  # the same question, asked by a script
        api_rows = api.get(f"/api/v1/metrics?{query}").json()["data"]
    expected = [[int(datetime.fromisoformat(r["bucket"].replace("Z", "+00:00")).timestamp()), r["value"]] for r in api_rows]
    assert plotted == expected
    # requests are model calls (kind=llm) unless asked otherwise: two per chat turn, plus the
    # offloaded-payload and the HTML-content calls (seed.py)
    assert sum(v for _, v in plotted) == 12 * 2 + 2
    assert page.get_by_test_id("total-Requests").inner_text() == "26"
    page.screenshot(path="/tmp/dash-dashboard.png")
    assert not page.js_errors


def test_api_key_created_in_settings_works_for_ingest(live, page_for):
    project_id, key = live.create_project()  # its own project: the span it sends changes no count here
    page = page_for(key)
    page.goto(f"/projects/{project_id}/settings")
    page.get_by_label("Scope").select_option("ingest")
    page.get_by_role("button", name="Create API key").click()
    secret = page.get_by_test_id("new-key").inner_text()
    assert secret.startswith("ef_")
    trace_id = uuid.uuid4().hex
    now_ns = int(datetime.now(timezone.utc).timestamp() * 1e9)
    with live.api(secret) as api:
        r = api.post("/api/v1/spans", json={"spans": [{"trace_id": trace_id, "span_id": uuid.uuid4().hex[:16],
                                                        "name": "from-settings-key", "start_time": now_ns,
                                                        "end_time": now_ns + 1_000_000}]})
        assert r.status_code in (200, 202), r.text
        assert api.get("/api/v1/traces").status_code == 403  # an ingest key cannot read
    page.get_by_role("row", name="ingest").first.wait_for()


def test_failed_request_shows_an_inline_error_with_retry(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/traces/{'0' * 32}")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "Not found" in alert.inner_text()
    assert alert.get_by_role("button", name="Retry").is_visible()


def test_empty_project_shows_how_to_send_the_first_trace(live, page_for):
    pid, key = live.create_project()
    page = page_for(key)
    page.goto(f"/projects/{pid}/traces")
    snippet = page.get_by_test_id("sdk-snippet")
    snippet.wait_for()
    assert f'endpoint="{live.url}"' in snippet.inner_text()


def test_keyboard_moves_through_the_table_and_opens_a_trace(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/traces?sort=cost&order=desc")
    table = page.get_by_test_id("traces-table")
    table.wait_for()
    ids = page.eval_on_selector_all("[data-testid=trace-row]", "rows => rows.map(r => r.dataset.traceId)")
    with live.api(data.key) as api:
        by_cost = api.get("/api/v1/traces", params={"sort": "cost", "order": "desc", "limit": 100}).json()["data"]
    assert ids == [t["trace_id"] for t in by_cost]
    page.get_by_text("Columns").click()
    # the column choice lives in the URL: the box is checked again only once the URL says so, so
    # click and wait for the URL rather than uncheck() (which checks the state at once)
    page.get_by_label("Models").click()
    page.wait_for_url("**hide=**models**")
    assert not page.get_by_label("Models").is_checked()
    headers = page.locator("[role=columnheader]").all_inner_texts()
    assert "Models" not in headers and "Cost ▼" in headers  # sorted by cost, descending
    table.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/traces/{ids[2]}")
    page.get_by_test_id("span-tree").focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_url("**span=**")


def test_live_mode_shows_a_new_trace(live, data, page_for):
    from tests.dashboard.conftest import span

    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/traces?live=1")
    page.get_by_test_id("traces-table").wait_for()
    before = page.locator("[data-testid=trace-row]").count()
    trace_id = uuid.uuid4().hex
    # newer than every seeded trace, and in their hour (the dashboard test expects one bucket)
    live.insert_spans([span(data.project_id, trace_id, uuid.uuid4().hex[:16], "", data.anchor + timedelta(minutes=30),
                            20, name="arrived-live")])
    page.locator(f"[data-trace-id='{trace_id}']").wait_for(timeout=5_000)  # polled every 1.5 s
    assert page.locator("[data-testid=trace-row]").count() == before + 1


def test_clicking_a_dashboard_point_opens_the_traces_behind_it(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/dashboard?range=24h")
    chart = page.get_by_test_id("chart-Requests")
    chart.locator("td[data-x]").first.wait_for(state="attached")
    xs = {int(x) for x in chart.locator("td[data-x]").evaluate_all("tds => tds.map(t => t.dataset.x)")}
    assert len(xs) == 1  # all seeded spans are within one hour: a single bucket, so the cursor snaps to it
    [x] = xs
    box = chart.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url("**/traces?**")
    params = dict(p.split("=", 1) for p in page.url.split("?", 1)[1].split("&"))
    assert params["from"] == datetime.fromtimestamp(x, timezone.utc).strftime("%Y-%m-%dT%H%%3A%M%%3A%S.000Z")
    assert params["to"] == datetime.fromtimestamp(x + 3600, timezone.utc).strftime("%Y-%m-%dT%H%%3A%M%%3A%S.000Z")
    count = _api_count(live, data.key, **{k: v.replace("%3A", ":") for k, v in params.items()})
    assert count >= 15
    page.get_by_test_id("row-count").filter(has_text=f"{count} traces").wait_for()


def test_full_text_search_and_a_shared_link_keep_the_view(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/traces")
    page.get_by_label("Search").fill("question 7")
    page.get_by_role("button", name="Apply").click()
    page.get_by_test_id("row-count").filter(has_text="1 traces").wait_for()
    link = page.url
    assert "q=question+7" in link or "q=question%207" in link
    other = page_for(data.key)  # a colleague opening the link sees the same view
    other.goto(link)
    other.get_by_test_id("row-count").filter(has_text="1 traces").wait_for()
    assert other.get_by_label("Search").input_value() == "question 7"
    assert _api_count(live, data.key, q="question 7") == 1


def test_compare_two_cohorts_shows_the_api_significance_and_two_traces_side_by_side(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/compare")
    page.get_by_label("Metric").select_option("latency")
    page.get_by_label("Cohort A").fill("gpt-4o")
    page.get_by_label("Cohort B").fill("claude-3-5-sonnet")
    page.get_by_role("button", name="Compare", exact=True).click()
    result = page.get_by_test_id("compare-result")
    result.wait_for()
    with live.api(data.key) as api:
        expected = api.post("/api/v1/compare", json={"metric": "latency", "a": {"model": "gpt-4o"},
                                                     "b": {"model": "claude-3-5-sonnet"}}).json()
    assert expected["verdict"].replace("_", " ") in result.inner_text()
    assert expected["test"] in result.inner_text()
    page.goto(f"/projects/{data.project_id}/compare?a={data.chat_trace}&b={data.big_trace}")
    trees = page.get_by_test_id("span-tree")
    trees.nth(1).wait_for()
    assert trees.count() == 2
    assert trees.nth(0).locator("[data-testid=span-row]").count() == 4
    assert trees.nth(1).locator("[data-testid=span-row]").count() == 1


def test_session_reads_as_a_conversation_with_the_api_totals(live, data, page_for):
    page = page_for(data.key)
    page.goto(f"/projects/{data.project_id}/sessions/sess-1")
    turns = page.locator(".turn")
    turns.first.wait_for()
    with live.api(data.key) as api:
        session = api.get("/api/v1/sessions/sess-1").json()
    assert turns.count() == session["rollup"]["trace_count"] == 3
    assert [t.inner_text().split("\n")[0].split(" ")[0] for t in turns.all()] == ["chat-turn"] * 3
    inputs = turns.locator(".role-user pre").all_inner_texts()
    assert inputs == [t["input_preview"] for t in session["traces"]] == ["question 1", "question 5", "question 9"]


def test_dashboard_custom_range_asks_the_api_for_that_range(live, data, page_for):
    page = page_for(data.key)
    start = data.anchor.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    end = (data.anchor + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with page.expect_request(lambda r: "metric=requests" in r.url and "interval=" in r.url) as req:
        page.goto(f"/projects/{data.project_id}/dashboard?from={start}&to={end}")
    query = req.value.url.split("?", 1)[1]
    assert f"from={start.replace(':', '%3A')}" in query and "interval=minute" in query
    table = page.get_by_test_id("chart-Requests").get_by_test_id("chart-data")
    table.locator("td[data-value]").first.wait_for(state="attached")
    plotted = sum(float(v) for v in table.locator("td[data-value]").evaluate_all("tds => tds.map(t => t.dataset.value)"))
    with live.api(data.key) as api:
        assert plotted == sum(r["value"] for r in api.get(f"/api/v1/metrics?{query}").json()["data"])
