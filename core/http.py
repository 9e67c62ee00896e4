"""Builds the FastAPI app of a service (or of ``evalforge up``, which mounts several)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.request_guard import install_failure_handlers, reject_nul_bytes
from core.services import Services, open_services
from core.settings import Settings
from core.workers import WorkerState, supervise

log = logging.getLogger(__name__)

# A background task gets the services and an event that is set at shutdown; it must return then.
BackgroundTask = Callable[[Services, asyncio.Event], Awaitable[None]]


def build_app(
    settings: Settings,
    *,
    parts: frozenset[str],
    routers: Sequence[APIRouter] = (),
    background: Sequence[BackgroundTask] = (),
    migrate: bool = False,
    title: str = "EvalForge",
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # The CLI opens the services before serving, to report bad configuration in one line.
        services = getattr(app.state, "services", None) or await open_services(settings, parts, migrate=migrate)
        app.state.services = services
        stopping = asyncio.Event()
        tasks: list[asyncio.Task] = []
        # A worker that dies is restarted with backoff and fails /readyz meanwhile (never silent).
        app.state.workers = [WorkerState(getattr(job, "__name__", "task")) for job in background]
        try:
            tasks = [asyncio.create_task(supervise(job, services, stopping, state), name=state.name)
                     for job, state in zip(background, app.state.workers, strict=True)]
            yield
        finally:
            stopping.set()
            # Background workers drain (flush + commit) before the parts close under them.
            for task in tasks:
                try:
                    await asyncio.wait_for(task, 30)
                except Exception:
                    log.exception("background task %s did not stop cleanly", task.get_name())
            await services.close()

    app = FastAPI(title=title, lifespan=lifespan, version="0.1.0")
    install_error_handlers(app)
    install_failure_handlers(app)
    app.include_router(health_router())
    for router in routers:
        # Ingest stores what it is sent in ClickHouse (a NUL is data there); the rest reaches PostgreSQL.
        guard = [] if "ingest" in router.tags else [Depends(reject_nul_bytes)]
        app.include_router(router, dependencies=guard)
    return app


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz(request: Request) -> dict:
        """Liveness, with each part's status."""
        parts = await request.app.state.services.health()
        status = "ok" if all(p["status"] == "ok" for p in parts.values()) else "degraded"
        return {"status": status, "parts": parts}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: 503 while any part is down or a background worker is not running."""
        parts = await request.app.state.services.health()
        workers = {w.name: w.as_dict() for w in getattr(request.app.state, "workers", ())}
        ok = all(p["status"] == "ok" for p in parts.values()) and all(w["status"] == "running" for w in workers.values())
        body = {"status": "ok" if ok else "unavailable", "parts": parts, "workers": workers}
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def install_error_handlers(app: FastAPI) -> None:
    """Client errors are 400 with the offending field named; never a 422 or a 5xx for user input."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "request"
        return JSONResponse(
            {"error": f"{field}: {first.get('msg', 'invalid value')}", "field": field},
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))
