"""The test broker behaves like the Kafka the services rely on: idempotent acks=all produce,
consumer groups with committed offsets, and data + offsets that survive a stop or a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from .kafka_broker import KafkaBroker, kafka_version

pytestmark = pytest.mark.kafka

TOPIC = "spans.raw"
N = 300


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    # Its own broker, not the session-wide ``kafka_broker`` fixture: these tests stop and kill it.
    with KafkaBroker() as b:
        b.create_topics([TOPIC], partitions=4)
        yield b


async def produce(bootstrap: str, records: list[tuple[bytes, bytes]]) -> dict[bytes, set[int]]:
    """Send keyed records (idempotent, acks=all); return the partitions each key landed on."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(TOPIC, value=v, key=k) for k, v in records]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    placed: dict[bytes, set[int]] = {}
    for (key, _), meta in zip(records, metas, strict=True):
        placed.setdefault(key, set()).add(meta.partition)
    return placed


async def consume(bootstrap: str, group: str, want: int) -> list[tuple[bytes, bytes]]:
    """Read up to ``want`` records in ``group`` from its committed position, commit, and return them."""
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=bootstrap, group_id=group,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < want and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got += [(r.key, r.value) for recs in batch.values() for r in recs]
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


def records(prefix: str, n: int) -> list[tuple[bytes, bytes]]:
    return [(f"trace-{i % 37}".encode(), f"{prefix}-{i}".encode()) for i in range(n)]


async def committed_total(bootstrap: str, group: str) -> int:
    """Sum of the group's committed offsets; asserts they equal the partitions' end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        parts = [TopicPartition(TOPIC, p) for p in range(4)]
        offsets = [await consumer.committed(tp) or 0 for tp in parts]
        ends = await consumer.end_offsets(parts)
        assert offsets == [ends[tp] for tp in parts]  # everything read was committed
        return sum(offsets)
    finally:
        await consumer.stop()


def test_version_is_a_kafka_4_release() -> None:
    assert kafka_version().startswith("4.")


@pytest.mark.asyncio
async def test_produce_consume_and_survive_restarts(broker: KafkaBroker) -> None:
    first = records("a", N)
    placed = await produce(broker.bootstrap, first)
    # Keyed by trace id: every record of one trace lands on one partition (ordering per trace).
    assert all(len(parts) == 1 for parts in placed.values())
    assert len({p for parts in placed.values() for p in parts}) > 1  # and keys spread out

    got = await consume(broker.bootstrap, "processors", N)
    assert sorted(got) == sorted(first)

    # Clean stop mid-run, then the same broker (same port, same log dir) comes back.
    port = broker.port
    broker.stop()
    assert not broker.running
    broker.restart()
    assert broker.port == port

    # Committed offsets survived (they equal the end offsets)...
    assert await committed_total(broker.bootstrap, "processors") == N
    # ...and the records survived: a new group replays all of them.
    assert sorted(await consume(broker.bootstrap, "replay-1", N)) == sorted(first)

    # A crash (SIGKILL) after an acks=all produce loses nothing either.
    second = records("b", N)
    await produce(broker.bootstrap, second)
    broker.kill()
    broker.restart()
    # The group resumes at its committed position: only the new records, none of the first batch.
    assert sorted(await consume(broker.bootstrap, "processors", N)) == sorted(second)
    assert sorted(await consume(broker.bootstrap, "replay-2", 2 * N)) == sorted(first + second)
    assert await committed_total(broker.bootstrap, "processors") == 2 * N


@pytest.mark.asyncio
async def test_topics_are_never_auto_created(broker: KafkaBroker) -> None:
    """Like a production broker: a topic nobody created does not appear on first use."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True,
                                request_timeout_ms=3000)
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await asyncio.wait_for(producer.send_and_wait("never.created", b"x", key=b"k"), 10)
    finally:
        await producer.stop()
    broker.create_topics(["created.on.purpose"])  # the broker's default partition count
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait("created.on.purpose", b"x", key=b"k")
        partitions = await producer.partitions_for("created.on.purpose")
    finally:
        await producer.stop()
    assert len(partitions) == broker.partitions == 4
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        assert "never.created" not in await admin.list_topics()
    finally:
        await admin.close()


def test_cluster_ids_never_look_like_an_option() -> None:
    # 1 in 64 random ids starts with "-", which the storage tool's argument parser rejects.
    from .kafka_broker import _new_cluster_id

    assert not any(_new_cluster_id().startswith("-") for _ in range(5000))
