"""Kafka backend (aiokafka): idempotent producer with acks=all, manual commits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from core.bus.base import Bus, BusUnavailable, Consumer, Record

# After a broker outage aiokafka's idempotent producer can be left in one of these states for good
# (every later send fails). A new producer, with a new producer id, is the way out.
_FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)


class KafkaConsumer(Consumer):
    def __init__(self, bootstrap: str, topics: Sequence[str], group: str, name: str):
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka consumer cannot start: {exc}") from exc

    async def poll(self, max_records: int = 5000, timeout_ms: int = 1000) -> list[Record]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            Record(tp.topic, tp.partition, m.offset, m.key, m.value)
            for tp, messages in batches.items()
            for m in messages
        ]

    async def commit(self, records: Sequence[Record]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        if offsets:
            await self._consumer.commit(offsets)

    async def stop(self) -> None:
        await self._consumer.stop()


class KafkaBus(Bus):
    kind = "kafka"

    def __init__(self, bootstrap: str, *, partitions: int = 8, timeout_s: float = 5.0):
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._retiring: set[asyncio.Task] = set()
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        self._producer = self._new_producer()
        try:
            await asyncio.wait_for(self._producer.start(), self.timeout_s * 2)
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            await self._producer.stop()
            self._producer = None
            raise BusUnavailable(f"Kafka at {self.bootstrap} is unreachable: {exc or type(exc).__name__}") from exc

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=16 * 1024 * 1024,
            request_timeout_ms=int(self.timeout_s * 1000),
        )

    async def _replace_producer(self) -> None:
        """Swap in a fresh producer; the old one is stopped in the background (it may hang a while)."""
        old, self._producer = self._producer, None
        fresh = self._new_producer()
        try:
            await asyncio.wait_for(fresh.start(), self.timeout_s)
        except (KafkaError, asyncio.TimeoutError, OSError):
            self._producer = old  # broker still away: keep trying with the old one next time
            await fresh.stop()
            return
        self._producer = fresh
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.stop())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        producer = self._producer
        if producer is None:
            raise BusUnavailable("Kafka producer is (re)starting")
        try:
            futures = await self._send_batches(producer, topic, records)
            await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s)
        except _FATAL_PRODUCER_ERRORS as exc:
            if self._producer is producer:
                await self._replace_producer()
            raise BusUnavailable(f"Kafka did not acknowledge: {type(exc).__name__}") from exc
        except (KafkaError, asyncio.TimeoutError) as exc:
            raise BusUnavailable(f"Kafka did not acknowledge: {type(exc).__name__}") from exc

    async def _send_batches(self, producer: AIOKafkaProducer, topic: str,
                            records: Sequence[tuple[bytes | None, bytes]]) -> list[asyncio.Future]:
        """``send`` each record with its partition chosen here, once per key (a trace's spans share it).

        Same murmur2 partitioner as aiokafka's default, so keyed records land where any Kafka client
        would put them. Not ``send_batch``: aiokafka queues one batch per partition there and its wait
        bookkeeping times out under concurrent requests (seen: KafkaTimeoutError at 32 in flight).
        """
        partitions = sorted(await asyncio.wait_for(producer.partitions_for(topic), self.timeout_s))
        chosen: dict[bytes, int] = {}
        futures = []
        for key, value in records:
            part = None
            if key is not None:
                part = chosen.get(key)
                if part is None:
                    part = chosen[key] = self._partitioner(key, partitions, partitions)
            futures.append(await producer.send(topic, value, key=key, partition=part))
        return futures

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=int(self.timeout_s * 1000))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            new = [NewTopic(t, self.partitions, 1) for t in topics if t not in existing]
            if new:
                await admin.create_topics(new)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka at {self.bootstrap}: cannot create topics: {exc}") from exc
        finally:
            await admin.close()

    def consumer(self, topics: Sequence[str], group: str, name: str = "worker") -> Consumer:
        return KafkaConsumer(self.bootstrap, topics, group, name)

    async def ping(self) -> None:
        if self._producer is None:
            raise BusUnavailable("bus not started")
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), self.timeout_s)
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            raise BusUnavailable(f"Kafka metadata request failed: {type(exc).__name__}") from exc
