"""No credential is stored or echoed: with a password in the Kafka bus URL (SASL on the test broker)
and a token in a webhook URL, neither appears in any ClickHouse table, any PostgreSQL column (other than
the webhook URL's own column, which the alert engine must read to send), the captured logs, or the
answers of the API — errors included."""

from __future__ import annotations

import asyncio
import logging
import uuid

import psycopg
import pytest

from tests.harness.kafka_broker import SASL_PASSWORD
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

WEBHOOK_PASSWORD = "hook-pass-5e1d"
WEBHOOK_TOKEN = "webhook-token-9b2a"
SECRETS = (SASL_PASSWORD, WEBHOOK_PASSWORD, WEBHOOK_TOKEN)


def _wait(predicate, timeout: float = 60.0):
    return wait_until(predicate, timeout)


def _clickhouse_hits(client, secret: str) -> list[str]:
    """Every table of the database whose rows hold ``secret`` in any column."""
    hits = []
    tables = client.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                          "AND engine NOT IN ('View', 'MaterializedView')").result_rows
    for (table,) in tables:
        columns = [c for (c,) in client.query("SELECT name FROM system.columns WHERE database = currentDatabase() "
                                              "AND table = {t:String}", parameters={"t": table}).result_rows]
        values = ", ".join(f"toString(`{c}`)" for c in columns)
        found = client.query(f"SELECT count() FROM `{table}` WHERE arrayExists(v -> position(v, {{s:String}}) > 0, "
                             f"[{values}])", parameters={"s": secret}).result_rows[0][0]
        if found:
            hits.append(table)
    return hits


def _postgres_hits(url: str, secret: str) -> list[str]:
    hits = []
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()]
        for table in tables:
            columns = [c for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s",
                (table,)).fetchall() if not (table == "alert_rules" and c == "slack_webhook_url")]
            text = " || ' ' || ".join(f'coalesce("{c}"::text, \'\')' for c in columns)
            if conn.execute(f'SELECT count(*) FROM "{table}" WHERE strpos({text}, %s) > 0', (secret,)).fetchone()[0]:
                hits.append(table)
    return hits


def test_bus_and_webhook_credentials_are_found_nowhere(kafka_broker, clickhouse, chdb_url, migrated_postgres,
                                                        redis_url, s3_blob_url, service_root, fake_dns, monkeypatch,
                                                        caplog):
    from starlette.testclient import TestClient

    import ingest.routers.ingest
    from core.bus.kafka import KafkaBus, kafka_auth
    from launcher.cli import ALL_PARTS, _background, _routers
    from core.http import build_app
    from core.services import open_services
    from core.settings import ConfigError, Settings
    from stream_processors import worker

    caplog.set_level(logging.DEBUG)
    fake_dns["hooks.example.com"] = ["93.184.216.34"]  # public: accepted; no alert fires, nothing is sent
    topic = f"spans-secret-{uuid.uuid4().hex[:6]}"  # this test's own span topic: no other test's records
    monkeypatch.setattr(ingest.routers.ingest, "TOPIC_SPANS", topic)
    monkeypatch.setattr(worker, "TOPIC_SPANS", topic)

    async def create_topic() -> None:
        bus = KafkaBus(f"127.0.0.1:{kafka_broker.sasl_port}", auth=kafka_auth(kafka_broker.sasl_url), timeout_s=10)
        await bus.start()
        try:
            await bus.ensure_topics([topic])
        finally:
            await bus.close()

    asyncio.run(create_topic())
    settings = Settings(data_dir=service_root / "secrets", bus_url=kafka_broker.sasl_url, clickhouse_url=chdb_url,
                        postgres_url=migrated_postgres, redis_url=redis_url, blob_url=s3_blob_url,
                        processor_group=f"secrets-{uuid.uuid4().hex[:6]}", sink_batch_ms=100)
    answers: list[str] = []
    app = build_app(settings, parts=ALL_PARTS, routers=_routers("up"), background=_background("up"), migrate=True)
    with TestClient(app) as client:
        from core.auth import create_key, ensure_project

        with psycopg.connect(migrated_postgres, autocommit=True) as conn:
            project = ensure_project(conn, f"secrets-{uuid.uuid4().hex[:6]}")
            key = create_key(conn, project)
        headers = {"Authorization": f"Bearer {key}"}
        trace_id = uuid.uuid4().hex
        r = client.post("/api/v1/spans", headers=headers, json={"spans": [{
            "trace_id": trace_id, "span_id": uuid.uuid4().hex[:16], "name": "chat", "model": "gpt-4o",
            "start_time": "2026-12-07T10:00:00Z", "end_time": "2026-12-07T10:00:01Z", "output": "hello"}]})
        answers.append(r.text)
        assert r.status_code in (200, 202), r.text  # through Kafka, authenticated with the URL's password
        _wait(lambda: clickhouse.query("SELECT count() FROM spans WHERE project_id = {p:String}",
                                       parameters={"p": project.id}).result_rows[0][0])
        webhook = f"https://hooks:{WEBHOOK_PASSWORD}@hooks.example.com/services/T0/B0/{WEBHOOK_TOKEN}"
        r = client.post("/api/v1/alert-rules", headers=headers, json={
            "name": "slow", "metric": "latency", "threshold": 1e9, "slack_webhook_url": webhook})
        assert r.status_code == 201, r.text
        answers.append(r.text)
        bad = client.post("/api/v1/alert-rules", headers=headers, json={
            "name": "inside", "metric": "latency", "threshold": 1,
            "slack_webhook_url": f"http://hooks:{WEBHOOK_PASSWORD}@10.0.0.7/{WEBHOOK_TOKEN}"})
        assert bad.status_code == 400
        answers.append(bad.text)
        for path in ("/api/v1/alert-rules", f"/api/v1/traces/{trace_id}", "/api/v1/traces", "/metrics", "/readyz",
                     "/healthz"):
            answers.append(client.get(path, headers=headers).text)

    # a bus the server cannot reach: the one-line error names the bus, not its password
    unreachable = Settings(data_dir=service_root / "secrets", bus_url=f"kafka://u:{SASL_PASSWORD}@127.0.0.1:1",
                           bus_timeout_seconds=1)
    with pytest.raises(ConfigError) as info:
        asyncio.run(open_services(unreachable, {"bus"}))
    answers.append(str(info.value))
    assert "127.0.0.1:1" in str(info.value)

    for secret in SECRETS:
        assert not any(secret in text for text in answers), secret
        assert secret not in caplog.text, secret
        assert _clickhouse_hits(clickhouse, secret) == [], secret
        assert _postgres_hits(migrated_postgres, secret) == [], secret
    with psycopg.connect(migrated_postgres) as conn:  # the one place the webhook is kept, to be sent
        assert conn.execute("SELECT count(*) FROM alert_rules WHERE slack_webhook_url = %s", (webhook,)).fetchone()[0] == 1
