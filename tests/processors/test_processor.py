"""The span processor on real parts: Redis Streams / Kafka, chDB, S3 endpoint."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from datetime import datetime, timezone

import orjson
import pytest

from core.bus import TOPIC_SPANS, TOPIC_SPANS_DLQ
from core.bus.redis_streams import STREAM_PREFIX
from core.pricing import Usage, compute_cost
from stream_processors.worker import SpanProcessor
from tests.processors.conftest import as_message, make_span
from tests.processors.rollups_check import assert_rollups_exact


def _count(clickhouse, project_id: str) -> int:
    """Spans stored (copies of a span written twice count once, as every read sees them)."""
    return clickhouse.query("SELECT count() FROM spans FINAL WHERE project_id = {p:String}",
                            parameters={"p": project_id}).result_rows[0][0]


async def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def _run(processor: SpanProcessor):
    return asyncio.create_task(processor.run())


async def _run_until(processor: SpanProcessor, predicate) -> None:
    """Run ``processor`` until ``predicate()`` holds, then stop it (it finishes its batch)."""
    task = await _run(processor)
    try:
        await _wait_for(predicate)
    finally:
        processor.stop()
        await task


@pytest.mark.asyncio
async def test_spans_are_enriched_persisted_and_large_payloads_offloaded(private_bus, clickhouse, s3_blob_url):
    from core.blobs import open_blob_store

    blobs = open_blob_store(s3_blob_url)
    project = uuid.uuid4().hex[:12]
    big = "long output " * 5000
    spans = [make_span(project, i) for i in range(20)] + [make_span(project, 99, output=big)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in spans])
    proc = SpanProcessor(private_bus, clickhouse, blobs, group="g-enrich", batch_ms=100, offload_bytes=4096)
    await _run_until(proc, lambda: _count(clickhouse, project) == len(spans))
    rows = clickhouse.query(
        "SELECT span_id, cost, cost_source, duration_ms, tokens_per_second, output, output_ref, output_preview "
        "FROM spans WHERE project_id = {p:String}", parameters={"p": project}).named_results()
    by_id = {r["span_id"]: r for r in rows}
    for s in spans:
        row = by_id[s["span_id"]]
        expected = compute_cost("openai", "gpt-4o-mini", Usage(input_tokens=s["input_tokens"], output_tokens=s["output_tokens"])).cost
        assert row["cost"] == pytest.approx(expected, abs=1e-12)
        assert row["cost_source"] == "computed"
        assert row["duration_ms"] == pytest.approx((s["end_time"] - s["start_time"]).total_seconds() * 1000)
        assert row["tokens_per_second"] > 0
    offloaded = by_id[spans[-1]["span_id"]]
    assert offloaded["output"] == "" and offloaded["output_preview"] == big[:200]
    assert blobs.get(offloaded["output_ref"]).decode() == big


@pytest.mark.asyncio
async def test_poison_record_goes_to_dlq_and_the_rest_flows(private_bus, clickhouse):
    project = uuid.uuid4().hex[:12]
    before = [make_span(project, i) for i in range(3)]
    after = [make_span(project, 10 + i) for i in range(3)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in before])
    await private_bus.publish(TOPIC_SPANS, [(b"bad", b"{this is not a span")])
    await private_bus.publish(TOPIC_SPANS, [(b"bad2", orjson.dumps({"project_id": project}))])
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in after])
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-dlq", batch_ms=100)
    await _run_until(proc, lambda: _count(clickhouse, project) == 6)
    dlq = await private_bus._r.xrange(STREAM_PREFIX + TOPIC_SPANS_DLQ)  # read the real stream back
    errors = [orjson.loads(fields[b"v"]) for _, fields in dlq]
    assert len(errors) == 2
    assert "JSONDecodeError" in errors[0]["error"] or "JSON" in errors[0]["error"]
    assert "trace_id" in errors[1]["error"]
    assert all(e["topic"] == TOPIC_SPANS for e in errors)


@pytest.mark.asyncio
async def test_clickhouse_unavailable_commits_nothing_loses_nothing(private_bus, clickhouse):
    project = uuid.uuid4().hex[:12]
    spans = [make_span(project, i) for i in range(50)]
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-outage", batch_ms=100)
    # The spans table goes away (a real ClickHouse failure: inserts raise UNKNOWN_TABLE).
    await asyncio.to_thread(clickhouse.command, "DETACH TABLE spans")
    try:
        await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in spans])
        task = await _run(proc)
        await _wait_for(lambda: proc.stats["insert_retries"] >= 2)
        pending = await private_bus._r.xpending(STREAM_PREFIX + TOPIC_SPANS, "g-outage")
        assert pending["pending"] == len(spans)  # delivered, never acknowledged
    finally:
        await asyncio.to_thread(clickhouse.command, "ATTACH TABLE spans")
    try:
        await _wait_for(lambda: _count(clickhouse, project) == len(spans))
        await _wait_for(lambda: proc.stats["spans"] >= len(spans))
    finally:
        proc.stop()
        await task
    pending = await private_bus._r.xpending(STREAM_PREFIX + TOPIC_SPANS, "g-outage")
    assert pending["pending"] == 0
    assert _count(clickhouse, project) == len(spans)


@pytest.mark.asyncio
async def test_restart_after_insert_before_commit_counts_each_span_once(private_bus, clickhouse, monkeypatch):
    """A worker dies between insert and commit: its successor writes the batch again, and every read
    (spans, rollups) counts each span once."""
    from core.bus.redis_streams import RedisStreamsConsumer

    project = uuid.uuid4().hex[:12]
    spans = [make_span(project, i) for i in range(40)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in spans])

    class Crash(Exception):
        pass

    async def die_before_commit(self, records) -> None:  # fault injection: the process dies right here
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(RedisStreamsConsumer, "commit", die_before_commit)
        with pytest.raises(Crash):
            await SpanProcessor(private_bus, clickhouse, None, group="g-crash", batch_ms=100).run()
    assert _count(clickhouse, project) == 40
    pending = await private_bus._r.xpending(STREAM_PREFIX + TOPIC_SPANS, "g-crash")
    assert pending["pending"] == 40  # nothing acknowledged: all of it comes again

    second = SpanProcessor(private_bus, clickhouse, None, group="g-crash", batch_ms=100)
    await _run_until(second, lambda: second.stats["spans"] >= 40)
    assert _count(clickhouse, project) == 40
    assert_rollups_exact(clickhouse, project, requests=40)
    pending = await private_bus._r.xpending(STREAM_PREFIX + TOPIC_SPANS, "g-crash")
    assert pending["pending"] == 0


@pytest.mark.asyncio
async def test_member_taking_over_a_dead_members_records_counts_them_once(private_bus, clickhouse, monkeypatch):
    """A member takes over the records a dead member wrote but never acknowledged: it writes them
    again, and they count once."""
    from core.bus import redis_streams

    project = uuid.uuid4().hex[:12]
    await private_bus.publish(TOPIC_SPANS, [as_message(make_span(project, i)) for i in range(10)])
    b = SpanProcessor(private_bus, clickhouse, None, group="g-members", name="member-b", batch_ms=100)
    await _run_until(b, lambda: b.stats["spans"] >= 10)

    class Killed(BaseException):
        pass

    async def killed_before_commit(self, records) -> None:
        raise Killed

    await private_bus.publish(TOPIC_SPANS, [as_message(make_span(project, i)) for i in range(10, 50)])
    with monkeypatch.context() as patch:
        patch.setattr(redis_streams.RedisStreamsConsumer, "commit", killed_before_commit)
        with pytest.raises(Killed):
            await SpanProcessor(private_bus, clickhouse, None, group="g-members", name="member-a", batch_ms=100).run()
    assert _count(clickhouse, project) == 50

    monkeypatch.setattr(redis_streams, "CLAIM_IDLE_MS", 0)  # a's records are taken over at once
    b._stop.clear()
    await _run_until(b, lambda: b.stats["spans"] >= 50)
    assert_rollups_exact(clickhouse, project, requests=50)
    pending = await private_bus._r.xpending(STREAM_PREFIX + TOPIC_SPANS, "g-members")
    assert pending["pending"] == 0


@pytest.mark.asyncio
async def test_client_retry_duplicates_collapse(private_bus, clickhouse):
    project = uuid.uuid4().hex[:12]
    spans = [make_span(project, i) for i in range(10)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in spans])
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in spans[:5]])  # the SDK retried a batch
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-dup", batch_ms=100)
    await _run_until(proc, lambda: proc.stats["spans"] >= 15)
    assert _count(clickhouse, project) == 10
    assert_rollups_exact(clickhouse, project, requests=10)


@pytest.mark.asyncio
async def test_row_clickhouse_cannot_encode_is_dead_lettered_and_its_batch_persists(private_bus, clickhouse):
    project = uuid.uuid4().hex[:12]
    good = [make_span(project, i) for i in range(4)]
    bad = make_span(project, 9, session_id=12345)  # an int where the column is a String
    no_ingest_time = make_span(project, 10, ingested_at=None)  # as our own workers publish judge spans
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in (good[0], good[1], bad, no_ingest_time, good[2], good[3])])
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-encode", batch_ms=100)
    await _run_until(proc, lambda: _count(clickhouse, project) == 5 and proc.stats["dlq"] == 1)
    ids = {r[0] for r in clickhouse.query("SELECT span_id FROM spans WHERE project_id = {p:String}",
                                          parameters={"p": project}).result_rows}
    assert ids == {s["span_id"] for s in (*good, no_ingest_time)}
    [dead] = [orjson.loads(fields[b"v"]) for _, fields in await private_bus._r.xrange(STREAM_PREFIX + TOPIC_SPANS_DLQ)]
    assert orjson.loads(base64.b64decode(dead["value_b64"]))["span_id"] == bad["span_id"]
    pending = await private_bus._r.xpending(STREAM_PREFIX + TOPIC_SPANS, "g-encode")
    assert pending["pending"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("lost_views", [("rollup_spans_mv",), ("rollup_spans_mv", "trace_index_mv", "trace_spans_mv")],
                         ids=["rollup-copy-lost", "all-views-lost"])
async def test_crash_after_spans_committed_but_not_views_still_counts_once(private_bus, clickhouse, monkeypatch,
                                                                        lost_views):
    """The states a kill -9 mid-insert can leave: the spans part committed, some views' parts not."""
    from core.bus.redis_streams import RedisStreamsConsumer

    project = uuid.uuid4().hex[:12]
    spans = [make_span(project, i) for i in range(40)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in spans])

    class Killed(BaseException):  # like SIGKILL: no retry loop catches it
        pass

    async def killed_after_insert(self, records) -> None:  # the process dies before committing
        raise Killed

    views = lost_views
    for view in views:  # the insert skips these views, as when their parts were lost
        await asyncio.to_thread(clickhouse.command, f"DETACH TABLE {view}")
    try:
        with monkeypatch.context() as patch:
            patch.setattr(RedisStreamsConsumer, "commit", killed_after_insert)
            with pytest.raises(Killed):
                await SpanProcessor(private_bus, clickhouse, None, group=f"g-views-{len(views)}", batch_ms=100).run()
    finally:
        for view in views:
            await asyncio.to_thread(clickhouse.command, f"ATTACH TABLE {view}")
    assert _count(clickhouse, project) == 40

    second = SpanProcessor(private_bus, clickhouse, None, group=f"g-views-{len(views)}", batch_ms=100)
    await _run_until(second, lambda: second.stats["spans"] >= 40)
    assert_rollups_exact(clickhouse, project, requests=40)
    distinct = clickhouse.query("SELECT uniqExact(span_id), count() FROM spans FINAL WHERE project_id = {p:String}",
                                parameters={"p": project}).result_rows[0]
    assert distinct == (40, 40)  # the re-inserted copies collapse
    # trace list and trace detail read these lookups: the batch written again filled them
    lookups = clickhouse.query("SELECT (SELECT uniqExact(trace_id) FROM trace_index WHERE project_id = {p:String}), "
                               "(SELECT uniqExact(span_id) FROM trace_spans WHERE project_id = {p:String})",
                               parameters={"p": project}).result_rows[0]
    assert lookups == (40, 40)  # one trace per span


