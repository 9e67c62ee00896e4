"""Partitions changing hands on real Kafka: a member joining a busy group while the first is writing,
and a clean stop then restart. Every span is counted once, no member stops, and a clean handover
leaves the next owner nothing to repair."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from core.bus import ALL_TOPICS
from core.bus.kafka import KafkaBus
from stream_processors import worker
from stream_processors.sink import ClickHouseSink
from stream_processors.worker import SpanProcessor
from tests.processors.conftest import as_message, make_span

N = 600


def _counts(clickhouse, project: str) -> tuple[int, int, int]:
    p = {"p": project}
    rows = clickhouse.query("SELECT count() FROM spans FINAL WHERE project_id = {p:String}", parameters=p).result_rows[0][0]
    requests = clickhouse.query("SELECT sum(requests) FROM metrics_1m WHERE project_id = {p:String}",
                                parameters=p).result_rows[0][0]
    users = clickhouse.query("SELECT sum(requests) FROM metrics_user_1m WHERE project_id = {p:String}",
                             parameters=p).result_rows[0][0]
    return rows, requests, users


async def _own_topic(kafka_broker, monkeypatch) -> tuple[KafkaBus, str]:
    topic = f"spans-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(worker, "TOPIC_SPANS", topic)  # a topic of its own: no other test's records
    bus = KafkaBus(kafka_broker.bootstrap, partitions=4, timeout_s=10)
    await bus.start()
    await bus.ensure_topics([*ALL_TOPICS, topic])  # as `migrate` would: the broker auto-creates nothing
    return bus, topic


async def _run_until(processor: SpanProcessor, predicate, timeout: float = 60) -> None:
    task = asyncio.create_task(processor.run())
    try:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline and not task.done(), processor.stats
            await asyncio.sleep(0.1)
    finally:
        processor.stop()
        await task


@pytest.mark.asyncio
async def test_restart_after_a_clean_stop_repairs_nothing(kafka_broker, clickhouse, monkeypatch):
    """A member stopped cleanly (SIGTERM: flush, commit) records the handover, so the next one starts
    with nothing in doubt: no minute rebuilds, which are not atomic against other members' writes."""
    bus, topic = await _own_topic(kafka_broker, monkeypatch)
    project, group = uuid.uuid4().hex[:12], f"g-{uuid.uuid4().hex[:8]}"
    try:
        await bus.publish(topic, [as_message(make_span(project, i)) for i in range(40)])
        first = SpanProcessor(bus, clickhouse, None, group=group, name="first", batch_ms=100)
        await _run_until(first, lambda: first.stats["spans"] >= 40)
        await bus.publish(topic, [as_message(make_span(project, i)) for i in range(40, 80)])
        second = SpanProcessor(bus, clickhouse, None, group=group, name="second", batch_ms=100)
        await _run_until(second, lambda: second.stats["spans"] >= 40)
    finally:
        await bus.close()
    assert (first.stats["minutes_rebuilt"], second.stats["minutes_rebuilt"]) == (0, 0)
    assert _counts(clickhouse, project) == (80, 80, 80)


@pytest.mark.asyncio
async def test_member_joining_mid_write_takes_partitions_and_every_span_counts_once(kafka_broker, clickhouse,
                                                                                     monkeypatch):
    bus, topic = await _own_topic(kafka_broker, monkeypatch)
    group, project = f"g-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12]
    await bus.publish(topic, [as_message(make_span(project, i, user_id=f"u{i % 5}")) for i in range(N)])

    slow = {"first"}
    writing = asyncio.Event()
    flush = ClickHouseSink.flush

    def slow_first_member_flush(sink):
        if sink.source.endswith("#first") and slow:
            writing_loop.call_soon_threadsafe(writing.set)
            time.sleep(3.0)  # a long insert: the second member joins meanwhile
        return flush(sink)

    writing_loop = asyncio.get_running_loop()
    monkeypatch.setattr(ClickHouseSink, "flush", slow_first_member_flush)
    first = SpanProcessor(bus, clickhouse, None, group=group, name="first", batch_rows=100, batch_ms=100)
    second = SpanProcessor(bus, clickhouse, None, group=group, name="second", batch_rows=100, batch_ms=100)
    first.source += "#first"  # only to tell the members' sinks apart in the patch above
    second.source = first.source
    tasks = [asyncio.create_task(first.run())]
    try:
        await asyncio.wait_for(writing.wait(), 60)
        tasks.append(asyncio.create_task(second.run()))
        deadline = time.monotonic() + 120
        while _counts(clickhouse, project)[0] < N or first.stats["spans"] + second.stats["spans"] < N:
            assert time.monotonic() < deadline, (first.stats, second.stats, _counts(clickhouse, project))
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
            await asyncio.sleep(0.5)
        slow.clear()
        await asyncio.sleep(3)  # anything still in flight lands
    finally:
        first.stop()
        second.stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert second.stats["spans"] > 0  # the joiner did take partitions over
    assert _counts(clickhouse, project) == (N, N, N), (first.stats, second.stats)
