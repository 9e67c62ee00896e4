"""FastAPI dependencies shared by the HTTP services: who is calling, which project, what they may do.

Every ``/api/v1`` route takes EITHER ``Authorization: Bearer <api key>`` OR the dashboard's session
cookie. With the cookie, the project is named by the ``X-EvalForge-Project`` header (or ``?project=``
on plain GET links), a project the user is not a member of answers 404 (its existence does not leak),
and a state-changing request needs the ``X-CSRF-Token`` header. Roles are enforced here, once:
``ProjectDep`` lets any member read and members+ write; admin-only routes take ``AdminProjectDep``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from core.accounts import ROLE_RANK, User, csrf_matches
from core.auth import AuthUnavailable, Project
from core.auth_header import WWW_AUTHENTICATE, key_from_authorization, unauthorized_message
from core.services import Services

SESSION_COOKIE = "ef_session"
CSRF_COOKIE = "ef_csrf"
CSRF_HEADER = "x-csrf-token"
PROJECT_HEADER = "x-evalforge-project"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def session_user(request: Request, services: ServicesDep) -> User | None:
    """The signed-in user of the session cookie (CSRF-checked for state-changing methods), or None
    when the request carries no cookie; 401 for an expired or signed-out session."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    user = await services.sessions.user_for_token(token)  # type: ignore[union-attr]
    if user is None:
        raise HTTPException(401, "session expired or signed out: sign in again")
    if request.method not in SAFE_METHODS and not csrf_matches(token, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, "CSRF token missing or wrong")
    return user


async def signed_in_user(request: Request, services: ServicesDep) -> User:
    """For routes about the user rather than a project (``/auth/me``, creating a project)."""
    user = await session_user(request, services)
    if user is None:
        if request.headers.get("authorization") and request.method not in SAFE_METHODS:
            raise HTTPException(403, "this needs a signed-in user; an API key belongs to one project")
        raise HTTPException(401, "not signed in")
    return user


async def current_project(request: Request, services: ServicesDep) -> Project:
    """The request's project and the caller's rights there; 401 without credentials."""
    header = request.headers.get("authorization", "")
    if header or not request.cookies.get(SESSION_COOKIE):
        return await _key_project(header, services)
    user = await session_user(request, services)
    assert user is not None
    project_id = request.headers.get(PROJECT_HEADER) or request.query_params.get("project")
    if not project_id:
        raise HTTPException(400, "X-EvalForge-Project: required with a session cookie (or ?project=<id>)")
    membership = (await services.sessions.memberships(user.id)).get(project_id)  # type: ignore[union-attr]
    if membership is None:
        raise HTTPException(404, "no such project")
    name, role = membership
    return Project(project_id, name, scope="full", role=role, user_id=user.id)


async def _key_project(header: str, services: Services) -> Project:
    """The project of the request's API key (any scheme of ``core.auth_header``); 401 otherwise."""
    secret = key_from_authorization(header or None)
    if secret is None:
        reason = "missing Authorization header (or sign in)" if not header else "unreadable Authorization header"
        raise HTTPException(401, unauthorized_message(reason), headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    try:
        project = await services.auth.project_for_key(secret)  # type: ignore[union-attr]
    except AuthUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    if project is None:
        raise HTTPException(401, unauthorized_message("unknown or revoked API key"),
                            headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    return project


def _require(project: Project, role: str, doing: str) -> Project:
    if ROLE_RANK.get(project.role, -1) < ROLE_RANK[role]:
        who = f"your role {project.role!r}" if project.user_id else "this API key"
        raise HTTPException(403, f"{who} may not {doing} in this project (needs {role} or above)")
    return project


async def readable_project(project: Annotated[Project, Depends(current_project)]) -> Project:
    """Any member, or a ``full`` key; 403 for ingest keys."""
    if project.scope != "full":
        raise HTTPException(403, f"this API key has scope {project.scope!r}: it may only send spans and scores "
                            "(and read the prompt or A/B configuration the SDK fetches)")
    return project


async def project_for_method(request: Request, project: Annotated[Project, Depends(readable_project)]) -> Project:
    """Reads for any member; anything else (create, change, delete) for members and above."""
    if request.method in SAFE_METHODS:
        return project
    return _require(project, "member", "change data")


async def admin_project(project: Annotated[Project, Depends(readable_project)]) -> Project:
    return _require(project, "admin", "manage API keys, members or settings")


async def owner_project(project: Annotated[Project, Depends(readable_project)]) -> Project:
    return _require(project, "owner", "delete the project")


async def ingest_project(request: Request, project: Annotated[Project, Depends(current_project)]) -> Project:
    """Any key (ingest or full); a signed-in user sending spans or scores must be a member or above."""
    if project.user_id is not None and request.method not in SAFE_METHODS:
        _require(project, "member", "send spans or scores")
    return project


# Every route reads and writes data unless it says otherwise: only the ingest routes take
# IngestProjectDep; admin settings take AdminProjectDep; a POST that only reads (a query in a JSON
# body) takes ReadProjectDep so that viewers can run it.
ProjectDep = Annotated[Project, Depends(project_for_method)]
ReadProjectDep = Annotated[Project, Depends(readable_project)]
AdminProjectDep = Annotated[Project, Depends(admin_project)]
OwnerProjectDep = Annotated[Project, Depends(owner_project)]
IngestProjectDep = Annotated[Project, Depends(ingest_project)]
SignedInUserDep = Annotated[User, Depends(signed_in_user)]
