"""An ingest service on a real port, producing to the real Kafka broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from core.bus import TOPIC_SPANS


@pytest.fixture(scope="module")
def ingest_server(kafka_broker, migrated_postgres, redis_url, s3_blob_url, service_root):
    from launcher.cli import INGEST_PARTS
    from core.http import build_app
    from core.settings import Settings
    from ingest.routers.ingest import router
    from tests.harness.live_server import LiveServer

    settings = Settings(
        data_dir=service_root / "ingest", bus_url=f"kafka://{kafka_broker.bootstrap}", postgres_url=migrated_postgres,
        redis_url=redis_url, blob_url=s3_blob_url, payload_offload_bytes=4096, auth_cache_seconds=1.0,
        bus_timeout_seconds=3.0, kafka_partitions=4,
    )
    app = build_app(settings, parts=INGEST_PARTS, routers=[router], migrate=True)
    with LiveServer(app) as server:
        server.app = app
        server.settings = settings
        yield server


@pytest.fixture
def project_key(migrated_postgres):
    """A fresh project and key: (project_id, key)."""
    import psycopg

    from core.auth import create_key, ensure_project

    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        project = ensure_project(conn, f"ingest-{uuid.uuid4().hex[:8]}")
        return project.id, create_key(conn, project)


def read_topic(bootstrap: str, project_id: str, expect: int, timeout: float = 30.0, topic: str = TOPIC_SPANS) -> list:
    """Every record of ``project_id`` on ``topic`` (fresh consumer group, from the beginning)."""
    from core.span import decode

    async def run() -> list:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"check-{uuid.uuid4().hex}",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        found = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            idle_until = None
            while loop.time() < deadline:
                batches = await consumer.getmany(timeout_ms=300, max_records=5000)
                new = False
                for messages in batches.values():
                    for m in messages:
                        rec = decode(m.value)
                        if rec["project_id"] == project_id:
                            found.append((m.key, rec))
                            new = True
                if len(found) >= expect:
                    # keep reading briefly so duplicates (if any) would show up too
                    idle_until = idle_until or loop.time() + 1.0
                    if loop.time() > idle_until and not new:
                        break
        finally:
            await consumer.stop()
        return found

    return asyncio.run(run())
