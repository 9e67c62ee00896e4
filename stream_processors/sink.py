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
from typing import Any, Callable

from clickhouse_connect.driver.exceptions import DataError

from core import native
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

    def forget(self, key: tuple[str, str, str]) -> None:
        """Drop ``key`` (its span was not written after all and will be delivered again)."""
        self._seen.pop(key, None)


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
        self._block = self._new_block()

    def _new_block(self):
        return _native.SpanBlock(_ROW_TYPES, self.source) if _native is not None else None

    @property
    def span_count(self) -> int:
        return len(self.span_rows)

    def add_record(self, value: bytes, partition: int, offset: int, pricer, offload_bytes: int | None,
                   python_projects: frozenset[str] | None) -> tuple[str, str, str, int] | None:
        """Decode, enrich and add a bus record on the native path: (project_id, trace_id, span_id,
        ingested_at in unix microseconds), or None when the Python path must make it (see
        ``native/src/processor.rs``). ``offload_bytes`` None: no blob store, nothing is offloaded."""
        if self._block is None or pricer is None or self.rebuild is None:
            return None
        key = self._block.add_record(value, partition, offset, pricer, offload_bytes, python_projects)
        if key is not None:
            self.span_rows.append(value)
            self.span_bus.append((partition, offset))
        return key

    def drop_last(self) -> None:
        """Take the row ``add_record`` just added out again (a duplicate)."""
        self._block.drop_last()
        self.span_rows.pop()
        self.span_bus.pop()

    def add_span(self, span: dict[str, Any], partition: int, offset: int) -> None:
        self.span_rows.append(span)
        self.span_bus.append((partition, offset))
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
        """Insert everything collected. Rows that cannot be encoded for their column types are written
        around and returned as (table, index in the batch, error), so one bad record never blocks a
        partition. Any other failure (server, connection) raises and leaves the unwritten rows for a retry.
        """
        rejected: list[tuple[str, int, Exception]] = []
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
        return rejected

    def _insert_spans(self) -> None:
        body = self.span_block()
        if body is not None:
            self._client.raw_insert("spans", SPAN_COLUMNS, body, fmt="Native")
            return
        self._client.insert("spans", self.span_columns(), column_names=SPAN_COLUMNS, column_oriented=True)

    def _insert_one_by_one(self, table: str) -> list[tuple[str, int, Exception]]:
        """The slow path after a data error: each row alone, in order (so sink_progress stays a prefix).

        Rows written here are dropped from the batch at once, so a retry after a server error does not
        write them twice."""
        rejected = []
        if table == "spans":
            self._block = None  # rows written here leave the batch: a retry must not write them again
            # in bus order: a span added late (its payload waited for the blob store) must not land
            # after spans behind it, or a crash meanwhile would leave the progress past it
            order = sorted(range(len(self.span_rows)), key=self.span_bus.__getitem__)
            columns = SPAN_COLUMNS
        else:
            order, columns = list(range(len(self.score_rows))), SCORE_COLUMNS
        for done, index in enumerate(order):
            try:
                row = self._span_row_list(index) if table == "spans" else self.score_rows[index]
                self._client.insert(table, [row], column_names=columns)
            except DATA_ERRORS as exc:
                rejected.append((table, index, exc))
            except Exception:
                left = sorted(order[done:])
                if table == "spans":
                    self.span_rows = [self.span_rows[i] for i in left]
                    self.span_bus = [self.span_bus[i] for i in left]
                else:
                    self.score_rows = [self.score_rows[i] for i in left]
                raise
        return rejected

    def _span_row_list(self, index: int) -> list[Any]:
        span = self.span_rows[index]
        if not isinstance(span, dict):
            span = self.rebuild(span)  # raises a data error for a record the Python path refuses
        partition, offset = self.span_bus[index]
        return [span[c] for c in COLUMNS] + [self.source, partition, offset]


def wrote_partition(client, source: str, partition: int) -> bool:
    """Whether ``spans`` holds any row from this partition of ``source``: its progress row can be
    missing while its spans are there (the progress view's part lost in a crash)."""
    return bool(client.query(
        "SELECT 1 FROM spans WHERE bus_source = {s:String} AND bus_partition = {p:UInt16} LIMIT 1",
        parameters={"s": source, "p": partition},
    ).result_rows)


def _per_partition(client, sql: str, source: str) -> dict[int, int]:
    rows = client.query(sql, parameters={"s": source}).result_rows
    return {int(p): int(o) for p, o in rows}


def load_progress(client, source: str) -> dict[int, int]:
    """Highest offset already written per partition of ``source`` (bus identity + topic)."""
    return _per_partition(client, "SELECT bus_partition, max(max_offset) FROM sink_progress "
                                  "WHERE bus_source = {s:String} GROUP BY bus_partition", source)


def load_handovers(client, source: str) -> dict[int, int]:
    """Per partition of ``source``: the progress at its latest clean handover (see 0008); -1 when retired."""
    return _per_partition(client, "SELECT bus_partition, argMax(offset, at) FROM sink_handover "
                                  "WHERE bus_source = {s:String} GROUP BY bus_partition", source)


def retire_handovers(client, source: str, partitions: list[int]) -> None:
    """The partitions' handovers no longer hold (a new owner is about to write)."""
    record_handovers(client, source, dict.fromkeys(partitions, -1))


def record_handovers(client, source: str, progress: dict[int, int]) -> None:
    """Record that every insert up to ``progress[partition]`` is complete and none came after."""
    if progress:
        client.insert("sink_handover", [[source, p, o] for p, o in sorted(progress.items())],
                      column_names=["bus_source", "bus_partition", "offset"])
