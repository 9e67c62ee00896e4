"""``GET /api/v1/export``: spans for a filter as Parquet, CSV or JSONL, streamed."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from core.deps import ProjectDep, ServicesDep
from query_api.export import FORMATS, export_stream
from query_api.filters import parse_filters
from query_api.routers.common import http_errors, int_param, one_of
from query_api.routers.openapi_params import EXPORT, openapi_parameters

router = APIRouter(tags=["export"])


@router.get("/export", openapi_extra=openapi_parameters(EXPORT))
def export(request: Request, project: ProjectDep, services: ServicesDep) -> StreamingResponse:
    """format: parquet | csv | jsonl (default jsonl); payloads: true to add full input / output
    (from the blob store when offloaded), attributes and events; limit: max rows (default 1,000,000);
    filters as on /traces, applied to each span."""
    qp = request.query_params
    with http_errors():
        f = parse_filters(qp, allowed_extra=("format", "payloads", "limit"))
        fmt = one_of(qp, "format", tuple(FORMATS), "jsonl")
        payloads = one_of(qp, "payloads", ("true", "false", "1", "0"), "false") in ("true", "1")
        limit = int_param(qp, "limit", 1_000_000, 1, 10_000_000)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        export_stream(services.clickhouse, services.blobs, project.id, f, fmt=fmt, payloads=payloads, limit=limit),
        media_type=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="spans-{stamp}.{fmt}"'},
    )
