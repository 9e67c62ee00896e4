"""Kafka backend: confluent-kafka (librdkafka) idempotent producer with acks=all; aiokafka consumer
groups with manual commits and its admin client."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)
import confluent_kafka
from confluent_kafka import KafkaException

from core.bus.base import Bus, BusUnavailable, Consumer, Record

log = logging.getLogger(__name__)


class _HideSaslCredentials(logging.Filter):
    """aiokafka logs every request at DEBUG, the SASL handshake's user and password bytes included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "SaslAuthenticate" in message:
            record.msg, record.args = message.split("SaslAuthenticate", 1)[0] + "SaslAuthenticate(<hidden>)", ()
        return True


logging.getLogger("aiokafka.conn").addFilter(_HideSaslCredentials())
_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
REBALANCE_TIMEOUT_MS = 120_000
METADATA_MAX_AGE_MS = 10_000


@dataclass(frozen=True)
class KafkaAuth:
    """SASL credentials from the bus URL (``kafka://user:password@host:9092``, optionally
    ``?sasl_mechanism=SCRAM-SHA-512&security_protocol=SASL_SSL``). Never shown: repr hides the password,
    and the bootstrap string the bus names in its messages has no userinfo."""

    username: str
    password: str = field(repr=False)
    mechanism: str = "PLAIN"
    protocol: str = "SASL_PLAINTEXT"

    def aiokafka(self) -> dict:
        options = {"security_protocol": self.protocol, "sasl_mechanism": self.mechanism,
                   "sasl_plain_username": self.username, "sasl_plain_password": self.password}
        if self.protocol == "SASL_SSL":
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context()
        return options

    def librdkafka(self) -> dict:
        return {"security.protocol": self.protocol.lower(), "sasl.mechanism": self.mechanism,
                "sasl.username": self.username, "sasl.password": self.password}


def kafka_auth(url: str) -> KafkaAuth | None:
    """The SASL credentials of a ``kafka://`` URL, or None when it has no userinfo."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return KafkaAuth(unquote(parts.username), unquote(parts.password or ""),
                     mechanism=query.get("sasl_mechanism", "PLAIN").upper(),
                     protocol=query.get("security_protocol", "SASL_PLAINTEXT").upper())


def _auth_options(auth: KafkaAuth | None) -> dict:
    return auth.aiokafka() if auth else {}


def _log_client_error(err: confluent_kafka.KafkaError) -> None:
    """Client-wide errors (e.g. every broker down): requests already answer BusUnavailable for them."""
    _LIBRDKAFKA_LOG.debug("kafka client error: %s", err.str())


class _Assignments(ConsumerRebalanceListener):
    """Counts the rebalances that gave this member partitions; before one takes partitions away,
    awaits the consumer's ``before_revoke`` (aiokafka awaits this listener before rejoining)."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked) -> None:
        hook = self._consumer.before_revoke
        if revoked and hook is not None:
            await hook()

    def on_partitions_assigned(self, assigned) -> None:
        self._consumer.assignments += 1


class KafkaConsumer(Consumer):
    def __init__(self, bootstrap: str, topics: Sequence[str], group: str, name: str, auth: KafkaAuth | None = None):
        self._assignments = _Assignments(self)
        self._consumer = AIOKafkaConsumer(
            **_auth_options(auth),
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            # a member's revoke hook finishes its write in flight: the group waits that long for it
            # (the default, the 10 s session timeout, would evict a member in a slow insert)
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
            # a topic deleted and created again is seen (and read from its start) within seconds, not
            # after the default 5 minutes
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
        )
        self._topics = list(topics)
        self._consumer.subscribe(self._topics, listener=self._assignments)

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except UnknownTopicOrPartitionError as exc:
            raise BusUnavailable(f"Kafka consumer cannot start: a topic of {sorted(self._topics)} does not exist; "
                                 "`evalforge migrate` creates them") from exc
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka consumer cannot start: {exc}") from exc

    async def poll(self, max_records: int = 5000, timeout_ms: int = 1000) -> list[Record]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            Record(tp.topic, tp.partition, m.offset, m.key, m.value)
            for tp, messages in batches.items()
            for m in messages
        ]

    async def commit(self, records: Sequence[Record]) -> set[tuple[str, int]]:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        owned = self._consumer.assignment()
        moved = {(tp.topic, tp.partition) for tp in offsets if tp not in owned}
        if moved:
            log.warning("not committing partition(s) a rebalance gave to another member: %s",
                        ", ".join(f"{t}/{p}" for t, p in sorted(moved)))
        offsets = {tp: o for tp, o in offsets.items() if (tp.topic, tp.partition) not in moved}
        if not offsets:
            return moved
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # A rebalance refused it, or this member was put out of the group (a write or an outage
            # outlasting the rebalance timeout or the poll interval): the records are delivered again,
            # to whichever member owns them now, and written again (writes are idempotent). The next
            # poll rejoins the group.
            log.warning("commit refused by a rebalance; those records will be delivered again: %s", exc)
            return moved | {(tp.topic, tp.partition) for tp in offsets}
        return moved

    async def stop(self) -> None:
        await self._consumer.stop()



