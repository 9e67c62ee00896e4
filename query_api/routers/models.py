"""``/api/v1/models``: the model registry (shipped catalogue + the project's models), a model's observed
profile, and ``POST /models/recommend``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from core import model_registry
from core.deps import AdminProjectDep, ProjectDep, ReadProjectDep, ServicesDep
from core.model_registry import CAPABILITIES, EDITABLE, Registry
from query_api import model_quality, model_recommend
from query_api.filters import BadParam
from query_api.model_profiles import MAX_DAYS, Window, observed_profiles, window
from query_api.routers.model_prices import project_overrides

router = APIRouter(prefix="/api/v1/models", tags=["models"])
Capability = Literal["tools", "json_output", "vision"]
Days = Annotated[int | None, Query(ge=1, le=MAX_DAYS, description="window: the last N days (default 30)")]
From = Annotated[str | None, Query(alias="from", max_length=64)]
To = Annotated[str | None, Query(alias="to", max_length=64)]


class ModelFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    snapshots: list[str] | None = Field(None, max_length=100)
    context_window: int | None = None
    max_output_tokens: int | None = None
    modalities: dict[str, list[str]] | None = None
    capabilities: dict[str, bool] | None = None
    deprecation_date: str | None = Field(None, max_length=10)
    metadata: dict[str, Any] | None = None


class ModelIn(ModelFields):
    provider: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)


async def _project_models(services, project_id: str) -> list[dict[str, Any]]:
    async with services.require_pg().connection() as conn:
        rows = await (await conn.execute("SELECT provider, name, spec FROM project_models WHERE project_id = %s",
                                         (project_id,))).fetchall()
    return [{**spec, "provider": provider, "name": name} for provider, name, spec in rows]


async def registry_for(services, project_id: str) -> Registry:
    return Registry(await _project_models(services, project_id), await project_overrides(services, project_id))


def _checked(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        return model_registry.check_entry(raw, "model")
    except ValueError as exc:
        raise HTTPException(400, str(exc).removeprefix("model.")) from None


@router.get("")
async def list_models(project: ProjectDep, services: ServicesDep,
                      provider: Annotated[str | None, Query(max_length=100)] = None,
                      capability: Annotated[list[Capability] | None, Query()] = None) -> dict:
    """Registry entries (shipped and the project's), each with its price from the price table;
    ``provider`` and ``capability`` (repeatable: all of them) filter."""
    registry = await registry_for(services, project.id)
    chosen = [e for e in registry.entries if (provider is None or e["provider"] == provider.lower())
              and all(e["capabilities"].get(c) for c in capability or ())]
    return {"catalogue_version": _catalogue_version(), "models": [registry.public(e) for e in chosen]}


def _catalogue_version() -> str:
    return model_registry.CATALOGUE_VERSION


@router.get("/{provider}/{name}")
async def get_model(provider: str, name: str, project: ProjectDep, services: ServicesDep, days: Days = None,
                    start: From = None, end: To = None) -> dict:
    """One model with its observed profile over the window (production spans) and its finished
    experiments' scores (± 95 % CI, n) per dataset or benchmark."""
    registry = await registry_for(services, project.id)
    entry = registry.get(provider, name)
    if entry is None or entry["name"] != name.lower():
        raise HTTPException(404, "no such model in the registry (GET /api/v1/models lists them)")
    try:
        win = window(days, start, end)
    except BadParam as exc:
        raise HTTPException(400, str(exc)) from None
    profiles = await asyncio.to_thread(observed_profiles, services.clickhouse, project.id, registry, win, entry)
    async with services.require_pg().connection() as conn:
        experiments = await model_quality.experiment_evidence(conn, project.id, registry, only=entry)
    for exp in experiments:
        exp.pop("score_values")
    key = f"{entry['provider']}/{entry['name']}"
    return {**registry.public(entry), "observed": profiles.get(key) or {"window": win.public(), "calls": 0},
            "experiments": experiments}


@router.post("", status_code=201)
async def create_model(body: ModelIn, project: AdminProjectDep, services: ServicesDep) -> dict:
    """Add a model to the project's registry, or override a shipped model's fields for this project."""
    entry = _checked(body.model_dump(exclude_none=True))
    spec = {k: entry[k] for k in EDITABLE if k in body.model_fields_set}
    async with services.require_pg().connection() as conn:
        cur = await conn.execute(
            "INSERT INTO project_models (project_id, provider, name, spec) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING", (project.id, entry["provider"], entry["name"], Jsonb(spec)))
    if cur.rowcount == 0:
        raise HTTPException(409, "name: this project already has this model; PATCH it")
    registry = await registry_for(services, project.id)
    return registry.public(registry.get(entry["provider"], entry["name"]))  # type: ignore[arg-type]


@router.patch("/{provider}/{name}")
async def update_model(provider: str, name: str, body: ModelFields, project: AdminProjectDep,
                       services: ServicesDep) -> dict:
    """Change fields of one of the project's models (those given; null clears a nullable field)."""
    provider, name = provider.lower(), name.lower()
    async with services.require_pg().connection() as conn:
        row = await (await conn.execute(
            "SELECT spec FROM project_models WHERE project_id = %s AND provider = %s AND name = %s FOR UPDATE",
            (project.id, provider, name))).fetchone()
        if row is None:
            raise HTTPException(404, "not one of your project's models (POST /api/v1/models adds it)")
        changes = body.model_dump(include=body.model_fields_set)
        spec = {**row[0], **changes}
        entry = _checked({**spec, "provider": provider, "name": name})
        spec = {k: entry[k] for k in EDITABLE if k in spec}
        await conn.execute("UPDATE project_models SET spec = %s, updated_at = now() WHERE project_id = %s "
                           "AND provider = %s AND name = %s", (Jsonb(spec), project.id, provider, name))
    registry = await registry_for(services, project.id)
    return registry.public(registry.get(provider, name))  # type: ignore[arg-type]


@router.delete("/{provider}/{name}")
async def delete_model(provider: str, name: str, project: AdminProjectDep, services: ServicesDep) -> dict:
    """Remove one of the project's models (a shipped model it overrode shows its shipped fields again)."""
    async with services.require_pg().connection() as conn:
        cur = await conn.execute("DELETE FROM project_models WHERE project_id = %s AND provider = %s AND name = %s",
                                 (project.id, provider.lower(), name.lower()))
    if cur.rowcount == 0:
        raise HTTPException(404, "not one of your project's models")
    return {"deleted": f"{provider.lower()}/{name.lower()}"}


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str | None = Field(None, max_length=64)
    benchmark: str | None = Field(None, max_length=100)
    eval_rule_id: str | None = Field(None, max_length=64)
    score: str | None = Field(None, max_length=200, description="the score name (needed when the runs have several)")


class ConstraintsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_cost_per_1k_calls: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_p95_latency_ms: float | None = Field(None, ge=0, allow_inf_nan=False)
    min_score: float | None = Field(None, allow_inf_nan=False)
    capabilities: list[Capability] = Field(default_factory=list, max_length=len(CAPABILITIES))


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: TaskIn
    constraints: ConstraintsIn = Field(default_factory=lambda: ConstraintsIn.model_validate({}))
    days: int = Field(30, ge=1, le=MAX_DAYS)


def _bad(field: str, message: str) -> HTTPException:
    return HTTPException(400, f"{field}: {message}")


@router.post("/recommend")
async def recommend(body: RecommendIn, project: ReadProjectDep, services: ServicesDep) -> dict:
    """Candidates on the quality / cost / latency Pareto frontier with their evidence, every other model
    with why it was excluded, a decision, and when the evidence cannot decide, the experiment that would."""
    task = body.task
    given = [k for k in ("dataset_id", "benchmark", "eval_rule_id") if getattr(task, k)]
    if len(given) != 1:
        raise _bad("task", "give exactly one of dataset_id, benchmark, eval_rule_id")
    registry = await registry_for(services, project.id)
    win = window(body.days, None, None)
    label: str | None
    if task.eval_rule_id:
        quality, label = await _rule_quality(services, project.id, registry, task.eval_rule_id, win)
        no_quality = f"no online scores of this eval rule on its calls in the last {body.days} days"
    else:
        quality, label = await _experiment_quality(services, project.id, registry, task)
        no_quality = "no experiment on this dataset" if task.dataset_id else f"no experiment on benchmark {task.benchmark}"
    profiles = await asyncio.to_thread(observed_profiles, services.clickhouse, project.id, registry, win, None, True)
    kept, excluded = model_recommend.judge(registry.entries, quality, profiles, body.constraints.model_dump(), no_quality)
    candidates = model_recommend.pareto(kept, excluded)
    decision, proposal = model_recommend.decide(candidates, task.model_dump())
    for c in candidates:
        c.pop("_values")
    excluded.sort(key=lambda x: x["model"])
    return {"task": {**task.model_dump(exclude_none=True), "score": label}, "window": win.public(),
            "candidates": candidates, "excluded": excluded, "decision": decision, "proposed_experiment": proposal}


async def _experiment_quality(services, project_id: str, registry: Registry, task: TaskIn
                              ) -> tuple[dict[str, dict[str, Any]], str | None]:
    async with services.require_pg().connection() as conn:
        if task.dataset_id:
            found = await (await conn.execute("SELECT 1 FROM datasets WHERE id = %s AND project_id = %s",
                                              (task.dataset_id, project_id))).fetchone()
            if found is None:
                raise _bad("task.dataset_id", "no such dataset in your project")
        runs = await model_quality.experiment_evidence(conn, project_id, registry, dataset_id=task.dataset_id,
                                                       benchmark=task.benchmark)
    names = sorted({n for r in runs for n in r["scores"]})
    score = task.score
    if score is None and len(names) > 1:
        raise _bad("task.score", f"required: the experiments on this task have scores {', '.join(names)}")
    score = score or (names[0] if names else None)
    quality: dict[str, dict[str, Any]] = {}
    for run in runs:  # newest first: a model's latest finished run on the task is its evidence
        s = run["scores"].get(score) if score else None
        if s is None or run["model"] in quality:
            continue
        quality[run["model"]] = {
            **s, "values": run["score_values"][score], "source": f"experiment {run['experiment_id']} ({run['name']})",
            "latency_p95": run["latency_ms"]["p95"],
            "cost_per_1k": run["cost_per_item"] * 1000 if run["cost_per_item"] is not None else None}
    return quality, score


async def _rule_quality(services, project_id: str, registry: Registry, rule_id: str, win: Window
                        ) -> tuple[dict[str, dict[str, Any]], str]:
    async with services.require_pg().connection() as conn:
        row = await (await conn.execute("SELECT evaluator, config FROM eval_rules WHERE id = %s AND project_id = %s",
                                        (rule_id, project_id))).fetchone()
    if row is None:
        raise _bad("task.eval_rule_id", "no such eval rule in your project")
    rule = {"evaluator": row[0], "config": row[1]}
    name = model_quality.rule_score_name(rule)
    scores = await asyncio.to_thread(model_quality.online_scores, services.clickhouse, project_id, registry, name,
                                     rule["evaluator"], win)
    return {k: {**v, "source": f"online scores {name!r} of eval rule {rule_id} ({v['n']})"} for k, v in scores.items()}, name
