"""Alert-test helpers on the session's real parts (tests/conftest.py: chDB ``clickhouse``, Redis
``redis_url``, PostgreSQL ``migrated_postgres``), plus a real HTTP server standing in for Slack.

The Redis server is shared with the rest of the test run, so every test gets its own key prefix
instead of a flushed database.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from core.span import COLUMNS, empty_record
from stream_processors.alerts import EngineSettings


@pytest.fixture
def project() -> str:
    """A fresh project id per test: tests share the chDB session but never see each other's spans."""
    return f"p-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def t0() -> datetime:
    """A whole-minute evaluation time an hour ago (recent enough for the tables' TTL)."""
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    return now - timedelta(hours=1)


class SpanWriter:
    """Writes canonical span records of one project into chDB; ``slow``/``fast`` build specs."""

    def __init__(self, client: Any, project: str) -> None:
        self.client = client
        self.project = project

    def insert(self, specs: list[dict[str, Any]], project: str | None = None) -> None:
        """Insert spans. Each spec needs ``start`` and ``duration_ms``; other keys override record
        columns (model, status, ttft_ms, cost, ...)."""
        rows = []
        for spec in specs:
            spec = dict(spec)
            start: datetime = spec.pop("start")
            rec = empty_record()
            rec.update(
                project_id=project or self.project, trace_id=uuid.uuid4().hex, span_id=secrets.token_hex(8),
                name="chat", kind="llm", model="gpt-4o", provider="openai", status="ok", start_time=start,
                end_time=start + timedelta(milliseconds=spec["duration_ms"]),
                ingested_at=datetime.now(timezone.utc),
            )
            rec.update(spec)
            rows.append([rec[c] for c in COLUMNS])
        self.client.insert("spans", rows, column_names=list(COLUMNS))

    @staticmethod
    def spread(start: datetime, seconds: float, n: int, **fields: Any) -> list[dict[str, Any]]:
        """``n`` span specs evenly spread over ``[start, start + seconds)``."""
        return [{"start": start + timedelta(seconds=seconds * i / n), **fields} for i in range(n)]

    def slow(self, start: datetime, seconds: float, n: int, **fields: Any) -> list[dict[str, Any]]:
        return self.spread(start, seconds, n, duration_ms=2000.0, **fields)

    def fast(self, start: datetime, seconds: float, n: int, **fields: Any) -> list[dict[str, Any]]:
        return self.spread(start, seconds, n, duration_ms=100.0, **fields)


@pytest.fixture
def spans(clickhouse: Any, project: str) -> SpanWriter:
    return SpanWriter(clickhouse, project)


@pytest.fixture
def redis_factory(redis_url: str) -> Iterator[Any]:
    """Makes independent redis-py clients to the session's Redis (one client per simulated replica)."""
    clients: list[redis.Redis] = []

    def make() -> redis.Redis:
        client = redis.Redis.from_url(redis_url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def alert_settings() -> EngineSettings:
    """Engine settings with a key prefix of this test's own: replicas of one test share it."""
    return EngineSettings(public_url="https://evalforge.example",
                          key_prefix=f"evalforge:alerts:test:{uuid.uuid4().hex}")


class SlackReceiver:
    """A real HTTP server standing in for a Slack incoming webhook.

    Records every JSON body it accepts (200 "ok"); ``fail_with`` queues responses (status, headers)
    to give first, e.g. two 500s or a 429 with Retry-After.
    """

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts: list[tuple[float, int]] = []  # (monotonic time, status answered)
        self._script: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    status, headers = receiver._script.pop(0) if receiver._script else (200, {})
                    receiver.attempts.append((time.monotonic(), status))
                    if status == 200:
                        receiver.bodies.append(json.loads(body))
                reply = b"ok" if status == 200 else b"rollup_error" if status >= 500 else b"rate_limited"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        # shaped like a real Slack webhook: the secret is the path
        self.url = f"http://{host}:{port}/services/T0000/B0000/{secrets.token_hex(12)}"

    def fail_with(self, *responses: tuple[int, dict[str, str]]) -> None:
        with self._lock:
            self._script.extend(responses)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    receiver = SlackReceiver()
    yield receiver
    receiver.close()
