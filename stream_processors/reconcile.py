"""Make the tables fed by views over ``spans`` agree with it after a crash.

ClickHouse writes a batch's ``spans`` part and each materialized view's part separately, so a crash
mid-insert (kill -9, OOM) can leave the views with or without a batch the base table has, or the
reverse. The base table is the truth (ReplacingMergeTree + FINAL): the minutes touched by records
redelivered after a restart are rebuilt from it, and the per-trace lookups (trace_index, trace_spans)
get those traces copied again, each with the view's own query, so there is one definition of each.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import Any

_FROM_SPANS = re.compile(r"\bFROM\s+(?:`?\w+`?\.)?`?spans`?(?=\s|$)")


# (table, its materialized view over spans): every per-minute rollup keyed by (project_id, minute, …)
MINUTE_ROLLUPS = (("metrics_1m", "metrics_1m_mv"), ("metrics_user_1m", "metrics_user_1m_mv"))
# (table, its view over spans): per-trace copies where inserting a trace's spans again changes nothing
# (min/max states; ReplacingMergeTree rows collapsed by the reads)
TRACE_COPIES = (("trace_index", "trace_index_mv"), ("trace_spans", "trace_spans_mv"))


def _view_queries(client, views: list[str], source: str) -> dict[str, str]:
    """Each view's SELECT with its ``FROM spans`` replaced by ``source``."""
    found = dict(client.query(
        "SELECT name, as_select FROM system.tables WHERE database = currentDatabase() AND name IN {v:Array(String)}",
        parameters={"v": views}).result_rows)
    out = {}
    for view in views:
        out[view], replaced = _FROM_SPANS.subn(f"FROM {source}", found.get(view, ""), count=1)
        if replaced != 1:
            raise RuntimeError(f"{view} is missing or does not read FROM spans; cannot rebuild from spans")
    return out


def _by_project(keys: set[tuple[str, Any]]) -> dict[str, set[Any]]:
    """(project_id, value) pairs grouped by project."""
    grouped: dict[str, set[Any]] = defaultdict(set)
    for project_id, value in keys:
        grouped[project_id].add(value)
    return grouped


def rebuild_minutes(client, keys: set[tuple[str, datetime]]) -> int:
    """Recompute the per-minute rollups for these (project_id, minute) keys from ``spans FINAL``;
    returns the number of minutes rebuilt."""
    if not keys:
        return 0
    source = ("(SELECT * FROM spans FINAL WHERE project_id = {p:String} "
              "AND toStartOfMinute(start_time) IN {m:Array(DateTime('UTC'))}) AS spans")
    queries = _view_queries(client, [view for _, view in MINUTE_ROLLUPS], source)
    for table, view in MINUTE_ROLLUPS:
        for project_id, minutes in _by_project(keys).items():
            params = {"p": project_id, "m": sorted(minutes)}
            client.command(f"DELETE FROM {table} WHERE project_id = {{p:String}} "
                           "AND minute IN {m:Array(DateTime('UTC'))}", parameters=params)
            client.command(f"INSERT INTO {table} {queries[view]}", parameters=params)
    return len(keys)


def recopy_traces(client, keys: set[tuple[str, str]]) -> int:
    """Copy the spans of these (project_id, trace_id) traces into the per-trace lookups again (their
    view's part may be the one a crash lost); returns the number of traces."""
    if not keys:
        return 0
    source = "(SELECT * FROM spans FINAL WHERE project_id = {p:String} AND trace_id IN {t:Array(String)}) AS spans"
    queries = _view_queries(client, [view for _, view in TRACE_COPIES], source)
    for table, view in TRACE_COPIES:
        for project_id, trace_ids in _by_project(keys).items():
            client.command(f"INSERT INTO {table} {queries[view]}", parameters={"p": project_id, "t": sorted(trace_ids)})
    return len(keys)
