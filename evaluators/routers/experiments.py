"""``/api/v1/experiments``: create (server-side: queued as a job for ``evalforge evaluate`` workers;
client-side: the SDK records results), progress and summary, per-item results, cancel, compare."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from core.bus import TOPIC_EXPERIMENT_JOBS, BusUnavailable
from core.deps import ProjectDep, ServicesDep
from core.request_guard import checks_nul_per_item
from evaluators import benchmarks
from evaluators import datasets as dataset_store
from evaluators.experiments import stats, store
from evaluators.experiments.runner import build_evaluators
from evaluators.experiments.targets import DEFAULT_MESSAGES, ModelTarget, render
from evaluators.experiments.worker import job_message
from evaluators.llm import check_base_url

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])


class EvaluatorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evaluator: str = Field(min_length=1, max_length=100)
    config: dict[str, Any] = Field(default_factory=dict)


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    dataset_id: str | None = Field(None, max_length=64)
    dataset_version: int | None = Field(None, ge=1, description="default: the dataset's latest version")
    split: dataset_store.Split | None = None
    benchmark: str | None = Field(None, max_length=100)
    limit: int | None = Field(None, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**31)
    subset: str | None = Field(None, max_length=200)
    target: ModelTarget | None = Field(None, description="a model the server calls; omit for a client-side run (SDK)")
    evaluators: list[EvaluatorSpec] = Field(default_factory=list, max_length=50)
    repetitions: int = Field(1, ge=1, le=100)
    max_concurrency: int = Field(16, ge=1, le=256)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(min_length=1, max_length=64)
    repetition: int = Field(0, ge=0)
    output: Any = None
    scores: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    latency_ms: float | None = Field(None, ge=0)
    input_tokens: int = Field(0, ge=0, le=2**31 - 1)
    output_tokens: int = Field(0, ge=0, le=2**31 - 1)
    cost: float | None = Field(None, ge=0)
    error: str | None = Field(None, max_length=10_000)
    trace_id: str | None = Field(None, max_length=64)


class ResultsIn(BaseModel):
    results: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class FinishIn(BaseModel):
    status: Literal["completed", "failed"] = "completed"
    error: str = Field("", max_length=2000)


class CompareIn(BaseModel):
    experiment_ids: list[str] = Field(min_length=2, max_length=20)


def _nf(exc: Exception) -> HTTPException:
    return HTTPException(404, str(exc))


@router.post("", status_code=201)
async def create_experiment(body: ExperimentIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Pin the dataset version (or benchmark draw), check target and evaluators, queue the run."""
    if (body.dataset_id is None) == (body.benchmark is None):
        raise HTTPException(400, "dataset_id: give exactly one of dataset_id and benchmark")
    try:
        for field in ("name", "dataset_id", "benchmark", "subset", "target", "evaluators", "metadata"):
            dataset_store.check_storable(getattr(body, field) if field != "target" or body.target is None
                                 else body.target.model_dump(), field)
    except dataset_store.DatasetError as exc:
        raise HTTPException(400, str(exc)) from None
    spec: dict[str, Any] = {"name": body.name, "split": body.split, "repetitions": body.repetitions,
                            "max_concurrency": body.max_concurrency, "metadata": body.metadata,
                            "evaluators": [e.model_dump() for e in body.evaluators],
                            "kind": "server" if body.target else "client",
                            "status": "queued" if body.target else "running"}
    try:
        build_evaluators(spec["evaluators"])
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    async with services.require_pg().connection() as conn:
        if body.benchmark is not None:
            try:
                bench = await asyncio.to_thread(benchmarks.load, body.benchmark, limit=body.limit, seed=body.seed,
                                                subset=body.subset)
            except benchmarks.UnknownBenchmark as exc:
                raise HTTPException(400, str(exc)) from None
            spec["benchmark"] = {"name": body.benchmark, "limit": body.limit, "seed": body.seed, "subset": body.subset}
            items = bench.items
        else:
            assert body.dataset_id is not None  # exactly one of dataset_id and benchmark: checked above
            try:
                ds = await dataset_store.get_dataset(conn, project.id, body.dataset_id, body.dataset_version, body.split)
            except dataset_store.NotFound:
                raise HTTPException(404, "dataset_id: no such dataset in your project") from None
            except dataset_store.DatasetError as exc:
                raise HTTPException(400, f"dataset_{exc}") from None
            spec.update(dataset_id=body.dataset_id, dataset_version=ds["version"])
            items = ds["items"]
        if not items:
            raise HTTPException(400, "dataset_id: no items to run (empty version or split)")
        if body.target is not None:
            try:
                await asyncio.to_thread(check_base_url, body.target.base_url, services.settings)  # resolves DNS
            except ValueError as exc:
                raise HTTPException(400, f"target.{exc}") from None
            if body.target.messages is not None or body.benchmark is None:
                template = [m.model_dump() for m in body.target.messages] if body.target.messages else DEFAULT_MESSAGES
                try:
                    render(template, items[0])
                except KeyError as exc:
                    raise HTTPException(400, f"target.messages: {exc.args[0]} (first item)") from None
            spec["target"] = body.target.model_dump()
        spec["total"] = len(items) * body.repetitions
        experiment_id = await store.create(conn, project.id, spec)
        if body.target is not None:
            try:
                await services.require_bus().publish(TOPIC_EXPERIMENT_JOBS, [job_message(experiment_id)])
            except BusUnavailable as exc:
                await store.set_status(conn, experiment_id, "failed", expect=("queued",), error="bus unavailable")
                raise HTTPException(503, f"bus: {exc}", headers={"Retry-After": str(int(exc.retry_after) or 1)}) from None
    out = {"id": experiment_id, "status": spec["status"], "total": spec["total"], "kind": spec["kind"],
           "dataset_version": spec.get("dataset_version")}
    if spec["kind"] == "client":  # the SDK runs these items itself
        out["items"] = [{"id": i.get("id") or store.benchmark_item_id(i), "input": i.get("input"),
                         "expected_output": i.get("expected_output"), "metadata": i.get("metadata") or {}}
                        for i in items]
    return out


