"""Trace list, trace detail and session reads. Functions take a clickhouse-connect client, the
caller's project id and validated parameters; every query is scoped to that project.

Spans are read with FINAL (ReplacingMergeTree may still hold retried duplicates).
"""

from __future__ import annotations

import base64
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from core.span import DUPLICATE_OF
from query_api.filters import (READ_SETTINGS, TRACE_DURATION, TRACE_STATUS, BadParam, Binder, Filters,
                               trace_filter_subquery, window_conditions)
from query_api.timefmt import iso_from_micros, num

SORTS = {  # sort key -> trace-level aggregate (the start_time sort reads root spans instead)
    "start_time": None,
    "duration_ms": TRACE_DURATION,
    "cost": "sum(ifNull(cost, 0) * counted)",
    "total_tokens": "sum(total_tokens * counted)",
}
MAX_SLACK_DAYS = 1  # how long after its root a trace's spans may still start
LOOKBACK_DAYS = (1, 7, 30)


class NotFound(LookupError):
    """The trace / session does not exist in the caller's project (answered as 404)."""


_MAX_CURSOR_MICROS = int(datetime(2262, 1, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000  # spans' Int64 ns range


def encode_cursor(key: Any, trace_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([key, trace_id])).decode().rstrip("=")


def decode_cursor(cursor: str, numeric_type: type) -> tuple[Any, str]:
    try:
        key, trace_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(trace_id, str) or isinstance(key, bool) or not isinstance(key, (int, float)):
            raise ValueError
        if not math.isfinite(key) or abs(key) >= 2**62:  # Int64 / Float64 parameters must hold it
            raise ValueError
        return numeric_type(key), trace_id
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadParam("cursor", "malformed; pass next_cursor from the previous page unchanged") from None


def list_traces(client, project_id: str, f: Filters, *, sort: str = "start_time", order: str = "desc",
                limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """One page of traces (root name, start, duration, cost, tokens, status, scores) + next_cursor."""
    desc = order == "desc"
    if sort == "start_time":
        rows = _newest_roots(client, project_id, f, desc, limit, cursor)
    else:
        b = Binder()
        cmp, direction = ("<", "DESC") if desc else (">", "ASC")
        where = window_conditions(f, b, project_id)
        if sub := trace_filter_subquery(f, b, project_id, slack_days=MAX_SLACK_DAYS):
            where.append(f"trace_id IN ({sub})")
        having = ["countIf(parent_span_id = '') > 0"]
        if cursor:
            key, tid = decode_cursor(cursor, float)
            kb = b.bind(key, "Float64")
            having.append(f"(k {cmp} {kb} OR (k = {kb} AND trace_id {cmp} {b.bind(tid, 'String')}))")
        sql = (f"SELECT trace_id, toFloat64({SORTS[sort]}) AS k FROM spans FINAL WHERE {' AND '.join(where)} "
               f"GROUP BY trace_id HAVING {' AND '.join(having)} "
               f"ORDER BY k {direction}, trace_id {direction} LIMIT {int(limit) + 1}")
        rows = client.query(sql, parameters=b.params, settings=READ_SETTINGS).result_rows
    page, more = rows[:limit], len(rows) > limit
    traces = hydrate_traces(client, project_id, [r[0] for r in page])
    data = [traces[tid] for tid, _ in page if tid in traces]
    next_cursor = encode_cursor(page[-1][1], page[-1][0]) if more and page else None
    return {"data": data, "next_cursor": next_cursor}


def _newest_roots(client, project_id: str, f: Filters, desc: bool, limit: int,
                  cursor: str | None) -> list[tuple[str, int]]:
    """Root spans in start order, as (trace_id, start µs). Newest-first pages look back 1 day, then
    7, then 30, then without bound, stopping once a page is full: a page of recent traces then reads
    a day of data instead of the whole project."""
    key, tid = decode_cursor(cursor, int) if cursor else (None, "")
    if key is not None and not 0 <= key <= _MAX_CURSOR_MICROS:  # a forged one: datetime cannot hold it
        raise BadParam("cursor", "malformed; pass next_cursor from the previous page unchanged")
    lookbacks: list[timedelta | None] = [None]
    if desc:
        anchor = (datetime.fromtimestamp(key / 1e6, tz=timezone.utc) if key is not None
                  else f.end or datetime.now(timezone.utc))
        lookbacks = [timedelta(days=d) for d in LOOKBACK_DAYS if not f.start or anchor - timedelta(days=d) > f.start]
        lookbacks.append(None)
    for lookback in lookbacks:
        window = replace(f, start=anchor - lookback) if lookback else f
        b = Binder()
        cmp, direction = ("<", "DESC") if desc else (">", "ASC")
        # The sort key prefix (project, hour) lets ClickHouse read in order and stop early.
        where = window_conditions(window, b, project_id) + ["parent_span_id = ''"]
        if sub := trace_filter_subquery(window, b, project_id, slack_days=MAX_SLACK_DAYS):
            where.append(f"trace_id IN ({sub})")
        if key is not None:
            ts = f"fromUnixTimestamp64Micro({b.bind(key, 'Int64')}, 'UTC')"
            where.append(f"start_time {cmp}= {ts}")
            where.append(f"(start_time {cmp} {ts} OR trace_id {cmp} {b.bind(tid, 'String')})")
        sql = (f"SELECT trace_id, toUnixTimestamp64Micro(start_time) AS k FROM spans FINAL "
               f"WHERE {' AND '.join(where)} ORDER BY toStartOfHour(start_time) {direction}, "
               f"start_time {direction}, trace_id {direction} LIMIT {int(limit) + 1}")
        rows = client.query(sql, parameters=b.params, settings=READ_SETTINGS).result_rows
        if len(rows) > limit:
            break
    return rows


def _trace_bounds(client, project_id: str, trace_ids: list[str], settings: dict | None = None) -> tuple[int, int] | None:
    """(first, last) span start in µs over ``trace_ids``, from the trace_index lookup table."""
    b = Binder()
    sql = (f"SELECT toUnixTimestamp64Micro(min(start_min)), toUnixTimestamp64Micro(max(start_max)), count() "
           f"FROM trace_index WHERE project_id = {b.bind(project_id, 'String')} "
           f"AND trace_id IN {b.bind(trace_ids, 'Array(String)')}")
    lo, hi, n = client.query(sql, parameters=b.params, settings=settings).result_rows[0]
    return (lo, hi) if n else None


def hydrate_traces(client, project_id: str, trace_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Trace summaries (rollups over all spans, plus scores) keyed by trace_id."""
    if not trace_ids:
        return {}
    bounds = _trace_bounds(client, project_id, trace_ids)
    if bounds is None:
        return {}
    b = Binder()
    sql = f"""
        SELECT trace_id,
            argMinIf(name, start_time, parent_span_id = '') AS root_name,
            toUnixTimestamp64Micro(min(start_time)) AS start_us, toUnixTimestamp64Micro(max(end_time)) AS end_us,
            {TRACE_DURATION} AS dur,
            sum(ifNull(cost, 0) * counted) AS cost_sum, countIf(cost IS NOT NULL) AS priced,
            sum(input_tokens * counted), sum(output_tokens * counted), sum(total_tokens * counted),
            {TRACE_STATUS} AS trace_status, count() AS span_count, countIf(status = 'error') AS error_count,
            anyIf(user_id, user_id != ''), anyIf(session_id, session_id != ''),
            anyIf(environment, environment != ''), anyIf(release, release != ''),
            arraySort(groupUniqArrayArray(tags)), arraySort(groupUniqArrayIf(model, model != '')),
            argMinIf(input_preview, start_time, parent_span_id = ''),
            argMinIf(output_preview, start_time, parent_span_id = '')
        FROM spans FINAL
        WHERE project_id = {b.bind(project_id, 'String')} AND trace_id IN {b.bind(trace_ids, 'Array(String)')}
          AND start_time >= fromUnixTimestamp64Micro({b.bind(bounds[0], 'Int64')}, 'UTC')
          AND start_time <= fromUnixTimestamp64Micro({b.bind(bounds[1], 'Int64')}, 'UTC')
        GROUP BY trace_id"""
    out: dict[str, dict[str, Any]] = {}
    for r in client.query(sql, parameters=b.params, settings=READ_SETTINGS).result_rows:
        out[r[0]] = {
            "trace_id": r[0], "name": r[1], "start_time": iso_from_micros(r[2]), "end_time": iso_from_micros(r[3]),
            "duration_ms": num(r[4]), "cost": r[5] if r[6] else None, "input_tokens": r[7],
            "output_tokens": r[8], "total_tokens": r[9], "status": r[10], "span_count": r[11],
            "error_count": r[12], "user_id": r[13], "session_id": r[14], "environment": r[15],
            "release": r[16], "tags": list(r[17]), "models": list(r[18]), "input_preview": r[19],
            "output_preview": r[20], "scores": [],
        }
    for score in trace_scores(client, project_id, list(out)):
        out[score.pop("trace_id")]["scores"].append(score)
    return out


# Reads of a few rows: planning is most of their cost. No JIT compilation of expressions and no
# query-plan optimization passes (~5 ms of a ~25 ms trace read); partition, primary-key and
# skip-index pruning happen all the same (same bytes read).
POINT_READ_SETTINGS = {"compile_expressions": 0, "query_plan_enable_optimizations": 0}


def trace_scores(client, project_id: str, trace_ids: list[str]) -> list[dict[str, Any]]:
    """Scores attached to ``trace_ids`` (latest version of each score_id), oldest first."""
    if not trace_ids:
        return []
    b = Binder()
    sql = (f"SELECT trace_id, {SCORE_FIELDS} FROM scores FINAL "
           f"WHERE project_id = {b.bind(project_id, 'String')} AND trace_id IN {b.bind(trace_ids, 'Array(String)')} "
           f"ORDER BY timestamp, score_id")
    return [dict(_score(r[1:]), trace_id=r[0])
            for r in client.query(sql, parameters=b.params, settings=POINT_READ_SETTINGS).result_rows]


SCORE_FIELDS = ("span_id, score_id, name, data_type, value, string_value, comment, source, evaluator, "
                "toUnixTimestamp64Micro(timestamp)")
_SCORE_KEYS = ("span_id", "score_id", "name", "data_type", "value", "string_value", "comment", "source", "evaluator")


def _score(r: tuple) -> dict[str, Any]:
    row = dict(zip(_SCORE_KEYS, r[:9]))
    row["value"] = num(row["value"])
    row["timestamp"] = iso_from_micros(r[9])
    return row


SPAN_DETAIL_COLUMNS = (
    "span_id", "parent_span_id", "name", "kind", "service_name", "duration_ms", "status", "status_message",
    "error_type", "error_class", "operation", "provider", "request_model", "model", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_creation_tokens", "reasoning_tokens", "total_tokens",
    "tokens_estimated", "cost", "cost_source", "ttft_ms", "tokens_per_second", "session_id", "user_id",
    "environment", "release", "tags", "prompt_name", "prompt_version", "input", "output", "input_preview", "output_preview", "input_ref",
    "output_ref", "attributes", "events",
)


# What ``payloads=false`` leaves out of a trace: the big columns, fetched per span when opened
# (a 10,000-span trace stays a few MB and never touches the blob store).
PAYLOAD_COLUMNS = ("input", "output", "input_ref", "output_ref", "attributes", "events")


def get_trace(client, blobs, project_id: str, trace_id: str, *, payloads: bool = True) -> dict[str, Any]:
    """Every span of the trace as a tree, with full input / output (blob store when offloaded),
    parsed events and attributes, and the trace's scores. NotFound if the project has no such trace.
    ``payloads=False``: spans carry previews only (no input, output, attributes, events)."""
    # The trace's time range first, from the trace_index lookup table: an unknown trace (a client
    # polling for one just sent) costs this ~3 ms read only, and the range skips the parts of
    # trace_spans written at other times (while spans stream in, most parts are small and recent).
    bounds = _trace_bounds(client, project_id, [trace_id], POINT_READ_SETTINGS)
    if bounds is None:
        raise NotFound(trace_id)
    b = Binder()
    pid, tid = b.bind(project_id, "String"), b.bind(trace_id, "String")
    lo, hi = b.bind(bounds[0], "Int64"), b.bind(bounds[1], "Int64")
    # trace_spans is ordered by trace: the trace is one primary-key range. No FINAL: collapsing a
    # trace's few rows here is exact and cheaper. The trace's scores come in the same round trip, as
    # a scalar subquery (an array repeated on each row).
    columns = SPAN_DETAIL_COLUMNS if payloads else tuple(c for c in SPAN_DETAIL_COLUMNS if c not in PAYLOAD_COLUMNS)
    # duplicate_of: the counted span's id when this one is a call recorded twice (ingest.duplicates),
    # read even when the attributes are left out, so the trace's totals count each call once.
    sql = (f"WITH (SELECT groupArray(({SCORE_FIELDS})) FROM scores FINAL "
           f"WHERE project_id = {pid} AND trace_id = {tid}) AS trace_scores "
           f"SELECT toUnixTimestamp64Micro(start_time), toUnixTimestamp64Micro(end_time), "
           f"{', '.join(columns)}, attributes[{b.bind(DUPLICATE_OF, 'String')}], "
           f"toUnixTimestamp64Milli(ingested_at), trace_scores FROM trace_spans "
           f"WHERE project_id = {pid} AND trace_id = {tid} "
           f"AND start_time >= fromUnixTimestamp64Micro({lo}, 'UTC') AND start_time <= fromUnixTimestamp64Micro({hi}, 'UTC') "
           f"ORDER BY start_time, span_id")
    result = client.query(sql, parameters=b.params, settings=POINT_READ_SETTINGS).result_rows
    if not result:
        raise NotFound(trace_id)
    rows = latest_versions([r[:-1] for r in result])
    spans = [_span_detail(r, blobs, (*columns, "duplicate_of")) for r in rows]
    summary = summarize(trace_id, dict(zip(("start_us", "end_us", *columns, "duplicate_of"), zip(*rows))))
    summary["scores"] = sorted((_score(s) for s in result[0][-1]), key=lambda s: (s["timestamp"], s["score_id"]))
    summary["spans"] = build_tree(spans)
    return summary


def latest_versions(rows: list[tuple]) -> list[tuple]:
    """What FINAL keeps of a ReplacingMergeTree(ingested_at): per span_id (column 2) the row with the
    greatest version (last column), the later one on a tie; rows keep their order, version dropped."""
    best: dict[str, tuple[int, int]] = {}  # span_id -> (version, row index)
    for i, row in enumerate(rows):
        if row[2] not in best or row[-1] >= best[row[2]][0]:
            best[row[2]] = (row[-1], i)
    keep = sorted(i for _, i in best.values())
    return [rows[i][:-1] for i in keep]


def summarize(trace_id: str, cols: dict[str, Any]) -> dict[str, Any]:
    """The same rollups as ``hydrate_traces``, from a trace's deduplicated spans in hand (saves two
    queries), given column-wise in start order: ``start_us``, ``end_us``, ``duplicate_of`` and the
    span columns named in ``SUMMARY_COLUMNS``."""
    parents, duplicate = cols["parent_span_id"], cols["duplicate_of"]
    root = parents.index("") if "" in parents else None  # spans are in start order

    # a call recorded twice (ingest.duplicates) counts once: its extra records add no tokens or cost
    def counted(field: str) -> list:
        return [v for v, dup in zip(cols[field], duplicate) if not dup] if any(duplicate) else list(cols[field])

    priced = [c for c in map(num, counted("cost")) if c is not None]
    statuses = set(cols["status"])
    start_us, end_us = min(cols["start_us"]), max(cols["end_us"])

    def first(field: str) -> str:
        return next((v for v in cols[field] if v), "")

    def root_value(field: str) -> str:
        return cols[field][root] if root is not None else ""

    return {
        "trace_id": trace_id, "name": root_value("name"), "start_time": iso_from_micros(start_us),
        "end_time": iso_from_micros(end_us), "duration_ms": (end_us - start_us) / 1000,
        "cost": sum(priced) if priced else None,
        "input_tokens": sum(counted("input_tokens")), "output_tokens": sum(counted("output_tokens")),
        "total_tokens": sum(counted("total_tokens")),
        "status": "error" if "error" in statuses else "ok" if "ok" in statuses else "unset",
        "span_count": len(parents), "error_count": cols["status"].count("error"),
        "user_id": first("user_id"), "session_id": first("session_id"), "environment": first("environment"),
        "release": first("release"), "tags": sorted({t for tags in cols["tags"] for t in tags}),
        "models": sorted({m for m in cols["model"] if m}),
        "input_preview": root_value("input_preview"), "output_preview": root_value("output_preview"),
    }


SUMMARY_COLUMNS = ("parent_span_id", "name", "cost", "input_tokens", "output_tokens", "total_tokens", "status",
                   "user_id", "session_id", "environment", "release", "tags", "model", "input_preview",
                   "output_preview")


def get_span(client, blobs, project_id: str, trace_id: str, span_id: str) -> dict[str, Any]:
    """One span of a trace with its full input / output (blob store when offloaded), attributes,
    events and the scores attached to it; NotFound if the project's trace has no such span."""
    bounds = _trace_bounds(client, project_id, [trace_id], POINT_READ_SETTINGS)
    if bounds is None:
        raise NotFound(trace_id)
    b = Binder()
    pid, tid = b.bind(project_id, "String"), b.bind(trace_id, "String")
    sid = b.bind(span_id, "String")
    lo, hi = b.bind(bounds[0], "Int64"), b.bind(bounds[1], "Int64")
    sql = (f"SELECT toUnixTimestamp64Micro(start_time), toUnixTimestamp64Micro(end_time), "
           f"{', '.join(SPAN_DETAIL_COLUMNS)}, toUnixTimestamp64Milli(ingested_at) FROM trace_spans "
           f"WHERE project_id = {pid} AND trace_id = {tid} AND span_id = {sid} "
           f"AND start_time >= fromUnixTimestamp64Micro({lo}, 'UTC') AND start_time <= fromUnixTimestamp64Micro({hi}, 'UTC')")
    rows = latest_versions(client.query(sql, parameters=b.params, settings=POINT_READ_SETTINGS).result_rows)
    if not rows:
        raise NotFound(span_id)
    span = _span_detail(rows[0], blobs, SPAN_DETAIL_COLUMNS)
    del span["children"]
    span["trace_id"] = trace_id
    span["scores"] = [s for s in trace_scores(client, project_id, [trace_id]) if s["span_id"] == span_id]
    for score in span["scores"]:
        del score["trace_id"]
    return span


def _span_detail(row: tuple, blobs, columns: tuple[str, ...]) -> dict[str, Any]:
    span = dict(zip(columns, row[2:]))
    span["start_time"], span["end_time"] = iso_from_micros(row[0]), iso_from_micros(row[1])
    for key in ("cost", "ttft_ms", "tokens_per_second", "duration_ms"):
        span[key] = num(span[key])
    span["tags"] = list(span["tags"])
    if "attributes" not in span:  # payloads=false: previews only; the span endpoint has the rest
        span["children"] = []
        return span
    span["attributes"] = {k: attribute_value(v) for k, v in (span["attributes"] or {}).items()}
    events = _json_or_text(span["events"]) if span["events"] else []
    span["events"] = events if isinstance(events, list) else []
    for field in ("input", "output"):
        ref = span[f"{field}_ref"]
        if ref and blobs is not None:
            try:
                span[field] = blobs.get(ref).decode("utf-8", "replace")
            except Exception as exc:  # a missing blob degrades one field, not the whole trace
                span[field] = None
                span[f"{field}_error"] = f"payload unavailable: {type(exc).__name__}"
    span["children"] = []
    return span


def attribute_value(value: str) -> Any:
    """A stored attribute as the API shows it. Ingest keeps an OTLP string as it was sent and writes
    other values as JSON, so the stored text alone cannot tell the string "false" from the boolean:
    only JSON objects and arrays (structured values, and JSON sent as a string such as OpenInference
    ``metadata``) are parsed; every scalar stays the text it was ("9.10" is not 9.1, a 23-digit id
    is not a float)."""
    if value[:1] in ("{", "[") or value.lstrip()[:1] in ("{", "["):
        parsed = _json_or_text(value)
        if isinstance(parsed, (dict, list)):
            return parsed
    return value


_MAX_JSON_DEPTH = 64  # deeper JSON stays text: the response encoder refuses deep values (a 500 once)


def _json_or_text(value: str) -> Any:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    if value.count("[") + value.count("{") > _MAX_JSON_DEPTH and not _depth_within(parsed, _MAX_JSON_DEPTH):
        return value
    return parsed


def _depth_within(value: Any, limit: int) -> bool:
    """Whether ``value``'s lists and objects nest at most ``limit`` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in node)
    return True


def build_tree(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest spans under their parents (time order kept); orphans (parent not stored) become roots."""
    by_id = {s["span_id"]: s for s in spans}
    roots = []
    for span in spans:
        parent = by_id.get(span["parent_span_id"])
        if parent is not None and parent is not span:
            parent["children"].append(span)
        else:
            roots.append(span)
    return roots


def get_session(client, project_id: str, session_id: str, *, limit: int = 100,
                cursor: str | None = None) -> dict[str, Any]:
    """The session's traces in start order (paged) with rollups over the whole session."""
    b = Binder()
    pid = b.bind(project_id, "String")
    sess = b.bind(session_id, "String")
    head = client.query(
        f"SELECT uniqExact(trace_id), toUnixTimestamp64Micro(min(start_time)), toUnixTimestamp64Micro(max(start_time)) "
        f"FROM spans WHERE project_id = {pid} AND session_id = {sess}", parameters=b.params).result_rows[0]
    if not head[0]:
        raise NotFound(session_id)
    lo = f"fromUnixTimestamp64Micro({b.bind(head[1], 'Int64')}, 'UTC')"
    hi = f"fromUnixTimestamp64Micro({b.bind(head[2], 'Int64')}, 'UTC') + INTERVAL {MAX_SLACK_DAYS} DAY"
    session_traces = f"SELECT trace_id FROM spans WHERE project_id = {pid} AND session_id = {sess}"
    rollup_sql = f"""
        SELECT uniqExact(trace_id), count(), sum(ifNull(cost, 0) * counted), countIf(cost IS NOT NULL),
            sum(input_tokens * counted), sum(output_tokens * counted), sum(total_tokens * counted), countIf(status = 'error'),
            toUnixTimestamp64Micro(min(start_time)), toUnixTimestamp64Micro(max(end_time)),
            arraySort(groupUniqArrayIf(100)(user_id, user_id != '')), sum(duration_ms * (parent_span_id = ''))
        FROM spans FINAL WHERE project_id = {pid} AND start_time >= {lo} AND start_time <= {hi}
          AND trace_id IN ({session_traces})"""
    r = client.query(rollup_sql, parameters=b.params, settings=READ_SETTINGS).result_rows[0]
    rollup = {
        "trace_count": r[0], "span_count": r[1], "cost": r[2] if r[3] else None, "input_tokens": r[4],
        "output_tokens": r[5], "total_tokens": r[6], "error_count": r[7], "start_time": iso_from_micros(r[8]),
        "end_time": iso_from_micros(r[9]),
        "duration_ms": (r[9] - r[8]) / 1000 if r[8] is not None and r[9] is not None else None,
        "user_ids": list(r[10]), "root_duration_ms_sum": num(r[11]),
    }
    having = ""
    if cursor:
        key, tid = decode_cursor(cursor, int)
        kb = b.bind(key, "Int64")
        having = f"HAVING k > {kb} OR (k = {kb} AND trace_id > {b.bind(tid, 'String')})"
    page_sql = (f"SELECT trace_id, toUnixTimestamp64Micro(min(start_time)) AS k FROM spans FINAL "
                f"WHERE project_id = {pid} AND start_time >= {lo} AND start_time <= {hi} "
                f"AND trace_id IN ({session_traces}) GROUP BY trace_id {having} "
                f"ORDER BY k, trace_id LIMIT {int(limit) + 1}")
    rows = client.query(page_sql, parameters=b.params, settings=READ_SETTINGS).result_rows
    page, more = rows[:limit], len(rows) > limit
    traces = hydrate_traces(client, project_id, [t for t, _ in page])
    return {
        "session_id": session_id, "rollup": rollup,
        "traces": [traces[t] for t, _ in page if t in traces],
        "next_cursor": encode_cursor(page[-1][1], page[-1][0]) if more and page else None,
    }