@pytest.mark.asyncio
async def test_next_batch_is_prepared_while_one_is_written_and_commits_stay_in_order(private_bus, clickhouse, monkeypatch):
    """Pipelining: the records of batch N+1 are decoded while batch N is inserted, but N+1 is neither
    written nor committed before N is."""
    from core.bus.redis_streams import RedisStreamsConsumer
    from stream_processors.sink import ClickHouseSink

    project = uuid.uuid4().hex[:12]
    spans = [make_span(project, i) for i in range(30)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in spans])
    events: list[tuple[str, float, float]] = []  # (what, started, ended)
    flush, absorb, commit = ClickHouseSink.flush, SpanProcessor._absorb, RedisStreamsConsumer.commit

    def slow_flush(sink):
        started = time.monotonic()
        time.sleep(0.3)  # a slow insert
        try:
            return flush(sink)
        finally:
            events.append(("write", started, time.monotonic()))

    def timed_absorb(self, records):
        started = time.monotonic()
        absorb(self, records)
        events.append(("absorb", started, time.monotonic()))

    async def recorded_commit(self, records):
        started = time.monotonic()
        await commit(self, records)
        events.append(("commit", started, max(r.offset for r in records)))

    monkeypatch.setattr(ClickHouseSink, "flush", slow_flush)
    monkeypatch.setattr(SpanProcessor, "_absorb", timed_absorb)
    monkeypatch.setattr(RedisStreamsConsumer, "commit", recorded_commit)
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-pipeline", batch_rows=10, batch_ms=50)
    await _run_until(proc, lambda: proc.stats["spans"] == 30)

    assert _count(clickhouse, project) == 30
    writes = [(s, e) for what, s, e in events if what == "write"]
    absorbs = [(s, e) for what, s, e in events if what == "absorb"]
    commits = [(s, offset) for what, s, offset in events if what == "commit"]
    assert len(writes) == len(commits) == 3
    # a batch was decoded during a write
    assert any(ws < a_start and a_end < we for ws, we in writes for a_start, a_end in absorbs)
    # one write at a time, each committed before the next write starts, offsets in order
    for (_, prev_end), (next_start, _) in zip(writes, writes[1:]):
        assert prev_end <= next_start
    for (committed_at, _), (next_start, _) in zip(commits, writes[1:]):
        assert committed_at <= next_start
    offsets = [offset for _, offset in commits]
    assert offsets == sorted(set(offsets))


