"""Per-project model prices: a project's contract prices (or a model the shipped table does not know)
override ``core/model_prices.json`` for that project's spans.

Processors re-read the overrides every few seconds (``stream_processors/price_overrides.py``); a change
prices the spans processed after it. Costs already stored are not rewritten.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from core import pricing
from core.deps import AdminProjectDep, ProjectDep, ServicesDep

router = APIRouter(prefix="/api/v1/model-prices", tags=["admin"])

PriceKey = Literal["input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning"]
# USD per 1M tokens; bounded so that a cost stays a finite number (today's dearest model is ~$600)
Price = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]


class TierIn(BaseModel):
    above_input_tokens: int = Field(ge=0, le=10**12)
    prices: dict[PriceKey, Price]


class PriceOverrideIn(BaseModel):
    provider: str = Field("", max_length=100, description="'' prices the model whatever the span's provider")
    model: str = Field(min_length=1, max_length=200, description="also prices its dated snapshots")
    prices: dict[PriceKey, Price]
    tiers: list[TierIn] = Field(default_factory=list, max_length=20)


def _as_floats(entry: dict[str, Any]) -> dict[str, Any]:
    """Prices are numbers of one JSON type, always floats (the shipped table writes 10 for 10.0)."""
    def floats(prices: dict[str, Any]) -> dict[str, float]:
        return {key: float(value) for key, value in prices.items()}
    return {**entry, "prices": floats(entry.get("prices", {})),
            "tiers": [{**tier, "prices": floats(tier.get("prices", {}))} for tier in entry.get("tiers", [])]}


async def project_overrides(services, project_id: str) -> list[dict[str, Any]]:
    """The project's overrides as price-table entries."""
    async with services.require_pg().connection() as conn:
        cur = await conn.execute(
            "SELECT provider, model_pattern, prices, tiers, updated_at FROM model_prices WHERE project_id = %s "
            "ORDER BY provider, model_pattern", (project_id,))
        rows = await cur.fetchall()
    return [{**pricing.override_entry(r[0], r[1], r[2], r[3]), "updated_at": r[4].isoformat()} for r in rows]


@router.get("")
async def list_prices(project: ProjectDep, services: ServicesDep) -> dict:
    """The project's overrides and the version of the shipped table they take precedence over."""
    return {"shipped": {"version": pricing.price_table.version, "updated": pricing.price_table.updated},
            "overrides": [_as_floats(o) for o in await project_overrides(services, project.id)]}


@router.get("/match")
async def match_price(project: ProjectDep, services: ServicesDep,
                      model: Annotated[str, Query(min_length=1, max_length=200)],
                      provider: Annotated[str, Query(max_length=100)] = "") -> dict:
    """Which prices a span of this model gets in this project: ``source`` project, shipped, or null."""
    found = pricing.match(provider, model, await project_overrides(services, project.id))
    if found is None:
        return {"model": model, "provider": provider, "source": None, "entry": None}
    source, entry = found
    raw = entry.raw
    return {"model": model, "provider": provider, "source": source,
            "entry": _as_floats({"id": entry.id, "provider": entry.provider, "model": raw["model"],
                                 "prices": raw.get("prices", {}), "tiers": raw.get("tiers", [])})}


@router.put("")
async def put_price(body: PriceOverrideIn, project: AdminProjectDep, services: ServicesDep) -> dict:
    """Create or replace the project's prices for (provider, model)."""
    provider, model = body.provider.strip().lower(), body.model.strip().lower()
    if not model:
        raise HTTPException(400, "model: must not be blank")
    tiers = [t.model_dump() for t in body.tiers]
    entry = pricing.override_entry(provider, model, {str(kind): price for kind, price in body.prices.items()}, tiers)
    try:
        pricing.check_entry(entry)
    except ValueError as exc:
        raise HTTPException(400, f"prices: {exc}") from None
    async with services.require_pg().connection() as conn:
        cur = await conn.execute(
            "INSERT INTO model_prices (project_id, provider, model_pattern, prices, tiers) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (project_id, provider, model_pattern) DO UPDATE "
            "SET prices = EXCLUDED.prices, tiers = EXCLUDED.tiers, updated_at = now() RETURNING updated_at",
            (project.id, provider, model, Jsonb(entry["prices"]), Jsonb(tiers)))
        row = await cur.fetchone()
        assert row is not None  # an upsert with RETURNING always yields its row
        updated_at = row[0]
    return {**_as_floats(entry), "updated_at": updated_at.isoformat()}


@router.delete("")
async def delete_price(project: AdminProjectDep, services: ServicesDep,
                       model: Annotated[str, Query(min_length=1, max_length=200)],
                       provider: Annotated[str, Query(max_length=100)] = "") -> dict:
    """Drop the project's prices for (provider, model): the shipped table prices it again."""
    provider, model = provider.strip().lower(), model.strip().lower()
    async with services.require_pg().connection() as conn:
        cur = await conn.execute("DELETE FROM model_prices WHERE project_id = %s AND provider = %s AND model_pattern = %s",
                                 (project.id, provider, model))
    if cur.rowcount == 0:
        raise HTTPException(404, "no price override for this provider and model in your project")
    return {"deleted": {"provider": provider, "model": model}}
