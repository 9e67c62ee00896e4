"""Time-series / grouped aggregates for ``GET /api/v1/metrics``.

Source choice (reported as ``source`` in every answer):
- ``metrics_1m`` (per-minute rollups) for counts, sums and means — requests, errors, error_rate, cost
  sum, token sums/means, latency mean — when every filter and group is one of its columns and the
  time range is minute-aligned. Exact (``core/rollups.py``): minutes not rolled since their latest
  insert are computed from the deduplicated spans in the same query. ~100x fewer rows than spans.
- ``metrics_user_1m`` (the same measures per minute and user) for those metrics grouped or filtered
  by user_id alone: cost by user per day over a month reads ~4x fewer rows than spans.
- ``spans`` (FINAL) for everything else, and always for percentiles: they use quantileExactInclusive,
  which is numpy's default (linear) percentile exactly; the table's t-digest states are approximate.
- ``scores`` for metric=score.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from core.rollups import read_sql
from query_api.filters import (LIST_FILTERS, READ_SETTINGS, TIME_TYPE, BadParam, Binder, Filters,
                               score_range_conditions, score_value_conditions, span_conditions)
from query_api.timefmt import iso_from_seconds, num

METRICS = ("requests", "latency", "ttft", "cost", "input_tokens", "output_tokens", "errors", "error_rate",
           "tokens_per_second", "score")
AGGREGATIONS = ("count", "sum", "avg", "min", "max", "p50", "p90", "p95", "p99")
GROUP_BY = ("model", "provider", "name", "user_id", "session_id", "environment", "release", "tag", "status",
            "prompt_name", "prompt_version")
INTERVALS = {  # interval -> (bucket function, approximate seconds for the bucket-count guard)
    "minute": ("toStartOfMinute", 60), "hour": ("toStartOfHour", 3600), "day": ("toStartOfDay", 86400),
    "week": ("toMonday", 7 * 86400), "month": ("toStartOfMonth", 28 * 86400),
}
MAX_BUCKETS = 5000
DEFAULT_WINDOW = timedelta(days=7)

SPAN_VALUES = {  # metric -> value expression on spans (NULLs are skipped by every aggregate)
    "latency": "duration_ms", "ttft": "ttft_ms", "cost": "cost", "input_tokens": "input_tokens",
    "output_tokens": "output_tokens", "tokens_per_second": "tokens_per_second",
}
MV_COLUMNS = frozenset({"model", "provider", "name", "status", "kind", "environment", "release"})
USER_MV_COLUMNS = frozenset({"user_id"})
MV_SERVABLE = {  # (metric, aggregation) -> expression over metrics_1m and metrics_user_1m
    ("requests", "count"): "sum(requests)", ("requests", "sum"): "sum(requests)",
    ("errors", "count"): "sum(errors)", ("errors", "sum"): "sum(errors)",
    ("error_rate", "avg"): "sum(errors) / sum(requests)",
    ("cost", "sum"): "sum(cost)",
    ("input_tokens", "sum"): "sum(input_tokens)", ("input_tokens", "avg"): "sum(input_tokens) / sum(requests)",
    ("output_tokens", "sum"): "sum(output_tokens)", ("output_tokens", "avg"): "sum(output_tokens) / sum(requests)",
    ("latency", "count"): "sum(requests)", ("latency", "avg"): "sum(duration_sum) / sum(requests)",
}


@dataclass
class MetricQuery:
    metric: str
    aggregation: str
    group_by: list[str]
    interval: str | None
    limit: int  # groups kept (largest totals first)
    score_name: str = ""
    # further percentiles from the same scan (a chart's p50 / p90 / p95 / p99 in one read of the spans)
    also: tuple[str, ...] = ()


def default_aggregation(metric: str) -> str:
    return {"requests": "count", "errors": "count", "error_rate": "avg"}.get(metric, "avg")


def validate(mq: MetricQuery) -> None:
    """Reject combinations that have no meaning, naming the parameter."""
    if mq.metric not in METRICS:
        raise BadParam("metric", f"must be one of {', '.join(METRICS)}")
    if mq.aggregation not in AGGREGATIONS:
        raise BadParam("aggregation", f"must be one of {', '.join(AGGREGATIONS)}")
    if mq.metric in ("requests", "errors") and mq.aggregation not in ("count", "sum"):
        raise BadParam("aggregation", f"metric={mq.metric} supports count or sum")
    if mq.metric == "error_rate" and mq.aggregation != "avg":
        raise BadParam("aggregation", "metric=error_rate is a ratio; use avg (the default)")
    for g in mq.group_by:
        if g not in GROUP_BY:
            raise BadParam("group_by", f"must be among {', '.join(GROUP_BY)}")
    if len(set(mq.group_by)) != len(mq.group_by) or len(mq.group_by) > 3:
        raise BadParam("group_by", "at most 3 distinct columns")
    if mq.interval is not None:
        interval_seconds(mq.interval)  # raises BadParam
    if mq.also and not all(a.startswith("p") for a in (mq.aggregation, *mq.also)):
        raise BadParam("aggregation", "several values only for percentiles (p50, p90, p95, p99)")
    if len(set((mq.aggregation, *mq.also))) != 1 + len(mq.also):
        raise BadParam("aggregation", "given twice")
    if mq.metric == "score":
        if not mq.score_name:
            raise BadParam("score_name", "required for metric=score")
        if mq.group_by:
            raise BadParam("group_by", "not supported for metric=score; filter the traces instead")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def interval_seconds(interval: str) -> int:
    """Bucket width: a calendar unit (minute … month) or a duration such as 30s, 5m, 2h, 1d."""
    if interval in INTERVALS:
        return INTERVALS[interval][1]
    count, unit = interval[:-1], interval[-1:]
    if unit in DURATION_UNITS and count.isdigit() and 0 < int(count) <= 10_000:
        return int(count) * DURATION_UNITS[unit]
    raise BadParam("interval", f"must be one of {', '.join(INTERVALS)} or a duration like 30s, 5m, 2h, 1d")


def bucket_expr(interval: str, time_col: str) -> str:
    """Start of the UTC bucket holding ``time_col``; durations are aligned to the Unix epoch."""
    if interval in INTERVALS:
        return f"{INTERVALS[interval][0]}({time_col})"
    return f"toStartOfInterval({time_col}, INTERVAL {interval_seconds(interval)} SECOND)"


def _minute_aligned(dt: datetime | None) -> bool:
    return dt is None or (dt.second == 0 and dt.microsecond == 0)


def choose_source(mq: MetricQuery, f: Filters) -> str:
    if mq.metric == "score":
        return "scores"
    dims = set(f.span_filter_keys()) | set(mq.group_by)
    rollup_ok = ((mq.metric, mq.aggregation) in MV_SERVABLE and not f.score_name
                 and all(getattr(f, k) is None for k in ("min_latency_ms", "max_latency_ms", "min_cost", "max_cost"))
                 and (mq.interval is None or interval_seconds(mq.interval) % 60 == 0)
                 and _minute_aligned(f.start) and _minute_aligned(f.end))
    if rollup_ok and dims <= MV_COLUMNS:
        return "metrics_1m"
    if rollup_ok and dims <= USER_MV_COLUMNS:
        return "metrics_user_1m"
    return "spans"


def _aggregate(expr: str, aggregation: str, also: tuple[str, ...] = ()) -> str:
    """The aggregate of ``expr``; with ``also``: an array, ``aggregation``'s then each of ``also``'s."""
    if also:
        levels = ", ".join(str(int(a[1:]) / 100) for a in (aggregation, *also))
        return f"quantilesExactInclusive({levels})({expr})"
    if aggregation.startswith("p"):
        return f"quantileExactInclusive({int(aggregation[1:]) / 100})({expr})"
    return f"{aggregation}({expr})"


def _span_value_expr(mq: MetricQuery) -> str:
    if mq.metric == "requests":
        return "count()"
    if mq.metric == "errors":
        return "countIf(status = 'error')"
    if mq.metric == "error_rate":
        return "countIf(status = 'error') / count()"
    return _aggregate(SPAN_VALUES[mq.metric], mq.aggregation, mq.also)


def run_metric(client, project_id: str, mq: MetricQuery, f: Filters) -> dict[str, Any]:
    """Evaluate the metric; rows are {bucket, group, value, n}, buckets in UTC ISO-8601."""
    validate(mq)
    # Default end: the next whole minute, so an open-ended range stays servable from metrics_1m.
    end = f.end or (datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1))
    start = f.start or end - DEFAULT_WINDOW
    if mq.interval and (end - start).total_seconds() / interval_seconds(mq.interval) > MAX_BUCKETS:
        raise BadParam("interval", f"more than {MAX_BUCKETS} buckets in the time range; widen the interval")
    f.start, f.end = start, end
    source = choose_source(mq, f)
    b = Binder()
    if source in ("metrics_1m", "metrics_user_1m"):
        time_col, final = "minute", ""
        table = read_sql(source, b.bind(project_id, "String"), f"toDateTime({b.bind(start, TIME_TYPE)}, 'UTC')",
                         f"toDateTime({b.bind(end, TIME_TYPE)}, 'UTC')")
        where = [f"has({b.bind(v, 'Array(String)')}, {LIST_FILTERS[k]})" for k, v in f.lists.items() if v] or ["1"]
        value, count = MV_SERVABLE[(mq.metric, mq.aggregation)], "sum(requests)"
    elif source == "scores":
        time_col, table, final = "timestamp", "scores", "FINAL"
        where = score_value_conditions(f, b, project_id, mq.score_name) + score_range_conditions(f, b)
        value, count = _aggregate("value", mq.aggregation, mq.also), "count()"
    else:
        time_col, table, final = "start_time", "spans", "FINAL"
        # a model call recorded twice counts once (ingest.duplicates; spans.counted, migration 0013)
        where = span_conditions(f, b, project_id=project_id) + ["counted = 1"]
        if mq.metric in SPAN_VALUES:  # aggregates skip NULLs anyway; dropping them early halves the work
            where.append(f"{SPAN_VALUES[mq.metric]} IS NOT NULL")
        value = _span_value_expr(mq)
        count = f"count({SPAN_VALUES[mq.metric]})" if mq.metric in SPAN_VALUES else "count()"
    select, keys = [], []
    if mq.interval:
        select.append(f"toUnixTimestamp(toDateTime({bucket_expr(mq.interval, time_col)}, 'UTC')) AS m_bucket")
        keys.append("m_bucket")
    for g in mq.group_by:
        col = "arrayJoin(if(empty(tags), [''], tags))" if g == "tag" else g
        select.append(f"{col} AS g_{g}")
        keys.append(f"g_{g}")
    if mq.also:  # m_value: the first percentile (ranks groups); m_values: all of them
        select += [f"arrayMap(x -> toFloat64(x), {value}) AS m_values", "m_values[1] AS m_value", f"{count} AS m_n"]
    else:
        select += [f"toFloat64({value}) AS m_value", "[] AS m_values", f"{count} AS m_n"]
    sql = f"SELECT {', '.join(select)} FROM {table} {final} WHERE {' AND '.join(where)}"
    if keys:
        sql += f" GROUP BY {', '.join(keys)}"
    group_keys = [f"g_{g}" for g in mq.group_by]
    part = ", ".join(group_keys)
    if group_keys and mq.interval:
        # Keep the `limit` groups with the largest totals: fold each group's buckets into one array
        # row, rank the (few thousand) group rows, unfold in Python. One scan; no window function.
        sql = (f"SELECT {part}, sum(ifNotFinite(m_value, 0)) AS total, "
               f"arraySort(x -> x.1, groupArray((m_bucket, m_value, m_n, m_values))) AS points FROM ({sql}) "
               f"GROUP BY {part} ORDER BY total DESC, {part} LIMIT {int(mq.limit)}")
    elif group_keys:
        sql += f" ORDER BY ifNotFinite(m_value, 0) DESC, {part} LIMIT {int(mq.limit)}"
    elif mq.interval:
        sql += " ORDER BY m_bucket"
    settings = None if source == "scores" else READ_SETTINGS  # see filters.READ_SETTINGS: spans and rollup_spans
    result = client.query(sql, parameters=b.params, settings=settings)
    cols = result.column_names
    points = []  # (bucket, group, value, n, values)
    for row in result.result_rows:
        rec = dict(zip(cols, row))
        group = {g: rec[f"g_{g}"] for g in mq.group_by}
        if group_keys and mq.interval:
            points += [(bucket, group, value, n, values) for bucket, value, n, values in rec["points"]]
        else:
            points.append((rec.get("m_bucket"), group, rec["m_value"], rec["m_n"], rec["m_values"]))
    data = [{
        "bucket": iso_from_seconds(bucket) if mq.interval else None,
        "group": group,
        "value": num(value) if n or mq.aggregation in ("count", "sum") else None,
        "n": n,
        **({"values": dict(zip((mq.aggregation, *mq.also), (num(v) if n else None for v in values)))} if mq.also else {}),
    } for bucket, group, value, n, values in points]
    return {
        "metric": mq.metric, "aggregation": mq.aggregation, "interval": mq.interval, "group_by": mq.group_by,
        **({"aggregations": [mq.aggregation, *mq.also]} if mq.also else {}),
        "from": start.isoformat().replace("+00:00", "Z"), "to": end.isoformat().replace("+00:00", "Z"),
        "source": source, "data": data,
    }
