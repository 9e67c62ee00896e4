"""Dashboard users: passwords (argon2), roles per project, sign-in sessions, login throttling.

A session is a random token in the ``ef_session`` cookie; PostgreSQL keeps only its SHA-256, with an
expiry. The CSRF token is derived from the session token (HMAC), so it needs no storage and cannot
be used to recover the session. Lookups are cached like API keys (core/auth.py): Redis for every
replica, plus a shorter in-process cache, so a signed-out session or a changed role stops working
within ``auth_cache_seconds`` everywhere and at once on the replica that made the change.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

T = TypeVar("T")
ROLES = ("viewer", "member", "admin", "owner")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024

_hasher = PasswordHasher()  # the library's defaults (argon2id, RFC 9106 low-memory profile)
_dummy_hash: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_email(email: str) -> str:
    """Lower-cased, trimmed; ValueError naming the field if it is not an address."""
    value = (email or "").strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain or any(c.isspace() for c in value) or len(value) > 320:
        raise ValueError("email: not an email address")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"password: must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"password: must have at most {MAX_PASSWORD_CHARS} characters")


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs_rehash). Blocking (argon2 costs ~50 ms): call it in a thread.

    An unknown user (``password_hash`` None) is checked against a dummy hash, so the answer takes as
    long as for a real user and does not tell which emails exist.
    """
    global _dummy_hash
    if password_hash is None:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash(secrets.token_hex(16))
        password_hash, known = _dummy_hash, False
    else:
        known = True
    try:
        _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False, False
    return known, known and _hasher.check_needs_rehash(password_hash)


