"""Eval rules: which spans (filter), which evaluator (+ config), what sampling rate. Per project."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, field_validator

from core.deps import ProjectDep, ServicesDep
from evaluators.registry import validate_rule_config
from evaluators.rules import FILTER_FIELDS

router = APIRouter(prefix="/api/v1/eval-rules", tags=["evaluations"])


class EvalRuleIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    evaluator: str
    config: dict[str, Any] = Field(default_factory=dict)
    filter: dict[str, Any] = Field(default_factory=dict)
    sampling_rate: float = Field(1.0, ge=0.0, le=1.0)
    enabled: bool = True

    @field_validator("filter")
    @classmethod
    def _known_filter_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        allowed = {*FILTER_FIELDS, "tag", "root_only"}
        for key in value or {}:
            if key not in allowed:
                raise ValueError(f"unknown filter key {key!r}; allowed: {', '.join(sorted(allowed))}")
        return value


class EvalRulePatch(EvalRuleIn):
    """Any subset of the create fields (e.g. only ``sampling_rate``); null is refused for every field."""

    name: str = Field(None, min_length=1, max_length=200)  # type: ignore[assignment]
    evaluator: str = None  # type: ignore[assignment]


def _row(r: tuple) -> dict[str, Any]:
    return {"id": r[0], "name": r[1], "evaluator": r[2], "config": r[3], "filter": r[4], "sampling_rate": r[5],
            "enabled": r[6], "created_at": r[7].isoformat()}


_COLUMNS = "id, name, evaluator, config, filter, sampling_rate, enabled, created_at"


@router.post("", status_code=201)
async def create_rule(rule: EvalRuleIn, project: ProjectDep, services: ServicesDep) -> dict:
    try:
        # in a thread: the egress check of a base_url resolves its host
        await asyncio.to_thread(validate_rule_config, rule.evaluator, rule.config, services.settings)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    async with services.require_pg().connection() as conn:
        cur = await conn.execute(
            f"INSERT INTO eval_rules (id, project_id, name, evaluator, config, filter, sampling_rate, enabled) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (uuid.uuid4().hex, project.id, rule.name, rule.evaluator, Jsonb(rule.config), Jsonb(rule.filter),
             rule.sampling_rate, rule.enabled))
        row = await cur.fetchone()
        assert row is not None  # INSERT … RETURNING yields the row
        return _row(row)


@router.patch("/{rule_id}")
async def update_rule(rule_id: str, patch: EvalRulePatch, project: ProjectDep, services: ServicesDep) -> dict:
    """Change sampling rate, filter, evaluator (+ config), name or enabled. The trigger picks the change
    up at its next refresh (a few seconds)."""
    changes: dict[str, Any] = {k: getattr(patch, k) for k in patch.model_fields_set}
    for name, value in changes.items():
        if value is None:
            raise HTTPException(400, f"{name}: may not be null")
    if not changes:
        raise HTTPException(400, f"body: name at least one field to change ({', '.join(EvalRuleIn.model_fields)})")
    async with services.require_pg().connection() as conn, conn.transaction():
        # Locked until the update: two edits (one the evaluator, one the config) must not each be
        # validated against the row as it was before the other and together store a pair that is not valid.
        cur = await conn.execute("SELECT evaluator, config FROM eval_rules WHERE id = %s AND project_id = %s "
                                 "FOR UPDATE", (rule_id, project.id))
        current = await cur.fetchone()
        if current is None:
            raise HTTPException(404, "no such eval rule in your project")
        if "evaluator" in changes or "config" in changes:
            stored = {"evaluator": current[0], "config": current[1]} | changes
            try:  # the pair as it will be stored, as on create
                await asyncio.to_thread(validate_rule_config, stored["evaluator"], stored["config"],
                                        services.settings)
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None
        values = [Jsonb(v) if k in ("config", "filter") else v for k, v in changes.items()]
        cur = await conn.execute(
            f"UPDATE eval_rules SET {', '.join(f'{k} = %s' for k in changes)} WHERE id = %s AND project_id = %s "
            f"RETURNING {_COLUMNS}", (*values, rule_id, project.id))
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, "no such eval rule in your project")
    return _row(row)


@router.get("")
async def list_rules(project: ProjectDep, services: ServicesDep) -> dict:
    async with services.require_pg().connection() as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM eval_rules WHERE project_id = %s ORDER BY created_at",
                                 (project.id,))
        return {"rules": [_row(r) for r in await cur.fetchall()]}


@router.delete("/{rule_id}")
async def delete_rule(rule_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    async with services.require_pg().connection() as conn:
        cur = await conn.execute("DELETE FROM eval_rules WHERE id = %s AND project_id = %s", (rule_id, project.id))
    if cur.rowcount == 0:
        raise HTTPException(404, "no such eval rule in your project")
    return {"deleted": rule_id}
