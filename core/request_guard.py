"""What keeps a client's mistake or a struggling part from turning into a 500.

- :func:`reject_nul_bytes`: PostgreSQL refuses text holding a NUL character, and psycopg then raises
  mid-handler. Every router that is not ingest (whose spans and scores go to ClickHouse, where NUL
  is data) gets this dependency: a NUL anywhere in the JSON body, the query or the path is a 400
  naming the field, before the handler runs.
- :func:`install_failure_handlers`: a part that times out (Redis, PostgreSQL, the bus) is 503 +
  Retry-After, not a 500; a client that hangs up mid-upload is one log line.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import psycopg
import psycopg_pool
import redis.exceptions
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from core.bus import BusUnavailable

log = logging.getLogger(__name__)

_MAX_DEPTH = 64  # deeper than any admin payload; deeper bodies are refused rather than walked


def _find_nul(value: Any, path: str, depth: int = 0) -> str | None:
    """The dotted path of the first string (value or key) holding a NUL, else None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if depth > _MAX_DEPTH:
        raise HTTPException(400, f"{path or 'body'}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return where
            found = _find_nul(item, where, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_nul(item, f"{path}[{index}]", depth + 1)
            if found is not None:
                return found
    return None


def _refuse(field: str) -> HTTPException:
    shown = field.replace("\x00", "\\0")
    return HTTPException(400, f"{shown}: must not contain a NUL character (\\u0000)")


async def reject_nul_bytes(request: Request) -> None:
    """A FastAPI dependency: 400 naming the field when the path, the query or a JSON body holds a NUL."""
    if "\x00" in request.url.path or "%00" in request.url.path:
        raise _refuse("path")
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise _refuse(key)
    if request.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        return
    if "json" not in request.headers.get("content-type", ""):
        return
    body = await request.body()  # cached: the handler's own body parsing read it already
    if b"\\u0000" not in body and b"\x00" not in body:
        return
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # the handler's validation reports it
    field = _find_nul(payload, "")
    if field is not None:
        raise _refuse(field or "body")


def install_failure_handlers(app: FastAPI) -> None:
    """503 + Retry-After for a part that timed out or went away; one log line for a vanished client."""

    def unavailable(part: str, exc: Exception) -> JSONResponse:
        log.warning("%s unavailable during %s: %s: %s", part, "a request", type(exc).__name__, str(exc)[:200])
        return JSONResponse({"error": f"{part} is unavailable; retry later"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(redis.exceptions.RedisError)
    async def _redis(request: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
        return unavailable("Redis", exc)

    @app.exception_handler(psycopg.OperationalError)
    async def _pg(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return unavailable("PostgreSQL", exc)

    @app.exception_handler(psycopg_pool.PoolTimeout)
    async def _pg_pool(request: Request, exc: psycopg_pool.PoolTimeout) -> JSONResponse:
        return unavailable("PostgreSQL", exc)

    @app.exception_handler(BusUnavailable)
    async def _bus(request: Request, exc: BusUnavailable) -> JSONResponse:
        return unavailable("the bus", exc)

    @app.exception_handler(psycopg.DataError)
    async def _pg_data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # The NUL check above runs for every router; this catches a value that reached PostgreSQL
        # another way (a NUL made by decoding, a number out of range) without naming the field.
        log.info("PostgreSQL refused a value from %s %s: %s", request.method, request.url.path, str(exc)[:200])
        return JSONResponse({"error": f"request: a value PostgreSQL cannot store ({str(exc)[:200]})"}, status_code=400)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        log.info("%s %s: the client disconnected before its body was complete", request.method, request.url.path)
        return Response(status_code=400)