def csrf_token_for(session_token: str) -> str:
    digest = hmac.new(session_token.encode(), b"evalforge-csrf-v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_matches(session_token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token_for(session_token), presented or "")


# -- users and memberships (sync psycopg; the CLI, bootstrap and rare writes run these in a thread) --

def create_user(conn, email: str, password: str, name: str = "") -> User:
    """A new user; ValueError naming the field for a bad email / password or an email in use."""
    email = normalize_email(email)
    check_password(password)
    user = User(uuid.uuid4().hex, email, name.strip()[:200])
    cur = conn.execute(
        "INSERT INTO users (id, email, name, password_hash) VALUES (%s, %s, %s, %s) ON CONFLICT (email) DO NOTHING",
        (user.id, user.email, user.name, hash_password(password)))
    if cur.rowcount == 0:
        raise ValueError("email: a user with this email exists")
    return user


def set_password(conn, email: str, password: str) -> list[str] | None:
    """Replace a user's password and end their sessions; the ended sessions' hashes (for the caches),
    or None if there is no such user."""
    check_password(password)
    row = conn.execute(
        "UPDATE users SET password_hash = %s, password_changed_at = now() WHERE email = %s RETURNING id",
        (hash_password(password), normalize_email(email))).fetchone()
    if row is None:
        return None
    ended = conn.execute("DELETE FROM user_sessions WHERE user_id = %s RETURNING token_hash", (row[0],)).fetchall()
    return [r[0] for r in ended]


def set_membership(conn, project_id: str, user_id: str, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role: must be one of {', '.join(ROLES)}")
    conn.execute(
        "INSERT INTO memberships (project_id, user_id, role) VALUES (%s, %s, %s) "
        "ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role", (project_id, user_id, role))


def user_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM users").fetchone()[0]


class HashingSlots:
    """At most ``slots`` argon2 computations at once. Each holds 64 MiB and a core for 0.1-0.4 s, so a
    flood of sign-ins waits here instead of exhausting memory or the event loop's thread pool."""

    def __init__(self, slots: int = 2):
        self._semaphore = asyncio.Semaphore(slots)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._semaphore:
            return await asyncio.to_thread(fn, *args)


# -- sessions (async, on the services' pool and Redis) --

class SessionStore:
    """Creates, resolves and ends sessions; resolves a user's memberships. Both cached briefly."""

    SESSION_PREFIX = "evalforge:session:v1:"
    MEMBERS_PREFIX = "evalforge:memberships:v1:"

    def __init__(self, pg_pool, redis, *, cache_seconds: float = 30.0, lifetime_hours: float = 336.0):
        self._pg = pg_pool
        self._redis = redis
        self._ttl = max(cache_seconds, 1.0)
        self.lifetime = timedelta(hours=lifetime_hours)
        self._local: dict[str, tuple[float, Any]] = {}

    async def create(self, user_id: str) -> str:
        token = secrets.token_urlsafe(32)
        expires = datetime.now(timezone.utc) + self.lifetime
        async with self._pg.connection() as conn:
            await conn.execute("INSERT INTO user_sessions (token_hash, user_id, expires_at) VALUES (%s, %s, %s)",
                               (sha256(token), user_id, expires))
            # Expired sessions of this user are of no use to anyone: tidy them here, not in a cron.
            await conn.execute("DELETE FROM user_sessions WHERE user_id = %s AND expires_at < now()", (user_id,))
        return token

    async def user_for_token(self, token: str) -> User | None:
        if not token or len(token) > 200:
            return None
        digest = sha256(token)
        key = self.SESSION_PREFIX + digest
        hit = self._local.get(key)
        if hit and hit[0] > time.monotonic():
            found = hit[1]
        else:
            found = await self._load_session(key, digest)
            self._remember(key, found)
        if found is None:
            return None
        user, expires = found
        return user if expires > time.time() else None

    async def _load_session(self, key: str, digest: str) -> tuple[User, float] | None:
        cached = await self._redis.get(key)
        if cached is not None:
            if cached == b"-":
                return None
            user_id, email, name, expires = orjson.loads(cached)
            return User(user_id, email, name), float(expires)
        async with self._pg.connection() as conn:
            # Loaded at most once per cache lifetime, so last_seen_at costs one write per that period.
            cur = await conn.execute(
                "UPDATE user_sessions s SET last_seen_at = now() FROM users u "
                "WHERE s.token_hash = %s AND u.id = s.user_id AND s.expires_at > now() "
                "RETURNING u.id, u.email, u.name, s.expires_at", (digest,))
            row = await cur.fetchone()
        if row is None:
            await self._redis.set(key, "-", ex=int(self._ttl))
            return None
        user, expires = User(row[0], row[1], row[2]), row[3].timestamp()
        await self._redis.set(key, orjson.dumps([user.id, user.email, user.name, expires]), ex=int(self._ttl))
        return user, expires

    async def delete(self, token: str) -> None:
        digest = sha256(token)
        async with self._pg.connection() as conn:
            await conn.execute("DELETE FROM user_sessions WHERE token_hash = %s", (digest,))
        await self._forget(self.SESSION_PREFIX + digest)

    async def forget_sessions(self, token_hashes: list[str]) -> None:
        """Drop sessions ended in PostgreSQL (a new password) from the caches."""
        for digest in token_hashes:
            await self._forget(self.SESSION_PREFIX + digest)

    async def memberships(self, user_id: str) -> dict[str, tuple[str, str]]:
        """project id -> (project name, role) for every project the user belongs to."""
        key = self.MEMBERS_PREFIX + user_id
        hit = self._local.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        cached = await self._redis.get(key)
        if cached is not None:
            found = {pid: (name, role) for pid, name, role in orjson.loads(cached)}
        else:
            async with self._pg.connection() as conn:
                cur = await conn.execute(
                    "SELECT p.id, p.name, m.role FROM memberships m JOIN projects p ON p.id = m.project_id "
                    "WHERE m.user_id = %s ORDER BY p.name", (user_id,))
                found = {pid: (name, role) for pid, name, role in await cur.fetchall()}
            rows = [[pid, name, role] for pid, (name, role) in found.items()]
            await self._redis.set(key, orjson.dumps(rows), ex=int(self._ttl))
        self._remember(key, found)
        return found

    async def forget_memberships(self, user_id: str) -> None:
        """After a role change, removal or new project: the next request reads PostgreSQL."""
        await self._forget(self.MEMBERS_PREFIX + user_id)

    def _remember(self, key: str, value: Any) -> None:
        if len(self._local) > 10_000:
            self._local.clear()
        self._local[key] = (time.monotonic() + self._ttl / 3, value)

    async def _forget(self, key: str) -> None:
        self._local.pop(key, None)
        await self._redis.delete(key)


class LoginThrottle:
    """Counts failed sign-ins per email and per client address in Redis (shared by every replica).

    After ``max_per_email`` (or ``max_per_ip``) failures within ``window_seconds`` of the first one,
    sign-in is refused until that window ends, even with the right password; a success clears the
    email's count. Emails are hashed in the key so Redis holds no addresses.
    """

    PREFIX = "evalforge:login-failures:v1:"

    def __init__(self, redis, *, max_per_email: int, max_per_ip: int, window_seconds: int):
        self._redis = redis
        self._limits = (max_per_email, max_per_ip)
        self._window = max(int(window_seconds), 1)

    def _keys(self, email: str, ip: str) -> tuple[str, str]:
        return self.PREFIX + "email:" + sha256(email), self.PREFIX + "ip:" + ip

    async def retry_after(self, email: str, ip: str) -> int:
        """Seconds until a sign-in may be tried again; 0 if it may be tried now."""
        keys = self._keys(email, ip)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            got = await pipe.execute()
        wait = 0
        for i, limit in enumerate(self._limits):
            count, ttl = got[2 * i], got[2 * i + 1]
            if limit > 0 and count is not None and int(count) >= limit:
                wait = max(wait, ttl if ttl and ttl > 0 else self._window)
        return wait

    async def failed(self, email: str, ip: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in self._keys(email, ip):
                pipe.set(key, 0, ex=self._window, nx=True)  # the window starts at the first failure
                pipe.incr(key)
            await pipe.execute()

    async def succeeded(self, email: str) -> None:
        await self._redis.delete(self._keys(email, "")[0])


# -- invitations --

def redeem_invitation(conn, invitation_id: str, project_id: str, user_id: str, role: str) -> bool:
    """Mark the invitation used and give the user its role (never lowering a higher one they have).

    False if it was used or revoked meanwhile. Call inside a transaction that also made the user.
    """
    cur = conn.execute("UPDATE invitations SET accepted_at = now() WHERE id = %s AND accepted_at IS NULL "
                       "AND revoked_at IS NULL AND expires_at > now()", (invitation_id,))
    if cur.rowcount == 0:
        return False
    row = conn.execute("SELECT role FROM memberships WHERE project_id = %s AND user_id = %s",
                       (project_id, user_id)).fetchone()
    if row is None or ROLE_RANK[row[0]] < ROLE_RANK[role]:
        set_membership(conn, project_id, user_id, role)
    return True
