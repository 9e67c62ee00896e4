"""``GET /api/v1/traces`` (filtered, sorted, cursor-paged list) and ``GET /api/v1/traces/{trace_id}``."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from core import pricing
from core.deps import ProjectDep, ServicesDep
from query_api.routers.model_prices import project_overrides
from query_api.filters import BadParam, parse_filters
from query_api.routers.common import http_errors, int_param, one_of, text_param
from query_api.routers.openapi_params import TRACES as TRACES_PARAMETERS, openapi_parameters
from query_api.trace_lean import get_trace_lean
from query_api.traces_sql import SORTS, get_span, get_trace, list_traces

router = APIRouter(tags=["traces"])
LIST_PARAMS = ("sort", "order", "limit", "cursor")


@router.get("/traces", openapi_extra=openapi_parameters(TRACES_PARAMETERS))
def traces(request: Request, project: ProjectDep, services: ServicesDep) -> dict:
    """Traces of the key's project. Filters: from, to, model, provider, name, status, user_id,
    session_id, tag, environment, release, kind, prompt_name, prompt_version, min/max_latency_ms,
    min/max_cost, score_name, min/max_score, q (text in previews). Multi-valued filters repeat the
    parameter. sort: start_time | duration_ms | cost | total_tokens; order: desc | asc."""
    qp = request.query_params
    with http_errors():
        f = parse_filters(qp, allowed_extra=LIST_PARAMS)
        return list_traces(
            services.clickhouse, project.id, f,
            sort=one_of(qp, "sort", tuple(SORTS), "start_time"), order=one_of(qp, "order", ("desc", "asc"), "desc"),
            limit=int_param(qp, "limit", 50, 1, 500), cursor=text_param(qp, "cursor") or None,
        )


@router.get("/traces/{trace_id}")
def trace_detail(trace_id: str, request: Request, project: ProjectDep, services: ServicesDep) -> dict:
    """All spans of one trace as a tree, with full payloads, events and scores; 404 if unknown.
    ``payloads=false``: previews only (no input, output, attributes, events), for big traces whose
    spans are then opened one at a time with ``/traces/{trace_id}/spans/{span_id}``.
    ``view=lean``: the same summary and scores, and instead of ``spans`` a ``span_columns`` object
    (field -> one value per span, in start order; parent ids give the tree) holding only span_id,
    parent_span_id, name, kind, model, status, status_message, start/end_time, duration_ms, cost,
    total_tokens and the previews: what the dashboard's trace page draws first."""
    if len(trace_id) > 128:  # no stored trace id is this long
        raise HTTPException(404, "trace not found")
    with http_errors(f"trace {trace_id[:64]!r} not found"):
        for key in request.query_params.keys():
            if key not in ("payloads", "view"):
                raise BadParam(key, "unknown parameter")
        payloads = one_of(request.query_params, "payloads", ("true", "false", "1", "0"), "true") in ("true", "1")
        if one_of(request.query_params, "view", ("full", "lean"), "full") == "lean":
            if request.query_params.get("payloads") in ("true", "1"):
                raise BadParam("payloads", "view=lean carries no payloads; open a span for them")
            return get_trace_lean(services.clickhouse, project.id, trace_id)
        return get_trace(services.clickhouse, services.blobs, project.id, trace_id, payloads=payloads)


@router.get("/traces/{trace_id}/spans/{span_id}")
async def span_detail(trace_id: str, span_id: str, project: ProjectDep, services: ServicesDep) -> dict:
    """One span with its full input / output (from the blob store when offloaded), attributes,
    events and scores; 404 if the project's trace has no such span. ``cost_details``: USD per token
    type at the project's current prices, for spans whose cost was computed (not user-reported)."""
    if len(trace_id) > 128 or len(span_id) > 128:
        raise HTTPException(404, "span not found")
    with http_errors(f"span {span_id[:64]!r} of trace {trace_id[:64]!r} not found"):
        span = await run_in_threadpool(get_span, services.clickhouse, services.blobs, project.id, trace_id, span_id)
    span["cost_details"] = None
    if span["cost_source"] == "computed":
        usage = pricing.Usage(input_tokens=span["input_tokens"], output_tokens=span["output_tokens"],
                              cache_read_tokens=span["cache_read_tokens"],
                              cache_creation_tokens=span["cache_creation_tokens"],
                              reasoning_tokens=span["reasoning_tokens"])
        result = pricing.compute_call_cost(span["provider"], span["model"], span["request_model"], usage,
                                           overrides=await project_overrides(services, project.id))
        span["cost_details"] = {k: v for k, v in result.details.items() if k in pricing.TOKEN_TYPES} or None
    return span
