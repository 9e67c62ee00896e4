"""The caller's projects (the dashboard's project switcher) and new projects."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, field_validator

from core.deps import SESSION_COOKIE, ServicesDep, SignedInUserDep, current_project, readable_project, session_user

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
