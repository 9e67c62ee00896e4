"""The caller's projects (the dashboard's project switcher), new projects, and deleting one."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field, field_validator

from core.deps import (SESSION_COOKIE, OwnerProjectDep, ServicesDep, SignedInUserDep, current_project, readable_project,
                       session_user)

router = APIRouter(prefix="/api/v1/projects", tags=["accounts"])


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        v = v.strip()
        if not v or any(ord(c) < 32 for c in v):
            raise ValueError("must be non-blank text without control characters")
        return v


@router.get("")
async def list_projects(request: Request, services: ServicesDep) -> list[dict]:
    """A signed-in user's projects with their role; for an API key, its own project."""
    if request.cookies.get(SESSION_COOKIE) and not request.headers.get("authorization"):
        user = await session_user(request, services)
        memberships = await services.sessions.memberships(user.id)  # type: ignore[union-attr]
        return [{"id": pid, "name": name, "role": role} for pid, (name, role) in memberships.items()]
    project = await readable_project(await current_project(request, services))
    return [{"id": project.id, "name": project.name, "role": project.role}]


@router.post("", status_code=201)
async def create_project(body: ProjectIn, user: SignedInUserDep, services: ServicesDep) -> dict:
    """A new project owned by the signed-in user (API keys belong to one project and cannot)."""
    project_id = uuid.uuid4().hex[:16]
    async with services.pg.connection() as conn:  # type: ignore[union-attr]
        async with conn.transaction():
            cur = await conn.execute("INSERT INTO projects (id, name) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                                     (project_id, body.name))
            if cur.rowcount == 0:
                raise HTTPException(409, "name: a project with this name exists")
            await conn.execute("INSERT INTO memberships (project_id, user_id, role) VALUES (%s, %s, 'owner')",
                               (project_id, user.id))
    await services.sessions.forget_memberships(user.id)  # type: ignore[union-attr]
    return {"id": project_id, "name": body.name, "role": "owner"}


@router.delete("/current")
async def delete_project(project: OwnerProjectDep, services: ServicesDep,
                         confirm: Annotated[str, Query(max_length=100, description="the project's name")]) -> dict:
    """Delete the project (owners only): its configuration at once, then its spans, scores and rollups
    in ClickHouse (asynchronous mutations, gone within moments) and its payloads in the blob store."""
    if confirm != project.name:
        raise HTTPException(400, "confirm: must be the project's name")
    async with services.pg.connection() as conn, conn.transaction():  # type: ignore[union-attr]
        keys = await (await conn.execute("SELECT key_hash FROM api_keys WHERE project_id = %s", (project.id,))).fetchall()
        members = await (await conn.execute("SELECT user_id FROM memberships WHERE project_id = %s",
                                            (project.id,))).fetchall()
        try:
            await conn.execute("DELETE FROM projects WHERE id = %s", (project.id,))
        except psycopg.errors.ForeignKeyViolation as exc:
            raise HTTPException(409, f"project: still referenced by {exc.diag.table_name}") from None
    for (key_hash,) in keys:  # its keys and its members' access stop now on this replica
        await services.auth.forget(key_hash)  # type: ignore[union-attr]
    for (user_id,) in members:
        await services.sessions.forget_memberships(user_id)  # type: ignore[union-attr]
    tables = await asyncio.to_thread(erase_clickhouse, services.clickhouse, project.id)
    payloads = await asyncio.to_thread(services.blobs.delete_prefix, project.id)  # type: ignore[union-attr]
    return {"deleted": project.id, "clickhouse_tables": tables, "payloads": payloads}


def erase_clickhouse(client, project_id: str) -> list[str]:
    """Start deleting the project's rows from every table that has a project_id (whoever added it)."""
    tables = [r[0] for r in client.query(
        "SELECT t.name FROM system.tables AS t INNER JOIN system.columns AS c ON c.database = t.database AND c.table = t.name "
        "WHERE t.database = currentDatabase() AND c.name = 'project_id' AND t.engine LIKE '%MergeTree' "
        "ORDER BY t.name").result_rows]
    for table in tables:
        name = table.replace("`", "``")
        client.command(f"ALTER TABLE `{name}` DELETE WHERE project_id = {{p:String}}", parameters={"p": project_id})
    return tables
