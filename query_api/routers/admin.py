"""Admin endpoints for the caller's own project: who am I, API keys (admins only). Secrets are shown once."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from core.auth import Project, acreate_key
from core.deps import AdminProjectDep, ReadProjectDep, ServicesDep

router = APIRouter(prefix="/api/v1", tags=["admin"])


class KeyIn(BaseModel):
    scope: Literal["full", "ingest"] = "full"


@router.get("/projects/current")
async def current(project: ReadProjectDep) -> dict:
    return {"id": project.id, "name": project.name, "role": project.role}


@router.get("/api-keys")
async def list_keys(project: AdminProjectDep, services: ServicesDep) -> dict:
    async with services.require_pg().connection() as conn:
        cur = await conn.execute(
            "SELECT id, prefix, scope, created_at, revoked_at FROM api_keys WHERE project_id = %s ORDER BY created_at",
            (project.id,))
        rows = await cur.fetchall()
    return {"keys": [{"id": r[0], "prefix": r[1] + "…", "scope": r[2], "created_at": r[3].isoformat(),
                      "revoked_at": r[4].isoformat() if r[4] else None} for r in rows]}


@router.post("/api-keys", status_code=201)
async def new_key(project: AdminProjectDep, services: ServicesDep, body: KeyIn | None = None) -> dict:
    """A new key; ``{"scope": "ingest"}`` for one that may only send spans and scores (for apps)."""
    scope = body.scope if body else "full"

    async with services.require_pg().connection() as conn:  # the pool: no connection opened per request
        secret = await acreate_key(conn, Project(project.id, project.name), scope)
    return {"key": secret, "scope": scope, "note": "shown once; store it now"}


@router.delete("/api-keys/{key_id}")
async def revoke(key_id: str, project: AdminProjectDep, services: ServicesDep) -> dict:
    async with services.require_pg().connection() as conn:
        cur = await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND project_id = %s AND revoked_at IS NULL "
            "RETURNING key_hash", (key_id, project.id))
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, "no active key with this id in your project")
    await services.require_auth().forget(row[0])
    return {"revoked": key_id}
