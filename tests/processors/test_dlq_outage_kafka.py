"""The poison-record and ClickHouse-outage cases on real Kafka (test_processor.py runs them on Redis
Streams): a bad record goes to the DLQ topic with its error while the partition flows; while ClickHouse
refuses inserts nothing is committed, and everything lands once it is back, rollups included."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from stream_processors import worker
from stream_processors.worker import SpanProcessor
from tests.processors.conftest import as_message, make_span
from tests.processors.rollups_check import assert_rollups_exact
from tests.processors.test_rebalance_kafka import _counts, _own_topic, _run_until


async def _read_topic(bootstrap: str, topic: str, n: int) -> list[tuple[bytes, dict]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"reader-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    got: list[tuple[bytes, dict]] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < n:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [(r.key, orjson.loads(r.value)) for r in records]
    finally:
        await consumer.stop()
    return got


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic)


@pytest.mark.asyncio
async def test_poison_records_go_to_the_dlq_topic_and_the_rest_is_persisted(kafka_broker, clickhouse, monkeypatch):
    bus, topic = await _own_topic(kafka_broker, monkeypatch)
    dlq = f"dlq-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(worker, "TOPIC_SPANS_DLQ", dlq)
    project = uuid.uuid4().hex[:12]
    good = [make_span(project, i) for i in range(12)]
    key = good[0]["trace_id"].encode()  # the same partition as the spans around them
    try:
        await bus.ensure_topics([dlq])
        await bus.publish(topic, [as_message(s) for s in good[:6]])
        await bus.publish(topic, [(key, b"{this is not a span"), (key, orjson.dumps({"project_id": project}))])
        await bus.publish(topic, [as_message(s) for s in good[6:]])
        proc = SpanProcessor(bus, clickhouse, None, group=f"g-{uuid.uuid4().hex[:8]}", batch_ms=100)
        await _run_until(proc, lambda: _counts(clickhouse, project)[0] == 12 and proc.stats["dlq"] == 2)
        dead = await _read_topic(kafka_broker.bootstrap, dlq, 2)
    finally:
        await bus.close()
    assert _counts(clickhouse, project) == (12, 12, 12)
    assert [k for k, _ in dead] == [key, key]
    errors = [d["error"] for _, d in dead]
    assert "JSON" in errors[0] and "trace_id" in errors[1]
    assert all(d["topic"] == topic for _, d in dead)


@pytest.mark.asyncio
async def test_clickhouse_unavailable_commits_nothing_and_catches_up(kafka_broker, clickhouse, monkeypatch):
    bus, topic = await _own_topic(kafka_broker, monkeypatch)
    project, group = uuid.uuid4().hex[:12], f"g-{uuid.uuid4().hex[:8]}"
    spans = [make_span(project, i) for i in range(50)]
    proc = SpanProcessor(bus, clickhouse, None, group=group, batch_ms=100)
    await asyncio.to_thread(clickhouse.command, "DETACH TABLE spans")  # inserts now fail: UNKNOWN_TABLE
    task = None
    try:
        await bus.publish(topic, [as_message(s) for s in spans])
        task = asyncio.create_task(proc.run())
        async with asyncio.timeout(60):
            while proc.stats["insert_retries"] < 2:
                assert not task.done()
                await asyncio.sleep(0.1)
        assert await _committed(kafka_broker.bootstrap, group, topic) == 0
    finally:
        await asyncio.to_thread(clickhouse.command, "ATTACH TABLE spans")
    try:
        async with asyncio.timeout(60):
            while proc.stats["spans"] < len(spans):
                assert not task.done()
                await asyncio.sleep(0.1)
    finally:
        proc.stop()
        await task
        committed = await _committed(kafka_broker.bootstrap, group, topic)
        await bus.close()
    assert committed == len(spans)
    assert _counts(clickhouse, project) == (50, 50, 50)
    assert_rollups_exact(clickhouse, project, requests=50)