class _Delivery:
    """Delivery reports of one publish call, resolved on the event loop when the last one arrives.

    librdkafka calls ``report`` on the producer's poll thread; the count is guarded by a lock
    because ``seal`` (on the loop's thread) may run while reports are arriving."""

    __slots__ = ("_loop", "future", "_pending", "_error", "_lock")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.future: asyncio.Future = loop.create_future()
        self._pending = 1  # the seal: no resolution before every record has been handed over
        self._error: confluent_kafka.KafkaError | None = None
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._pending += 1

    def report(self, err: confluent_kafka.KafkaError | None, _msg) -> None:
        with self._lock:
            if err is not None and self._error is None:
                self._error = err
            self._pending -= 1
            done = self._pending == 0
        if done:
            self._loop.call_soon_threadsafe(self._resolve)

    def seal(self) -> None:
        self.report(None, None)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(self._error)


class _Producer:
    """librdkafka's idempotent producer (confluent-kafka) and the thread that serves its callbacks.

    Producing is a C call that queues the record; batching, lz4, retries and the network run on
    librdkafka's threads, off the GIL. Idempotence (with acks=all) keeps retried batches from being
    written twice, across broker restarts too."""

    def __init__(self, bootstrap: str, timeout_s: float, auth: KafkaAuth | None = None):
        self.producer = confluent_kafka.Producer({
            **(auth.librdkafka() if auth else {}),
            "bootstrap.servers": bootstrap,
            "client.id": "evalforge",
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
            "batch.size": 1024 * 1024,
            "message.max.bytes": 16 * 1024 * 1024,
            "queue.buffering.max.kbytes": 256 * 1024,  # bounded: past it, publish answers BusUnavailable
            "queue.buffering.max.messages": 1_000_000,
            # a record not acknowledged in time fails its request (503); it is never reported as stored
            "message.timeout.ms": int(timeout_s * 1000),
            "socket.timeout.ms": int(timeout_s * 1000),
            # the Java client's partitioner for keyed records (murmur2), so keys land where any client puts them
            "partitioner": "murmur2_random",
            "logger": _LIBRDKAFKA_LOG,  # served by the poll thread, into Python logging
            "error_cb": _log_client_error,
        })
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="kafka-producer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self.producer.poll(0.05)

    def close(self, timeout_s: float) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop serving callbacks. Blocking."""
        self.producer.flush(timeout_s)
        self._stopping.set()
        self._thread.join(timeout_s)


def topic_replication(brokers: int, replication_factor: int = 0, min_insync_replicas: int = 0) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for new topics; 0 means the default for ``brokers``."""
    from core.settings import ConfigError

    replication = replication_factor or max(1, min(3, brokers))
    if replication > brokers:
        raise ConfigError(f"EVALFORGE_KAFKA_REPLICATION_FACTOR: {replication} is more than the {brokers} "
                          "broker(s) of the cluster")
    min_insync = min_insync_replicas or max(1, replication - 1)
    if min_insync > replication:
        raise ConfigError(f"EVALFORGE_KAFKA_MIN_INSYNC_REPLICAS: {min_insync} is more than the replication "
                          f"factor {replication}: no write could ever be acknowledged")
    return replication, min_insync


def _raise_topic_errors(response) -> None:
    """create_topics answers per topic; only "already exists" (another migrate won the race) is fine."""
    problems = []
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code and code != TopicAlreadyExistsError.errno:
            problems.append(f"{topic}: {for_code(code).__name__}{': ' + message if message else ''}")
    if problems:
        raise BusUnavailable("Kafka refused to create topics: " + "; ".join(problems))


