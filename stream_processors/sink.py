"""Batching ClickHouse sink for spans and scores.

Writes are idempotent without any bookkeeping here: a span or score written twice (a redelivery, a
retried insert, a client retry) collapses in ReplacingMergeTree and in every FINAL read, and the
rollups are computed from the deduplicated rows (``core/rollups.py``). Each row keeps its bus position
(``bus_source``, ``bus_partition``, ``bus_offset``) to tell where it came from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from clickhouse_connect.driver.exceptions import DataError

from core import native
from core.rollups import mark_minutes
from core.span import COLUMNS

SPAN_COLUMNS = [*COLUMNS, "bus_source", "bus_partition", "bus_offset"]
SCORE_COLUMNS = [
    "project_id", "score_id", "trace_id", "span_id", "name", "data_type", "value", "string_value", "comment",
    "source", "evaluator", "evaluator_version", "timestamp",
]


# (name, ClickHouse type) of the span columns the native block encoder writes before the bus ones
_ROW_TYPES = list(COLUMNS.items())
_native = native.load()

# Raised by clickhouse-connect while encoding a value that does not fit its column (its DataError, e.g.
# a negative UInt32 or None in a non-Nullable column): a bad record, not a bad server. Retrying would
# fail forever.
DATA_ERRORS = (DataError, TypeError, ValueError, AttributeError, OverflowError, KeyError, IndexError)


def make_pricer(resolve: Callable[[str, str, str, str], Any]):
    """The native path's price lookup (``resolve(project, provider, model, request_model)`` -> (units,
    tiers) or None, memoised until ``clear()``), or None without the extension."""
    return _native.Pricer(resolve) if _native is not None else None


class ClickHouseSink:
    """Collects rows and writes them in one insert per table on ``flush``.

    Span rows are encoded into a Native block as they come, by the native extension: bus records it
    decodes and enriches itself (``add_record``, ~8-11 us a record), or span dicts of the Python path
    (``add_span``, ~4 us a row, where clickhouse-connect's encoding takes ~20 us of Python). A batch
    with a row it refuses (a value that does not fit its column) and every batch without the extension
    go through clickhouse-connect, which also finds the bad rows; the records the native path took are
    then made again by ``rebuild`` (the Python path, which gives the same rows).
    """

    def __init__(self, client, source: str, rebuild: Callable[[bytes], dict[str, Any]] | None = None):
        self._client = client
        self.source = source  # bus identity + topic, e.g. "kafka:spans.raw"
        self.rebuild = rebuild
        self.span_rows: list[dict[str, Any] | bytes] = []  # span dicts, or the records add_record took
        self.span_bus: list[tuple[int, int]] = []  # (partition, offset) of each span row
        self.score_rows: list[list[Any]] = []
        # (project_id, minutes since the epoch) of the span rows: marked once they are written (see
        # core/rollups.py)
        self.minutes: set[tuple[str, int]] = set()
        self._rejected: list[tuple[str, int, Exception]] = []
        self._block = self._new_block()

    def _new_block(self):
        return _native.SpanBlock(_ROW_TYPES, self.source) if _native is not None else None

    @property
    def span_count(self) -> int:
        return len(self.span_rows)

    def add_record(self, value: bytes, partition: int, offset: int, pricer, offload_bytes: int | None,
                   python_projects: frozenset[str] | None) -> tuple[str, str, str, int, int] | None:
        """Decode, enrich and add a bus record on the native path: (project_id, trace_id, span_id,
        ingested_at and start_time in unix microseconds), or None when the Python path must make it
        (see ``native/src/processor.rs``). ``offload_bytes`` None: no blob store, nothing is offloaded."""
        if self._block is None or pricer is None or self.rebuild is None:
            return None
        key = self._block.add_record(value, partition, offset, pricer, offload_bytes, python_projects)
        if key is not None:
            self.span_rows.append(value)
            self.span_bus.append((partition, offset))
            self.minutes.add((key[0], key[4] // 60_000_000))
        return key

    def add_span(self, span: dict[str, Any], partition: int, offset: int) -> None:
        self.span_rows.append(span)
        self.span_bus.append((partition, offset))
        start = span.get("start_time")
        if isinstance(start, datetime) and isinstance(span.get("project_id"), str):  # else it is rejected
            self.minutes.add((span["project_id"], int(start.timestamp() // 60)))
        if self._block is not None:
            try:
                self._block.add_dict(span, partition, offset)
            except (ValueError, TypeError, OverflowError):
                self._block = None  # a value that does not fit its column: clickhouse-connect names the rows

    def span_block(self) -> bytes | None:
        """The span rows as one Native block, or None when they go through clickhouse-connect."""
        return self._block.block() if self._block is not None else None

    def add_score(self, score: dict[str, Any]) -> None:
        ts = score.get("timestamp")
        if isinstance(ts, str):
            score["timestamp"] = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        self.score_rows.append([score.get(c) for c in SCORE_COLUMNS])

    def __len__(self) -> int:
        return self.span_count + len(self.score_rows)

    def span_row_lists(self) -> list[list[Any]]:
        """The span rows as lists in ``SPAN_COLUMNS`` order."""
        return [self._span_row_list(i) for i in range(len(self.span_rows))]

    def span_columns(self) -> list[list[Any]]:
        """The span rows column by column, in ``SPAN_COLUMNS`` order (a column-oriented insert)."""
        return [list(column) for column in zip(*self.span_row_lists())]

    def flush(self) -> list[tuple[str, int, Exception]]:
        """Insert everything collected, then mark the span rows' minutes. Rows that cannot be encoded
        for their column types are written around and returned as (table, index in the batch, error),
        so one bad record never blocks a partition. Any other failure (server, connection) raises and
        leaves what is not done (rows, marks) for a retry.
        """
        rejected = self._rejected  # of a table done before an attempt failed: returned by the one that completes
        if self.span_count:
            try:
                self._insert_spans()
            except DATA_ERRORS:
                rejected += self._insert_one_by_one("spans")
            self.span_rows, self.span_bus = [], []
            self._block = self._new_block()
        if self.score_rows:
            try:
                self._client.insert("scores", self.score_rows, column_names=SCORE_COLUMNS)
            except DATA_ERRORS:
                rejected += self._insert_one_by_one("scores")
            self.score_rows = []
        mark_minutes(self._client, self.minutes)  # after the insert returned, never before
        self.minutes, self._rejected = set(), []
        return rejected

    def _insert_spans(self) -> None:
        body = self.span_block()
        if body is not None:
            self._client.raw_insert("spans", SPAN_COLUMNS, body, fmt="Native")
            return
        self._client.insert("spans", self.span_columns(), column_names=SPAN_COLUMNS, column_oriented=True)

    def _insert_one_by_one(self, table: str) -> list[tuple[str, int, Exception]]:
        """The slow path after a data error: each row alone. Any other failure raises and leaves every
        row for the retry (rows written twice collapse where they are read)."""
        if table == "spans":
            self._block = None  # from now on through clickhouse-connect, which names the bad rows
            rows, columns = len(self.span_rows), SPAN_COLUMNS
        else:
            rows, columns = len(self.score_rows), SCORE_COLUMNS
        rejected: list[tuple[str, int, Exception]] = []
        for index in range(rows):
            try:
                row = self._span_row_list(index) if table == "spans" else self.score_rows[index]
                self._client.insert(table, [row], column_names=columns)
            except DATA_ERRORS as exc:
                rejected.append((table, index, exc))
        return rejected

    def _span_row_list(self, index: int) -> list[Any]:
        span = self.span_rows[index]
        if not isinstance(span, dict):
            assert self.rebuild is not None  # a record is kept undecoded only when it can be rebuilt
            span = self.rebuild(span)  # raises a data error for a record the Python path refuses
        partition, offset = self.span_bus[index]
        return [span[c] for c in COLUMNS] + [self.source, partition, offset]
