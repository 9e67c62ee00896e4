"""The periodic loop ``evalforge process`` runs: ``await run_alerts(engine, interval_s, stop_event)``."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

from .engine import AlertEngine

log = logging.getLogger(__name__)


async def run_alerts(engine: AlertEngine, interval_s: float = 30.0, stop_event: asyncio.Event | None = None) -> None:
    """Tick ``engine`` every ``interval_s`` until ``stop_event`` is set.

    Tick times are aligned to multiples of ``interval_s`` (wall clock), so replicas evaluate the same
    windows and one of them claims each (rule, tick). Ticks run in a worker thread (the engine's clients
    are synchronous); a failing tick is logged and the loop goes on.
    """
    stop_event = stop_event or asyncio.Event()
    while not stop_event.is_set():
        tick_at = time.time() // interval_s * interval_s
        try:
            await asyncio.to_thread(engine.tick, datetime.fromtimestamp(tick_at, timezone.utc))
        except Exception:
            log.exception("alert tick failed")
        delay = tick_at + interval_s - time.time()
        try:
            await asyncio.wait_for(stop_event.wait(), timeout=max(delay, 0.0))
        except TimeoutError:
            pass
