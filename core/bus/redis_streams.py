"""Redis Streams backend: the embedded bus (one stream per topic, consumer groups, XACK = commit).

Durability comes from Redis itself (the embedded server runs with an append-only file), so a record
acknowledged here survives a clean shutdown. Acknowledged entries are trimmed once every consumer
group is past them, which keeps the embedded Redis small.

One member per consumer group at a time: a stream has no partitions, so members of one group would
interleave offsets of one "partition 0", and a member's progress ("written up to offset N") would
then cover records another member has not written. A consumer therefore holds a lease on its group
(``GroupLease``); a second one — say a second ``evalforge process`` on the same Redis — refuses to
start with one line. Scale out on Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from redis.typing import KeyT, StreamIdT

from core.bus.base import Bus, BusUnavailable, Consumer, Record

STREAM_PREFIX = "evalforge:bus:"
_SEQ_BITS = 20  # stream ids are "<ms>-<seq>"; packed into one increasing integer offset
TRIM_EVERY_COMMITS = 50
MAX_BLOCK_MS = 5_000  # one blocking read at most; well inside the client's socket timeout (bus timeout + 30 s)


def id_to_offset(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return (int(ms) << _SEQ_BITS) | int(seq or 0)


def offset_to_id(offset: int) -> str:
    return f"{offset >> _SEQ_BITS}-{offset & ((1 << _SEQ_BITS) - 1)}"


CLAIM_IDLE_MS = 60_000  # a member's pending entries idle this long are taken over by a starting member
LEASE_MS = 15_000  # a group's lease lapses this long after its holder stopped renewing it (a crash)

log = logging.getLogger(__name__)

# Renew the lease only while we hold it; release it only if it is still ours.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class GroupLease:
    """The right to consume one group, held in Redis (``SET NX PX``) and renewed in the background.

    A lease left by a crashed holder is taken over at once when that holder was a process of this
    host that no longer runs (a restarted ``evalforge up``), otherwise once it lapses (``LEASE_MS``).
    """

    def __init__(self, client: aioredis.Redis, group: str) -> None:
        self._r = client
        self.key = f"{STREAM_PREFIX}lease:{group}"
        self.group = group
        self.value = f"{socket.gethostname()} {os.getpid()} {secrets.token_hex(4)}"
        self.lost = False
        self._renewer: asyncio.Task | None = None

    async def acquire(self) -> None:
        deadline = time.monotonic() + LEASE_MS / 1000 + 1
        while True:
            if await self._r.set(self.key, self.value, nx=True, px=LEASE_MS):
                break
            holder = _text(await self._r.get(self.key) or b"")
            if holder and _gone(holder):
                await self._r.eval(_RELEASE, 1, self.key, holder)  # a crashed process of this host
                continue
            if time.monotonic() > deadline:
                host, _, rest = holder.partition(" ")
                raise BusUnavailable(
                    f"another member of consumer group {self.group!r} (host {host}, pid {rest.split(' ')[0]}) "
                    "is reading this Redis Streams bus; it takes one member per group: stop that one, or use "
                    "Kafka (EVALFORGE_BUS_URL=kafka://…) to run several replicas")
            await asyncio.sleep(0.5)  # maybe a holder that crashed elsewhere: wait for its lease to lapse
        self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_MS / 3000)
            try:
                if not await self._r.eval(_RENEW, 1, self.key, self.value, LEASE_MS):
                    self.lost = True  # lapsed (this process stalled) and maybe taken by another member
                    log.error("lost the lease of consumer group %s on the Redis Streams bus", self.group)
                    return
            except RedisError as exc:  # Redis away: polls fail too; keep trying while the lease may hold
                log.warning("cannot renew the consumer group lease: %s", exc)

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        with contextlib.suppress(RedisError):
            await self._r.eval(_RELEASE, 1, self.key, self.value)


def _gone(holder: str) -> bool:
    """True when the lease holder was a process of this host that has exited."""
    host, _, rest = holder.partition(" ")
    pid = rest.split(" ")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class RedisStreamsConsumer(Consumer):
    def __init__(self, client: aioredis.Redis, topics: Sequence[str], group: str, name: str):
        self._r = client
        self._topics = list(topics)
        self._group = group
        self._name = name
        # Own pending entries (delivered before a restart, never acked) are read first, from "0".
        self._backlog_cursor: dict[str, str] = {}
        self._commits = 0
        self._lease = GroupLease(client, group)

    async def start(self) -> None:
        try:
            await self._lease.acquire()
        except RedisError as exc:
            raise BusUnavailable(f"Redis consumer cannot start: {exc}") from exc
        try:
            for topic in self._topics:
                try:
                    await self._r.xgroup_create(STREAM_PREFIX + topic, self._group, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                # Entries another (dead) member left pending for CLAIM_IDLE_MS are taken over.
                await self._r.xautoclaim(STREAM_PREFIX + topic, self._group, self._name, CLAIM_IDLE_MS, "0-0",
                                         count=10_000)
                self._backlog_cursor[topic] = "0"
            # One stream per topic, read by every member; dead members' records are taken over
            # only here, at start.
        except BaseException as exc:
            await self._lease.release()
            if isinstance(exc, RedisError):
                raise BusUnavailable(f"Redis consumer cannot start: {exc}") from exc
            raise

    async def poll(self, max_records: int = 5000, timeout_ms: int = 1000) -> list[Record]:
        if self._lease.lost:
            raise BusUnavailable(f"this member lost its lease of consumer group {self._group!r} (it stalled for "
                                 f"over {LEASE_MS // 1000} s); another member may be reading: stopping")
        if self._backlog_cursor:
            streams: dict[KeyT, StreamIdT] = {STREAM_PREFIX + t: c for t, c in self._backlog_cursor.items()}
            # RESP2 (this client's protocol) answers a list of [stream, entries]; the stub's union also
            # covers RESP3's dict
            resp = cast(list | None, await self._r.xreadgroup(self._group, self._name, streams, count=max_records))
            records = self._to_records(resp)
            for stream, entries in resp or []:
                topic = _topic(stream)
                if entries:
                    self._backlog_cursor[topic] = _text(entries[-1][0])
                else:
                    del self._backlog_cursor[topic]
            if records:
                return records
        streams = {STREAM_PREFIX + t: ">" for t in self._topics}
        # a blocking read longer than the socket timeout would fail as a timeout: it may return early
        block = min(max(timeout_ms, 1), MAX_BLOCK_MS)
        resp = cast(list | None, await self._r.xreadgroup(self._group, self._name, streams, count=max_records,
                                                          block=block))  # RESP2: a list, as above
        return self._to_records(resp)

    @staticmethod
    def _to_records(resp: list | None) -> list[Record]:
        out: list[Record] = []
        for stream, entries in resp or []:
            topic = _topic(stream)
            for entry_id, fields in entries:
                if not fields:  # pending entry whose data was trimmed: nothing to deliver
                    continue
                key = fields.get(b"k") or None
                out.append(Record(topic, 0, id_to_offset(entry_id), key, fields[b"v"]))
        return out

    async def commit(self, records: Sequence[Record]) -> set[tuple[str, int]]:
        by_topic: dict[str, list[str]] = {}
        for r in records:
            by_topic.setdefault(r.topic, []).append(offset_to_id(r.offset))
        for topic, ids in by_topic.items():
            await self._r.xack(STREAM_PREFIX + topic, self._group, *ids)
        self._commits += 1
        if self._commits % TRIM_EVERY_COMMITS == 0:
            for topic in by_topic:
                await trim_acknowledged(self._r, STREAM_PREFIX + topic)
        return set()

    async def stop(self) -> None:
        """Release the group's lease (the client belongs to the bus)."""
        await self._lease.release()