@pytest.mark.asyncio
async def test_a_batch_never_outgrows_batch_rows_and_a_backlog_is_absorbed_in_small_steps(private_bus, clickhouse,
                                                                                          monkeypatch):
    """A poll takes no more records than the batch has room for (so an insert holds at most batch_rows
    spans), and at most POLL_RECORDS at a time (so a backlog cannot hold up a batch due by time)."""
    from stream_processors import worker

    monkeypatch.setattr(worker, "POLL_RECORDS", 3)
    project = uuid.uuid4().hex[:12]
    absorbed: list[int] = []
    written: list[int] = []
    absorb = SpanProcessor._absorb

    def counted_absorb(self, records):
        absorbed.append(len(records))
        absorb(self, records)

    async def on_spans(spans):
        written.append(len(spans))

    monkeypatch.setattr(SpanProcessor, "_absorb", counted_absorb)
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-room", batch_rows=10, batch_ms=60_000, on_spans=on_spans)
    task = await _run(proc)
    try:
        await private_bus.publish(TOPIC_SPANS, [as_message(make_span(project, i)) for i in range(2)])
        await _wait_for(lambda: sum(absorbed) == 2)  # a batch partly filled...
        await private_bus.publish(TOPIC_SPANS, [as_message(make_span(project, i)) for i in range(2, 40)])
        await _wait_for(lambda: proc.stats["spans"] >= 30)  # ...then a backlog behind it
    finally:
        proc.stop()
        await task

    assert _count(clickhouse, project) == 40
    assert sum(written) == 40 and max(written) == 10
    assert sum(absorbed) == 40 and max(absorbed) <= 3


