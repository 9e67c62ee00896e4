"""``GET /api/v1/leaderboards``: models / agents ranked on one dataset or benchmark (``evaluators.leaderboard``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from core.deps import ProjectDep, ServicesDep
from evaluators import benchmarks
from evaluators import leaderboard as board
from evaluators.experiments import store

router = APIRouter(prefix="/api/v1/leaderboards", tags=["experiments"])
_MAX_RUNS = 200  # the newest completed runs considered (each entry keeps its latest)


async def _completed(conn, project_id: str, dataset_id: str | None, benchmark: str | None) -> list[dict[str, Any]]:
    if dataset_id is not None:
        where, value = "dataset_id = %s", dataset_id
    else:
        assert benchmark is not None  # the route takes exactly one of them
        where, value = "benchmark->>'name' = %s", benchmark
    rows = await (await conn.execute(
        f"SELECT id FROM experiments WHERE project_id = %s AND status = 'completed' AND {where} "
        "ORDER BY finished_at DESC NULLS LAST, created_at DESC LIMIT %s", (project_id, value, _MAX_RUNS))).fetchall()
    return [await store.get(conn, r[0], project_id) for r in rows]


@router.get("")
async def get_leaderboard(project: ProjectDep, services: ServicesDep,
                          dataset_id: str | None = Query(None, max_length=64),
                          benchmark: str | None = Query(None, max_length=100),
                          score: str | None = Query(None, max_length=200, description="default: the score most entries have")
                          ) -> dict:
    """Entries ranked by mean score (± 95 % CI, n), cost per 1,000 items, p50 latency; Bradley–Terry
    ratings from per-item pairwise outcomes."""
    if (dataset_id is None) == (benchmark is None):
        raise HTTPException(422, "dataset_id / benchmark: give exactly one of them")
    if benchmark is not None and benchmark not in {b["name"] for b in benchmarks.list_benchmarks()}:
        raise HTTPException(422, f"benchmark: unknown benchmark {benchmark!r}")
    async with services.require_pg().connection() as conn:
        experiments = await _completed(conn, project.id, dataset_id, benchmark)
        latest: dict[str, dict[str, Any]] = {}
        for exp in experiments:
            latest.setdefault(board.entry_label(exp), exp)
        results = {exp["id"]: await store.results(conn, exp["id"]) for exp in latest.values()}
    out = await asyncio.to_thread(board.leaderboard, list(latest.values()), results, score)
    return {"dataset_id": dataset_id, "benchmark": benchmark, **out}
