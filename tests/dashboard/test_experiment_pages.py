"""The datasets, experiments, compare-runs and leaderboard pages in a real Chromium against the real app:
a dataset and two finished client-side runs recorded through the API, then each page's numbers checked
against the API's own answer."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.dashboard.conftest import span

pytestmark = pytest.mark.timeout(240)

N_ITEMS = 24


def weak_right(i: int) -> bool:
    """The weak agent misses every third item (8 of 24): a clear, significant gap to the strong one."""
    return i % 3 != 0


@dataclass
class Runs:
    project_id: str
    key: str
    dataset_id: str
    strong: str
    weak: str
    traced_item_trace: str


def _record_run(api, dataset_id: str, name: str, agent: str, items: list[dict], right, trace_ids: dict[str, str]) -> str:
    r = api.post("/api/v1/experiments", json={"name": name, "dataset_id": dataset_id, "metadata": {"agent": agent}})
    assert r.status_code == 201, r.text
    exp = r.json()
    results = []
    for i, item in enumerate(exp["items"]):
        ok = right(i)
        expected = item["expected_output"]
        results.append({
            "item_id": item["id"], "output": expected if ok else f"{expected}?", "latency_ms": 100 + 7 * i + (0 if ok else 50),
            "input_tokens": 40 + i, "output_tokens": 5, "cost": 0.0001 * (1 + i % 4),
            "trace_id": trace_ids.get(f"{agent}:{i}") or secrets.token_hex(16),
            "scores": [{"name": "exact_match", "value": 1.0 if ok else 0.0, "passed": ok,
                        "reason": "matches the expected output" if ok else "differs from the expected output"}]})
    r = api.post(f"/api/v1/experiments/{exp['id']}/results", json={"results": results})
    assert r.status_code == 202 and r.json()["rejected"] == [], r.text
    assert api.post(f"/api/v1/experiments/{exp['id']}/finish", json={"status": "completed"}).status_code == 200
    return exp["id"]


@pytest.fixture(scope="module")
def runs(live) -> Runs:
    project_id, key = live.create_project()
    items = [{"input": {"question": f"What is {i} + {i + 1}?"}, "expected_output": str(2 * i + 1),
              "metadata": {"topic": "sums", "n": i}} for i in range(N_ITEMS)]
    traced = secrets.token_hex(16)
    with live.api(key) as api:
        r = api.post("/api/v1/datasets", json={"name": "dash-sums", "items": items})
        assert r.status_code == 201, r.text
        dataset_id = r.json()["id"]
        strong = _record_run(api, dataset_id, "strong run", "agent-strong", items, lambda i: True, {"agent-strong:0": traced})
        weak = _record_run(api, dataset_id, "weak run", "agent-weak", items, weak_right, {})
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    live.insert_spans([
        span(project_id, traced, "a" * 16, "", start, 120, name="experiment item", kind="chain"),
        span(project_id, traced, "b" * 16, "a" * 16, start + timedelta(milliseconds=5), 100, name="agent step", kind="agent"),
    ])
    return Runs(project_id, key, dataset_id, strong, weak, traced)


def _ci(mean: float, low: float | None, high: float | None) -> str:
    """The page's fmtCi: three decimals, '[low, high]' when there is a CI."""
    return f"{mean:.3f}" if low is None or high is None else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _js_round(x: float) -> int:
    """JavaScript's Math.round (halves up; Python's round() halves to even)."""
    return math.floor(x + 0.5)


def _to_precision(x: float, digits: int) -> str:
    """JavaScript's x.toPrecision(digits) for 1e-6 <= x < 1: the exact binary value rounded half up
    (Python's format rounds half to even: 0.0078125 -> '0.007812', JavaScript says '0.007813')."""
    exact = Decimal(x)
    return f"{exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), ROUND_HALF_UP):f}"


def _js_cost(usd: float) -> str:
    """The page's fmtCost for 0 < usd < 10 (three significant digits below a cent)."""
    return f"${_to_precision(usd, 3)}" if usd < 0.01 else f"${usd:.4f}"


def _js_precision4(p: float) -> str:
    """The page's fmtP for 1e-4 <= p < 1."""
    return _to_precision(p, 4)


