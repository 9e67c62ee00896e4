"""The span processor: bus -> decode -> enrich -> ClickHouse sink -> commit.

At-least-once from the bus, idempotent writes: offsets are committed only after the insert
succeeded, and a restarted worker skips what the sink already holds.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from core import pricing
from core.blobs import BlobStore
from core.bus import TOPIC_SCORES, TOPIC_SPANS, TOPIC_SPANS_DLQ, Bus, Record
from core.payloads import BlobStoreUnavailable, offload_payloads
from core.span import decode
from stream_processors import metrics
from stream_processors.enrich import enrich
from stream_processors.price_overrides import PriceOverrides
from stream_processors.reconcile import rebuild_minutes, recopy_traces
from stream_processors.sink import (
    ClickHouseSink, SeenSpans, load_handovers, load_progress, make_pricer, record_handovers, retire_handovers,
    wrote_partition,
)

log = logging.getLogger(__name__)

# Span dicts hold no reference cycles, but the batches in hand are ~10k dicts and ~500k objects that
# CPython's cyclic collector re-traverses whenever allocations trip its thresholds (700 by default):
# that made decoding ~30 % slower. A process running a worker collects less often.
GC_THRESHOLDS = (50_000, 20, 100)
# Records absorbed per step at most: after a slow write the consumer holds a backlog, and absorbing
# all of it at once (~50 us a record) would push the batch well past its time budget.
POLL_RECORDS = 1000


# How long after a partition comes to a member its records are checked against ClickHouse before they
# are written: a client retry of a span written before the member started (a restart, a rebalance) is
# not in its memory of recent spans, and the per-minute rollups would count it twice. Exporters retry
# within about a minute (OTLP's back-off); after the window the memory covers them.
DEDUP_WINDOW_S = 300.0

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


def _key(span: dict[str, Any]) -> tuple[str, str, str]:
    return span["project_id"], span["trace_id"], span["span_id"]


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
    # aligned with the sink's span rows: (project_id, trace_id, span_id), ingest time (unix seconds), the record
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    ingested: list[float] = field(default_factory=list)
    span_records: list[Record] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)  # the rows made as dicts (Python path), for the hook
    # spans whose payloads the blob store did not take yet: offloaded (retried) and added when written
    unoffloaded: list[tuple[dict[str, Any], Record]] = field(default_factory=list)
    score_records: list[Record] = field(default_factory=list)  # aligned with the sink's score rows
    dlq: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    # records a crash may have left half-written (see SpanProcessor): minutes to rebuild, traces to copy
    doubt_minutes: set[tuple[str, datetime]] = field(default_factory=set)
    doubt_traces: set[tuple[str, str]] = field(default_factory=set)
    doubt_partitions: set[int] = field(default_factory=set)


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
        self._cold_until: dict[int, float] = {}  # per partition: when its records stop being checked (DEDUP_WINDOW_S)
        self.offload_bytes = offload_bytes
        self.on_spans = on_spans  # async callback(list[span]) after each insert, before the commit
        self.prices = prices  # per-project price overrides (PostgreSQL), None: the shipped table only
        self._prices_version = -1
        self._pricer = make_pricer(price_resolver(prices))
        # Projects whose spans the post-write hook needs as dicts (eval rules): the Python path makes
        # those. A hook that cannot tell gets every span as a dict.
        self._hook_projects = getattr(on_spans, "projects", None)
        self._python_projects: frozenset[str] | None = None
        self.source = f"{bus.identity}/{TOPIC_SPANS}"  # the sink's progress key
        self.seen = SeenSpans()
        self._progress: dict[int, int] = {}
        self._progress_loaded: set[int] = set()
        # After (re)start, records up to the sink's progress plus one batch per partition may belong to
        # an insert a crash left half-written (base table vs views): their minutes get rebuilt, and
        # the traces of those skipped as written get copied to the per-trace lookups again.
        self._doubt_left: dict[int, int] = {}
        # Per partition, the offset through which every insert is known complete (views included): a
        # clean handover's, then every record this member wrote or repaired. Records skipped as
        # written at or below it need no repair.
        self._clean_through: dict[int, int] = {}
        self._batch = self._new_batch()  # being filled
        self._flushing: asyncio.Task | None = None  # the previous batch being written and committed
        self._absorbing: asyncio.Future | None = None  # a poll's records being decoded into the batch
        self._drop_until = 0  # after a revoke: records are dropped until the consumer's next assignment
        self._revokes = 0
        self._refused = False  # a rebalance refused a commit: this member may be out of the group
        self._consumer = None
        self._stop = asyncio.Event()
        self.stats = {"spans": 0, "scores": 0, "skipped_redelivered": 0, "duplicates": 0, "dlq": 0, "insert_retries": 0,
                      "minutes_rebuilt": 0, "traces_recopied": 0}

    def stop(self) -> None:
        self._stop.set()

    def _new_batch(self) -> _Batch:
        return _Batch(ClickHouseSink(self.clickhouse, self.source, rebuild=self._python_row))

    async def run(self) -> None:
        consumer = self.bus.consumer([TOPIC_SPANS, TOPIC_SCORES], self.group, self.name)
        consumer.before_revoke = self._before_revoke
        self._consumer = consumer
        self._drop_batch()  # anything left from an earlier run comes again; the source as it is now
        await consumer.start()
        try:
            batch_started = time.monotonic()
            while not self._stop.is_set():
                if self._flushing is not None and self._flushing.done():
                    await self._finish_flush()  # raises what stopped it
                filling = bool(self._batch.records)
                wait_ms = self.batch_ms - int((time.monotonic() - batch_started) * 1000) if filling else self.batch_ms
                room = min(self.batch_rows - len(self._batch.sink), POLL_RECORDS,
                           (self.batch_bytes - self._batch.bytes) // self._record_bytes)
                if self._carry:  # what the last absorb left once the batch was full by bytes
                    records, self._carry = self._carry, []
                else:
                    records = await consumer.poll(max_records=max(room, 1), timeout_ms=max(wait_ms, 1))
                revokes = self._revokes  # read before any other await: these records are of the current assignment
                if records and not filling:
                    batch_started = time.monotonic()
                if records:
                    await self._load_progress(consumer, records)
                    await self._refresh_hook_state()
                    cold = self._cold(records)
                    if cold:
                        await self._finish_flush()  # one query at a time on the client (a server's session)
                        await self._retry("duplicate check", lambda: asyncio.to_thread(self._remember_written, cold))
                    if self._revokes != revokes or consumer.assignments < self._drop_until:
                        continue  # a revoke came since they were polled: delivered again after the rebalance
                    self._absorbing = asyncio.ensure_future(asyncio.to_thread(self._absorb, records))
                    await self._absorbing
                due = self._batch.records and (
                    len(self._batch.sink) >= self.batch_rows or self._batch.bytes >= self.batch_bytes
                    or (time.monotonic() - batch_started) * 1000 >= self.batch_ms
                )
                if due:
                    await self._start_flush(consumer)
                    batch_started = time.monotonic()
            if self._batch.records:
                await self._start_flush(consumer)  # SIGTERM: finish the batch, flush, commit, exit
            await self._finish_flush()
            await self._hand_over(self._batch)
        finally:
            if self._flushing is not None:  # the loop failed: nothing more is committed
                self._flushing.cancel()
                await asyncio.gather(self._flushing, return_exceptions=True)
                self._flushing = None
            await consumer.stop()

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
        written is finished and committed while the partitions are still ours; the batch being filled
        is dropped, since its records, not committed, go to the partitions' next owner (possibly this
        member again). Otherwise two members could write the same records at once and the views
        would count them twice."""
        self._revokes += 1
        self._drop_until = self._consumer.assignments + 1
        while pending := [t for t in (self._absorbing, self._flushing) if t is not None and not t.done()]:
            await asyncio.wait(pending)  # a failed write is raised by the run loop, not here
        task = self._flushing
        if task is not None and (task.cancelled() or task.exception() is not None):
            return  # the write failed or was cut short: the next owner repairs as after a crash
        dropped = self._drop_batch()
        if dropped.records:
            log.info("rebalance: %d records not yet written are left to the partitions' next owner",
                     len(dropped.records))
        await self._hand_over(dropped)

    def _drop_batch(self) -> _Batch:
        """Replace the batch being filled by an empty one; its records were not committed, so they are
        delivered again, and must not then pass for duplicates."""
        dropped, self._batch = self._batch, self._new_batch()
        self._carry = []  # polled, not committed: delivered again
        for key in [*dropped.keys, *(_key(span) for span, _ in dropped.unoffloaded)]:
            self.seen.forget(key)
        return dropped

    async def _hand_over(self, unwritten: _Batch) -> None:
        """Record a clean handover of the partitions this member owns (see 0008): not for one whose
        repair after an earlier crash is still to be written (its doubt), which the next owner redoes."""
        owned = self._consumer.owned()
        if owned is None or self._refused:
            # a bus that never moves partitions (Redis Streams: members share them), or a member a
            # rebalance refused a commit, which may have been put out of the group: no handover
            return
        clean = {p: o for p, o in list(self._progress.items())
                 if p in self._progress_loaded and (TOPIC_SPANS, p) in owned
                 and self._clean_through.get(p, -1) >= o and self._doubt_left.get(p, 0) <= 0
                 and p not in unwritten.doubt_partitions}
        try:
            await asyncio.to_thread(record_handovers, self.clickhouse, self.source, clean)
        except Exception as exc:  # the next owner then repairs as after a crash: slower, still exact
            log.warning("could not record the handover (%s: %s)", type(exc).__name__, exc)

    def _python_row(self, value: bytes) -> dict[str, Any]:
        return enrich_row(decode(value), self.prices, self.blobs, self.offload_bytes)

    async def _refresh_hook_state(self) -> None:
        """Before absorbing: price overrides and the projects the hook needs as dicts, when due."""
        if self.prices is not None:
            await self._retry("load price overrides", self.prices.refresh)
            if self.prices.version != self._prices_version and self._pricer is not None:
                self._pricer.clear()
                self._prices_version = self.prices.version
        if self._hook_projects is not None:
            async def load() -> None:
                self._python_projects = frozenset(await self._hook_projects()) or None
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
            written = self._already_written(r)
            doubtful = (written and r.offset > self._clean_through.get(r.partition, -1)) \
                or self._doubt_left.get(r.partition, 0) > 0
            if native and not written and not doubtful:
                try:
                    made = sink.add_record(r.value, r.partition, r.offset, self._pricer, offload_bytes, python_projects)
                except Exception:  # (a price lookup failing): the Python path makes the row, or names the error
                    made = None
                if made is not None:
                    key = made[:3]
                    if not self.seen.add(key):
                        sink.drop_last()
                        self.stats["duplicates"] += 1
                        metrics.RECORDS.labels("duplicate").inc()
                        continue
                    batch.keys.append(key)
                    batch.ingested.append(made[3] / 1e6)
                    batch.span_records.append(r)
                    continue
            try:
                span = decode(r.value)
                if doubtful:
                    batch.doubt_partitions.add(r.partition)
                    batch.doubt_minutes.add((span["project_id"], span["start_time"].replace(second=0, microsecond=0)))
                    if not written:
                        self._doubt_left[r.partition] -= 1
                if written:
                    if doubtful:  # at or below the clean offset the trace lookups are complete too
                        batch.doubt_traces.add((span["project_id"], span["trace_id"]))
                    self.stats["skipped_redelivered"] += 1
                    metrics.RECORDS.labels("skipped_redelivered").inc()
                    continue
                enrich(span, _overrides(self.prices, span["project_id"]))
                key = _key(span)
                hash(key)  # ids of a type no key can hold (a list) are the record's fault
                offloaded = self._offload(span)
            except Exception as exc:  # any failure on one record must not stop the partition
                self._to_dlq(batch, r, exc)
                continue
            if not self.seen.add(key):
                self.stats["duplicates"] += 1
                metrics.RECORDS.labels("duplicate").inc()
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
        batch.keys.append(_key(span))
        batch.ingested.append(span["ingested_at"].timestamp())
        batch.spans.append(span)
        batch.span_records.append(r)

    def _offload_the_rest(self, batch: _Batch) -> None:
        """The payloads the blob store refused at absorb time: offloaded now, then their spans added."""
        while batch.unoffloaded:
            span, r = batch.unoffloaded[0]
            offload_payloads(span, self.blobs, self.offload_bytes)  # raises while the store is down
            self._add_span(batch, span, r)
            batch.unoffloaded.pop(0)

    def _already_written(self, r: Record) -> bool:
        return r.offset <= self._progress.get(r.partition, -1)

    async def _load_progress(self, consumer, records: list[Record]) -> None:
        """Before a partition's first record is absorbed: the sink's progress on it (retried while
        ClickHouse is away), and how many of its next records are in doubt."""
        # a partition given to this member again may have been written by another one meanwhile
        self._progress_loaded -= {p for topic, p in consumer.take_assigned() if topic == TOPIC_SPANS}
        new = {r.partition for r in records if r.topic == TOPIC_SPANS} - self._progress_loaded
        if new:
            await self._finish_flush()  # the sink's progress must include the batch in flight
            await self._retry("load sink progress", lambda: asyncio.to_thread(self._load_partitions, new))

    def _load_partitions(self, partitions: set[int]) -> None:
        progress = load_progress(self.clickhouse, self.source)
        handed_over = load_handovers(self.clickhouse, self.source)
        # The last insert before a crash may have reached the views and not the progress: the next
        # batch_rows records' minutes are rebuilt. Unless nothing of the partition was ever written
        # (a first start): then no view can hold any of it; or its last owner handed it over cleanly
        # at its current progress (nothing half-written).
        doubt = {p: 0 if (p in progress and handed_over.get(p, -1) >= progress[p])
                 or (p not in progress and not wrote_partition(self.clickhouse, self.source, p))
                 else self.batch_rows for p in partitions}
        self._progress.update(progress)
        self._doubt_left.update(doubt)
        self._clean_through.update({p: handed_over.get(p, -1) for p in partitions})
        # This member's first insert may be cut short by a crash too: from now on the handover no
        # longer vouches for the partition, until this member hands it over itself.
        retire_handovers(self.clickhouse, self.source, [p for p in partitions if handed_over.get(p, -1) >= 0])
        self._progress_loaded |= partitions
        # (a partition nothing was written from holds no span a retry could repeat: retries share its key)
        self._cold_until.update(dict.fromkeys([p for p in partitions if p in progress], time.monotonic() + DEDUP_WINDOW_S))

    def _cold(self, records: list[Record]) -> list[Record]:
        """The span records to check against ClickHouse (DEDUP_WINDOW_S); none once every window closed."""
        if not self._cold_until:
            return []
        now = time.monotonic()
        self._cold_until = {p: until for p, until in self._cold_until.items() if until > now}
        return [r for r in records if r.topic == TOPIC_SPANS and r.partition in self._cold_until
                and not self._already_written(r)]

    def _remember_written(self, records: list[Record]) -> None:
        """Put the spans of ``records`` that ClickHouse already holds from *other* bus records in the memory
        of recent spans, so that they are dropped as duplicates (client retries of spans written before
        this member came). A row from the record itself is no duplicate: a crash may have left it in
        ``trace_spans`` and not in ``spans``, and it is written again."""
        own: dict[tuple[str, str, str], set[tuple[int, int]]] = {}
        for r in records:
            try:
                rec = orjson.loads(r.value)
                key = (rec["project_id"], rec["trace_id"], rec["span_id"])
            except Exception:  # noqa: BLE001 - a bad record is dead-lettered by the absorb step
                continue
            if all(isinstance(part, str) and part for part in key):
                own.setdefault(key, set()).add((r.partition, r.offset))
        if not own:
            return
        found = self.clickhouse.query(
            "SELECT project_id, trace_id, span_id, bus_source, bus_partition, bus_offset FROM trace_spans "
            "WHERE (project_id, trace_id) IN {pairs:Array(Tuple(String, String))}",
            parameters={"pairs": sorted({(p, t) for p, t, _ in own})}).result_rows
        for project_id, trace_id, span_id, source, partition, offset in found:
            key = (project_id, trace_id, span_id)
            if key in own and not (source == self.source and (partition, offset) in own[key]):
                self.seen.add(key)

    def _to_dlq(self, batch: _Batch, r: Record, exc: Exception) -> None:
        metrics.RECORDS.labels("dead_lettered").inc()
        log.warning("record %s/%s@%s to DLQ: %s", r.topic, r.partition, r.offset, exc)
        batch.dlq.append((r.key, orjson.dumps({
            "error": f"{type(exc).__name__}: {exc}"[:1000], "topic": r.topic, "partition": r.partition,
            "offset": r.offset, "value_b64": base64.b64encode(r.value).decode(),
        })))

    async def _flush(self, consumer, batch: _Batch) -> None:
        """Write the batch, run the post-write hook, then commit; each step retried with back-off.

        Nothing is committed before both the insert and the hook (eval jobs) succeeded, and the insert is
        not repeated when only the hook failed.
        """
        n_scores = len(batch.sink.score_rows)
        if batch.unoffloaded:
            await self._retry("blob store write", lambda: asyncio.to_thread(self._offload_the_rest, batch))
        started = time.perf_counter()
        await self._retry("sink flush", lambda: self._write(batch))
        metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
        n_spans = len(batch.keys)
        if self.on_spans is not None and batch.spans:
            await self._retry("post-write hook", lambda: self.on_spans(batch.spans))
        if batch.doubt_minutes:
            await self._retry("pre-aggregate rebuild",
                              lambda: asyncio.to_thread(rebuild_minutes, self.clickhouse, batch.doubt_minutes))
            self.stats["minutes_rebuilt"] += len(batch.doubt_minutes)
        if batch.doubt_traces:
            await self._retry("trace lookup copy",
                              lambda: asyncio.to_thread(recopy_traces, self.clickhouse, batch.doubt_traces))
            self.stats["traces_recopied"] += len(batch.doubt_traces)
        if await consumer.commit(batch.records):
            self._refused = True
        for r in batch.records:  # written, or repaired when skipped as written: complete through here
            if r.topic == TOPIC_SPANS:
                self._progress[r.partition] = max(self._progress.get(r.partition, -1), r.offset)
                self._clean_through[r.partition] = max(self._clean_through.get(r.partition, -1), r.offset)
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
            bad_keys = {batch.keys[i] for i in bad_spans}
            kept = [i for i in range(len(batch.keys)) if i not in bad_spans]
            batch.keys = [batch.keys[i] for i in kept]
            batch.ingested = [batch.ingested[i] for i in kept]
            batch.spans = [s for s in batch.spans if _key(s) not in bad_keys]
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
