"""Make the per-minute pre-aggregates agree with the base table after a crash.

ClickHouse writes a batch's ``spans`` part and each materialized view's part separately, so a crash
mid-insert (kill -9, OOM) can leave the views with or without a batch the base table has, or the
reverse. The base table is the truth (ReplacingMergeTree + FINAL): the minutes touched by records
redelivered after a restart are rebuilt from it, with the view's own query, so there is one
definition of each aggregate.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime

_FROM_SPANS = re.compile(r"\bFROM\s+(?:`?\w+`?\.)?`?spans`?(?=\s|$)")


def rebuild_minutes(client, keys: set[tuple[str, datetime]]) -> int:
    """Recompute ``metrics_1m`` for these (project_id, minute) keys from ``spans FINAL``; returns the
    number of minutes rebuilt."""
    if not keys:
        return 0
    view_query = client.query(
        "SELECT as_select FROM system.tables WHERE database = currentDatabase() AND name = 'metrics_1m_mv'"
    ).result_rows[0][0]
    source = ("(SELECT * FROM spans FINAL WHERE project_id = {p:String} "
              "AND toStartOfMinute(start_time) IN {m:Array(DateTime('UTC'))}) AS spans")
    rebuild, replaced = _FROM_SPANS.subn(f"FROM {source}", view_query, count=1)
    if replaced != 1:
        raise RuntimeError("metrics_1m_mv does not read FROM spans; cannot rebuild minutes")
    by_project: dict[str, set[datetime]] = defaultdict(set)
    for project_id, minute in keys:
        by_project[project_id].add(minute)
    for project_id, minutes in by_project.items():
        params = {"p": project_id, "m": sorted(minutes)}
        client.command("DELETE FROM metrics_1m WHERE project_id = {p:String} AND minute IN {m:Array(DateTime('UTC'))}",
                       parameters=params)
        client.command(f"INSERT INTO metrics_1m {rebuild}", parameters=params)
    return len(keys)
