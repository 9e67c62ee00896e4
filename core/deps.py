"""FastAPI dependencies shared by the HTTP services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from core.auth import Project
from core.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_project(request: Request, services: ServicesDep) -> Project:
    """The project of the request's ``Authorization: Bearer <key>``; 401 otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise HTTPException(401, "missing Authorization: Bearer <api key>", headers={"WWW-Authenticate": "Bearer"})
    project = await services.auth.project_for_key(secret.strip())  # type: ignore[union-attr]
    if project is None:
        raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return project


async def full_access_project(project: Annotated[Project, Depends(current_project)]) -> Project:
    """The project of a key that may read and administer it (scope ``full``); 403 for ingest keys."""
    if project.scope != "full":
        raise HTTPException(403, f"this API key has scope {project.scope!r}: it may send spans and scores only")
    return project


# Every route reads and administers unless it says otherwise: only the ingest routes take IngestProjectDep.
ProjectDep = Annotated[Project, Depends(full_access_project)]
IngestProjectDep = Annotated[Project, Depends(current_project)]