class KafkaBus(Bus):
    kind = "kafka"

    def __init__(self, bootstrap: str, *, partitions: int = 8, timeout_s: float = 5.0,
                 replication_factor: int = 0, min_insync_replicas: int = 0, auth: KafkaAuth | None = None):
        self.bootstrap = bootstrap  # hosts only: it appears in messages, credentials are in ``auth``
        self.auth = auth
        self.partitions = partitions
        self.timeout_s = timeout_s
        self.replication_factor = replication_factor  # 0: min(3, brokers)
        self.min_insync_replicas = min_insync_replicas  # 0: replication factor - 1, at least 1
        self._producer: _Producer | None = None
        self._retiring: set[asyncio.Task] = set()

    async def start(self) -> None:
        producer = _Producer(self.bootstrap, self.timeout_s, self.auth)
        try:
            await asyncio.to_thread(producer.producer.list_topics, None, self.timeout_s * 2)
        except KafkaException as exc:
            await asyncio.to_thread(producer.close, 0)
            raise BusUnavailable(f"Kafka at {self.bootstrap} is unreachable: {exc.args[0].str()}") from exc
        self._producer = producer

    def _replace_producer(self, old: _Producer) -> None:
        """After a fatal producer error (librdkafka gives up on the producer id): a fresh producer;
        the old one is closed in the background."""
        if self._producer is not old:
            return
        self._producer = _Producer(self.bootstrap, self.timeout_s, self.auth)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(old.close, 0))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(producer.close, self.timeout_s)

    async def publish(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Returns once the broker acknowledged every record (acks=all); else BusUnavailable."""
        holder = self._producer
        if holder is None:
            raise BusUnavailable("Kafka producer is not started")
        delivery = _Delivery(asyncio.get_running_loop())
        produce, report = holder.producer.produce, delivery.report
        try:
            for key, value in records:
                delivery.add()
                try:
                    produce(topic, value, key, on_delivery=report)
                except BaseException:
                    delivery.report(None, None)  # not handed over: no report will come for it
                    raise
        except BufferError as exc:  # librdkafka's queue is full: the broker is slow or away
            raise BusUnavailable("Kafka producer queue is full") from exc
        except KafkaException as exc:
            raise BusUnavailable(f"Kafka refused the record: {exc.args[0].str()}") from exc
        finally:
            delivery.seal()
        try:
            # librdkafka fails each record at message.timeout.ms; this margin only guards the guard
            error = await asyncio.wait_for(delivery.future, self.timeout_s + 5)
        except asyncio.TimeoutError as exc:
            raise BusUnavailable("Kafka did not acknowledge in time") from exc
        if error is not None:
            if error.fatal():
                self._replace_producer(holder)
            raise BusUnavailable(f"Kafka did not acknowledge: {error.name()}")

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create the missing topics with the replication settings (existing ones are left as they are).

        Defaults, from the brokers counted now: replication factor min(3, brokers) and
        min.insync.replicas one less (at least 1) — 3 / 2 on a cluster of three or more, so acks=all
        means "on two brokers" and one broker may be down; 1 / 1 on a single broker.
        Raises ConfigError naming the setting when the cluster cannot honour it."""
        admin = AIOKafkaAdminClient(**_auth_options(self.auth), bootstrap_servers=self.bootstrap,
                                    request_timeout_ms=int(self.timeout_s * 1000))
        try:
            await admin.start()
            brokers = len((await admin.describe_cluster())["brokers"])
            replication, min_insync = topic_replication(brokers, self.replication_factor, self.min_insync_replicas)
            existing = set(await admin.list_topics())
            new = [NewTopic(t, self.partitions, replication, topic_configs={"min.insync.replicas": str(min_insync)})
                   for t in topics if t not in existing]
            if new:
                response = await admin.create_topics(new, timeout_ms=int(self.timeout_s * 1000))
                _raise_topic_errors(response)
                log.info("created Kafka topics %s (replication factor %d, min.insync.replicas %d)",
                         ", ".join(t.name for t in new), replication, min_insync)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka at {self.bootstrap}: cannot create topics: {exc}") from exc
        finally:
            await admin.close()

    def consumer(self, topics: Sequence[str], group: str, name: str = "worker") -> Consumer:
        return KafkaConsumer(self.bootstrap, topics, group, name, self.auth)

    async def ping(self) -> None:
        holder = self._producer
        if holder is None:
            raise BusUnavailable("bus not started")
        try:
            await asyncio.to_thread(holder.producer.list_topics, None, self.timeout_s)
        except KafkaException as exc:
            raise BusUnavailable(f"Kafka metadata request failed: {exc.args[0].str()}") from exc
