"""``evalforge up``'s app on a real loopback port (real clients need a socket), on the session's parts."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest


@dataclass
class LiveStack:
    url: str
    app: Any
    clickhouse: Any
    postgres_url: str
    grpc: dict[str, Any]

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc['port']}"

    @property
    def services(self):
        return self.app.state.services

    def create_key(self) -> tuple[str, str, str]:
        """A fresh project: (project id, project name, API key)."""
        from core.auth import create_key, ensure_project

        name = f"dropin-{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            project = ensure_project(conn, name)
            return project.id, name, create_key(conn, project)

    def wait_rows(self, sql: str, parameters: dict[str, Any], count: int, timeout: float = 40.0) -> list[tuple]:
        """Poll ClickHouse until ``sql`` returns at least ``count`` rows."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.clickhouse.query(sql, parameters=parameters).result_rows
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


def grpc_on_a_free_port(holder: dict[str, Any]):
    """A background task for ``build_app``: the real OTLP/gRPC server on the app's loop and services,
    on a free port (written to ``holder["port"]``), stopped at shutdown as ``evalforge up`` stops it."""
    from ingest.grpc_server import start_grpc_server, stop_with

    async def grpc_task(services, stopping) -> None:
        server, holder["port"] = await start_grpc_server(services, "127.0.0.1", 0)
        await stop_with(server, grace_s=2)(services, stopping)

    return grpc_task


def wait_for_port(holder: dict[str, Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while "port" not in holder:
        assert time.monotonic() < deadline, "the gRPC server did not start"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def live_stack(clickhouse, chdb_url, migrated_postgres, redis_url, s3_blob_url, service_root):
    from launcher.cli import ALL_PARTS, _background, _routers
    from core.http import build_app
    from core.settings import Settings
    from tests.harness.live_server import LiveServer

    settings = Settings(
        data_dir=service_root / f"dropin-{uuid.uuid4().hex[:6]}", clickhouse_url=chdb_url,
        postgres_url=migrated_postgres, redis_url=redis_url, blob_url=s3_blob_url, sink_batch_ms=100,
        auth_cache_seconds=1.0,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    grpc: dict[str, Any] = {}
    app = build_app(settings, parts=ALL_PARTS, routers=_routers("up"), migrate=True,
                    background=[*_background("up"), grpc_on_a_free_port(grpc)])
    with LiveServer(app) as server:
        wait_for_port(grpc)
        yield LiveStack(server.url, app, clickhouse, migrated_postgres, grpc)
