"""The check every rollup test ends with: what a dashboard reads from metrics_1m / metrics_user_1m
equals the same aggregates computed independently over ``spans FINAL`` — before the minutes are
rolled (read from the deduplicated spans), and after (read from the rollup tables)."""

from __future__ import annotations

import pytest

from core.rollups import FINAL_SETTINGS, ROLLUPS, read_sql
from stream_processors.roller import roll_due

FROM, TO = "2000-01-01 00:00:00", "2100-01-01 00:00:00"


def truth(clickhouse, project: str, table: str) -> dict:
    dims = ", ".join(ROLLUPS[table])
    rows = clickhouse.query(
        f"SELECT toStartOfMinute(start_time) AS minute, {dims}, count(), countIf(status = 'error'), "
        "sum(ifNull(cost, 0)), sum(toUInt64(input_tokens)), sum(toUInt64(output_tokens)), sum(duration_ms) "
        f"FROM spans FINAL WHERE project_id = {{p:String}} AND counted = 1 GROUP BY minute, {dims}",
        parameters={"p": project}).result_rows
    return {tuple(r[:-6]): r[-6:] for r in rows}


def read(clickhouse, project: str, table: str) -> dict:
    """What metrics_sql reads: the rollup subquery, summed per (minute, group)."""
    dims = ", ".join(ROLLUPS[table])
    sql = read_sql(table, "{p:String}", "toDateTime({s:String}, 'UTC')", "toDateTime({e:String}, 'UTC')")
    rows = clickhouse.query(
        f"SELECT minute, {dims}, sum(requests), sum(errors), sum(cost), sum(input_tokens), sum(output_tokens), "
        f"sum(duration_sum) FROM {sql} GROUP BY minute, {dims}",
        parameters={"p": project, "s": FROM, "e": TO}, settings=FINAL_SETTINGS).result_rows
    return {tuple(r[:-6]): r[-6:] for r in rows}


def assert_same(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), what
    for key, (requests, errors, cost, tokens_in, tokens_out, duration) in want.items():
        g = got[key]
        assert (g[0], g[1], g[3], g[4]) == (requests, errors, tokens_in, tokens_out), (what, key)
        # the same floats summed in another order: equal up to rounding
        assert (g[2], g[5]) == (pytest.approx(cost, rel=1e-12), pytest.approx(duration, rel=1e-12)), (what, key)


def unrolled_minutes(clickhouse, project: str) -> int:
    return clickhouse.query("SELECT count() FROM (SELECT minute FROM rollup_minutes WHERE project_id = {p:String} "
                            "GROUP BY minute HAVING max(rolled) <= max(marked))",
                            parameters={"p": project}).result_rows[0][0]


def assert_rollups_exact(clickhouse, project: str, requests: int | None = None) -> None:
    """Both rollups equal spans FINAL for ``project``, unrolled and rolled (and count ``requests``
    spans, when given)."""
    for table in ROLLUPS:
        want = truth(clickhouse, project, table)
        if requests is not None:
            assert sum(v[0] for v in want.values()) == requests, table
        assert_same(read(clickhouse, project, table), want, f"{table} before rolling")
    roll_due(clickhouse)
    assert unrolled_minutes(clickhouse, project) == 0
    for table in ROLLUPS:
        assert_same(read(clickhouse, project, table), truth(clickhouse, project, table), f"{table} rolled")
