"""Make the per-minute pre-aggregates (metrics_1m, metrics_user_1m) agree with the base table after a
crash.

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


# (table, its materialized view over spans): every per-minute rollup keyed by (project_id, minute, …)
MINUTE_ROLLUPS = (("metrics_1m", "metrics_1m_mv"), ("metrics_user_1m", "metrics_user_1m_mv"))


def rebuild_minutes(client, keys: set[tuple[str, datetime]]) -> int:
    """Recompute the per-minute rollups for these (project_id, minute) keys from ``spans FINAL``;
    returns the number of minutes rebuilt."""
    if not keys:
        return 0
    views = dict(client.query(
        "SELECT name, as_select FROM system.tables WHERE database = currentDatabase() AND name IN {v:Array(String)}",
        parameters={"v": [view for _, view in MINUTE_ROLLUPS]}).result_rows)
    source = ("(SELECT * FROM spans FINAL WHERE project_id = {p:String} "
              "AND toStartOfMinute(start_time) IN {m:Array(DateTime('UTC'))}) AS spans")
    by_project: dict[str, set[datetime]] = defaultdict(set)
    for project_id, minute in keys:
        by_project[project_id].add(minute)
    for table, view in MINUTE_ROLLUPS:
        rebuild, replaced = _FROM_SPANS.subn(f"FROM {source}", views.get(view, ""), count=1)
        if replaced != 1:
            raise RuntimeError(f"{view} is missing or does not read FROM spans; cannot rebuild minutes")
        for project_id, minutes in by_project.items():
            params = {"p": project_id, "m": sorted(minutes)}
            client.command(f"DELETE FROM {table} WHERE project_id = {{p:String}} "
                           "AND minute IN {m:Array(DateTime('UTC'))}", parameters=params)
            client.command(f"INSERT INTO {table} {rebuild}", parameters=params)
    return len(keys)
