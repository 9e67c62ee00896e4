"""Alert rules admin API (per project): create, edit, mute / unmute, delete; each rule's current state
and firing history (recorded by the engine, stream_processors/alerts/history.py). The Slack webhook URL
is a secret: accepted, never echoed."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, HTTPException, Query
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


class AlertRulePatch(AlertRuleIn):
    """Any subset of the create fields; ``slack_webhook_url`` null or "" removes the webhook."""

    name: str = Field(None, min_length=1, max_length=200)  # type: ignore[assignment]
    metric: str = None  # type: ignore[assignment]
    threshold: float = None  # type: ignore[assignment]


class MuteIn(BaseModel):
    """Exactly one of: ``until`` (a time), ``minutes`` from now, or ``indefinitely`` (until unmuted)."""

    until: datetime | None = None
    minutes: int | None = Field(None, ge=1, le=366 * 24 * 60)
    indefinitely: bool = False


_FIELDS = list(AlertRuleIn.model_fields)
_NULLABLE = {"group_by", "slack_webhook_url"}
HISTORY_PAGE = 50


async def _check_webhook(url: str | None, services: Any) -> None:
    if url:
        try:  # refused now rather than at the first alert, when nobody is watching
            await acheck_url(url, services.settings)
        except EgressRefused as exc:
            raise HTTPException(400, f"slack_webhook_url: {exc}") from None


def _validated(values: dict[str, Any], project_id: str) -> None:
    try:
        AlertRule.from_row({"id": "new", "project_id": project_id, **values})
    except RuleError as exc:
        raise HTTPException(400, str(exc)) from None


@router.post("", status_code=201)
async def create_rule(body: AlertRuleIn, project: ProjectDep, services: ServicesDep) -> dict:
    values = body.model_dump()
    _validated(values, project.id)
    await _check_webhook(body.slack_webhook_url, services)
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


# Each rule with its latest evaluation (alert_rule_status) under the ``s_`` names ``_public`` reads.
_WITH_STATUS = ("SELECT r.*, s.state AS s_state, s.since AS s_since, s.last_value AS s_last_value, "
                "s.firing_groups AS s_firing_groups, s.evaluated_at AS s_evaluated_at "
                "FROM alert_rules r LEFT JOIN alert_rule_status s ON s.rule_id = r.id WHERE r.project_id = %s")


@router.get("")
async def list_rules(project: ProjectDep, services: ServicesDep) -> dict:
    """Every rule of the project with its current ``state`` (ok / firing / muted / disabled, since when, the last
    value, when it was last evaluated)."""
    async with services.require_pg().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_WITH_STATUS + " ORDER BY r.created_at", (project.id,))
        return {"rules": [_public(r) for r in await cur.fetchall()]}


@router.get("/{rule_id}")
async def get_rule(rule_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    return _public(await _one(services, project.id, rule_id))


@router.patch("/{rule_id}")
async def update_rule(rule_id: str, body: AlertRulePatch, project: ProjectDep, services: ServicesDep) -> dict:
    """Change any of the create fields; the result is validated as a whole, like a new rule."""
    changes = {k: getattr(body, k) for k in body.model_fields_set if k in _FIELDS}
    for name, value in changes.items():
        if value is None and name not in _NULLABLE:
            raise HTTPException(400, f"{name}: may not be null")
    if not changes:
        raise HTTPException(400, f"body: name at least one field to change ({', '.join(_FIELDS)})")
    if changes.get("slack_webhook_url") == "":
        changes["slack_webhook_url"] = None
    await _check_webhook(changes.get("slack_webhook_url"), services)
    values = [Jsonb(v) if name == "filter" else v for name, v in changes.items()]
    assignments = ", ".join(f"{name} = %s" for name in changes)
    async with services.require_pg().connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # Locked until the update: two edits must not each be validated against the row as it was
        # before the other and together store a rule that is not valid (e.g. a metric and an aggregation).
        await cur.execute("SELECT * FROM alert_rules WHERE id = %s AND project_id = %s FOR UPDATE", (rule_id, project.id))
        current = await cur.fetchone()
        if current is None:
            raise HTTPException(404, "no such alert rule in your project")
        _validated({**{f: current[f] for f in _FIELDS}, **changes}, project.id)
        await cur.execute(f"UPDATE alert_rules SET {assignments} WHERE id = %s AND project_id = %s",
                          (*values, rule_id, project.id))
    return _public(await _one(services, project.id, rule_id))


@router.post("/{rule_id}/mute")
async def mute_rule(rule_id: str, body: MuteIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Keep evaluating and recording the rule, but send nothing until ``until`` / for ``minutes`` /
    until unmuted. A firing still going when the mute ends is announced then."""
    now = datetime.now(timezone.utc)
    given = [name for name in ("until", "minutes") if getattr(body, name) is not None]
    if len(given) + body.indefinitely != 1:
        raise HTTPException(400, "until: give exactly one of until, minutes, or indefinitely: true")
    until = now + timedelta(minutes=body.minutes) if body.minutes is not None else body.until
    if until is not None:
        if until.tzinfo is None:
            raise HTTPException(400, "until: needs a time zone (e.g. 2026-12-08T09:00:00Z)")
        if until <= now:
            raise HTTPException(400, "until: must be in the future")
    return await _update(services, project.id, rule_id, "muted_at = %s, muted_until = %s", [now, until])


