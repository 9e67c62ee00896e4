"""``GET /api/v1/benchmarks``: the benchmarks an experiment can run on (``evaluators.benchmarks``)."""

from __future__ import annotations

from fastapi import APIRouter

from core.deps import ProjectDep
from evaluators import benchmarks

router = APIRouter(prefix="/api/v1/benchmarks", tags=["experiments"])


@router.get("")
async def list_benchmarks(project: ProjectDep) -> dict:
    """Name, description, item count, metric, where the data comes from and its licence."""
    return {"benchmarks": benchmarks.list_benchmarks()}
