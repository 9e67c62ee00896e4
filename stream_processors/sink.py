"""Batching ClickHouse sink for spans and scores.

Idempotence: every span row carries its bus (partition, offset); the ``sink_progress`` view keeps the
highest offset written per partition, and a worker that (re)starts on a partition skips every record
at or below it. Client retries of a span that reach the bus twice are caught by a bounded per-worker
memory of recent span identities, and ReplacingMergeTree collapses whatever slips past both.

Views and base table are not written atomically: if a crash commits the spans part but not the
views' parts, ``sink_progress`` has not moved, so the batch is inserted again and the views get it
once (the base rows collapse). Block dedup is off on ``spans`` for exactly that reason (0003).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any

from core.span import COLUMNS

SPAN_COLUMNS = [*COLUMNS, "bus_source", "bus_partition", "bus_offset"]
SCORE_COLUMNS = [
    "project_id", "score_id", "trace_id", "span_id", "name", "data_type", "value", "string_value", "comment",
    "source", "evaluator", "evaluator_version", "timestamp",
]


# Raised by clickhouse-connect while encoding a value that does not fit its column: a bad record,
# not a bad server. Retrying would fail forever.
DATA_ERRORS = (TypeError, ValueError, AttributeError, OverflowError, KeyError, IndexError)


class SeenSpans:
    """A bounded LRU of (project, trace, span) identities written recently."""

    def __init__(self, capacity: int = 500_000):
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._capacity = capacity

    def add(self, key: tuple[str, str, str]) -> bool:
        """Remember ``key``; False when it was already there."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True


class ClickHouseSink:
    """Collects rows and writes them in one insert per table on ``flush``.

    Spans are kept column by column: clickhouse-connect encodes a column-oriented insert with about
    40% less CPU than the same rows (measured: 30 vs 51 us per span row).
    """

    def __init__(self, client, source: str):
        self._client = client
        self.source = source  # bus identity + topic, e.g. "kafka:spans.raw"
        self.span_columns: list[list[Any]] = [[] for _ in SPAN_COLUMNS]
        self.score_rows: list[list[Any]] = []

    @property
    def span_count(self) -> int:
        return len(self.span_columns[0])

    def add_span(self, span: dict[str, Any], partition: int, offset: int) -> None:
        columns = self.span_columns
        for i, name in enumerate(COLUMNS):
            columns[i].append(span[name])
        n = len(COLUMNS)
        columns[n].append(self.source)
        columns[n + 1].append(partition)
        columns[n + 2].append(offset)

    def add_score(self, score: dict[str, Any]) -> None:
        ts = score.get("timestamp")
        if isinstance(ts, str):
            score["timestamp"] = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        self.score_rows.append([score.get(c) for c in SCORE_COLUMNS])

    def __len__(self) -> int:
        return self.span_count + len(self.score_rows)

    def flush(self) -> list[tuple[str, int, Exception]]:
        """Insert everything collected. Rows that cannot be encoded for their column types are written
        around and returned as (table, index in the batch, error), so one bad record never blocks a
        partition. Any other failure (server, connection) raises and leaves the unwritten rows for a retry.
        """
        rejected: list[tuple[str, int, Exception]] = []
        if self.span_count:
            try:
                self._client.insert("spans", self.span_columns, column_names=SPAN_COLUMNS, column_oriented=True)
            except DATA_ERRORS:
                rejected += self._insert_one_by_one("spans")
            self.span_columns = [[] for _ in SPAN_COLUMNS]
        if self.score_rows:
            try:
                self._client.insert("scores", self.score_rows, column_names=SCORE_COLUMNS)
            except DATA_ERRORS:
                rejected += self._insert_one_by_one("scores")
            self.score_rows = []
        return rejected

    def _insert_one_by_one(self, table: str) -> list[tuple[str, int, Exception]]:
        """The slow path after a data error: each row alone, in order (so sink_progress stays a prefix).

        Rows written here are dropped from the batch at once, so a retry after a server error does not
        write them twice."""
        rejected = []
        if table == "spans":
            rows = [list(r) for r in zip(*self.span_columns)]
            columns = SPAN_COLUMNS
        else:
            rows, columns = list(self.score_rows), SCORE_COLUMNS
        indexed = list(enumerate(rows))
        while indexed:
            index, row = indexed[0]
            try:
                self._client.insert(table, [row], column_names=columns)
            except DATA_ERRORS as exc:
                rejected.append((table, index, exc))
            except Exception:
                remaining = [r for _, r in indexed]
                if table == "spans":
                    self.span_columns = [list(c) for c in zip(*remaining)] if remaining else [[] for _ in SPAN_COLUMNS]
                else:
                    self.score_rows = remaining
                raise
            indexed.pop(0)
        return rejected


def wrote_partition(client, source: str, partition: int) -> bool:
    """Whether ``spans`` holds any row from this partition of ``source``: its progress row can be
    missing while its spans are there (the progress view's part lost in a crash)."""
    return bool(client.query(
        "SELECT 1 FROM spans WHERE bus_source = {s:String} AND bus_partition = {p:UInt16} LIMIT 1",
        parameters={"s": source, "p": partition},
    ).result_rows)


def load_progress(client, source: str) -> dict[int, int]:
    """Highest offset already written per partition of ``source`` (bus identity + topic)."""
    rows = client.query(
        "SELECT bus_partition, max(max_offset) FROM sink_progress WHERE bus_source = {s:String} GROUP BY bus_partition",
        parameters={"s": source},
    ).result_rows
    return {int(p): int(o) for p, o in rows}