_MAX_SUMMARIZED = 200  # a list with summaries reads every listed run's results


@router.get("")
async def list_experiments(project: ProjectDep, services: ServicesDep, limit: int = Query(100, ge=1, le=1000),
                           dataset_id: str | None = Query(None, max_length=64),
                           summary: bool = Query(False, description="add each run's main score (mean, 95 % CI, n) and total cost")
                           ) -> dict:
    """The project's experiments, newest first, with progress; ``dataset_id`` filters."""
    async with services.require_pg().connection() as conn:
        experiments = await store.list_for(conn, project.id, limit if not summary else min(limit, _MAX_SUMMARIZED), dataset_id)
        if summary:
            results = {e["id"]: await store.results(conn, e["id"]) for e in experiments}
    if summary:
        await asyncio.to_thread(_add_main_scores, experiments, results, services, project.id)
    return {"experiments": experiments}



def _add_main_scores(experiments: list[dict[str, Any]], results: dict[str, list[dict[str, Any]]], services,
                     project_id: str) -> None:
    """The list's one-line summary: the run's main score (the one most of its results carry, as the
    leaderboard picks it) with its bootstrap CI (finished runs only: a running one is polled, and its
    CI would change anyway), and the total cost."""
    from evaluators.leaderboard import primary_score

    # one ClickHouse query for every listed client-side run's model calls
    _usage_from_traces(services, project_id, [r for e in experiments if e["kind"] == "client" for r in results[e["id"]]])
    for exp in experiments:
        rs = results[exp["id"]]
        name = primary_score({exp["id"]: rs}, None)
        values = [v for _, _, v, _ in stats.score_values(rs).get(name or "", [])]
        low, high = stats.mean_ci(values) if exp["status"] in store.FINISHED else (None, None)
        exp["main_score"] = {"name": name, "mean": sum(values) / len(values), "ci_low": low, "ci_high": high,
                             "n": len(values)} if values else None
        costs = [r["cost"] for r in rs if r.get("cost") is not None]
        exp["cost"] = float(sum(costs)) if costs else None


