"""Runs the alert engine as a background task of ``evalforge process`` / ``up``."""

from __future__ import annotations

import asyncio

import redis

from core.services import Services, open_clickhouse

from .engine import AlertEngine, EngineSettings
from .history import PgAlertHistory
from .rule_store import load_rules
from .runner import run_alerts

TICK_SECONDS = 30.0


async def alerts_task(services: Services, stopping: asyncio.Event, interval_s: float = TICK_SECONDS) -> None:
    urls = services.urls
    # A ClickHouse server session refuses concurrent queries, so the engine gets its own client there;
    # chDB allows one engine per process, so it shares the services' client.
    clickhouse = services.clickhouse if urls["clickhouse"].startswith("chdb://") else open_clickhouse(urls["clickhouse"])
    pg = await asyncio.to_thread(services.pg_sync)
    # One connection for rules and history: the engine uses both from its tick thread only.
    engine = AlertEngine(clickhouse, redis.Redis.from_url(urls["redis"]), rules=lambda: load_rules(pg),
                         settings=EngineSettings(public_url=services.settings.resolved_public_url),
                         egress=services.settings, history=PgAlertHistory(pg))
    try:
        await run_alerts(engine, interval_s, stopping)
    finally:
        engine.close()
        pg.close()
