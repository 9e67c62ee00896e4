"""GET /api/v1/metrics on 100,000 generated spans: exact counts / sums, percentiles vs numpy,
hour buckets right at their edges (UTC), and bad parameters answered 400 naming the parameter."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from tests.query.conftest import BASE, EDGE_HOUR, MODELS

WINDOW = {"from": BASE.isoformat(), "to": (BASE + timedelta(days=4)).isoformat()}
ALL = {"kind": "all"}  # requests / latency count model calls only unless asked for every span kind


def metric(api, key, **params):
    resp = api(key).get("/metrics", params={**WINDOW, **ALL, **params})
    assert resp.status_code == 200, resp.text
    return resp.json()


def by_group(body, column):
    return {row["group"][column]: row for row in body["data"]}


def test_all_spans_stored(api, project_a):
    body = metric(api, project_a.key, metric="requests")
    assert body["data"][0]["value"] == len(project_a.spans) == 100_005


@pytest.mark.parametrize("aggregation,q", [("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)])
def test_latency_percentiles_match_numpy(api, project_a, aggregation, q):
    body = metric(api, project_a.key, metric="latency", aggregation=aggregation)
    expected = np.percentile(project_a.column("duration_ms"), q)
    assert body["data"][0]["value"] == pytest.approx(expected, rel=0.01)
    assert body["data"][0]["value"] == pytest.approx(expected, rel=1e-9)  # exact, in fact
    per_model = by_group(metric(api, project_a.key, metric="latency", aggregation=aggregation, group_by="model"),
                         "model")
    for model in MODELS:
        exact = np.percentile(project_a.column("duration_ms", model=model), q)
        assert per_model[model]["value"] == pytest.approx(exact, rel=0.01)


def test_ttft_percentile_skips_spans_without_ttft(api, project_a):
    values = [s["ttft_ms"] for s in project_a.spans if s.get("ttft_ms") is not None]
    body = metric(api, project_a.key, metric="ttft", aggregation="p90")
    assert body["data"][0]["value"] == pytest.approx(np.percentile(values, 90), rel=0.01)
    assert body["data"][0]["n"] == len(values)


def test_counts_and_sums_exact_from_preaggregates(api, project_a):
    requests = metric(api, project_a.key, metric="requests", group_by="model")
    assert requests["source"] == "metrics_1m"
    cost = metric(api, project_a.key, metric="cost", aggregation="sum", group_by="model")
    assert cost["source"] == "metrics_1m"
    errors = metric(api, project_a.key, metric="errors", group_by="model")
    tokens = metric(api, project_a.key, metric="input_tokens", aggregation="sum", group_by="model")
    for model in MODELS:
        rows = [s for s in project_a.spans if s.get("model") == model]
        assert by_group(requests, "model")[model]["value"] == len(rows)
        assert by_group(cost, "model")[model]["value"] == pytest.approx(sum(s["cost"] for s in rows), rel=1e-9)
        assert by_group(errors, "model")[model]["value"] == sum(s["status"] == "error" for s in rows)
        assert by_group(tokens, "model")[model]["value"] == sum(s["input_tokens"] for s in rows)


def test_cost_by_user_exact_from_user_rollup_and_from_spans(api, project_a):
    expected: dict[str, float] = {}
    for s in project_a.spans:
        if s.get("cost") is not None:
            expected[s["user_id"]] = expected.get(s["user_id"], 0.0) + s["cost"]
    rollup = metric(api, project_a.key, metric="cost", aggregation="sum", group_by="user_id", limit=100)
    assert rollup["source"] == "metrics_user_1m"
    # a range that is not minute-aligned (same spans: all lie a day before its end) reads spans
    spans = metric(api, project_a.key, metric="cost", aggregation="sum", group_by="user_id", limit=100,
                   to=(BASE + timedelta(days=4, seconds=-1)).isoformat())
    assert spans["source"] == "spans"
    for body in (rollup, spans):
        got = {row["group"]["user_id"]: row["value"] for row in body["data"]}
        assert got.keys() == expected.keys()
        for user, total in expected.items():
            assert got[user] == pytest.approx(total, rel=1e-9)


def test_user_rollup_per_day_and_filtered_by_user(api, project_a):
    user = "user_7"
    mine = [s for s in project_a.spans if s["user_id"] == user]
    body = metric(api, project_a.key, metric="requests", user_id=user, interval="day")
    assert body["source"] == "metrics_user_1m"
    per_day: dict[str, int] = {}
    for s in mine:
        day = s["start_time"].strftime("%Y-%m-%dT00:00:00Z")
        per_day[day] = per_day.get(day, 0) + 1
    assert {row["bucket"]: row["value"] for row in body["data"]} == per_day
    tokens = metric(api, project_a.key, metric="input_tokens", aggregation="avg", group_by="user_id", user_id=user)
    assert tokens["source"] == "metrics_user_1m"
    assert tokens["data"][0]["value"] == pytest.approx(np.mean([s["input_tokens"] for s in mine]), rel=1e-12)
    # user and model together are in neither rollup: served from spans, same numbers
    mixed = metric(api, project_a.key, metric="requests", user_id=user, group_by="model")
    assert mixed["source"] == "spans"
    assert sum(row["value"] for row in mixed["data"]) == len(mine)


def test_group_limit_keeps_largest_totals(api, project_a):
    body = metric(api, project_a.key, metric="cost", aggregation="sum", group_by="user_id", limit=3)
    totals: dict[str, float] = {}
    for s in project_a.spans:
        if s.get("cost") is not None:
            totals[s["user_id"]] = totals.get(s["user_id"], 0.0) + s["cost"]
    top3 = sorted(totals, key=totals.get, reverse=True)[:3]
    assert [row["group"]["user_id"] for row in body["data"]] == top3


def test_requests_and_latency_default_to_model_calls(api, project_a):
    llm = [s for s in project_a.spans if s["kind"] == "llm"]
    assert 0 < len(llm) < len(project_a.spans)
    default = api(project_a.key).get("/metrics", params={**WINDOW, "metric": "requests"}).json()
    assert default["data"][0]["value"] == len(llm) and default["kind"] == ["llm"]
    latency = api(project_a.key).get("/metrics", params={**WINDOW, "metric": "latency", "aggregation": "p50"}).json()
    assert latency["data"][0]["value"] == pytest.approx(np.percentile([s["duration_ms"] for s in llm], 50), rel=1e-9)
    every = metric(api, project_a.key, metric="requests")
    assert every["data"][0]["value"] == len(project_a.spans) and every["kind"] == ["all"]
    agents = metric(api, project_a.key, metric="requests", kind="agent")
    assert agents["data"][0]["value"] == sum(s["kind"] == "agent" for s in project_a.spans)
    mixed = api(project_a.key).get("/metrics", params={**WINDOW, "metric": "requests", "kind": ["all", "llm"]})
    assert mixed.status_code == 400 and mixed.json()["error"].startswith("kind:")


def test_error_rate_and_avg(api, project_a):
    llm = [s for s in project_a.spans if s.get("kind") == "llm" and s.get("model") in MODELS]
    body = metric(api, project_a.key, metric="error_rate", kind="llm", model=list(MODELS))
    assert body["data"][0]["value"] == pytest.approx(np.mean([s["status"] == "error" for s in llm]), rel=1e-12)
    body = metric(api, project_a.key, metric="latency", aggregation="avg", model="gpt-4o")
    assert body["data"][0]["value"] == pytest.approx(project_a.column("duration_ms", model="gpt-4o").mean(), rel=1e-9)


def test_hour_buckets_at_edges(api, project_a):
    body = metric(api, project_a.key, metric="requests", model="edge-model", interval="hour")
    buckets = {row["bucket"]: row["value"] for row in body["data"]}
    on_edge = EDGE_HOUR.strftime("%Y-%m-%dT%H:00:00Z")
    before = (EDGE_HOUR - timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z")
    assert buckets == {before: 2, on_edge: 3}
    # from is inclusive and to exclusive, to the microsecond
    for source_params in ({}, {"group_by": "user_id"}):  # metrics_1m and spans paths
        edge = api(project_a.key).get("/metrics", params={**ALL,
            "metric": "requests", "model": "edge-model", "from": EDGE_HOUR.isoformat(),
            "to": (EDGE_HOUR + timedelta(minutes=1)).isoformat(), **source_params}).json()
        assert sum(r["value"] for r in edge["data"]) == 3
    spans_only = api(project_a.key).get("/metrics", params={**ALL,
        "metric": "requests", "model": "edge-model", "from": (EDGE_HOUR - timedelta(microseconds=1)).isoformat(),
        "to": EDGE_HOUR.isoformat()}).json()
    assert spans_only["source"] == "spans" and spans_only["data"][0]["value"] == 2


def test_daily_buckets_sum_to_total(api, project_a):
    body = metric(api, project_a.key, metric="requests", interval="day")
    assert len(body["data"]) == 3
    assert all(row["bucket"].endswith("T00:00:00Z") for row in body["data"])
    assert sum(row["value"] for row in body["data"]) == len(project_a.spans)


def test_tag_group(api, project_a):
    body = metric(api, project_a.key, metric="requests", group_by="tag")
    tags = by_group(body, "tag")
    assert tags["beta"]["value"] == sum("beta" in s["tags"] for s in project_a.spans)
    assert tags[""]["value"] == sum(not s["tags"] for s in project_a.spans)


def test_score_metric(api, project_a):
    values = [s["value"] for s in project_a.scores if s["name"] == "helpfulness"]
    body = metric(api, project_a.key, metric="score", score_name="helpfulness", aggregation="avg")
    assert body["source"] == "scores"
    assert body["data"][0]["value"] == pytest.approx(np.mean(values), rel=1e-9)
    p90 = metric(api, project_a.key, metric="score", score_name="helpfulness", aggregation="p90")
    assert p90["data"][0]["value"] == pytest.approx(np.percentile(values, 90), rel=1e-9)


@pytest.mark.parametrize("params,name", [
    ({"metric": "bogus"}, "metric"),
    ({}, "metric"),
    ({"metric": "latency", "aggregation": "p42"}, "aggregation"),
    ({"metric": "requests", "aggregation": "p95"}, "aggregation"),
    ({"metric": "latency", "group_by": "input"}, "group_by"),
    ({"metric": "latency", "interval": "fortnight"}, "interval"),
    ({"metric": "latency", "interval": "minute", "from": "2020-01-01T00:00:00Z"}, "interval"),
    ({"metric": "latency", "from": "yesterday"}, "from"),
    ({"metric": "latency", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
    ({"metric": "latency", "min_cost": "-1"}, "min_cost"),
    ({"metric": "latency", "min_latency_ms": "nan"}, "min_latency_ms"),
    ({"metric": "latency", "status": "failed"}, "status"),
    ({"metric": "latency", "modle": "gpt-4o"}, "modle"),
    ({"metric": "score"}, "score_name"),
    ({"metric": "latency", "limit": "0"}, "limit"),
])
def test_bad_parameters_are_400_naming_them(api, project_a, params, name):
    resp = api(project_a.key).get("/metrics", params=params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"].startswith(f"{name}:")


def test_group_limit_with_interval(api, project_a):
    body = metric(api, project_a.key, metric="cost", aggregation="sum", group_by="user_id", interval="day", limit=3)
    totals: dict[str, float] = {}
    daily: dict[tuple[str, str], float] = {}
    for s in project_a.spans:
        if s.get("cost") is not None:
            totals[s["user_id"]] = totals.get(s["user_id"], 0.0) + s["cost"]
            day = s["start_time"].strftime("%Y-%m-%dT00:00:00Z")
            daily[(s["user_id"], day)] = daily.get((s["user_id"], day), 0.0) + s["cost"]
    top3 = sorted(totals, key=totals.get, reverse=True)[:3]
    users_in_order = list(dict.fromkeys(row["group"]["user_id"] for row in body["data"]))
    assert users_in_order == top3
    for row in body["data"]:
        assert row["value"] == pytest.approx(daily[(row["group"]["user_id"], row["bucket"])], rel=1e-9)
    assert len(body["data"]) == sum(1 for (u, _) in daily if u in top3)


def test_duration_intervals(api, project_a):
    edge = EDGE_HOUR
    params = {**ALL, "metric": "requests", "model": "edge-model", "from": (edge - timedelta(hours=1)).isoformat(),
              "to": (edge + timedelta(hours=1)).isoformat()}
    five = api(project_a.key).get("/metrics", params={**params, "interval": "5m"}).json()
    assert five["source"] == "metrics_1m"
    assert {r["bucket"]: r["value"] for r in five["data"]} == {
        (edge - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:00Z"): 2, edge.strftime("%Y-%m-%dT%H:%M:00Z"): 3}
    secs = api(project_a.key).get("/metrics", params={**params, "interval": "30s"}).json()
    assert secs["source"] == "spans" and sum(r["value"] for r in secs["data"]) == 5
    for bad in ("5x", "0m", "m", "-5m", "99999999d"):
        resp = api(project_a.key).get("/metrics", params={**params, "interval": bad})
        assert resp.status_code == 400 and resp.json()["error"].startswith("interval:"), bad


def test_counts_and_sums_the_same_once_the_minutes_are_rolled(api, stack, project_a):
    """Once every minute is rolled, the answers come from the rollup tables and stay the same. (The
    tests above may have read the minutes from the spans or, if the stack's roller got to them first,
    from the rollups: tests/processors/test_rollups_exact.py covers both states deterministically.)"""
    from stream_processors.roller import roll_due
    from tests.processors.rollups_check import unrolled_minutes

    roll_due(stack.clickhouse)
    assert unrolled_minutes(stack.clickhouse, project_a.project_id) == 0
    test_counts_and_sums_exact_from_preaggregates(api, project_a)
    test_cost_by_user_exact_from_user_rollup_and_from_spans(api, project_a)
    test_user_rollup_per_day_and_filtered_by_user(api, project_a)
    test_all_spans_stored(api, project_a)


def test_several_percentiles_from_one_scan_match_numpy(api, project_a):
    """aggregation repeated (the dashboard's latency chart): each row's values equal numpy's percentiles
    of that hour's spans; value is the first one's."""
    levels = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}
    body = metric(api, project_a.key, metric="latency", aggregation=list(levels), interval="hour")
    assert body["aggregation"] == "p50" and body["aggregations"] == list(levels)
    hours: dict[str, list[float]] = {}
    for s in project_a.spans:
        hours.setdefault(s["start_time"].strftime("%Y-%m-%dT%H:00:00Z"), []).append(s["duration_ms"])
    assert {row["bucket"] for row in body["data"]} == set(hours)
    for row in body["data"]:
        expected = {a: float(np.percentile(hours[row["bucket"]], q)) for a, q in levels.items()}
        assert row["values"] == pytest.approx(expected, rel=1e-9) and row["value"] == row["values"]["p50"]
        assert row["n"] == len(hours[row["bucket"]])
    per_model = by_group(metric(api, project_a.key, metric="latency", aggregation=["p95", "p99"], group_by="model"), "model")
    for model in MODELS:
        durations = project_a.column("duration_ms", model=model)
        assert per_model[model]["values"] == pytest.approx(
            {"p95": np.percentile(durations, 95), "p99": np.percentile(durations, 99)}, rel=1e-9)


@pytest.mark.parametrize("aggregations", [["p50", "avg"], ["p95", "p95"], ["p50", "p77"]])
def test_several_aggregations_only_distinct_percentiles(api, project_a, aggregations):
    resp = api(project_a.key).get("/metrics", params={**WINDOW, "metric": "latency", "aggregation": aggregations})
    assert resp.status_code == 400 and resp.json()["error"].startswith("aggregation:"), resp.text