@router.post("/{rule_id}/unmute")
async def unmute_rule(rule_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    return await _update(services, project.id, rule_id, "muted_at = NULL, muted_until = NULL", [])


@router.get("/{rule_id}/history")
async def rule_history(rule_id: str, project: ProjectDep, services: ServicesDep,
                       limit: int = Query(HISTORY_PAGE, ge=1, le=500), cursor: str | None = None) -> dict:
    """The rule's transitions (firing / resolved), newest first: time, group, value, the threshold then,
    and the notification's fate. ``next_cursor`` fetches the next (older) page."""
    after = _parse_cursor(cursor)
    await _one(services, project.id, rule_id)  # 404 for another project's rule
    where = "rule_id = %s AND project_id = %s"
    params: list[Any] = [rule_id, project.id]
    if after is not None:
        where += " AND (at, id) < (%s, %s)"
        params += list(after)
    async with services.require_pg().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, group_key, episode, kind, at, value, threshold, comparator, notification, notified_at "
            f"FROM alert_transitions WHERE {where} ORDER BY at DESC, id DESC LIMIT %s", (*params, limit + 1))
        rows = await cur.fetchall()
    page = rows[:limit]
    data = [{"kind": r["kind"], "group": r["group_key"], "at": r["at"].isoformat(), "value": r["value"],
             "threshold": r["threshold"], "comparator": r["comparator"], "notification": r["notification"],
             "notified_at": _iso(r["notified_at"]), "episode": r["episode"]} for r in page]
    last = page[-1] if page and len(rows) > limit else None
    return {"data": data, "next_cursor": f"{last['at'].isoformat()}|{last['id']}" if last else None}


@router.delete("/{rule_id}")
async def delete_rule(rule_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    async with services.require_pg().connection() as conn:
        cur = await conn.execute("DELETE FROM alert_rules WHERE id = %s AND project_id = %s", (rule_id, project.id))
    if cur.rowcount == 0:
        raise HTTPException(404, "no such alert rule in your project")
    return {"deleted": rule_id}


async def _one(services: Any, project_id: str, rule_id: str) -> dict[str, Any]:
    async with services.require_pg().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_WITH_STATUS + " AND r.id = %s", (project_id, rule_id))
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, "no such alert rule in your project")
    return row


async def _update(services: Any, project_id: str, rule_id: str, assignments: str, params: list[Any]) -> dict:
    async with services.require_pg().connection() as conn:
        cur = await conn.execute(f"UPDATE alert_rules SET {assignments} WHERE id = %s AND project_id = %s",
                                 (*params, rule_id, project_id))
    if cur.rowcount == 0:
        raise HTTPException(404, "no such alert rule in your project")
    return _public(await _one(services, project_id, rule_id))


def _parse_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    try:
        at, row_id = cursor.rsplit("|", 1)
        parsed = datetime.fromisoformat(at), int(row_id)
    except ValueError:
        parsed = None
    if parsed is None or parsed[0].tzinfo is None or not 0 < parsed[1] < 2**63:  # a BIGSERIAL id
        raise HTTPException(400, "cursor: not a cursor this API returned")
    return parsed


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    status = {k[2:]: row[k] for k in list(row) if k.startswith("s_")}
    rule = {k: v for k, v in row.items() if not k.startswith("s_") and k not in ("created_at", "muted_at", "muted_until")}
    data = redact_rule(rule)
    data["created_at"] = row["created_at"].isoformat()
    data["state"] = _state(row, status)
    return data


def _state(row: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """``status``: disabled for a rule that is not enabled (nothing evaluates it, so its last evaluation
    says nothing about now), muted while a mute holds, else the latest evaluation's ok / firing
    (``unknown`` before the first one); ``condition`` is always the latest evaluation's own ok / firing."""
    now = datetime.now(timezone.utc)
    muted_at, muted_until = row.get("muted_at"), row.get("muted_until")
    muted = muted_at is not None and (muted_until is None or muted_until > now)
    condition = status.get("state") or "unknown"
    return {
        "status": "disabled" if not row["enabled"] else "muted" if muted else condition,
        "condition": condition,
        "since": None if not row["enabled"] else _iso(muted_at if muted else status.get("since")),  # not recorded
        "muted_until": _iso(muted_until) if muted else None,
        "muted_indefinitely": muted and muted_until is None,
        "firing_since": _iso(status.get("since")) if condition == "firing" else None,
        "last_value": status.get("last_value"),
        "firing_groups": status.get("firing_groups") or 0,
        "last_evaluated_at": _iso(status.get("evaluated_at")),
    }
