"""Calling an ingest HTTP handler in-process, for the transports and drop-in endpoints built on it.

OTLP/gRPC (``ingest.grpc_server``) and the Langfuse score endpoints (``ingest.routers.langfuse``) do
not have an ingest path of their own: they hand the request to the very handler of ``POST /v1/traces``
or ``POST /api/v1/scores`` with a request built here, so every limit, admission rule and the
"success only once the bus acknowledged" promise of those handlers hold for them unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from core.auth import Project
from core.services import Services

Handler = Callable[[Request, Project, Services], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the handler answered."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


def _request(path: str, body: bytes, content_type: str, client: tuple[str, int] | None) -> Request:
    scope: dict[str, Any] = {
        "type": "http", "http_version": "2", "method": "POST", "scheme": "http", "root_path": "",
        "path": path, "raw_path": path.encode(), "query_string": b"", "server": None, "client": client,
        "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
    }
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


async def call(handler: Handler, path: str, body: bytes, content_type: str, project: Project, services: Services,
               client: tuple[str, int] | None = None) -> Answer:
    """Run ``handler`` on a POST of ``body`` to ``path``; an HTTPException it raises is an answer too."""
    try:
        response = await handler(_request(path, body, content_type, client), project, services)
    except HTTPException as exc:
        return Answer(exc.status_code, orjson.dumps({"error": exc.detail}),
                      {k.lower(): v for k, v in (exc.headers or {}).items()})
    return Answer(response.status_code, bytes(response.body), {k.lower(): v for k, v in response.headers.items()})