@router.get("/{experiment_id}")
async def get_experiment(experiment_id: str, project: ProjectDep, services: ServicesDep,
                         ci: bool = Query(True, description="false: skip the bootstrap CIs (cheap progress polls)")) -> dict:
    """Status, progress {done, total} and the summary of the results so far."""
    async with services.require_pg().connection() as conn:
        try:
            exp = await store.get(conn, experiment_id, project.id)
        except store.NotFound as exc:
            raise _nf(exc) from None
        results = await store.results(conn, experiment_id)
    if exp["kind"] == "client":
        await asyncio.to_thread(_usage_from_traces, services, project.id, results)
    exp.pop("project_id", None)
    exp["progress"] = {"done": len(results), "total": exp["total"]}
    exp["summary"] = await asyncio.to_thread(stats.summarize, results, exp["repetitions"], ci)
    return exp


@router.get("/{experiment_id}/items")
async def experiment_items(experiment_id: str, project: ProjectDep, services: ServicesDep,
                           offset: int = Query(0, ge=0, le=100_000_000), limit: int = Query(1000, ge=1, le=10_000)) -> dict:
    """Per item x repetition: output, scores with reasons, latency, tokens, cost, error, trace id."""
    async with services.require_pg().connection() as conn:
        try:
            exp = await store.get(conn, experiment_id, project.id)
        except store.NotFound as exc:
            raise _nf(exc) from None
        results = await store.results(conn, experiment_id, offset=offset, limit=limit)
    if exp["kind"] == "client":
        await asyncio.to_thread(_usage_from_traces, services, project.id, results)
    return {"items": results}


def _usage_from_traces(services, project_id: str, results: list[dict[str, Any]]) -> None:
    """Client-side runs: tokens and cost of each item come from the model-call spans of its trace
    (the SDK's wrapped clients recorded them; the processor priced them), where the SDK sent none.
    The extra records of a call recorded twice (``ingest.duplicates``, ``spans.counted = 0``) are left out."""
    ids = [r["trace_id"] for r in results if r.get("trace_id") and not r.get("input_tokens") and r.get("cost") is None]
    if not ids or services.clickhouse is None:
        return
    rows = services.clickhouse.query(
        "SELECT trace_id, sum(input_tokens), sum(output_tokens), sumOrNull(cost), countIf(cost IS NOT NULL) "
        "FROM spans FINAL WHERE project_id = {p:String} AND trace_id IN {t:Array(String)} "
        "AND kind IN ('llm', 'embedding') AND counted = 1 GROUP BY trace_id",  # a call recorded twice counts once
        parameters={"p": project_id, "t": ids}).result_rows
    usage = {r[0]: r[1:] for r in rows}
    for r in results:
        if r.get("trace_id") in usage:
            tin, tout, cost, priced = usage[r["trace_id"]]
            r.update(input_tokens=int(tin), output_tokens=int(tout), cost=float(cost) if priced else None)


