"""The query API: every resource router under /api/v1, mounted by ``evalforge up`` and ``evalforge query``."""

from fastapi import APIRouter

from query_api.routers import compare, export, metrics, scores, sessions, traces

router = APIRouter(prefix="/api/v1")
for _module in (traces, sessions, metrics, scores, compare, export):
    router.include_router(_module.router)