async def trim_acknowledged(client: aioredis.Redis, stream: str) -> None:
    """Drop entries every consumer group has both received and acknowledged."""
    groups = await client.xinfo_groups(stream)
    if not groups:
        return
    floor: int | None = None
    for g in groups:
        if g["pending"]:
            summary = await client.xpending(stream, g["name"])
            lowest = id_to_offset(summary["min"])
        else:
            lowest = id_to_offset(g["last-delivered-id"]) + 1
        floor = lowest if floor is None else min(floor, lowest)
    if floor:
        await client.xtrim(stream, minid=offset_to_id(floor))


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (and without a ``password=`` query parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(q for q in parts.query.split("&") if q and not q.lower().startswith("password="))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _topic(stream: bytes | str) -> str:
    return _text(stream).removeprefix(STREAM_PREFIX)


class RedisStreamsBus(Bus):
    kind = "redis"

    def __init__(self, url: str, *, timeout_s: float = 5.0):
        self.url = url
        self.timeout_s = timeout_s
        self._r: aioredis.Redis | None = None

    @property
    def identity(self) -> str:
        # Stored with every span (bus_source): the server's address, never its credentials.
        return f"redis:{without_userinfo(self.url)}"

    async def start(self) -> None:
        self._r = aioredis.from_url(self.url, socket_timeout=self.timeout_s + 30, socket_connect_timeout=self.timeout_s)
        await self.ping()

    async def close(self) -> None:
        if self._r is not None:
            await self._r.aclose()
            self._r = None

    async def publish(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        if self._r is None:
            raise BusUnavailable("bus not started")
        pipe = self._r.pipeline(transaction=False)
        stream = STREAM_PREFIX + topic
        for key, value in records:
            pipe.xadd(stream, {b"k": key or b"", b"v": value})
        try:
            await asyncio.wait_for(pipe.execute(), self.timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise BusUnavailable(f"Redis did not acknowledge: {type(exc).__name__}") from exc

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Streams are created with their first consumer group; nothing to do ahead of time."""

    def consumer(self, topics: Sequence[str], group: str, name: str = "worker") -> Consumer:
        if self._r is None:
            raise BusUnavailable("bus not started")
        return RedisStreamsConsumer(self._r, topics, group, name)

    async def ping(self) -> None:
        if self._r is None:
            raise BusUnavailable("bus not started")
        try:
            await asyncio.wait_for(self._r.ping(), self.timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise BusUnavailable(f"Redis at {without_userinfo(self.url)} is unreachable: {type(exc).__name__}") from exc
