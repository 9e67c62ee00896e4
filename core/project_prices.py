"""A project's price overrides (``model_prices`` in PostgreSQL) as price-table entries: what the
processor prices spans with, and what anything else pricing a project's model calls must use too."""

from __future__ import annotations

import logging
from typing import Any

from core import pricing

log = logging.getLogger(__name__)

SELECT = "SELECT project_id, provider, model_pattern, prices, tiers FROM model_prices"


def entries_by_project(rows) -> dict[str, list[dict[str, Any]]]:
    """``(project_id, provider, model_pattern, prices, tiers)`` rows as entries per project; a row
    that is not a valid entry (written around the API) is logged and left out."""
    out: dict[str, list[dict[str, Any]]] = {}
    for project_id, provider, model, prices, tiers in rows:
        entry = pricing.override_entry(provider, model, prices, tiers)
        try:
            pricing.check_entry(entry)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("price override of project %s for %s/%s ignored: %s", project_id, provider, model, exc)
            continue
        out.setdefault(project_id, []).append(entry)
    return out


async def project_overrides(conn, project_id: str) -> list[dict[str, Any]]:
    """The overrides of one project (``pricing.compute_call_cost(..., overrides=)``)."""
    cur = await conn.execute(f"{SELECT} WHERE project_id = %s ORDER BY provider, model_pattern", (project_id,))
    return entries_by_project(await cur.fetchall()).get(project_id, [])
