"""FastAPI dependencies shared by the HTTP services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from core.auth import AuthUnavailable, Project
from core.auth_header import WWW_AUTHENTICATE, key_from_authorization, unauthorized_message
from core.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_project(request: Request, services: ServicesDep) -> Project:
    """The project of the request's API key (any scheme of ``core.auth_header``); 401 otherwise."""
    header = request.headers.get("authorization")
    secret = key_from_authorization(header)
    if secret is None:
        reason = "missing Authorization header" if not header else "unreadable Authorization header"
        raise HTTPException(401, unauthorized_message(reason), headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    try:
        project = await services.auth.project_for_key(secret)  # type: ignore[union-attr]
    except AuthUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    if project is None:
        raise HTTPException(401, unauthorized_message("unknown or revoked API key"),
                            headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    return project


async def full_access_project(project: Annotated[Project, Depends(current_project)]) -> Project:
    """The project of a key that may read and administer it (scope ``full``); 403 for ingest keys."""
    if project.scope != "full":
        raise HTTPException(403, f"this API key has scope {project.scope!r}: it may send spans and scores only")
    return project


# Every route reads and administers unless it says otherwise: only the ingest routes take IngestProjectDep.
ProjectDep = Annotated[Project, Depends(full_access_project)]
IngestProjectDep = Annotated[Project, Depends(current_project)]
