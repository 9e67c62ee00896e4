"""Clients for every external part, opened from settings (in a FastAPI lifespan or a worker's main)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from redis import Redis as SyncRedis

from core.accounts import HashingSlots, LoginThrottle, SessionStore
from core.auth import Authenticator
from core.blobs import BlobStore, S3BlobStore, open_blob_store
from core.bus import ALL_TOPICS, Bus, BusUnavailable, open_bus
from core.embedded import EmbeddedStack
from core.settings import ConfigError, Settings

log = logging.getLogger(__name__)

ALL_PARTS = frozenset({"bus", "clickhouse", "postgres", "redis", "blobs"})


def open_clickhouse(url: str):
    """A clickhouse-connect client: a ClickHouse server (http/https) or chDB (chdb:///path)."""
    import clickhouse_connect

    if url.startswith("chdb://"):
        return clickhouse_connect.get_client(dsn=url)
    # No session: a ClickHouse server refuses a second query in a session while one runs, and the
    # services' client is used from many threads at once. Nothing here relies on session state.
    return clickhouse_connect.get_client(dsn=url, compress="lz4", connect_timeout=5, autogenerate_session_id=False)


_Part = TypeVar("_Part")


def _opened(part: _Part | None, name: str) -> _Part:
    if part is None:
        raise RuntimeError(f"{name} was not opened in this process (open_services parts)")
    return part


@dataclass
class Services:
    settings: Settings
    urls: dict[str, str]
    embedded: EmbeddedStack | None = None
    bus: Bus | None = None
    clickhouse: Any = None
    pg: AsyncConnectionPool | None = None
    redis: aioredis.Redis | None = None
    blobs: BlobStore | None = None
    auth: Authenticator | None = None
    sessions: SessionStore | None = None
    login_throttle: LoginThrottle | None = None
    password_hashing: HashingSlots = field(default_factory=HashingSlots)
    extras: dict[str, Any] = field(default_factory=dict)

    # Typed accessors for the parts a caller cannot work without: a clear error, not an AttributeError
    # on None, when a process did not open that part.
    def require_pg(self) -> AsyncConnectionPool:
        return _opened(self.pg, "postgres")

    def require_bus(self) -> Bus:
        return _opened(self.bus, "bus")

    def require_auth(self) -> Authenticator:
        return _opened(self.auth, "auth")

    def sync_redis(self) -> SyncRedis:
        """The one blocking Redis client (a connection pool) for code running in worker threads."""
        client = self.extras.get("sync_redis")
        if client is None:
            client = self.extras["sync_redis"] = SyncRedis.from_url(self.urls["redis"], socket_connect_timeout=5)
        return client

    def pg_sync(self) -> psycopg.Connection:
        """A short-lived blocking connection (CLI, migrations)."""
        return psycopg.connect(self.urls["postgres"], autocommit=True)

    async def health(self) -> dict[str, dict[str, str]]:
        """Each part's status; never raises."""
        checks: dict[str, Any] = {}
        if self.bus is not None:
            checks["bus"] = self.bus.ping()
        if self.clickhouse is not None:
            checks["clickhouse"] = asyncio.to_thread(self.clickhouse.command, "SELECT 1")
        if self.pg is not None:
            checks["postgres"] = self._pg_ping()
        if self.redis is not None:
            checks["redis"] = self.redis.ping()
        if self.blobs is not None:
            checks["blobs"] = asyncio.to_thread(self.blobs.ping)
        out: dict[str, dict[str, str]] = {}
        for name, coro in checks.items():
            try:
                await asyncio.wait_for(coro, 5)
                out[name] = {"status": "ok"}
            except Exception as exc:  # health reports every failure, whatever its type
                out[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
        return out

    async def _pg_ping(self) -> None:
        async with self.require_pg().connection() as conn:
            await conn.execute("SELECT 1")

    async def close(self) -> None:
        if self.bus is not None:
            await self.bus.close()
        if self.pg is not None:
            await self.pg.close()
        if self.redis is not None:
            await self.redis.aclose()
        if (sync_redis := self.extras.pop("sync_redis", None)) is not None:
            sync_redis.close()
        if self.clickhouse is not None and not self.urls.get("clickhouse", "").startswith("chdb://"):
            self.clickhouse.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


async def open_services(
    settings: Settings, parts: frozenset[str] | set[str] = ALL_PARTS, *, migrate: bool = False
) -> Services:
    """Start embedded parts where no URL is set, connect to every part in ``parts``.

    Raises ConfigError with one line naming the setting when a part cannot be reached.
    """
    urls = {
        "bus": settings.bus_url,
        "clickhouse": settings.clickhouse_url,
        "postgres": settings.postgres_url,
        "redis": settings.redis_url,
        "blobs": settings.blob_url or f"file://{(settings.data_dir / 'blobs').resolve()}",
    }
    needed = set(parts)
    if "bus" in needed and not settings.bus_url.startswith("kafka://") and not settings.bus_url.startswith("redis://"):
        needed.add("redis")  # the embedded bus is Redis Streams
    if "postgres" in needed:
        needed.add("redis")  # API-key lookups are cached in Redis
    embedded_parts = {p for p in settings.embedded_parts if p in needed} - {"clickhouse"}
    if "clickhouse" in needed and not urls["clickhouse"]:
        urls["clickhouse"] = f"chdb://{(settings.data_dir / 'clickhouse').resolve()}"
    svc = Services(settings=settings, urls=urls)
    clickhouse_ready: asyncio.Task | None = None
    try:
        if "clickhouse" in needed:
            # Independent of the other parts, and the slowest to open and migrate: start it first.
            clickhouse_ready = asyncio.create_task(asyncio.to_thread(_open_clickhouse, urls["clickhouse"], migrate))
        if embedded_parts:
            svc.embedded = EmbeddedStack(settings.data_dir.resolve(), embedded_parts)
            urls.update(await asyncio.to_thread(svc.embedded.start))
        if "redis" in needed:
            # A read timeout: a stalled Redis becomes a 503 (core.request_guard), not a request that hangs.
            svc.redis = aioredis.from_url(urls["redis"], socket_connect_timeout=5,
                                          socket_timeout=settings.redis_timeout_seconds)
            await _reach("EVALFORGE_REDIS_URL", svc.redis.ping())
        if "postgres" in needed:
            if migrate:
                await asyncio.to_thread(_migrate_postgres, urls["postgres"])
            svc.pg = AsyncConnectionPool(urls["postgres"], min_size=1, max_size=10, open=False,
                                         kwargs={"autocommit": True})
            await _reach("EVALFORGE_POSTGRES_URL", svc.pg.open(wait=True, timeout=10))
        if clickhouse_ready is not None:
            svc.clickhouse = await clickhouse_ready
        if "blobs" in needed:
            svc.blobs = open_blob_store(urls["blobs"])
            if migrate and isinstance(svc.blobs, S3BlobStore):
                await asyncio.to_thread(svc.blobs.ensure_bucket)
        if "bus" in needed:
            redis_url = urls["redis"]
            svc.bus = open_bus(settings.bus_url, redis_url=redis_url, partitions=settings.kafka_partitions,
                               timeout_s=settings.bus_timeout_seconds,
                               replication_factor=settings.kafka_replication_factor,
                               min_insync_replicas=settings.kafka_min_insync_replicas)
            try:
                await svc.bus.start()
                if migrate:
                    await svc.bus.ensure_topics(ALL_TOPICS)
            except BusUnavailable as exc:
                svc.bus = None
                raise ConfigError(f"EVALFORGE_BUS_URL: {exc}") from None
        if svc.pg is not None and svc.redis is not None:
            svc.auth = Authenticator(svc.pg, svc.redis, ttl=settings.auth_cache_seconds)
            svc.sessions = SessionStore(svc.pg, svc.redis, cache_seconds=settings.auth_cache_seconds,
                                        lifetime_hours=settings.session_hours)
            svc.login_throttle = LoginThrottle(svc.redis, max_per_email=settings.login_max_failures,
                                               max_per_ip=settings.login_max_failures_per_ip,
                                               window_seconds=settings.login_lockout_seconds)
    except BaseException:
        if clickhouse_ready is not None and svc.clickhouse is None:
            try:
                svc.clickhouse = await clickhouse_ready  # let the thread finish before closing
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
        await svc.close()
        raise
    return svc


def _open_clickhouse(url: str, migrate: bool):
    try:
        client = open_clickhouse(url)
        if migrate:
            from core.migrate import migrate_clickhouse

            migrate_clickhouse(client)
    except Exception as exc:
        raise ConfigError(f"EVALFORGE_CLICKHOUSE_URL: cannot connect: {_short(exc)}") from None
    return client


def _short(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


async def _reach(setting: str, awaitable) -> None:
    try:
        await asyncio.wait_for(awaitable, 15)
    except Exception as exc:
        raise ConfigError(f"{setting}: cannot connect: {_short(exc) or type(exc).__name__}") from None


def _migrate_postgres(url: str) -> None:
    from core.migrate import migrate_postgres

    with psycopg.connect(url, autocommit=True) as conn:
        migrate_postgres(conn)