def test_datasets_page_lists_the_dataset_and_shows_its_items(live, runs, page_for):
    page = page_for(runs.key)
    page.goto(f"/projects/{runs.project_id}/datasets")
    row = page.locator(f"[data-testid=dataset-row][data-dataset-id='{runs.dataset_id}']")
    row.wait_for()
    assert "dash-sums" in row.inner_text() and str(N_ITEMS) in row.inner_text() and "v1" in row.inner_text()
    row.get_by_role("link", name="dash-sums").click()
    page.wait_for_url(f"**/datasets/{runs.dataset_id}")
    page.get_by_test_id("items-table").wait_for()
    assert page.get_by_test_id("row-count").inner_text() == f"{N_ITEMS} rows"
    first = page.locator("[data-testid=item-row]").first
    assert '"What is 0 + 1?"' in first.inner_text() and '"1"' in first.inner_text()
    # the export link names this version and the project, so it works with the session cookie too
    href = page.get_by_role("link", name="JSONL").get_attribute("href")
    assert href == f"/api/v1/datasets/{runs.dataset_id}/export?format=jsonl&version=1&project={runs.project_id}"
    assert not page.js_errors


def test_upload_adds_a_version_and_the_version_picker_reads_the_old_one(live, runs, page_for, tmp_path):
    with live.api(runs.key) as api:
        r = api.post("/api/v1/datasets", json={"name": "dash-upload", "items": [{"input": "a", "expected_output": "A"}]})
        dataset_id = r.json()["id"]
    page = page_for(runs.key)
    page.goto(f"/projects/{runs.project_id}/datasets/{dataset_id}")
    page.get_by_test_id("items-table").wait_for()
    upload = tmp_path / "more.jsonl"
    upload.write_text('{"input": "b", "expected_output": "B"}\n{"input": "c", "expected_output": "C"}\n')
    page.get_by_label("File (JSONL, CSV or Parquet)").set_input_files(str(upload))
    page.get_by_role("button", name="Upload as a new version").click()
    assert "Added 2 items as v2" in page.get_by_test_id("upload-result").inner_text()
    page.get_by_test_id("row-count").filter(has_text="3 rows").wait_for()
    page.get_by_label("Version").select_option("1")
    page.wait_for_url("**version=1**")
    page.get_by_test_id("row-count").filter(has_text="1 rows").wait_for()
    with live.api(runs.key) as api:
        assert len(api.get(f"/api/v1/datasets/{dataset_id}", params={"version": 1}).json()["items"]) == 1


def test_run_page_numbers_equal_the_api_and_an_item_links_to_its_trace(live, runs, page_for):
    with live.api(runs.key) as api:
        exp = api.get(f"/api/v1/experiments/{runs.strong}").json()
    s = exp["summary"]
    score = s["scores"]["exact_match"]
    page = page_for(runs.key)
    page.goto(f"/projects/{runs.project_id}/experiments")
    row = page.locator(f"[data-testid=experiment-row][data-experiment-id='{runs.strong}']")
    assert _ci(score["mean"], score["ci_low"], score["ci_high"]) in row.inner_text()
    row.get_by_role("link", name="strong run").click()
    page.get_by_test_id("score-summary").wait_for()
    assert page.get_by_test_id("status").inner_text() == "completed"
    assert page.get_by_test_id("progress").inner_text() == f"{N_ITEMS} / {N_ITEMS}"
    assert page.get_by_test_id("score-mean").inner_text() == _ci(score["mean"], score["ci_low"], score["ci_high"])
    assert page.get_by_test_id("score-n").inner_text() == str(score["n"]) == str(N_ITEMS)
    assert page.get_by_test_id("stat-latency").inner_text() == f"{_js_round(s['latency_ms']['p50'])} ms / {_js_round(s['latency_ms']['p95'])} ms"
    assert page.get_by_test_id("stat-tokens").inner_text() == f"{s['tokens']['input']:,} / {s['tokens']['output']:,}"
    assert page.get_by_test_id("stat-cost").inner_text() == f"{_js_cost(s['cost']['total'])} / {_js_cost(s['cost']['per_item'])}"
    assert page.get_by_test_id("stat-errors").inner_text() == "0.0 %"
    page.get_by_test_id("results-table").wait_for()
    assert page.get_by_test_id("row-count").inner_text() == f"{N_ITEMS} rows"
    first = page.locator("[data-testid=result-row]").first
    assert "matches the expected output" in first.inner_text()
    page.screenshot(path="/tmp/dash-experiment.png")
    first.get_by_test_id("trace-link").click()
    page.wait_for_url(f"**/projects/{runs.project_id}/traces/{runs.traced_item_trace}")
    page.get_by_test_id("span-tree").wait_for()
    assert page.locator("[data-testid=span-row]").count() == 2
    assert not page.js_errors


