"""Projects and API keys. Keys are stored as SHA-256 hashes; the secret is shown once at creation."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import psycopg
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisError

KEY_PREFIX = "ef_"


SCOPES = ("full", "ingest")  # full: read, admin and send; ingest: send spans and scores only (+ the SDK's prompt / A/B reads)


@dataclass(frozen=True, slots=True)
class Project:
    """The project of a request (named by its API key, or chosen by a signed-in user) and what the
    caller may do there: a key's ``scope``, a user's ``role`` (a ``full`` key acts as an admin)."""

    id: str
    name: str
    scope: str = "full"
    role: str = "admin"
    user_id: str | None = None  # set when the caller is a signed-in user, not a key


def read_credentials(path) -> dict[str, str]:
    """The ``NAME=value`` lines of the ``credentials`` file the first ``evalforge up`` writes
    (EVALFORGE_API_KEY, EVALFORGE_ADMIN_EMAIL, EVALFORGE_ADMIN_PASSWORD)."""
    with open(path) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ensure_project(conn, name: str) -> Project:
    """Get or create the project called ``name`` (sync psycopg connection)."""
    row = conn.execute("SELECT id, name FROM projects WHERE name = %s", (name,)).fetchone()
    if row:
        return Project(row[0], row[1])
    project_id = uuid.uuid4().hex[:16]
    conn.execute("INSERT INTO projects (id, name) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (project_id, name))
    row = conn.execute("SELECT id, name FROM projects WHERE name = %s", (name,)).fetchone()
    return Project(row[0], row[1])


_INSERT_KEY = "INSERT INTO api_keys (id, project_id, key_hash, prefix, scope) VALUES (%s, %s, %s, %s, %s)"


def _new_key(project: Project, scope: str) -> tuple[str, tuple[str, ...]]:
    """A new secret and the row that stores it (hashed)."""
    if scope not in SCOPES:
        raise ValueError(f"scope: must be one of {', '.join(SCOPES)}")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, (uuid.uuid4().hex, project.id, hash_key(secret), secret[:10], scope)


def create_key(conn, project: Project, scope: str = "full") -> str:
    """Create a key for ``project``; returns the secret (never stored in clear)."""
    secret, row = _new_key(project, scope)
    conn.execute(_INSERT_KEY, row)
    return secret


async def acreate_key(conn, project: Project, scope: str = "full") -> str:
    """``create_key`` on an async connection (the services' pool)."""
    secret, row = _new_key(project, scope)
    await conn.execute(_INSERT_KEY, row)
    return secret


def revoke_key(conn, secret: str) -> bool:
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_hash = %s AND revoked_at IS NULL", (hash_key(secret),)
    )
    return cur.rowcount > 0


class AuthUnavailable(Exception):
    """The key could not be checked: the cache or the database did not answer (-> 503, retry)."""


class Authenticator:
    """Resolves a bearer key to its project: in-process cache, then Redis, then Postgres.

    Cache lifetimes are short (Redis ``ttl``, in-process a third of it) so that a revoked key stops
    working within a minute on every replica, even one that missed the revocation.
    """

    REDIS_PREFIX = "evalforge:auth:v2:"  # v2: the cached value carries the key's scope

    def __init__(self, pg_pool, redis, ttl: float = 30.0):
        self._pg = pg_pool
        self._redis = redis
        self._ttl = ttl
        self._local: dict[str, tuple[float, Project | None]] = {}

    async def project_for_key(self, secret: str) -> Project | None:
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        digest = hash_key(secret)
        now = time.monotonic()
        hit = self._local.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        try:
            project = await self._lookup(digest)
        except (RedisError, psycopg.Error, PoolTimeout, OSError, asyncio.TimeoutError) as exc:
            # not the client's fault, and not a verdict on the key: tell it to retry
            raise AuthUnavailable(f"cannot check API keys now ({type(exc).__name__}); retry later") from exc
        if len(self._local) > 10_000:
            self._local.clear()
        self._local[digest] = (now + self._ttl / 3, project)
        return project

    async def _lookup(self, digest: str) -> Project | None:
        cached = await self._redis.get(self.REDIS_PREFIX + digest)
        if cached is not None:
            if cached == b"-":
                return None
            pid, name, scope = cached.decode().split("\x00")
            return Project(pid, name, scope)
        async with self._pg.connection() as conn:
            cur = await conn.execute(
                "SELECT p.id, p.name, k.scope FROM api_keys k JOIN projects p ON p.id = k.project_id "
                "WHERE k.key_hash = %s AND k.revoked_at IS NULL",
                (digest,),
            )
            row = await cur.fetchone()
        project = Project(row[0], row[1], row[2]) if row else None
        value = f"{project.id}\x00{project.name}\x00{project.scope}" if project else "-"
        await self._redis.set(self.REDIS_PREFIX + digest, value, ex=max(int(self._ttl), 1))
        return project

    async def forget(self, key_hash: str) -> None:
        """Drop a key (by its hash) from the shared and this replica's caches, after revocation."""
        self._local.pop(key_hash, None)
        await self._redis.delete(self.REDIS_PREFIX + key_hash)
