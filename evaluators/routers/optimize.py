"""``/api/v1/prompts/{name}/optimize``: start a prompt optimisation (a durable job run by the
``evalforge evaluate`` workers), follow its progress and candidates, read its decision, cancel it."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.deps import ProjectDep, ServicesDep
from evaluators import datasets as dataset_store
from evaluators.experiments.runner import build_evaluators
from evaluators.llm import check_base_url
from evaluators.optimizer import prompt_store, store
from evaluators.optimizer.proposer import model_settings
from evaluators.optimizer.search import split_items
from evaluators.routers.experiments import EvaluatorSpec

router = APIRouter(prefix="/api/v1/prompts", tags=["prompts"])


class BaseRef(BaseModel):
    """The version to improve: by number or by label (neither: the `production` label)."""
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(None, ge=1)
    label: str | None = Field(None, min_length=1, max_length=100)


class ModelSpec(BaseModel):
    """A model the server calls; no secret here: the key is the server's (EVALFORGE_JUDGE_API_KEY)."""
    model_config = ConfigDict(extra="forbid")
    provider: Literal["openai", "anthropic"] = "openai"
    model: str = Field(min_length=1, max_length=200)
    base_url: str | None = Field(None, max_length=2000)
    params: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, ... sent as is")
    timeout_s: float = Field(60.0, gt=0, le=600)
    max_retries: int = Field(4, ge=0, le=10)


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_calls: int = Field(ge=1, le=1_000_000, description="model calls: optimiser + target + judges")
    max_usd: float = Field(gt=0, le=100_000)


class LimitsIn(BaseModel):
    """What an accepted prompt may cost and take on the holdout (omitted: no limit)."""
    model_config = ConfigDict(extra="forbid")
    max_cost_per_item_usd: float | None = Field(None, gt=0)
    max_latency_p95_ms: float | None = Field(None, gt=0)
    max_cost_ratio: float | None = Field(None, gt=0, description="candidate / baseline cost per item")
    max_latency_ratio: float | None = Field(None, gt=0, description="candidate / baseline latency p95")


class OptimizeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str = Field(min_length=1, max_length=64)
    dataset_version: int | None = Field(None, ge=1, description="default: the dataset's latest version")
    base: BaseRef | None = Field(None, description="default: the version labelled production")
    evaluators: list[EvaluatorSpec] = Field(min_length=1, max_length=20)
    objective: str | None = Field(None, max_length=200, description="the score to improve (default: the first)")
    target: ModelSpec
    optimizer_model: ModelSpec | None = Field(None, description="the model proposing prompts (default: target)")
    budget: BudgetIn
    rounds: int = Field(3, ge=1, le=50)
    candidates_per_round: int = Field(4, ge=1, le=16)
    seed: int = Field(0, ge=0, le=2**31)
    holdout_fraction: float = Field(0.4, ge=0.1, le=0.8)
    train_fraction: float = Field(0.2, ge=0.0, le=0.5)
    max_concurrency: int = Field(8, ge=1, le=64)
    limits: LimitsIn | None = None


def _target(m: ModelSpec) -> dict[str, Any]:
    """The experiment runner's ModelTarget for a model spec (its messages come from the prompt)."""
    return {"provider": m.provider, "model": m.model, "base_url": m.base_url, "parameters": m.params,
            "timeout_s": m.timeout_s, "max_retries": m.max_retries}


def job_spec(body: OptimizeIn, base_version: int) -> dict[str, Any]:
    """What a job stores and its worker reads: the request, with the target in the experiment runner's
    shape and the optimiser model defaulted to the target."""
    return {**body.model_dump(exclude={"target", "optimizer_model", "base", "dataset_id", "dataset_version"}),
            "evaluators": [e.model_dump() for e in body.evaluators], "target": _target(body.target),
            "optimizer_model": (body.optimizer_model or body.target).model_dump(),
            "base": {"version": base_version, "asked": (body.base or BaseRef.model_validate({})).model_dump()},
            "limits": body.limits.model_dump() if body.limits else {}}


def _public(job: dict[str, Any]) -> dict[str, Any]:
    job = dict(job)
    job.pop("project_id", None)
    job.pop("state", None)  # the worker's resume state (per-item dev rows): the history shows the candidates
    job["job_id"] = job["id"]
    job["experiments"] = {"baseline": job.pop("baseline_experiment_id"), "candidate": job.pop("candidate_experiment_id")}
    return job