@pytest.mark.asyncio
async def test_batches_are_bounded_by_bytes_too(private_bus, clickhouse):
    """Spans with big payloads: a batch is written once its records add up to batch_bytes, well before
    batch_rows, so an insert (and the process's memory) stays bounded."""
    project = uuid.uuid4().hex[:12]
    written: list[int] = []

    async def on_spans(spans):
        written.append(len(spans))

    spans = [make_span(project, i, input="x" * 20_000) for i in range(30)]
    size = len(as_message(spans[0])[1])
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-bytes", batch_rows=1000, batch_ms=60_000,
                         batch_bytes=5 * size, on_spans=on_spans)
    task = await _run(proc)
    try:
        await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in spans])
        await _wait_for(lambda: proc.stats["spans"] >= 25)
    finally:
        proc.stop()
        await task
    assert _count(clickhouse, project) == 30
    assert sum(written) == 30 and max(written[:-1]) <= 6  # the last batch is the SIGTERM flush


@pytest.mark.asyncio
async def test_blob_store_unavailable_commits_nothing_loses_nothing(private_bus, clickhouse, s3_endpoint):
    """S3 refusing writes (here: the bucket is gone) is an outage, not a bad record: spans with big
    payloads wait, nothing is committed or dead-lettered, and all of it lands once S3 is back."""
    from core.blobs import S3BlobStore

    blobs = S3BlobStore(f"s3://outage-{uuid.uuid4().hex[:8]}?endpoint={s3_endpoint}")  # no such bucket yet
    project = uuid.uuid4().hex[:12]
    spans = [make_span(project, i, input=f"{i}:" + "x" * 40_000) for i in range(5)] + [make_span(project, i) for i in range(5, 10)]
    proc = SpanProcessor(private_bus, clickhouse, blobs, group="g-blob-outage", batch_ms=100)
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in spans])
    task = await _run(proc)
    try:
        await _wait_for(lambda: proc.stats["insert_retries"] >= 2)
        pending = await private_bus._r.xpending(STREAM_PREFIX + TOPIC_SPANS, "g-blob-outage")
        assert pending["pending"] == len(spans) and _count(clickhouse, project) == 0 and proc.stats["dlq"] == 0
        await asyncio.to_thread(blobs.ensure_bucket)  # S3 is back
        await _wait_for(lambda: proc.stats["spans"] >= len(spans))
    finally:
        proc.stop()
        await task
    assert proc.stats["dlq"] == 0 and _count(clickhouse, project) == len(spans)
    refs = dict(clickhouse.query("SELECT span_id, input_ref FROM spans WHERE project_id = {p:String} AND input_ref != ''",
                                 parameters={"p": project}).result_rows)
    assert len(refs) == 5
    for span in spans[:5]:
        assert blobs.get(refs[span["span_id"]]).decode() == span["input"]


