"""The ClickHouse side of alerting: one parameterised query per rule, per tick.

A rule's value is computed from the deduplicated base tables (``spans FINAL`` / ``scores FINAL``), not
from ``metrics_1m``: alert windows slide (they end at the tick, not on a minute), ``user_id`` and most
filter columns are not in the rollup, and a redelivered span must not count twice. The scan stays
narrow because the spans sort key starts with (project_id, hour).

The same query serves threshold and anomaly rules: rows are cut into consecutive windows of
``window_seconds`` ending at the evaluation time (bucket ``n - 1`` is the current window), so an anomaly
rule gets its current value and its whole baseline in one round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .rules import COUNT_METRICS, AlertRule

# metric -> (table, time column, value column or None, condition selecting the rows that carry a value)
_SOURCES: dict[str, tuple[str, str, str | None, str]] = {
    "latency": ("spans", "start_time", "duration_ms", "1"),
    "ttft": ("spans", "start_time", "assumeNotNull(ttft_ms)", "ttft_ms IS NOT NULL"),
    "cost": ("spans", "start_time", "assumeNotNull(cost)", "cost IS NOT NULL"),
    "score_avg": ("scores", "timestamp", "assumeNotNull(value)", "value IS NOT NULL"),
    "error_rate": ("spans", "start_time", None, "1"),
    "errors": ("spans", "start_time", None, "1"),
    "requests": ("spans", "start_time", None, "1"),
}
_QUANTILES = {"p50": "0.5", "p90": "0.9", "p95": "0.95", "p99": "0.99"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_ROWS = 100_000  # groups x buckets; a runaway group_by (e.g. user_id) is cut here, not in memory


@dataclass(frozen=True)
class WindowValue:
    """A metric's value in one window for one group; ``value`` is None when no row carried one."""

    value: float | None
    samples: int


def _value_sql(rule: AlertRule) -> tuple[str, str]:
    """(value expression, samples expression) for the rule's metric and aggregation."""
    metric = rule.base_metric
    _, _, column, cond = _SOURCES[metric]
    if metric == "error_rate":
        return "countIf(status = 'error') / count()", "count()"
    if metric == "errors":
        return "toFloat64(countIf(status = 'error'))", "count()"
    if metric == "requests":
        return "toFloat64(count())", "count()"
    agg = rule.aggregation
    if agg == "avg":
        expr = f"avgIf({column}, {cond})"
    elif agg == "sum":
        expr = f"sumIf(toFloat64({column}), {cond})"
    elif agg == "count":
        expr = f"toFloat64(countIf({cond}))"
    else:
        # TDigest, as in metrics_1m, so an alert and the dashboard's percentile agree.
        expr = f"quantileTDigestIf({_QUANTILES[agg]})({column}, {cond})"
    return expr, f"countIf({cond})"


def build_query(rule: AlertRule, end: datetime, buckets: int) -> tuple[str, dict[str, Any]]:
    """SQL and bound parameters for ``buckets`` windows of the rule ending at ``end``.

    Identifiers (columns, tables) come only from the validated whitelists in ``rules``; every value —
    project, times, filter values, thresholds — is a bound parameter.
    """
    table, time_col, _, _ = _SOURCES[rule.base_metric]
    value_expr, samples_expr = _value_sql(rule)
    window = timedelta(seconds=rule.window_seconds)
    start = end - window * buckets
    params: dict[str, Any] = {
        "project_id": rule.project_id,
        "start": start,
        "end": end,
        "origin_us": epoch_micros(start),
        "window_us": rule.window_seconds * 1_000_000,
        "min_samples": rule.min_samples,
        "max_rows": MAX_ROWS,
    }
    where = [
        "project_id = {project_id:String}",
        f"{time_col} >= {{start:DateTime64(6, 'UTC')}}",
        f"{time_col} < {{end:DateTime64(6, 'UTC')}}",
    ]
    if table == "spans":
        where.append("counted = 1")  # a model call recorded twice counts once (ingest/duplicates.py)
    for i, (column, value) in enumerate(sorted(rule.filter.items())):
        params[f"f{i}"] = [str(v) for v in (value if isinstance(value, list) else [value])]
        if column == "tags":
            where.append(f"hasAny(tags, {{f{i}:Array(String)}})")
        else:
            where.append(f"{column} IN {{f{i}:Array(String)}}")
    group_expr = rule.group_by or "''"
    # aliases carry a prefix so they never shadow a column (scores has a ``value`` column)
    sql = (
        f"SELECT toString({group_expr}) AS alert_group,"
        f" toInt64(intDiv(toUnixTimestamp64Micro({time_col}) - {{origin_us:Int64}}, {{window_us:Int64}}))"
        " AS alert_bucket,"
        f" {value_expr} AS alert_value, {samples_expr} AS alert_samples"
        f" FROM {table} FINAL"
        f" WHERE {' AND '.join(where)}"
        " GROUP BY alert_group, alert_bucket"
        " HAVING alert_samples >= {min_samples:UInt64}"
        " LIMIT {max_rows:UInt64}"
    )
    return sql, params


def query_windows(client: Any, rule: AlertRule, end: datetime, buckets: int = 1) -> dict[str, dict[int, WindowValue]]:
    """Run the rule's query: ``{group: {bucket: WindowValue}}`` with bucket ``buckets - 1`` = current window.

    Windows with fewer than ``min_samples`` samples are left out. For an ungrouped count rule with
    ``min_samples = 0`` an empty current window is reported as 0, so "requests < 1" can fire on silence.
    """
    sql, params = build_query(rule, end, buckets)
    result: dict[str, dict[int, WindowValue]] = {}
    for grp, bucket, value, samples in client.query(sql, parameters=params).result_rows:
        if value is not None and math.isnan(value):
            value = None
        result.setdefault(grp, {})[int(bucket)] = WindowValue(value, int(samples))
    if rule.group_by is None and rule.min_samples == 0 and _zero_when_empty(rule):
        for bucket in range(buckets):
            result.setdefault("", {}).setdefault(bucket, WindowValue(0.0, 0))
    return result


def _zero_when_empty(rule: AlertRule) -> bool:
    return rule.base_metric in COUNT_METRICS or rule.aggregation in ("sum", "count")


def epoch_micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact, unlike ``timestamp()``)."""
    return (ts - _EPOCH) // timedelta(microseconds=1)
