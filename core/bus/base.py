"""Bus contract shared by the Kafka and Redis Streams backends.

Delivery is at-least-once: a consumer sees every record until it commits it; after a restart it is
given again whatever it had not committed. ``publish`` returns only once the bus acknowledged every
record (Kafka acks=all; Redis after the XADDs executed), so callers may answer 2xx after it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple


class BusUnavailable(Exception):
    """The bus did not acknowledge in time; the caller should answer 503 and the client retry."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class Record(NamedTuple):
    """One bus record. A NamedTuple: built once per record on the hot path, ~5x cheaper than a frozen
    dataclass (whose __init__ goes through object.__setattr__ per field)."""

    topic: str
    partition: int
    offset: int  # increasing within (topic, partition)
    key: bytes | None
    value: bytes


class Consumer(ABC):
    """A member of a consumer group on some topics."""

    # Awaited before a rebalance takes partitions from this member (Kafka), while they are still its
    # own: finish and commit what is in flight, drop what is not. Records not committed then are
    # delivered again, to whichever member owns their partition afterwards.
    before_revoke: Callable[[], Awaitable[None]] | None = None
    # Assignments received (Kafka: one per rebalance). Until the next one after a revoke, records of
    # the old assignment may still arrive; they are delivered again afterwards.
    assignments: int = 0

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def poll(self, max_records: int = 5000, timeout_ms: int = 1000) -> list[Record]:
        """Next records (possibly none after ``timeout_ms``), in offset order per partition."""

    @abstractmethod
    async def commit(self, records: Sequence[Record]) -> set[tuple[str, int]]:
        """Mark ``records`` (and, per partition, everything before them) as processed. Returns the
        (topic, partition) pairs left uncommitted because a rebalance moved them or refused the
        commit while partitions were being revoked: those records are delivered again, and that is
        not an error."""

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> "Consumer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Bus(ABC):
    """Producer side plus a consumer factory."""

    kind: str  # "kafka" | "redis"

    @property
    def identity(self) -> str:
        """Names this bus instance: offsets are only comparable between records of the same one."""
        return self.kind

    @abstractmethod
    async def start(self) -> None:
        """Connect; raises BusUnavailable when the bus cannot be reached."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def publish(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Publish (key, value) pairs; returns once all are acknowledged, else raises BusUnavailable."""

    @abstractmethod
    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics (and consumer-group plumbing) that do not exist yet."""

    @abstractmethod
    def consumer(self, topics: Sequence[str], group: str, name: str = "worker") -> Consumer: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise when the bus is not reachable."""
