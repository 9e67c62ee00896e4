"""Per-minute rollups that equal the same aggregates over the deduplicated spans, by construction.

Why not materialized views summing each insert: ClickHouse writes an insert's base part and each
view's part separately, and a span reaches ``spans`` more than once (a client retry, a batch retried
after a timeout although the server had committed it, two members writing the same records around a
rebalance, a redelivery after a crash). ``spans`` collapses those copies (ReplacingMergeTree, FINAL); a
view that sums inserts counts each copy. So the sums are computed from deduplicated rows instead:

- ``rollup_spans``: the columns the rollups need, ordered by (project, minute), filled by a view over
  ``spans`` with the spans that count (``counted = 1``: a model call recorded twice counts once, 0014).
  A copy, not a sum: inserting a span twice leaves one row after FINAL, like ``spans``.
- ``rollup_minutes``: per (project, minute), ``marked`` (the latest time a writer finished an insert
  holding spans of that minute) and ``rolled`` (the version of the latest rollup written for it).
  The sink marks a batch's minutes *after* its insert returned, so ``marked`` is later than the commit.
- the roller (``stream_processors/roller.py``) computes ``metrics_1m`` / ``metrics_user_1m`` rows of
  quiet marked minutes from ``rollup_spans FINAL``, under a version read from the server's clock
  *before* that read, then records ``rolled`` = that version.
- a reader takes a minute from the rollups only when ``rolled > marked`` (and then only the rows of
  version ``rolled``), else from ``rollup_spans FINAL``.

Why that is exact: if ``rolled > marked`` then the rollup's read began after every mark of the minute,
and each mark came after its insert had committed, so the rollup saw every finished insert. A late span
(an SDK that buffered while the backend was down) marks its old minute again, which is read from
``rollup_spans`` until it is rolled again. Nothing here repairs anything after a crash: a batch whose
insert or mark did not finish is not committed on the bus, so it is written and marked again.
Versions are server clock microseconds x 4096 plus random low bits (two rollers rolling one minute in
the same microsecond get different versions; marks take the highest low bits, so a rollup must start
in a later microsecond than a mark to pass it; migration 0009 spells the same 4096 in the default).

Limits, as built: marks and versions compare one clock, that of the server (or chDB) — a ClickHouse
cluster would need them on one node. ``rollup_spans`` keys a span by its minute where ``spans`` keys it
by its hour, so a span id sent again with another start minute of the same hour counts in both minutes
here and once in ``spans FINAL`` (a retry sends the same span; an SDK does not move it). Each roll of a
minute adds rows under a new version; superseded versions stay (one extra set per re-opened minute).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

# Measures of both rollups: column -> aggregate over rollup_spans rows (one row per deduplicated span)
MEASURES = {
    "requests": "count()",
    "errors": "countIf(status = 'error')",
    "cost": "sum(ifNull(cost, 0))",
    "input_tokens": "sum(toUInt64(input_tokens))",
    "output_tokens": "sum(toUInt64(output_tokens))",
    "duration_sum": "sum(duration_ms)",
}
# rollup table -> the columns it is grouped by within a (project, minute)
ROLLUPS = {
    "metrics_1m": ("model", "provider", "name", "status", "kind", "environment", "release"),
    "metrics_user_1m": ("user_id",),
}
# Settings for every read of rollup_spans FINAL: it is partitioned by day and keyed by minute, so the
# copies of a span share a partition and FINAL need not merge across partitions.
FINAL_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}
TICKS_PER_MICROSECOND = 4096
SERVER_TICKS = f"toUnixTimestamp64Micro(now64(6)) * {TICKS_PER_MICROSECOND}"


def mark_minutes(client, minutes: Iterable[tuple[str, int]]) -> None:
    """Record that inserts holding spans of these (project_id, minutes since the epoch) have finished
    (call only after the insert returned: ``marked`` defaults to the server's clock now)."""
    rows = [[project, datetime.fromtimestamp(minute * 60, tz=timezone.utc)] for project, minute in sorted(set(minutes))]
    if rows:
        client.insert("rollup_minutes", rows, column_names=["project_id", "minute"])


def aggregate_sql(table: str, where: str) -> str:
    """``table``'s rows (without version) computed from the deduplicated spans matching ``where``."""
    dims = ", ".join(ROLLUPS[table])
    measures = ", ".join(f"{expr} AS {name}" for name, expr in MEASURES.items())
    return (f"SELECT project_id, minute, {dims}, {measures} FROM rollup_spans FINAL WHERE {where} "
            f"GROUP BY project_id, minute, {dims}")


def read_sql(table: str, project: str, start: str, end: str) -> str:
    """A subquery with ``table``'s columns (minute, dimensions, measures) for one project and the
    minutes [start, end) (SQL expressions, e.g. bound parameters): rolled minutes from ``table``,
    the others from the deduplicated spans."""
    dims = ", ".join(ROLLUPS[table])
    measures = ", ".join(MEASURES)
    in_range = f"project_id = {project} AND minute >= {start} AND minute < {end}"
    states = (f"SELECT minute, max(rolled) AS rolled, max(marked) AS marked FROM rollup_minutes "
              f"WHERE {in_range} GROUP BY minute")
    rolled = (f"SELECT minute, {dims}, {measures} FROM {table} WHERE {in_range} "
              f"AND (minute, version) IN (SELECT minute, rolled FROM ({states}) WHERE rolled > marked)")
    fresh = aggregate_sql(table, f"{in_range} AND minute IN (SELECT minute FROM ({states}) WHERE rolled <= marked)")
    return f"({rolled} UNION ALL SELECT minute, {dims}, {measures} FROM ({fresh}))"
