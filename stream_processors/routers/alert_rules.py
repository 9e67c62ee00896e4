"""Alert rules admin API (per project). The Slack webhook URL is a secret: accepted, never echoed."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from core.deps import ProjectDep, ServicesDep
from core.egress import EgressRefused, acheck_url

from stream_processors.alerts.rules import AlertRule, RuleError, redact_rule

router = APIRouter(prefix="/api/v1/alert-rules", tags=["alerts"])


class AlertRuleIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    metric: str
    threshold: float
    aggregation: str = "avg"
    comparator: str = ">"
    window_seconds: int = Field(300, ge=10, le=31 * 86400)
    min_samples: int = Field(1, ge=1, le=2**31 - 1)  # PostgreSQL integer columns
    group_by: str | None = None
    filter: dict[str, Any] = Field(default_factory=dict)
    cooldown_seconds: int = Field(900, ge=0, le=366 * 86400)
    slack_webhook_url: str | None = Field(None, repr=False)
    enabled: bool = True
    renotify: bool = False
    baseline_windows: int = Field(12, ge=2, le=1000)


_FIELDS = list(AlertRuleIn.model_fields)


@router.post("", status_code=201)
async def create_rule(body: AlertRuleIn, project: ProjectDep, services: ServicesDep) -> dict:
    values = body.model_dump()
    try:
        AlertRule.from_row({"id": "new", "project_id": project.id, **values})
    except RuleError as exc:
        raise HTTPException(400, str(exc)) from None
    if body.slack_webhook_url:
        try:  # refused now rather than at the first alert, when nobody is watching
            await acheck_url(body.slack_webhook_url, services.settings)
        except EgressRefused as exc:
            raise HTTPException(400, f"slack_webhook_url: {exc}") from None
    values["filter"] = Jsonb(values["filter"])
    rule_id = uuid.uuid4().hex
    columns = ", ".join(["id", "project_id", *_FIELDS])
    placeholders = ", ".join(["%s"] * (len(_FIELDS) + 2))
    async with services.require_pg().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"INSERT INTO alert_rules ({columns}) VALUES ({placeholders}) RETURNING *",
                          (rule_id, project.id, *[values[f] for f in _FIELDS]))
        row = await cur.fetchone()
        assert row is not None  # INSERT … RETURNING yields the row
        return _public(row)


@router.get("")
async def list_rules(project: ProjectDep, services: ServicesDep) -> dict:
    async with services.require_pg().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM alert_rules WHERE project_id = %s ORDER BY created_at", (project.id,))
        return {"rules": [_public(r) for r in await cur.fetchall()]}


@router.delete("/{rule_id}")
async def delete_rule(rule_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    async with services.require_pg().connection() as conn:
        cur = await conn.execute("DELETE FROM alert_rules WHERE id = %s AND project_id = %s", (rule_id, project.id))
    if cur.rowcount == 0:
        raise HTTPException(404, "no such alert rule in your project")
    return {"deleted": rule_id}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    data = redact_rule({k: v for k, v in row.items() if k != "created_at"})
    data["created_at"] = row["created_at"].isoformat()
    return data
