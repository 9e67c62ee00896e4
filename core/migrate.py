"""Versioned, idempotent schema migrations for ClickHouse and PostgreSQL (DDL lives in infra/)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

INFRA = Path(__file__).resolve().parent.parent / "infra"


def _statements(sql: str) -> list[str]:
    out = []
    for chunk in sql.split(";\n"):
        text = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if text:
            out.append(text.rstrip(";"))
    return out


def _files(kind: str) -> list[Path]:
    return sorted((INFRA / kind).glob("*.sql"))


def migrate_clickhouse(client) -> list[str]:
    """Apply the ClickHouse migrations not applied yet; returns the versions applied now."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version String, applied_at DateTime DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}
    applied = []
    for path in _files("clickhouse"):
        if path.stem in done:
            continue
        for stmt in _statements(path.read_text()):
            client.command(stmt)
        client.insert("schema_migrations", [[path.stem]], column_names=["version"])
        applied.append(path.stem)
        log.info("clickhouse migration %s applied", path.stem)
    return applied


def migrate_postgres(conn) -> list[str]:
    """Apply the PostgreSQL migrations not applied yet, each in its own transaction (psycopg 3 conn)."""
    with conn.transaction():
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())")
        # Two services migrating at once must not both apply a file.
        conn.execute("SELECT pg_advisory_xact_lock(4242)")
    applied = []
    for path in _files("postgres"):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(4242)")
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (path.stem,)).fetchone():
                continue
            conn.execute(path.read_text())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
            applied.append(path.stem)
            log.info("postgres migration %s applied", path.stem)
    return applied
