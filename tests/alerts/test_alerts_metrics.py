"""What each metric / aggregation computes in chDB, rule validation, and the periodic runner."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from stream_processors.alerts import AlertEngine, AlertRule, RuleError, run_alerts
from stream_processors.alerts.metrics_query import query_windows
from tests.loopback import LOOPBACK_EGRESS


def rule(project: str, metric: str, aggregation: str = "avg", **fields) -> AlertRule:
    r = AlertRule(id="r", project_id=project, name="n", metric=metric, aggregation=aggregation, threshold=0.0,
                  window_seconds=60, min_samples=fields.pop("min_samples", 1), **fields)
    r.validate()
    return r


@pytest.fixture
def minute(spans, t0):
    """One minute [t0 - 60 s, t0) of 10 spans: durations 100..1000 ms, 2 errors, ttft on 4, cost on 5,
    plus spans outside the window (before, at t0) and in another project that must not count."""
    start = t0 - timedelta(seconds=60)
    specs = [{"start": start + timedelta(seconds=5 * i), "duration_ms": 100.0 * (i + 1),
              "status": "error" if i in (3, 7) else "ok",
              "ttft_ms": 50.0 * i if i < 4 else None,
              "cost": 0.01 if i % 2 == 0 else None} for i in range(10)]
    outside = [{"start": start - timedelta(microseconds=1), "duration_ms": 9e6, "status": "error"},
               {"start": t0, "duration_ms": 9e6, "status": "error"}]
    spans.insert(specs + outside)
    spans.insert(specs, project="someone-else")
    return t0


@pytest.mark.parametrize(("metric", "aggregation", "expected", "samples"), [
    ("latency", "avg", pytest.approx(550.0), 10),
    ("latency", "sum", pytest.approx(5500.0), 10),
    ("latency", "count", 10.0, 10),
    # percentiles are t-digest estimates: the median of 100..1000 lies in [500, 600]
    ("latency", "p50", pytest.approx(550.0, abs=50), 10),
    ("latency", "p99", pytest.approx(1000.0, rel=0.05), 10),
    ("ttft", "avg", pytest.approx(75.0), 4),
    ("ttft", "p99", pytest.approx(150.0, rel=0.05), 4),
    ("cost", "sum", pytest.approx(0.05), 5),
    ("errors", "count", 2.0, 10),
    ("requests", "count", 10.0, 10),
    ("error_rate", "avg", pytest.approx(0.2), 10),
])
def test_metric_values(clickhouse, project, minute, metric, aggregation, expected, samples):
    [(group, windows)] = query_windows(clickhouse, rule(project, metric, aggregation), minute).items()
    assert group == "" and list(windows) == [0]
    assert windows[0].value == expected and windows[0].samples == samples


def test_windows_for_an_anomaly_baseline(clickhouse, spans, project, t0):
    spans.insert([{"start": t0 - timedelta(seconds=60 * (k - 1) + 1), "duration_ms": float(k)} for k in range(1, 4)])
    windows = query_windows(clickhouse, rule(project, "anomaly:latency"), t0, buckets=4)[""]
    # bucket 3 is the current minute [t0-60, t0), bucket 0 the oldest
    assert {b: w.value for b, w in windows.items()} == {3: 1.0, 2: 2.0, 1: 3.0}


def test_score_avg_reads_the_scores_table(clickhouse, project, t0):
    rows = [[project, uuid.uuid4().hex, "t", "s", name, "numeric", value, "", "", "evaluator", "judge", "1",
             t0 - timedelta(seconds=10)]
            for name, value in [("helpfulness", 0.2), ("helpfulness", 0.4), ("toxicity", 0.9)]]
    clickhouse.insert("scores", rows, column_names=[
        "project_id", "score_id", "trace_id", "span_id", "name", "data_type", "value", "string_value", "comment",
        "source", "evaluator", "evaluator_version", "timestamp"])
    by_name = query_windows(clickhouse, rule(project, "score_avg", group_by="name"), t0)
    assert by_name["helpfulness"][0].value == pytest.approx(0.3) and by_name["toxicity"][0].value == 0.9
    only = query_windows(clickhouse, rule(project, "score_avg", filter={"name": "toxicity"}), t0)
    assert only[""][0].value == 0.9


def test_silence_counts_as_zero_requests_when_min_samples_is_0(clickhouse, project, t0):
    windows = query_windows(clickhouse, rule(project, "requests", "count", min_samples=0), t0)
    assert windows[""][0].value == 0.0
    assert query_windows(clickhouse, rule(project, "requests", "count"), t0) == {}


def test_filter_values_are_bound_not_spliced(clickhouse, spans, project, t0):
    spans.insert([{"start": t0 - timedelta(seconds=1), "duration_ms": 1.0, "model": "x' OR 1=1 --"}])
    r = rule(project, "requests", "count", filter={"model": ["x' OR 1=1 --"]})
    assert query_windows(clickhouse, r, t0)[""][0].value == 1.0


@pytest.mark.parametrize(("fields", "field_name"), [
    ({"metric": "latancy"}, "metric"),
    ({"metric": "anomaly:nope"}, "metric"),
    ({"aggregation": "p42"}, "aggregation"),
    ({"metric": "error_rate", "aggregation": "p95"}, "aggregation"),
    ({"comparator": "=>"}, "comparator"),
    ({"group_by": "trace_id"}, "group_by"),
    ({"filter": {"input": "x"}}, "filter"),
    ({"window_seconds": 1}, "window_seconds"),
    ({"slack_webhook_url": "ftp://x"}, "slack_webhook_url"),
])
def test_invalid_rules_name_the_field(fields, field_name):
    row = {"id": "r", "project_id": "p", "name": "n", "metric": "latency", "threshold": 1, **fields}
    with pytest.raises(RuleError, match=f"^{field_name}"):
        AlertRule.from_row(row)


def test_rule_from_a_database_row():
    row = {"id": "r", "project_id": "p", "name": "n", "metric": "anomaly:cost", "aggregation": "sum",
           "comparator": ">=", "threshold": 3, "window_seconds": 600, "min_samples": 5, "group_by": "",
           "filter": '{"environment": "prod"}', "cooldown_seconds": 60, "slack_webhook_url": None,
           "enabled": True, "created_at": datetime.now(timezone.utc)}
    r = AlertRule.from_row(row)
    assert (r.base_metric, r.is_anomaly, r.group_by, r.filter, r.threshold) == (
        "cost", True, None, {"environment": "prod"}, 3.0)
    assert r.describe() == "anomaly of cost sum"


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_run_alerts_ticks_until_stopped(clickhouse, redis_factory, slack, spans, project, alert_settings):
    now = datetime.now(timezone.utc)
    spans.insert(spans.slow(now - timedelta(seconds=50), 60, 20))  # covers "now" for the next ~10 s
    r = AlertRule(id="r", project_id=project, name="Live", metric="latency", aggregation="p95", threshold=1000.0,
                  window_seconds=60, min_samples=5, slack_webhook_url=slack.url)
    engine = AlertEngine(clickhouse, redis_factory(), [r], settings=alert_settings, egress=LOOPBACK_EGRESS)
    stop = asyncio.Event()
    task = asyncio.create_task(run_alerts(engine, interval_s=0.2, stop_event=stop))
    for _ in range(100):
        if slack.bodies:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a few more ticks: still one message
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    engine.close()
    assert [b["blocks"][0]["text"]["text"] for b in slack.bodies] == ["🔴 Firing: Live"]
