"""``POST /api/v1/compare``: A/B significance test between two filters on one metric."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from core.deps import ReadProjectDep, ServicesDep
from query_api.compare import parse_body, run_compare
from query_api.routers.common import http_errors

router = APIRouter(tags=["compare"])
MAX_BODY = 64 * 1024


@router.post("/compare")
async def compare(request: Request, project: ReadProjectDep, services: ServicesDep) -> dict:
    """Body: {"metric", "a": {filters}, "b": {filters}, "from", "to", "test", "alpha", "score_name"}.
    Answers per-arm n / mean / median with confidence intervals, the test used, p-value, effect size
    and verdict (a_better | b_better | no_significant_difference | insufficient_data)."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HTTPException(413, f"body: larger than {MAX_BODY} bytes")
    try:
        body = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body: invalid JSON: {exc}") from None
    with http_errors():
        spec = parse_body(body)
        return await run_in_threadpool(run_compare, services.clickhouse, project.id, spec)
