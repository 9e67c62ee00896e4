"""``/api/v1/ab-tests``: online A/B tests — create, list, read, start, ramp, stop, declare a winner,
results, and ``/sdk-config`` (what ``evalforge.ab`` caches). Storage in ``query_api.ab_store``,
assignment scheme in ``query_api.ab_allocation``, statistics in ``query_api.ab_results``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Iterator, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from core.auth import Project
from core.deps import ProjectDep, ServicesDep, current_project
from query_api import ab_allocation, ab_results, ab_store
from query_api.ab_store import ABTestIn, RampIn, WinnerIn

router = APIRouter(prefix="/api/v1/ab-tests", tags=["ab-tests"])

# The SDK fetches its configuration with the app's key, which is often an ingest-only key: the
# configuration (variant names, weights, configs) is what that app already runs, so any key may read it.
AnyKeyProjectDep = Annotated[Project, Depends(current_project)]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ab_store.NotFound:
        raise HTTPException(404, "no such A/B test") from None
    except ab_store.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@router.post("", status_code=201)
async def create_test(body: ABTestIn, project: ProjectDep, services: ServicesDep) -> dict:
    """A draft (or, with ``start: true``, running) test; its variants split traffic by weight."""
    with _errors():
        return ab_store.public(await ab_store.create(services.require_pg(), project.id, body))


@router.get("")
async def list_tests(project: ProjectDep, services: ServicesDep,
                     status: Literal["draft", "running", "stopped", "completed"] | None = None) -> dict:
    rows = await ab_store.list_tests(services.require_pg(), project.id, status)
    return {"tests": [ab_store.public(r) for r in rows]}


@router.get("/sdk-config")
async def sdk_config(project: AnyKeyProjectDep, services: ServicesDep) -> dict:
    """Served tests with their salt and hash-space segments (the assignment scheme is documented in
    ``query_api/ab_allocation.py``): running tests split traffic, stopped ones serve the control,
    completed ones their winner."""
    return ab_store.sdk_config(await ab_store.served_tests(services.require_pg(), project.id))


@router.get("/{test_id}")
async def get_test(test_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    with _errors():
        return ab_store.public(await ab_store.get(services.require_pg(), project.id, test_id))


@router.post("/{test_id}/start")
async def start_test(test_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    with _errors():
        return ab_store.public(await ab_store.transition(services.require_pg(), project.id, test_id,
                                                         ab_store.start_change))


@router.post("/{test_id}/ramp")
async def ramp_test(test_id: str, body: RampIn, project: ProjectDep, services: ServicesDep) -> dict:
    """New weights; units move only out of variants that shrink into variants that grow."""
    with _errors():
        return ab_store.public(await ab_store.transition(services.require_pg(), project.id, test_id,
                                                         ab_store.ramp_change(body)))


@router.post("/{test_id}/stop")
async def stop_test(test_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    """Stops the split: every unit gets the control until a winner is declared."""
    with _errors():
        return ab_store.public(await ab_store.transition(services.require_pg(), project.id, test_id,
                                                         ab_store.stop_change))


@router.post("/{test_id}/winner")
async def declare_winner(test_id: str, body: WinnerIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Records the winner (the test completes and serves it to everyone); with ``label`` (e.g.
    production), moves that prompt label to the winning variant's prompt version."""
    with _errors():
        return ab_store.public(await ab_store.transition(services.require_pg(), project.id, test_id,
                                                         ab_store.winner_change(body, project.id, project.user_id)))


@router.get("/{test_id}/results")
async def results(test_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    """Per variant n and the primary metric with its CI; each variant against the control with the
    test's p-value (scipy's), the sample size or sequential test of the design, guardrails, verdict."""
    with _errors():
        test = await ab_store.get(services.require_pg(), project.id, test_id)

    def compute() -> dict:
        return ab_results.build_results(
            test, lambda metric: ab_results.fetch_observations(services.clickhouse, project.id, test, metric))

    return await run_in_threadpool(compute)


@router.get("/{test_id}/assignment")
async def preview_assignment(test_id: str, project: ProjectDep, services: ServicesDep,
                             unit_id: Annotated[str, Query(min_length=1, max_length=1000)]) -> dict:
    """Which variant a unit gets (the same answer the SDKs compute), for support and debugging."""
    with _errors():
        test = await ab_store.get(services.require_pg(), project.id, test_id)
    bucket = ab_allocation.bucket_of(test["salt"], unit_id)
    index = next(s[2] for s in ab_store.served_segments(test) if s[0] <= bucket < s[1])
    return {"unit_id": unit_id, "bucket": bucket, "variant": test["variants"][index]["name"],
            "served": test["status"] != "draft"}
