"""OTLP/HTTP paths other clients use: the Langfuse and Opik trace paths, and metrics / logs.

- ``/api/public/otel/v1/traces``: the Langfuse SDKs (Basic auth, see ``core.auth_header``).
- ``/api/v1/private/otel/v1/traces``: Opik's OTel exporter (``Authorization: <key>``). Its
  ``projectName`` header is not needed: the key decides the project, whatever the header names.
- ``/v1/metrics``, ``/v1/logs`` (also under Opik's prefix, where its ``OTEL_EXPORTER_OTLP_ENDPOINT``
  sends them): a success with the data counted and dropped (``ingest.otlp_discard``).

The trace paths are the same handler as ``POST /v1/traces``: one ingest path, same limits and the same
promise (2xx only once the bus acknowledged).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from core.deps import IngestProjectDep, ServicesDep
from ingest import metrics
from ingest.otlp import JSON, OTLPDecodeError, UnsupportedContentType, encode_error, encode_response, media_type
from ingest.otlp_discard import discard
from ingest.routers.ingest import otlp_traces
from ingest.routers.request_body import drop_in_body

router = APIRouter(tags=["ingest"])

LANGFUSE_TRACES = "/api/public/otel/v1/traces"
OPIK_TRACES = "/api/v1/private/otel/v1/traces"

router.add_api_route(LANGFUSE_TRACES, otlp_traces, methods=["POST"],
                     summary="OTLP/HTTP traces from the Langfuse SDKs (same as /v1/traces)")
router.add_api_route(OPIK_TRACES, otlp_traces, methods=["POST"],
                     summary="OTLP/HTTP traces from Opik's OTel exporter (same as /v1/traces)")
# A trailing slash is the same endpoint, not a 307 redirect (exporters do not re-POST the body).
for _path in (LANGFUSE_TRACES, OPIK_TRACES):
    router.add_api_route(_path + "/", otlp_traces, methods=["POST"], include_in_schema=False)


async def _discard(signal: str, request: Request, services) -> Response:
    try:
        kind = media_type(request.headers.get("content-type"))
    except UnsupportedContentType as exc:
        metrics.REQUESTS.labels(signal, "415").inc()
        return Response(encode_error(str(exc), JSON), status_code=415, media_type=JSON)
    try:
        body = await drop_in_body(request, services)
        discard(signal, body, kind)
    except HTTPException as exc:
        metrics.REQUESTS.labels(signal, str(exc.status_code)).inc()
        return Response(encode_error(str(exc.detail), kind), status_code=exc.status_code, media_type=kind)
    except OTLPDecodeError as exc:
        metrics.REQUESTS.labels(signal, "400").inc()
        return Response(encode_error(str(exc), kind), status_code=400, media_type=kind)
    metrics.REQUESTS.labels(signal, "200").inc()
    return Response(encode_response(0, "", kind), media_type=kind)  # every empty Export*Response is alike


@router.post("/v1/metrics", summary="OTLP/HTTP metrics: acknowledged, counted and not stored")
@router.post("/v1/metrics/", include_in_schema=False)
@router.post("/api/v1/private/otel/v1/metrics", include_in_schema=False)  # Opik's OTEL_EXPORTER_OTLP_ENDPOINT
async def otlp_metrics(request: Request, project: IngestProjectDep, services: ServicesDep) -> Response:
    return await _discard("metrics", request, services)


@router.post("/v1/logs", summary="OTLP/HTTP logs: acknowledged, counted and not stored")
@router.post("/v1/logs/", include_in_schema=False)
@router.post("/api/v1/private/otel/v1/logs", include_in_schema=False)
async def otlp_logs(request: Request, project: IngestProjectDep, services: ServicesDep) -> Response:
    return await _discard("logs", request, services)