@pytest.mark.asyncio
async def test_a_client_retry_reaching_a_restarted_worker_counts_once(private_bus, clickhouse):
    """The SDK re-sends spans a worker wrote before it restarted (or any time later): the rollups still
    count each span once."""
    project = uuid.uuid4().hex[:12]
    first = [make_span(project, i) for i in range(10)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in first])
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-dup-restart", batch_ms=100)
    await _run_until(proc, lambda: proc.stats["spans"] >= 10)
    retried = [{**s, "ingested_at": datetime.now(timezone.utc)} for s in first[:5]]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in retried + [make_span(project, i) for i in range(10, 15)]])
    again = SpanProcessor(private_bus, clickhouse, None, group="g-dup-restart", batch_ms=100)
    await _run_until(again, lambda: again.stats["spans"] >= 10)
    assert _count(clickhouse, project) == 15
    assert_rollups_exact(clickhouse, project, requests=15)


@pytest.mark.asyncio
async def test_records_with_ids_or_timestamps_of_the_wrong_shape_are_dead_lettered(private_bus, clickhouse):
    from core.bus import TOPIC_SCORES

    project = uuid.uuid4().hex[:12]
    good = [make_span(project, i) for i in range(3)]
    listed = orjson.loads(as_message(make_span(project, 5))[1])
    listed["trace_id"] = ["not", "a", "string"]
    await private_bus.publish(TOPIC_SPANS, [as_message(good[0]), (b"k", orjson.dumps(listed)), *map(as_message, good[1:])])
    await private_bus.publish(TOPIC_SCORES, [(b"k", orjson.dumps({"project_id": project, "name": "x", "timestamp": "yesterday"}))])
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-shapes", batch_ms=100)
    await _run_until(proc, lambda: _count(clickhouse, project) == 3 and proc.stats["dlq"] == 2)
    assert proc.stats["spans"] == 3
