"""``/api/v1/prompts``: versioned prompts (create a version, list, read by label or version, list versions,
move a label, diff two versions). Logic lives in ``core.prompts``; the playground (a model call) is in
``evaluators.routers.prompt_playground`` because model calls belong to the evaluators service.

Reading ONE version by name (``GET /{name}``) is open to ingest keys too: it is what
``evalforge.get_prompt`` does in applications, which the SDK's README tells to use ingest keys. Nothing
else of prompts (list, versions, history, diff, writes) is, so a leaked ingest key cannot enumerate them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from core import prompts as store
from core.auth import Project
from core.auth_header import key_from_authorization
from core.deps import ProjectDep, ReadProjectDep, ServicesDep, current_project

router = APIRouter(prefix="/api/v1/prompts", tags=["prompts"])
# Any member or key, ingest keys included (as /api/v1/ab-tests/sdk-config): only for reading one version.
AnyKeyProjectDep = Annotated[Project, Depends(current_project)]


class PromptIn(BaseModel):
    """A new version of the prompt ``name`` (created with version 1 when new). Types are checked by the
    store so that every mistake is a 400 naming its field."""

    name: Any = Field(description="letters, digits, '_', '.', '-'; at most 200 characters")
    prompt: Any = Field(description="text with {{variables}}, or chat messages [{role, content}]")
    type: Any = Field(None, description="'text' or 'chat'; inferred from prompt when absent")
    config: Any = Field(None, description="model config saved with the version (model, temperature, ...)")
    tags: Any = None
    message: Any = Field("", description="commit message")
    labels: Any = Field(None, description="labels to move to the new version, e.g. ['production']")


class LabelIn(BaseModel):
    label: str = Field(max_length=64)
    version: int = Field(ge=1, le=2**31 - 1)


def _bad(exc: Exception) -> HTTPException:
    if isinstance(exc, store.PromptNotFound):
        return HTTPException(404, str(exc))
    return HTTPException(400, str(exc))


async def author_of(request: Request, project, services) -> str:
    """Who made a change: the signed-in user's email, or the API key's public prefix (never the secret)."""
    if project.user_id:
        async with services.require_pg().connection() as conn:
            row = await (await conn.execute("SELECT email FROM users WHERE id = %s", (project.user_id,))).fetchone()
        return row[0] if row else f"user:{project.user_id}"
    secret = key_from_authorization(request.headers.get("authorization")) or ""
    return f"api key {secret[:10]}…"


@router.post("", status_code=201)
async def create_version(body: PromptIn, request: Request, project: ProjectDep, services: ServicesDep) -> dict:
    """A new immutable version; ``labels`` are moved to it in the same transaction."""
    if body.message is not None and not isinstance(body.message, str):
        raise HTTPException(400, "message: must be a string")
    if body.tags is not None and not isinstance(body.tags, list):
        raise HTTPException(400, "tags: must be a list of strings")
    if body.labels is not None and not isinstance(body.labels, list):
        raise HTTPException(400, "labels: must be a list of strings")
    try:
        return await store.create_version(
            services.require_pg(), project.id, store.check_name(body.name), prompt=body.prompt, type=body.type,
            config=body.config, tags=body.tags, message=body.message or "", labels=body.labels or (),
            author=await author_of(request, project, services))
    except (store.PromptError, store.PromptNotFound) as exc:
        raise _bad(exc) from None


@router.get("")
async def list_prompts(project: ReadProjectDep, services: ServicesDep) -> dict:
    """Every prompt with its latest version and where its labels point."""
    return {"prompts": await store.list_prompts(services.require_pg(), project.id)}


async def _version(services, project_id: str, name: str, version: int | None, label: str | None) -> dict:
    try:
        found = await store.get_version(services.require_pg(), project_id, name, version=version, label=label)
    except store.PromptError as exc:
        raise _bad(exc) from None
    if found is None:
        what = f"version {version}" if version is not None else f"label {label or store.PRODUCTION!r}"
        raise HTTPException(404, f"prompt {name!r} has no {what} in this project")
    return found


@router.get("/{name}")
async def get_prompt(name: str, project: AnyKeyProjectDep, services: ServicesDep,
                     label: Annotated[str | None, Query(max_length=64, description="default: production")] = None,
                     version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> dict:
    """One version, by ``version`` or ``label`` (``latest`` = the newest); neither → ``production``.
    Ingest keys may call this (the SDK's ``get_prompt``); they get what an app uses, not who wrote it
    (``author`` is a team member's email) nor the commit message."""
    found = await _version(services, project.id, name, version, label)
    if project.scope != "full":
        found = {k: v for k, v in found.items() if k not in ("author", "message")}
    return found


@router.get("/{name}/versions")
async def list_versions(name: str, project: ReadProjectDep, services: ServicesDep) -> dict:
    """Every version of the prompt, newest first, with its labels."""
    try:
        return {"name": name, "versions": await store.list_versions(services.require_pg(), project.id, name)}
    except (store.PromptError, store.PromptNotFound) as exc:
        raise _bad(exc) from None


@router.post("/{name}/labels")
async def move_label(name: str, body: LabelIn, request: Request, project: ProjectDep, services: ServicesDep) -> dict:
    """Point ``label`` at ``version`` (atomic; a label is on one version of a prompt). ``latest`` is
    automatic and cannot be moved (400)."""
    try:
        return await store.move_label(services.require_pg(), project.id, name, body.label, body.version,
                                      author=await author_of(request, project, services))
    except (store.PromptError, store.PromptNotFound) as exc:
        raise _bad(exc) from None


@router.get("/{name}/labels/history")
async def label_history(name: str, project: ReadProjectDep, services: ServicesDep,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    """Every label move of the prompt, newest first: who set, moved or removed which label, when."""
    try:
        return {"name": name, "events": await store.label_history(services.require_pg(), project.id, name, limit=limit)}
    except (store.PromptError, store.PromptNotFound) as exc:
        raise _bad(exc) from None


@router.delete("/{name}/labels/{label}")
async def remove_label(name: str, label: str, request: Request, project: ProjectDep, services: ServicesDep) -> dict:
    """Take a label off the prompt (``production`` removed: the SDK's fallback applies)."""
    try:
        removed = await store.remove_label(services.require_pg(), project.id, name, label,
                                           author=await author_of(request, project, services))
    except store.PromptError as exc:
        raise _bad(exc) from None
    if not removed:
        raise HTTPException(404, f"prompt {name!r} has no label {label!r}")
    return {"name": name, "label": label, "removed": True}


@router.get("/{name}/diff")
async def diff(name: str, project: ReadProjectDep, services: ServicesDep,
               from_version: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
               to_version: Annotated[int, Query(alias="to", ge=1, le=2**31 - 1)]) -> dict:
    """Unified diffs from version ``from`` to ``to``: the prompt (per message for chat) and its config."""
    old = await _version(services, project.id, name, from_version, None)
    new = await _version(services, project.id, name, to_version, None)
    return store.diff_versions(old, new)
