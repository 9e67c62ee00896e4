"""The Kafka cases of exact rollups, faults injected on a real broker: a member whose write outlasts the
rebalance timeout (another member writes the same records meanwhile), a ClickHouse outage longer than
the consumer's poll interval (the member is put out of the group mid-write), and a topic deleted and
recreated mid-run (nothing of the new topic is skipped). Rollups are compared to spans FINAL."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from core.bus import kafka as kafka_bus
from stream_processors.sink import ClickHouseSink
from stream_processors.worker import SpanProcessor
from tests.processors.conftest import as_message, make_span
from tests.processors.rollups_check import assert_rollups_exact
from tests.processors.test_rebalance_kafka import _counts, _own_topic


async def _until(predicate, tasks, timeout: float = 120, what=None) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, what() if what else "condition not reached"
        assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
        await asyncio.sleep(0.3)


@pytest.mark.asyncio
async def test_a_write_outlasting_the_rebalance_timeout_is_written_again_and_counted_once(kafka_broker, clickhouse,
                                                                                        monkeypatch):
    monkeypatch.setattr(kafka_bus, "REBALANCE_TIMEOUT_MS", 3000)
    bus, topic = await _own_topic(kafka_broker, monkeypatch)
    group, project, n = f"g-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12], 400
    await bus.publish(topic, [as_message(make_span(project, i, user_id=f"u{i % 3}")) for i in range(n)])
    flush, writing, loop = ClickHouseSink.flush, asyncio.Event(), asyncio.get_running_loop()
    slow = [True]

    def first_write_outlasts_the_rebalance(sink):
        if sink.source.endswith("#first") and slow:
            slow.clear()
            loop.call_soon_threadsafe(writing.set)
            time.sleep(8.0)  # the group gives up on this member after 3 s and moves its partitions
        return flush(sink)

    monkeypatch.setattr(ClickHouseSink, "flush", first_write_outlasts_the_rebalance)
    first = SpanProcessor(bus, clickhouse, None, group=group, name="first", batch_rows=100, batch_ms=100)
    second = SpanProcessor(bus, clickhouse, None, group=group, name="second", batch_rows=100, batch_ms=100)
    first.source += "#first"  # only to tell the members' sinks apart in the patch above
    tasks = [asyncio.create_task(first.run())]
    try:
        await asyncio.wait_for(writing.wait(), 60)
        tasks.append(asyncio.create_task(second.run()))
        await _until(lambda: _counts(clickhouse, project)[0] == n and first.stats["spans"] + second.stats["spans"] > n,
                     tasks, what=lambda: (first.stats, second.stats, _counts(clickhouse, project)))
    finally:
        first.stop()
        second.stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
    assert [r for r in results if isinstance(r, BaseException)] == []  # neither member stopped
    # records of the slow write were written by both members: counted once all the same
    assert first.stats["spans"] + second.stats["spans"] > n
    assert _counts(clickhouse, project) == (n, n, n)
    assert_rollups_exact(clickhouse, project, requests=n)


@pytest.mark.asyncio
async def test_an_outage_longer_than_the_poll_interval_loses_and_doubles_nothing(kafka_broker, clickhouse,
                                                                             monkeypatch):
    monkeypatch.setattr(kafka_bus, "AIOKafkaConsumer",
                        functools.partial(kafka_bus.AIOKafkaConsumer, max_poll_interval_ms=2000))
    bus, topic = await _own_topic(kafka_broker, monkeypatch)
    group, project, n = f"g-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12], 300
    await bus.publish(topic, [as_message(make_span(project, i)) for i in range(n // 2)])
    proc = SpanProcessor(bus, clickhouse, None, group=group, batch_rows=50, batch_ms=100)
    task = asyncio.create_task(proc.run())
    try:
        await _until(lambda: proc.stats["spans"] >= 50, [task])
        await asyncio.to_thread(clickhouse.command, "DETACH TABLE spans")  # inserts fail: UNKNOWN_TABLE
        try:
            await bus.publish(topic, [as_message(make_span(project, i)) for i in range(n // 2, n)])
            retries = proc.stats["insert_retries"]
            await _until(lambda: proc.stats["insert_retries"] > retries, [task])
            await asyncio.sleep(6)  # three poll intervals: the member is put out of the group meanwhile
        finally:
            await asyncio.to_thread(clickhouse.command, "ATTACH TABLE spans")
        await _until(lambda: _counts(clickhouse, project) == (n, n, n), [task],
                     what=lambda: (proc.stats, _counts(clickhouse, project)))
    finally:
        proc.stop()
        await asyncio.gather(task, return_exceptions=True)
        await bus.close()
    assert task.exception() is None
    assert_rollups_exact(clickhouse, project, requests=n)


@pytest.mark.asyncio
async def test_a_topic_deleted_and_recreated_mid_run_has_every_later_span_stored(kafka_broker, clickhouse,
                                                                                monkeypatch):
    bus, topic = await _own_topic(kafka_broker, monkeypatch)
    group, project = f"g-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12]
    proc = SpanProcessor(bus, clickhouse, None, group=group, batch_ms=100)
    task = asyncio.create_task(proc.run())
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        await bus.publish(topic, [as_message(make_span(project, i)) for i in range(60)])
        await _until(lambda: _counts(clickhouse, project)[0] == 60, [task])
        await admin.delete_topics([topic])
        await asyncio.sleep(2)
        await bus.ensure_topics([topic])  # offsets start at 0 again
        later = uuid.uuid4().hex[:12]
        # more records than were committed on the old topic: a position kept from it would skip some
        await bus.publish(topic, [as_message(make_span(later, i)) for i in range(200)])
        await _until(lambda: _counts(clickhouse, later)[0] == 200, [task], timeout=90,
                     what=lambda: (proc.stats, _counts(clickhouse, later)))
    finally:
        proc.stop()
        await asyncio.gather(task, return_exceptions=True)
        await admin.close()
        await bus.close()
    assert _counts(clickhouse, later) == (200, 200, 200)
    assert_rollups_exact(clickhouse, project, requests=60)
    assert_rollups_exact(clickhouse, later, requests=200)
