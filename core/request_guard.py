"""What keeps a client's mistake or a struggling part from turning into a 500.

- :func:`check_request`: PostgreSQL refuses text holding a NUL character, and psycopg then raises
  mid-handler; a JSON body nested hundreds deep is stored and then cannot be encoded in the answer
  (or any later listing). Every router that is not ingest (whose spans and scores go to ClickHouse,
  where NUL is data, and which bounds depth itself) gets this dependency: a NUL anywhere in the JSON
  or form body, the query or the path, or a JSON body nested more than 64 levels, is a 400 naming
  the field before the handler runs. A batch endpoint that checks every item itself (keeping the good
  items and naming the bad ones, as ingest does) opts out of the NUL check with
  :func:`checks_nul_per_item`; the depth check still applies.
- :func:`install_failure_handlers`: a part that times out (Redis, PostgreSQL, the bus) is 503 +
  Retry-After, not a 500; a client that hangs up mid-upload is one log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

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
    """The dotted path of the first string (value or key) holding a NUL, else None; raises a 400
    naming the path where the value nests deeper than ``_MAX_DEPTH``."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if depth > _MAX_DEPTH:
        where = path if len(path) <= 80 else path[:80] + "…"
        raise HTTPException(400, f"{where or 'body'}: nested more than {_MAX_DEPTH} levels deep")
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


_PER_ITEM = "evalforge_checks_nul_per_item"


def checks_nul_per_item(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a batch route that refuses NUL characters item by item itself (apply it under the route
    decorator): one bad item must not cost the client the whole batch."""
    setattr(endpoint, _PER_ITEM, True)
    return endpoint


def _refuse(field: str) -> HTTPException:
    shown = field.replace("\x00", "\\0")
    return HTTPException(400, f"{shown}: must not contain a NUL character (\\u0000)")


async def check_request(request: Request) -> None:
    """A FastAPI dependency: 400 naming the field when the path, the query or the body holds a NUL,
    or a JSON body nests deeper than 64 levels."""
    if "\x00" in request.url.path or "%00" in request.url.path:
        raise _refuse("path")
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise _refuse(key)
    if request.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        return
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type and "x-www-form-urlencoded" not in content_type:
        return
    body = await request.body()  # cached: the handler's own body parsing read it already
    per_item = getattr(request.scope.get("endpoint"), _PER_ITEM, False)
    has_nul = not per_item and (b"\\u0000" in body or b"\x00" in body or b"%00" in body)
    may_be_deep = body.count(b"[") + body.count(b"{") > _MAX_DEPTH  # a cheap upper bound of the depth
    if not (has_nul or may_be_deep):
        return
    if "x-www-form-urlencoded" in content_type:
        for key, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
            if "\x00" in key or "\x00" in value:
                raise _refuse(key)
        return
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise HTTPException(400, f"body: nested more than {_MAX_DEPTH} levels deep") from None
        return  # the handler's validation reports it
    field = _find_nul(payload, "")  # also the depth check, which per-item routes keep
    if field is not None and not per_item:
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
