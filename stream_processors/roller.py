"""Rolls quiet minutes up: ``metrics_1m`` / ``metrics_user_1m`` from the deduplicated spans.

Readers are exact whether or not this runs (see ``core/rollups.py``); rolling only makes long ranges
cheap to read. A minute is rolled once its last mark is ``quiet_s`` old (the current minute keeps being
marked while traffic lasts), and again whenever a late span marks it anew. Several rollers (one per
``evalforge process``) may roll the same minute: each roll has its own version, readers take one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from core.rollups import FINAL_SETTINGS, ROLLUPS, SERVER_TICKS, TICKS_PER_MICROSECOND, aggregate_sql

log = logging.getLogger(__name__)

PAIRS = "Array(Tuple(String, DateTime('UTC')))"


def due_minutes(client, quiet_s: float, recent: timedelta | None, limit: int) -> list[tuple[str, object]]:
    """(project_id, minute) pairs marked since their last roll, the latest mark ``quiet_s`` old;
    ``recent``: only minutes that recent (a cheap scan), None: all."""
    since = "" if recent is None else f"WHERE minute >= now() - INTERVAL {int(recent.total_seconds())} SECOND"
    return [tuple(r) for r in client.query(
        f"SELECT project_id, minute FROM rollup_minutes {since} GROUP BY project_id, minute "
        f"HAVING max(marked) >= max(rolled) AND max(marked) < {SERVER_TICKS} - {{quiet:UInt64}} "
        "ORDER BY minute LIMIT {limit:UInt32}",
        parameters={"quiet": int(quiet_s * 1e6) * TICKS_PER_MICROSECOND, "limit": limit}).result_rows]


def roll(client, minutes: list[tuple[str, object]]) -> None:
    """Write the rollups of these (project_id, minute) pairs from the deduplicated spans, then mark
    them rolled. The version is read before the spans are: that is what makes ``rolled > marked`` mean
    "this rollup saw every insert marked before"."""
    if not minutes:
        return
    version = client.query(f"SELECT {SERVER_TICKS} + rand() % {TICKS_PER_MICROSECOND - 1}").result_rows[0][0]
    params = {"pairs": minutes, "v": version}
    for table, dims in ROLLUPS.items():
        columns = ["project_id", "minute", *dims, "version", "requests", "errors", "cost", "input_tokens",
                   "output_tokens", "duration_sum"]
        select = aggregate_sql(table, f"(project_id, minute) IN {{pairs:{PAIRS}}}")
        client.command(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT project_id, minute, {', '.join(dims)}, "
            f"{{v:UInt64}}, requests, errors, cost, input_tokens, output_tokens, duration_sum FROM ({select})",
            parameters=params, settings=FINAL_SETTINGS)
    client.insert("rollup_minutes", [[p, m, 0, version] for p, m in minutes],
                  column_names=["project_id", "minute", "marked", "rolled"])


def roll_due(client, quiet_s: float = 0.0, recent: timedelta | None = None, limit: int = 5000) -> int:
    """Roll every due minute (in steps of ``limit``); returns how many were rolled."""
    total = 0
    while batch := due_minutes(client, quiet_s, recent, limit):
        roll(client, batch)
        total += len(batch)
        if len(batch) < limit:
            break
    return total


class Roller:
    """Rolls due minutes every ``interval_s``: minutes of the last ``recent`` each time, all of them
    at start and every ``sweep_s`` (a span that came very late)."""

    def __init__(self, clickhouse, *, interval_s: float = 5.0, quiet_s: float = 10.0,
                 recent: timedelta = timedelta(days=2), sweep_s: float = 3600.0):
        self.clickhouse = clickhouse
        self.interval_s = interval_s
        self.quiet_s = quiet_s
        self.recent = recent
        self.sweep_s = sweep_s
        self.rolled = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        swept = float("-inf")
        while not self._stop.is_set():
            sweep = time.monotonic() - swept >= self.sweep_s
            try:
                self.rolled += await asyncio.to_thread(roll_due, self.clickhouse, self.quiet_s,
                                                       None if sweep else self.recent)
                if sweep:
                    swept = time.monotonic()
            except Exception as exc:  # ClickHouse away: readers use the spans meanwhile; try again
                log.warning("rollup failed (%s: %s); retrying", type(exc).__name__, exc)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            except asyncio.TimeoutError:
                pass
