"""Per-project price overrides for the processor, read from PostgreSQL every few seconds."""

from __future__ import annotations

import logging
import time
from typing import Any

from core.project_prices import SELECT, entries_by_project

log = logging.getLogger(__name__)


class PriceOverrides:
    """The ``model_prices`` rows of every project, as price-table entries.

    ``get`` is what enrichment calls per span; it hands out the same list object while a project's
    rows are unchanged, so the price table built from them is reused (``pricing.override_table``).
    """

    def __init__(self, pg_pool, refresh_seconds: float = 5.0, retry_seconds: float = 1.0):
        self._pg = pg_pool
        self.refresh_seconds = refresh_seconds
        self._retry = retry_seconds
        self._by_project: dict[str, list[dict[str, Any]]] = {}
        self._due = float("-inf")
        self.loaded = False
        self.version = 0  # moves whenever the overrides change

    def get(self, project_id: str) -> list[dict[str, Any]] | None:
        return self._by_project.get(project_id)

    async def refresh(self) -> None:
        """Re-read the overrides when due. Until a first read succeeded this raises (the caller retries,
        since pricing without them would store wrong costs); after that a failed read keeps the last
        overrides and is tried again a second later."""
        if time.monotonic() < self._due:
            return
        try:
            async with self._pg.connection() as conn:
                cur = await conn.execute(f"{SELECT} ORDER BY project_id, provider, model_pattern")
                rows = await cur.fetchall()
        except Exception as exc:
            if not self.loaded:
                raise
            log.warning("could not re-read price overrides (%s: %s); keeping the last ones", type(exc).__name__, exc)
            self._due = time.monotonic() + self._retry
            return
        fresh = entries_by_project(rows)
        old = self._by_project
        if fresh != old:
            self.version += 1
        self._by_project = {p: old[p] if old.get(p) == entries else entries for p, entries in fresh.items()}
        self.loaded = True
        self._due = time.monotonic() + self.refresh_seconds
