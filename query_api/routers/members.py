"""A project's members and invitations (the dashboard's Settings page).

Anyone in the project sees who else is in it; admins change roles, remove members and invite; only
an owner grants or takes away ownership, and a project always keeps one owner. Anyone may leave.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, field_validator

from core.accounts import ROLE_RANK, normalize_email, sha256
from core.auth import Project
from core.deps import AdminProjectDep, ReadProjectDep, ServicesDep

router = APIRouter(prefix="/api/v1", tags=["accounts"])

Role = Literal["viewer", "member", "admin", "owner"]
INVITE_PREFIX = "efi_"


class RoleIn(BaseModel):
    role: Role


class InvitationIn(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    role: Role = "member"

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        try:
            return normalize_email(v)
        except ValueError:
            raise ValueError("not an email address") from None


def _check_may_touch_owners(project: Project, *roles: str) -> None:
    if "owner" in roles and project.role != "owner":
        raise HTTPException(403, "only an owner may grant or take away the owner role")


async def _member_role(conn, project_id: str, user_id: str, *, lock: bool = False) -> str:
    cur = await conn.execute("SELECT role FROM memberships WHERE project_id = %s AND user_id = %s"
                             + (" FOR UPDATE" if lock else ""), (project_id, user_id))
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, "no such member in this project")
    return row[0]


async def _keep_an_owner(conn, project_id: str, user_id: str) -> None:
    # Locks the owners' rows, so two admins demoting the last two owners at once cannot both succeed.
    cur = await conn.execute("SELECT user_id FROM memberships WHERE project_id = %s AND role = 'owner' FOR UPDATE",
                             (project_id,))
    if [r[0] for r in await cur.fetchall()] == [user_id]:
        raise HTTPException(409, "role: the project must keep at least one owner")


@router.get("/members")
async def list_members(project: ReadProjectDep, services: ServicesDep) -> list[dict]:
    async with services.pg.connection() as conn:  # type: ignore[union-attr]
        cur = await conn.execute(
            "SELECT u.id, u.email, u.name, m.role FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.project_id = %s ORDER BY u.email", (project.id,))
        rows = await cur.fetchall()
    return [{"user_id": r[0], "email": r[1], "name": r[2], "role": r[3]} for r in rows]


@router.patch("/members/{user_id}")
async def change_role(user_id: str, body: RoleIn, project: AdminProjectDep, services: ServicesDep) -> dict:
    async with services.pg.connection() as conn, conn.transaction():  # type: ignore[union-attr]
        current = await _member_role(conn, project.id, user_id, lock=True)
        _check_may_touch_owners(project, current, body.role)
        if current == "owner" and body.role != "owner":
            await _keep_an_owner(conn, project.id, user_id)
        await conn.execute("UPDATE memberships SET role = %s WHERE project_id = %s AND user_id = %s",
                           (body.role, project.id, user_id))
    await services.sessions.forget_memberships(user_id)  # type: ignore[union-attr]
    return {"user_id": user_id, "role": body.role}


@router.delete("/members/{user_id}")
async def remove_member(user_id: str, project: ReadProjectDep, services: ServicesDep) -> dict:
    """An admin removes a member; any member removes themself (leaves the project)."""
    async with services.pg.connection() as conn, conn.transaction():  # type: ignore[union-attr]
        current = await _member_role(conn, project.id, user_id, lock=True)
        if user_id != project.user_id:
            if ROLE_RANK.get(project.role, -1) < ROLE_RANK["admin"]:
                raise HTTPException(403, f"your role {project.role!r} may not remove members (needs admin or above)")
            _check_may_touch_owners(project, current)
        if current == "owner":
            await _keep_an_owner(conn, project.id, user_id)
        await conn.execute("DELETE FROM memberships WHERE project_id = %s AND user_id = %s", (project.id, user_id))
    await services.sessions.forget_memberships(user_id)  # type: ignore[union-attr]
    return {"removed": user_id}


@router.post("/invitations", status_code=201)
async def invite(body: InvitationIn, request: Request, project: AdminProjectDep, services: ServicesDep) -> dict:
    """An invitation link for ``email`` with ``role``; the token is shown once (stored as a hash)."""
    _check_may_touch_owners(project, body.role)
    token = INVITE_PREFIX + secrets.token_urlsafe(32)
    invitation_id = uuid.uuid4().hex
    expires = datetime.now(timezone.utc) + timedelta(hours=services.settings.invitation_hours)
    async with services.pg.connection() as conn:  # type: ignore[union-attr]
        cur = await conn.execute(
            "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.project_id = %s AND u.email = %s",
            (project.id, body.email))
        if await cur.fetchone():
            raise HTTPException(409, "email: already a member of this project")
        await conn.execute(
            "INSERT INTO invitations (id, project_id, email, role, token_hash, invited_by, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (invitation_id, project.id, body.email, body.role, sha256(token), project.user_id, expires))
    # The dashboard's invitation page, on the address the admin is using unless a public URL is set.
    base = services.settings.public_url or str(request.base_url)
    url = f"{base.rstrip('/')}/invite?token={token}"
    return {"id": invitation_id, "email": body.email, "role": body.role, "token": token, "url": url,
            "expires_at": expires.isoformat(), "note": "shown once; send the link to the person invited"}


@router.get("/invitations")
async def list_invitations(project: AdminProjectDep, services: ServicesDep) -> list[dict]:
    """Every invitation of the project with its status: pending, accepted, revoked or expired."""
    async with services.pg.connection() as conn:  # type: ignore[union-attr]
        cur = await conn.execute(
            "SELECT id, email, role, created_at, expires_at, accepted_at, revoked_at, "
            "CASE WHEN accepted_at IS NOT NULL THEN 'accepted' WHEN revoked_at IS NOT NULL THEN 'revoked' "
            "WHEN expires_at <= now() THEN 'expired' ELSE 'pending' END "
            "FROM invitations WHERE project_id = %s ORDER BY created_at DESC", (project.id,))
        rows = await cur.fetchall()
    return [{"id": r[0], "email": r[1], "role": r[2], "created_at": r[3].isoformat(), "expires_at": r[4].isoformat(),
             "accepted_at": r[5].isoformat() if r[5] else None, "revoked_at": r[6].isoformat() if r[6] else None,
             "status": r[7]} for r in rows]


@router.delete("/invitations/{invitation_id}")
async def revoke_invitation(invitation_id: str, project: AdminProjectDep, services: ServicesDep) -> dict:
    async with services.pg.connection() as conn:  # type: ignore[union-attr]
        cur = await conn.execute(
            "UPDATE invitations SET revoked_at = now() WHERE id = %s AND project_id = %s "
            "AND accepted_at IS NULL AND revoked_at IS NULL", (invitation_id, project.id))
    if cur.rowcount == 0:
        raise HTTPException(404, "no pending invitation with this id in your project")
    return {"revoked": invitation_id}
