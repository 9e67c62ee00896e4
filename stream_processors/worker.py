"""The span processor: bus -> decode -> enrich -> ClickHouse sink -> commit.

At-least-once from the bus, idempotent writes: offsets are committed only after the insert (and the
marks of its minutes, see ``core/rollups.py``) succeeded. Whatever is delivered again — after a
crash, a rebalance, an insert that timed out although the server had committed it — or sent again by
a client is simply written again: every read deduplicates (ReplacingMergeTree, FINAL), including the
rollups, so nothing here remembers what was written.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import gc
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from core import pricing
from core.blobs import BlobStore
from core.bus import TOPIC_SCORES, TOPIC_SPANS, TOPIC_SPANS_DLQ, Bus, Consumer, Record
from core.payloads import BlobStoreUnavailable, offload_payloads
from core.span import decode
from stream_processors import metrics
from stream_processors.enrich import enrich
from stream_processors.price_overrides import PriceOverrides
from stream_processors.sink import ClickHouseSink, make_pricer

log = logging.getLogger(__name__)

# Span dicts hold no reference cycles, but the batches in hand are ~10k dicts and ~500k objects that
# CPython's cyclic collector re-traverses whenever allocations trip its thresholds (700 by default):
# that made decoding ~30 % slower. A process running a worker collects less often.
GC_THRESHOLDS = (50_000, 20, 100)
# Records absorbed per step at most: after a slow write the consumer holds a backlog, and absorbing
# all of it at once (~50 us a record) would push the batch well past its time budget.
POLL_RECORDS = 1000

# The GIL is handed over every 5 ms by default: a thread coming back from chDB (an insert done, an
# API read) waits up to that long each time while the absorb thread runs Python. A finer interval
# makes those short steps prompt; the CPU-bound threads lose nothing measurable.
SWITCH_INTERVAL_S = 0.001


def collect_less_often() -> None:
    """Tune the process running workers: cyclic-GC thresholds to GC_THRESHOLDS, and the GIL's switch
    interval to SWITCH_INTERVAL_S."""
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def _overrides(prices: PriceOverrides | None, project_id: str) -> list[dict[str, Any]] | None:
    return prices.get(project_id) if prices is not None else None


def enrich_row(span: dict[str, Any], prices: PriceOverrides | None, blobs: BlobStore | None,
               offload_bytes: int) -> dict[str, Any]:
    """A decoded record made into its row by the Python path (the reference of the native one)."""
    enrich(span, _overrides(prices, span["project_id"]))
    offload_payloads(span, blobs, offload_bytes)
    return span


def price_resolver(prices: PriceOverrides | None):
    """The native path's price lookup: (units, tiers) of the entry enrichment would price a call
    with, or None (unknown model)."""
    def resolve(project_id: str, provider: str, model: str, request_model: str):
        entry = pricing.call_entry(provider, model, request_model, _overrides(prices, project_id))
        return None if entry is None else (entry.units, entry.tiers)
    return resolve


@dataclass(eq=False)
class _Batch:
    """The records of one flush: written together, then committed together."""

    sink: ClickHouseSink
    records: list[Record] = field(default_factory=list)  # every record absorbed, committed after the write
    bytes: int = 0  # of the records' values
    # aligned with the sink's span rows: ingest time (unix seconds), the record, the row as a dict
    # (made by the Python path, for the hook) or None (made by the native path)
    ingested: list[float] = field(default_factory=list)
    span_records: list[Record] = field(default_factory=list)
    dicts: list[dict[str, Any] | None] = field(default_factory=list)
    # spans whose payloads the blob store did not take yet: offloaded (retried) and added when written
    unoffloaded: list[tuple[dict[str, Any], Record]] = field(default_factory=list)
    score_records: list[Record] = field(default_factory=list)  # aligned with the sink's score rows
    dlq: list[tuple[builtins.bytes | None, builtins.bytes]] = field(default_factory=list)  # (the field above shadows bytes)


class SpanProcessor:
    """One consumer-group member. ``run()`` until ``stop()``; SIGTERM handling belongs to the caller.

    Batches are pipelined: while one is written (chDB works off the GIL), the next is polled, decoded
    and enriched. At most one write is in flight, so commits stay in bus order.
    """

    def __init__(self, bus: Bus, clickhouse, blobs: BlobStore | None, *, group: str = "evalforge-processors",
                 name: str = "worker", batch_rows: int = 5000, batch_ms: int = 1000, batch_bytes: int = 32 * 1024 * 1024,
                 offload_bytes: int = 32 * 1024,
                 on_spans=None, prices: PriceOverrides | None = None):
        self.bus = bus
        self.clickhouse = clickhouse
        self.blobs = blobs
        self.group = group
        self.name = name
        self.batch_rows = batch_rows
        self.batch_ms = batch_ms
        self.batch_bytes = batch_bytes
        self._record_bytes = 1024  # a record's size, as lately seen: polls stay near batch_bytes
        self._carry: list[Record] = []
        self.offload_bytes = offload_bytes
        self.on_spans = on_spans  # async callback(list[span]) after each insert, before the commit
        self.prices = prices  # per-project price overrides (PostgreSQL), None: the shipped table only
        self._prices_version = -1
        self._pricer = make_pricer(price_resolver(prices))
        # Projects whose spans the post-write hook needs as dicts (eval rules): the Python path makes
        # those. A hook that cannot tell gets every span as a dict.
        self._hook_projects = getattr(on_spans, "projects", None)
        self._python_projects: frozenset[str] | None = None
        self.source = f"{bus.identity}/{TOPIC_SPANS}"  # where rows came from (bus_source column)
        self._batch = self._new_batch()  # being filled
        self._flushing: asyncio.Task | None = None  # the previous batch being written and committed
        self._absorbing: asyncio.Future | None = None  # a poll's records being decoded into the batch
        self._drop_until = 0  # after a revoke: records are dropped until the consumer's next assignment
        self._revokes = 0
        self._consumer: Consumer | None = None
        self._stop = asyncio.Event()
        self.stats = {"spans": 0, "scores": 0, "dlq": 0, "insert_retries": 0}

    def stop(self) -> None:
        self._stop.set()

    def _new_batch(self) -> _Batch:
        return _Batch(ClickHouseSink(self.clickhouse, self.source, rebuild=self._python_row))

    async def run(self) -> None:
        """topic -> decode + enrich (``_absorb``) -> sink + hook (``_flush``) -> commit, until stopped."""
        consumer = self.bus.consumer([TOPIC_SPANS, TOPIC_SCORES], self.group, self.name)
        consumer.before_revoke = self._before_revoke
        self._consumer = consumer
        self._drop_batch()  # anything left from an earlier run comes again
        await consumer.start()
        try:
            started = time.monotonic()  # when the batch being filled got its first record
            while not self._stop.is_set():
                records = await self._poll(consumer, started)
                if records:
                    if not self._batch.records:
                        started = time.monotonic()
                    self._absorbing = asyncio.ensure_future(asyncio.to_thread(self._absorb, records))
                    await self._absorbing
                if self._due(started):
                    await self._start_flush(consumer)
                    started = time.monotonic()
            if self._batch.records:
                await self._start_flush(consumer)  # SIGTERM: finish the batch, flush, commit, exit
            await self._finish_flush()
        finally:
            if self._flushing is not None:  # the loop failed: nothing more is committed
                self._flushing.cancel()
                await asyncio.gather(self._flushing, return_exceptions=True)
                self._flushing = None
            await consumer.stop()

    async def _poll(self, consumer, started: float) -> list[Record]:
        """The next records to absorb, at most what the batch has room for, waiting at most until it
        is due. Nothing when a revoke came since they were polled (they are delivered again after the
        rebalance). Raises what stopped the write in flight, if it failed."""
        if self._flushing is not None and self._flushing.done():
            await self._finish_flush()
        batch = self._batch
        wait_ms = self.batch_ms - int((time.monotonic() - started) * 1000) if batch.records else self.batch_ms
        room = min(self.batch_rows - len(batch.sink), POLL_RECORDS, (self.batch_bytes - batch.bytes) // self._record_bytes)
        if self._carry:  # what the last absorb left once the batch was full by bytes
            records, self._carry = self._carry, []
        else:
            records = await consumer.poll(max_records=max(room, 1), timeout_ms=max(wait_ms, 1))
        revokes = self._revokes  # read before any other await: these records are of the current assignment
        if records:
            await self._refresh_hook_state()
        if self._revokes != revokes or consumer.assignments < self._drop_until:
            return []
        return records

    def _due(self, started: float) -> bool:
        batch = self._batch
        return bool(batch.records) and (len(batch.sink) >= self.batch_rows or batch.bytes >= self.batch_bytes
                                        or (time.monotonic() - started) * 1000 >= self.batch_ms)

    async def _start_flush(self, consumer) -> None:
        """Seal the batch being filled and start writing it, once the previous one is committed."""
        await self._finish_flush()
        batch, self._batch = self._batch, self._new_batch()
        self._flushing = asyncio.create_task(self._flush(consumer, batch))

    async def _finish_flush(self) -> None:
        """Wait for the batch being written (its failure is raised here)."""
        task = self._flushing
        if task is not None:
            await task
            if self._flushing is task:
                self._flushing = None

    async def _before_revoke(self) -> None:
        """A rebalance is about to take partitions away (Kafka awaits this first). What is being
        written is finished and committed while the partitions are still ours, so their next owner
        need not write it again; the batch being filled is dropped, its records go to that owner."""
        self._revokes += 1
        assert self._consumer is not None  # this hook is the running consumer's
        self._drop_until = self._consumer.assignments + 1
        while pending := [t for t in (self._absorbing, self._flushing) if t is not None and not t.done()]:
            await asyncio.wait(pending)  # a failed write is raised by the run loop, not here
        dropped = self._drop_batch()
        if dropped.records:
            log.info("rebalance: %d records not yet written are left to the partitions' next owner",
                     len(dropped.records))

    def _drop_batch(self) -> _Batch:
        """Replace the batch being filled by an empty one; its records were not committed, so they are
        delivered again."""
        dropped, self._batch = self._batch, self._new_batch()
        self._carry = []  # polled, not committed: delivered again
        return dropped

    def _python_row(self, value: bytes) -> dict[str, Any]:
        return enrich_row(decode(value), self.prices, self.blobs, self.offload_bytes)

    async def _refresh_hook_state(self) -> None:
        """Before absorbing: price overrides and the projects the hook needs as dicts, when due."""
        if self.prices is not None:
            await self._retry("load price overrides", self.prices.refresh)
            if self.prices.version != self._prices_version and self._pricer is not None:
                self._pricer.clear()
                self._prices_version = self.prices.version
        if (hook_projects := self._hook_projects) is not None:
            async def load() -> None:
                self._python_projects = frozenset(await hook_projects()) or None
            await self._retry("load eval rules", load)

    def _absorb(self, records: list[Record]) -> None:
        """Decode and enrich a poll's records into the batch (runs in a thread: CPU work)."""
        batch = self._batch
        sink = batch.sink
        native = self._pricer is not None and (self.on_spans is None or self._hook_projects is not None)
        offload_bytes = self.offload_bytes if self.blobs is not None else None
        python_projects = self._python_projects
        self._record_bytes = max((self._record_bytes + sum(len(r.value) for r in records) // len(records)) // 2, 1)
        for i, r in enumerate(records):
            if batch.bytes >= self.batch_bytes:
                self._carry = records[i:]  # the next batch's
                return
            batch.records.append(r)
            batch.bytes += len(r.value)
            if r.topic == TOPIC_SCORES:
                try:
                    sink.add_score(orjson.loads(r.value))
                    batch.score_records.append(r)
                except (ValueError, TypeError, AttributeError) as exc:  # a timestamp that does not parse too
                    self._to_dlq(batch, r, exc)
                continue
            if native:
                try:
                    made = sink.add_record(r.value, r.partition, r.offset, self._pricer, offload_bytes, python_projects)
                except Exception:  # (a price lookup failing): the Python path makes the row, or names the error
                    made = None
                if made is not None:
                    batch.ingested.append(made[3] / 1e6)
                    batch.span_records.append(r)
                    batch.dicts.append(None)
                    continue
            try:
                span = decode(r.value)
                enrich(span, _overrides(self.prices, span["project_id"]))
                offloaded = self._offload(span)
            except Exception as exc:  # any failure on one record must not stop the partition
                self._to_dlq(batch, r, exc)
                continue
            if offloaded:
                self._add_span(batch, span, r)
            else:
                batch.unoffloaded.append((span, r))

    def _offload(self, span: dict[str, Any]) -> bool:
        """Offload the span's big payloads; False when the blob store failed (retried at the write)."""
        try:
            offload_payloads(span, self.blobs, self.offload_bytes)
        except BlobStoreUnavailable as exc:
            log.warning("blob store write failed (%s); retried before the batch is written", exc)
            return False
        return True

    def _add_span(self, batch: _Batch, span: dict[str, Any], r: Record) -> None:
        batch.sink.add_span(span, r.partition, r.offset)
        batch.ingested.append(span["ingested_at"].timestamp())
        batch.span_records.append(r)
        batch.dicts.append(span)

    def _offload_the_rest(self, batch: _Batch) -> None:
        """The payloads the blob store refused at absorb time: offloaded now, then their spans added."""
        while batch.unoffloaded:
            span, r = batch.unoffloaded[0]
            offload_payloads(span, self.blobs, self.offload_bytes)  # raises while the store is down
            self._add_span(batch, span, r)
            batch.unoffloaded.pop(0)

    def _to_dlq(self, batch: _Batch, r: Record, exc: Exception) -> None:
        metrics.RECORDS.labels("dead_lettered").inc()
        log.warning("record %s/%s@%s to DLQ: %s", r.topic, r.partition, r.offset, exc)
        batch.dlq.append((r.key, orjson.dumps({
            "error": f"{type(exc).__name__}: {exc}"[:1000], "topic": r.topic, "partition": r.partition,
            "offset": r.offset, "value_b64": base64.b64encode(r.value).decode(),
        })))

    async def _flush(self, consumer, batch: _Batch) -> None:
        """Write the batch, run the post-write hook, then commit; each step retried with back-off.
        Nothing is committed before both succeeded; a step that failed is retried alone (an insert
        repeated after a timeout is collapsed by every read)."""
        n_scores = len(batch.sink.score_rows)
        if batch.unoffloaded:
            await self._retry("blob store write", lambda: asyncio.to_thread(self._offload_the_rest, batch))
        started = time.perf_counter()
        await self._retry("sink flush", lambda: self._write(batch))
        metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
        n_spans = len(batch.ingested)
        spans = [span for span in batch.dicts if span is not None]
        if self.on_spans is not None and spans:
            await self._retry("post-write hook", lambda: self.on_spans(spans))
        await consumer.commit(batch.records)  # a rebalance may refuse it: the records come again
        self.stats["spans"] += n_spans
        self.stats["scores"] += n_scores
        metrics.RECORDS.labels("span_persisted").inc(n_spans)
        metrics.RECORDS.labels("score_persisted").inc(n_scores)
        now = time.time()
        for ingested in batch.ingested:
            metrics.FRESHNESS_SECONDS.observe(max(now - ingested, 0.0))

    async def _write(self, batch: _Batch) -> None:
        await self._publish_dlq(batch)
        rejected = await asyncio.to_thread(batch.sink.flush)
        if rejected:
            bad_spans = set()
            for table, index, exc in rejected:
                self._to_dlq(batch, (batch.span_records if table == "spans" else batch.score_records)[index], exc)
                if table == "spans":
                    bad_spans.add(index)
            kept = [i for i in range(len(batch.ingested)) if i not in bad_spans]
            batch.ingested = [batch.ingested[i] for i in kept]
            batch.dicts = [batch.dicts[i] for i in kept]
            await self._publish_dlq(batch)

    async def _publish_dlq(self, batch: _Batch) -> None:
        if batch.dlq:
            await self.bus.publish(TOPIC_SPANS_DLQ, batch.dlq)
            self.stats["dlq"] += len(batch.dlq)
            batch.dlq = []

    async def _retry(self, what: str, step) -> None:
        delay = 0.2
        while True:
            try:
                await step()
                return
            except Exception as exc:  # ClickHouse / bus down: keep everything, try again
                self.stats["insert_retries"] += 1
                metrics.RECORDS.labels("write_retry").inc()
                log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
                if self._stop.is_set() and delay >= 5:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
