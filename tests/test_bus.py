"""The bus contract, one test body run on both backends: Kafka (real broker) and Redis Streams."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_asyncio

from core.bus import Bus, Record
from core.bus.kafka import KafkaBus
from core.bus.redis_streams import RedisStreamsBus

N = 300
COMMITTED = 120


def murmur2_partition(key: bytes, partitions: int) -> int:
    from aiokafka.partitioner import murmur2  # the Java client's hash, as aiokafka ships it
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@pytest_asyncio.fixture(params=["kafka", "redis"])
async def bus(request) -> Bus:
    if request.param == "kafka":
        broker = request.getfixturevalue("kafka_broker")
        b: Bus = KafkaBus(broker.bootstrap, partitions=4, timeout_s=10)
    else:
        b = RedisStreamsBus(request.getfixturevalue("redis_url"))
    await b.start()
    yield b
    await b.close()


async def _drain(consumer, until: int | None = None, idle_s: float = 3.0) -> list[Record]:
    """Poll until ``until`` records arrived, or nothing new came for ``idle_s``."""
    got: list[Record] = []
    loop = asyncio.get_running_loop()
    last_new = loop.time()
    while loop.time() - last_new < idle_s and (until is None or len(got) < until):
        batch = await consumer.poll(max_records=100, timeout_ms=200)
        if batch:
            got.extend(batch)
            last_new = loop.time()
    return got


@pytest.mark.asyncio
async def test_commit_then_restart_redelivers_only_uncommitted(bus: Bus):
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await bus.ensure_topics([topic])
    sent = [(f"key-{i % 7}".encode(), f"value-{i}".encode()) for i in range(N)]
    await bus.publish(topic, sent)

    first = bus.consumer([topic], group, "member-1")
    await first.start()
    got = await _drain(first, until=N, idle_s=20)
    assert sorted(r.value for r in got) == sorted(v for _, v in sent)
    # the member read every partition of the topic (alone in its group)
    expected = {(topic, p) for p in range(4)} if isinstance(bus, KafkaBus) else {(topic, 0)}
    assert {(r.topic, r.partition) for r in got} == expected
    # Keyed: one key always lands in one partition, in publish order.
    by_key: dict[bytes, list[Record]] = {}
    for r in got:
        by_key.setdefault(r.key, []).append(r)
    for key, records in by_key.items():
        assert len({r.partition for r in records}) == 1
        if isinstance(bus, KafkaBus):  # the partition every Kafka client's default (murmur2) picks
            assert records[0].partition == murmur2_partition(key, 4)
        assert [int(r.value.split(b"-")[1]) for r in records] == sorted(int(r.value.split(b"-")[1]) for r in records)

    await first.commit(got[:COMMITTED])
    await first.stop()

    second = bus.consumer([topic], group, "member-1")
    await second.start()
    again = await _drain(second, idle_s=4)
    await second.stop()
    assert sorted(r.value for r in again) == sorted(r.value for r in got[COMMITTED:])


@pytest.mark.asyncio
async def test_everything_committed_is_never_redelivered(bus: Bus):
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await bus.ensure_topics([topic])
    await bus.publish(topic, [(b"k", f"v{i}".encode()) for i in range(50)])
    consumer = bus.consumer([topic], group, "member-1")
    await consumer.start()
    got = await _drain(consumer, until=50, idle_s=20)
    assert len(got) == 50
    await consumer.commit(got)
    await consumer.stop()
    consumer = bus.consumer([topic], group, "member-1")
    await consumer.start()
    assert await _drain(consumer, idle_s=3) == []
    await consumer.stop()