@router.post("/{experiment_id}/cancel")
async def cancel(experiment_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    """Stop a queued or running experiment; workers stop starting items within a flush interval."""
    async with services.require_pg().connection() as conn:
        try:
            exp = await store.get(conn, experiment_id, project.id)
        except store.NotFound as exc:
            raise _nf(exc) from None
        if not await store.set_status(conn, experiment_id, "cancelled", expect=("queued", "running")):
            raise HTTPException(409, f"status: the experiment is already {exp['status']}")
    return {"id": experiment_id, "status": "cancelled"}


@router.post("/{experiment_id}/results", status_code=202)
@checks_nul_per_item  # _unstorable names a result holding NUL; the others are kept
async def record_results(experiment_id: str, body: ResultsIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Client-side runs (SDK): results per item x repetition. Retries are idempotent; bad rows are
    listed in ``rejected`` and the rest kept."""
    async with services.require_pg().connection() as conn:
        try:
            exp = await store.get(conn, experiment_id, project.id)
        except store.NotFound as exc:
            raise _nf(exc) from None
        if exp["kind"] != "client" or exp["status"] != "running":
            raise HTTPException(409, f"status: results are recorded for running client-side experiments (this one is {exp['kind']}, {exp['status']})")
        items, _ = await store.experiment_items(conn, exp)
        positions = {i["id"]: p for p, i in enumerate(items)}
        by_id = {i["id"]: i for i in items}
        good, rejected = [], []
        for n, raw in enumerate(body.results):
            try:
                r = ResultIn.model_validate(raw)
            except ValueError as exc:
                err = exc.errors()[0]  # type: ignore[attr-defined]
                rejected.append({"index": n, "error": f"results[{n}].{'.'.join(map(str, err['loc']))}: {err['msg']}"})
                continue
            if r.item_id not in positions:
                rejected.append({"index": n, "error": f"results[{n}].item_id: not an item of this experiment"})
            elif r.repetition >= exp["repetitions"]:
                rejected.append({"index": n, "error": f"results[{n}].repetition: must be below {exp['repetitions']}"})
            elif bad := _bad_score(r.scores):
                rejected.append({"index": n, "error": f"results[{n}].{bad}"})
            elif unstorable := _unstorable(r):
                rejected.append({"index": n, "error": f"results[{n}].{unstorable}"})
            else:
                item = by_id[r.item_id]
                good.append({**r.model_dump(), "position": positions[r.item_id], "input": item.get("input"),
                             "expected_output": item.get("expected_output")})
        if not good:
            raise HTTPException(400, rejected[0]["error"])
        inserted = await store.insert_results(conn, experiment_id, good)
    return {"accepted": len(good), "inserted": inserted, "rejected": rejected}


def _unstorable(r: ResultIn) -> str | None:
    for field in ("item_id", "output", "scores", "error", "trace_id", "latency_ms", "cost"):
        try:
            dataset_store.check_storable(getattr(r, field), field)
        except dataset_store.DatasetError as exc:
            return str(exc)
    return None


def _bad_score(scores: list[dict[str, Any]]) -> str | None:
    for i, s in enumerate(scores):
        if not isinstance(s.get("name"), str) or not s["name"]:
            return f"scores[{i}].name: required"
        v = s.get("value")
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            return f"scores[{i}].value: a finite number or null"
        if s.get("passed") is not None and not isinstance(s["passed"], bool):
            return f"scores[{i}].passed: true, false or null"
    return None


@router.post("/{experiment_id}/finish")
async def finish(experiment_id: str, body: FinishIn, project: ProjectDep, services: ServicesDep) -> dict:
    async with services.require_pg().connection() as conn:
        try:
            exp = await store.get(conn, experiment_id, project.id)
        except store.NotFound as exc:
            raise _nf(exc) from None
        if exp["kind"] != "client" or not await store.set_status(conn, experiment_id, body.status, expect=("running",),
                                                                 error=body.error):
            raise HTTPException(409, f"status: the experiment is {exp['kind']}-side and {exp['status']}")
    return {"id": experiment_id, "status": body.status}


@router.post("/compare")
async def compare(body: CompareIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Paired comparison of runs on the same items; the first id is the baseline."""
    if len(set(body.experiment_ids)) != len(body.experiment_ids):
        raise HTTPException(400, "experiment_ids: listed twice")
    runs = []
    async with services.require_pg().connection() as conn:
        for i, eid in enumerate(body.experiment_ids):
            try:
                exp = await store.get(conn, eid, project.id)
            except store.NotFound:
                raise HTTPException(404, f"experiment_ids[{i}]: no such experiment in your project") from None
            runs.append({"id": eid, "name": exp["name"], "exp": exp, "results": await store.results(conn, eid)})
    first = runs[0]["exp"]
    for i, run in enumerate(runs[1:], 1):
        if not store.same_items(run["exp"], first):
            raise HTTPException(400, f"experiment_ids[{i}]: ran on other items than experiment_ids[0] "
                                     "(dataset version, split or benchmark draw differ)")
    result = await asyncio.to_thread(stats.compare, runs)
    result["experiments"] = [{"id": r["id"], "name": r["name"], "status": r["exp"]["status"]} for r in runs]
    return result