def test_compare_shows_the_compare_apis_p_value_and_filters_regressed_items(live, runs, page_for):
    with live.api(runs.key) as api:
        cmp = api.post("/api/v1/experiments/compare", json={"experiment_ids": [runs.strong, runs.weak]}).json()
    metric = cmp["comparisons"][0]["metrics"]["exact_match"]
    assert metric["test"] == "mcnemar_exact" and metric["regressed"] == N_ITEMS // 3
    page = page_for(runs.key)
    page.goto(f"/projects/{runs.project_id}/experiments")
    page.get_by_label("Select strong run for comparison").check()
    page.get_by_label("Select weak run for comparison").check()
    page.get_by_role("button", name="Compare selected (2)").click()
    page.wait_for_url(f"**/experiments/compare?ids={runs.strong}&ids={runs.weak}")
    row = page.locator(f"[data-testid=metric-row][data-experiment='{runs.weak}'][data-metric=exact_match]")
    row.wait_for()
    assert row.get_by_test_id("p-value").inner_text() == _js_precision4(metric["p_value"])
    assert row.get_by_test_id("verdict").inner_text() == ("significant at 95 %" if metric["p_value"] < 0.05 else "not significant")
    assert "exact McNemar" in row.inner_text()
    page.screenshot(path="/tmp/dash-compare-runs.png")
    page.get_by_label("Show").select_option("regressed")
    page.wait_for_url("**change=regressed**")
    page.get_by_test_id("row-count").filter(has_text=f"{metric['regressed']} rows").wait_for()
    assert not page.js_errors


def test_leaderboard_order_equals_the_apis(live, runs, page_for):
    with live.api(runs.key) as api:
        board = api.get("/api/v1/leaderboards", params={"dataset_id": runs.dataset_id}).json()
    assert [e["entry"] for e in board["entries"]] == ["agent-strong", "agent-weak"]
    page = page_for(runs.key)
    page.goto(f"/projects/{runs.project_id}/leaderboards")
    page.get_by_label("Dataset or benchmark").select_option(f"d:{runs.dataset_id}")
    page.wait_for_url(f"**dataset_id={runs.dataset_id}")
    page.get_by_test_id("leaderboard-table").wait_for()
    shown = page.locator("[data-testid=leaderboard-row]").evaluate_all("rs => rs.map(r => r.dataset.entry)")
    assert shown == [e["entry"] for e in board["entries"]]
    bt = page.locator("[data-testid=bt-row]").evaluate_all("rs => rs.map(r => r.dataset.entry)")
    assert bt == [r["entry"] for r in board["bradley_terry"]]
    page.screenshot(path="/tmp/dash-leaderboard.png")
    # the pairwise judge form: a judge URL the egress guard refuses is an inline error naming the field
    page.get_by_text("Judge the entries pairwise").click()
    page.get_by_label("Base URL (optional)").fill("http://169.254.169.254/v1")
    page.get_by_role("button", name="Judge", exact=True).click()
    assert "judge.base_url" in page.get_by_role("alert").inner_text()
    assert not page.js_errors


def test_run_page_shows_live_progress_and_cancels(live, runs, page_for):
    with live.api(runs.key) as api:
        exp = api.post("/api/v1/experiments", json={"name": "live run", "dataset_id": runs.dataset_id}).json()
        items = exp["items"]

        def record(chunk):
            r = api.post(f"/api/v1/experiments/{exp['id']}/results", json={"results": [
                {"item_id": i["id"], "output": i["expected_output"], "scores": [{"name": "exact_match", "value": 1.0}]}
                for i in chunk]})
            assert r.status_code == 202, r.text

        record(items[:5])
        page = page_for(runs.key)
        page.goto(f"/projects/{runs.project_id}/experiments/{exp['id']}")
        assert page.get_by_test_id("status").inner_text() == "running"
        page.get_by_test_id("progress").filter(has_text=f"5 / {N_ITEMS}").wait_for()
        record(items[5:12])  # the page polls: no reload
        page.get_by_test_id("progress").filter(has_text=f"12 / {N_ITEMS}").wait_for()
        page.get_by_test_id("row-count").filter(has_text="12 rows").wait_for()
        page.get_by_role("button", name="Cancel run").click()
        page.get_by_test_id("status").filter(has_text="cancelled").wait_for()
        assert api.get(f"/api/v1/experiments/{exp['id']}").json()["status"] == "cancelled"
        assert page.get_by_role("button", name="Cancel run").count() == 0
    assert not page.js_errors