@router.post("/{name}/optimize", status_code=202)
async def start(name: str, body: OptimizeIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Check everything a job needs, then queue it; ``GET .../optimize/{job_id}`` follows it."""
    ref = body.base or BaseRef.model_validate({})
    if ref.version is not None and ref.label is not None:
        raise HTTPException(400, "base: give a version or a label, not both")
    try:
        for field in ("evaluators", "target", "optimizer_model", "objective"):
            dataset_store.check_storable(getattr(body, field) if not isinstance(getattr(body, field), BaseModel)
                                         else getattr(body, field).model_dump(), field)
    except dataset_store.DatasetError as exc:
        raise HTTPException(400, str(exc)) from None
    evaluators = [e.model_dump() for e in body.evaluators]
    try:
        built = build_evaluators(evaluators)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    produced = [ev.config.score_name or ev.name for ev in built]  # the score names the runs will carry
    if body.objective is not None and body.objective not in produced:
        raise HTTPException(400, f"objective: {body.objective!r} is not a score the evaluators produce {produced}")
    optimizer = body.optimizer_model or body.target
    for field, model in (("target", body.target), ("optimizer_model", body.optimizer_model)):
        if model is None:
            continue
        try:  # the optimiser's client is built from these; the target is sent its params as they are
            model_settings(model.model_dump())
        except ValidationError as exc:
            err = exc.errors()[0]
            raise HTTPException(400, f"{field}.params.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    for field, model in (("target", body.target), ("optimizer_model", optimizer)):
        try:
            await asyncio.to_thread(check_base_url, model.base_url, services.settings)  # resolves DNS
        except ValueError as exc:
            raise HTTPException(400, f"{field}.{exc}") from None
    pg = services.require_pg()
    try:
        base = await prompt_store.get_version(pg, project.id, name, version=ref.version, label=ref.label)
    except ValueError as exc:  # the store's PromptError names the field: the path's name, or base's
        raise HTTPException(400, str(exc) if str(exc).startswith("name:") else f"base.{exc}") from None
    if base is None:
        raise HTTPException(404, f"base: prompt {name!r} has no such version or label in your project")
    async with pg.connection() as conn:
        try:
            ds = await dataset_store.get_dataset(conn, project.id, body.dataset_id, body.dataset_version)
        except dataset_store.NotFound:
            raise HTTPException(404, "dataset_id: no such dataset in your project") from None
        except dataset_store.DatasetError as exc:
            raise HTTPException(400, f"dataset_{exc}") from None
        try:
            split_items(ds["items"], body.seed, body.holdout_fraction, body.train_fraction)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        have = prompt_store.item_variables(ds["items"][0])
        missing = sorted(v for v in prompt_store.variables(base["prompt"]) if v.split(".")[0] not in have)
        if missing:
            raise HTTPException(400, f"base: prompt variables {missing} are not in the dataset's items (first item "
                                     f"has {sorted(have)})")
        job_id = await store.create(conn, project.id, name, base["version"], body.dataset_id, ds["version"],
                                    job_spec(body, base["version"]))
    return {"job_id": job_id, "status": "queued", "base_version": base["version"], "dataset_version": ds["version"]}


@router.get("/{name}/optimize")
async def list_jobs(name: str, project: ProjectDep, services: ServicesDep,
                    limit: int = Query(50, ge=1, le=500)) -> dict:
    """This prompt's optimisations, newest first."""
    async with services.require_pg().connection() as conn:
        return {"jobs": [_public(j) for j in await store.list_for(conn, project.id, name, limit)]}


@router.get("/{name}/optimize/{job_id}")
async def get_job(name: str, job_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    """Status, progress (round, calls, USD), candidates with dev scores, and the holdout decision."""
    async with services.require_pg().connection() as conn:
        try:
            return _public(await store.get(conn, job_id, project.id, name))
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None


@router.post("/{name}/optimize/{job_id}/cancel")
async def cancel(name: str, job_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    """Stop a queued or running job; its worker stops before its next model calls."""
    async with services.require_pg().connection() as conn:
        try:
            job = await store.get(conn, job_id, project.id, name)
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        if not await store.cancel(conn, job_id):
            raise HTTPException(409, f"status: the optimisation is already {job['status']}")
    return {"job_id": job_id, "status": "cancelled"}
