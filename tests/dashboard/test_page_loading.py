"""How the pages load their data (issue 17's page budgets): the trace page asks for the lean trace
and draws the same tree as the full answer; the dashboard's latency chart asks for its four
percentiles in one request and plots what the API answers for each percentile alone."""

from __future__ import annotations

from datetime import datetime

import pytest

pytestmark = pytest.mark.timeout(240)


def _depth_first(spans: list[dict]) -> list[tuple[str, int]]:
    out, stack = [], [(s, 1) for s in reversed(spans)]
    while stack:
        span, level = stack.pop()
        out.append((span["span_id"], level))
        stack.extend((c, level + 1) for c in reversed(span["children"]))
    return out


def test_trace_page_loads_the_lean_trace_and_draws_the_full_tree(live, data, page_for):
    page = page_for(data.key)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if f"/api/v1/traces/{data.chat_trace}" in r.url else None)
    page.goto(f"/projects/{data.project_id}/traces/{data.chat_trace}")
    page.get_by_test_id("span-tree").wait_for()
    assert any("view=lean" in u for u in asked) and not any("payloads=false" in u for u in asked)
    with live.api(data.key) as api:
        full = api.get(f"/api/v1/traces/{data.chat_trace}", params={"payloads": "false"}).json()
    drawn = page.locator("[data-testid=span-row]").evaluate_all(
        "rows => rows.map(r => [r.querySelector('.span-name').textContent, Number(r.getAttribute('aria-level'))])")
    names = {}
    stack = list(full["spans"])
    while stack:
        span = stack.pop()
        names[span["span_id"]] = span["name"]
        stack.extend(span["children"])
    assert drawn == [[names[sid], level] for sid, level in _depth_first(full["spans"])]
    assert page.get_by_test_id("span-count").inner_text() == str(full["span_count"])
    assert not page.js_errors


def test_latency_chart_is_one_request_plotting_each_percentile(live, data, page_for):
    page = page_for(data.key)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/metrics" in r.url and "metric=latency" in r.url else None)
    page.goto(f"/projects/{data.project_id}/dashboard?range=24h")
    page.locator("figure.chart[data-drawn='1']").nth(4).wait_for()
    assert len(asked) == 1, asked
    query = asked[0].split("?", 1)[1]
    assert [p for p in query.split("&") if p.startswith("aggregation=")] == [f"aggregation=p{q}" for q in (50, 90, 95, 99)]
    table = page.get_by_test_id("chart-Latency").get_by_test_id("chart-data")
    headers = table.locator("thead th").all_inner_texts()[1:]
    assert headers == ["p50", "p90", "p95", "p99"]
    plotted = table.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [Number(r.cells[0].dataset.x), ...[...r.cells].slice(1).map(c => c.dataset.value)])")
    base = "&".join(p for p in query.split("&") if not p.startswith("aggregation="))
    with live.api(data.key) as api:  # each percentile asked alone, as a script would
        alone = {a: {int(datetime.fromisoformat(r["bucket"].replace("Z", "+00:00")).timestamp()): r["value"]
                     for r in api.get(f"/api/v1/metrics?{base}&aggregation={a}").json()["data"]}
                 for a in headers}
    assert plotted and [row[0] for row in plotted] == sorted(alone["p50"])
    for row in plotted:
        for a, shown in zip(headers, row[1:]):
            expected = alone[a][row[0]]
            assert (shown == "" and expected is None) or float(shown) == pytest.approx(expected, rel=1e-12)
    assert not page.js_errors


def test_ungrouped_totals_are_the_charts_sums_and_equal_the_api_totals(live, data, page_for):
    page = page_for(data.key)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/metrics" in r.url else None)
    page.goto(f"/projects/{data.project_id}/dashboard?range=7d")
    page.locator("figure.chart[data-drawn='1']").nth(4).wait_for()
    page.get_by_test_id("total-Tokens").filter(has_not_text="…").wait_for()
    assert all("interval=" in u for u in asked)  # no request of its own for a total
    query = dict(p.split("=", 1) for p in asked[0].split("?", 1)[1].split("&"))
    window = {"from": query["from"].replace("%3A", ":"), "to": query["to"].replace("%3A", ":")}
    with live.api(data.key) as api:  # the range's totals, asked as a script would
        def total(metric: str, **params) -> float | None:
            return api.get("/api/v1/metrics", params={**window, "metric": metric, **params}).json()["data"][0]["value"]

        requests, rate = total("requests"), total("error_rate")
        cost = total("cost", aggregation="sum")
        tokens = total("input_tokens", aggregation="sum") + total("output_tokens", aggregation="sum")
    shown = {k: page.get_by_test_id(f"total-{k}").inner_text() for k in ("Requests", "Error rate", "Cost", "Tokens")}
    assert requests and cost >= 0.01  # the seed's model calls (below a cent the page shows 3 digits)
    assert shown == {"Requests": f"{round(requests):,}", "Error rate": f"{rate * 100:.1f}%",
                     "Cost": f"${cost:.4f}" if cost < 10 else f"${cost:.2f}", "Tokens": f"{round(tokens):,}"}
    assert not page.js_errors
