"""Ingest endpoints: OTLP/HTTP traces, JSON span batches, scores.

2xx means every accepted record is on the bus. Rejected spans of a mixed batch are reported while
the good ones are kept; nothing the client sends can produce a 5xx.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from core.bus import TOPIC_SCORES, TOPIC_SPANS, BusUnavailable
from core.deps import IngestProjectDep, ServicesDep
from core.payloads import offload_payloads
from core.ratelimit import RateLimiter
from core.services import Services
from core.span import encode
from core.tokens import fill_missing_tokens
from ingest import metrics, native
from ingest.body import read_body
from ingest.json_batch import BatchError, decode_span_batch, validate_score
from ingest.normalize import Limits
from ingest.otlp import (
    JSON, PROTOBUF, DecodeResult, OTLPDecodeError, UnsupportedContentType, decode_otlp, encode_error, encode_response,
    media_type,
)

router = APIRouter(tags=["ingest"])


def _limits(services: Services) -> Limits:
    return Limits(max_attribute_bytes=services.settings.max_attribute_bytes)


def _limiter(services: Services) -> RateLimiter:
    limiter = services.extras.get("rate_limiter")
    if limiter is None:
        s = services.settings
        limiter = services.extras["rate_limiter"] = RateLimiter(services.redis, s.rate_limit_spans_per_second, s.rate_limit_burst)
    return limiter


async def _admit(services: Services, project_id: str, count: int) -> None:
    """Spans-per-request limit and the project's rate limit; raises HTTPException (413 / 429)."""
    s = services.settings
    if count > s.max_spans_per_request:
        metrics.SPANS_REJECTED.labels("too_many_spans").inc(count)
        raise HTTPException(413, f"{count} spans in one request; the limit is {s.max_spans_per_request}")
    allowed, retry_after = await _limiter(services).allow(project_id, count)
    if not allowed:
        metrics.SPANS_REJECTED.labels("rate_limited").inc(count)
        raise HTTPException(429, "rate limit exceeded for this project",
                            headers={"Retry-After": str(max(1, round(retry_after + 0.5)))})


async def _publish(services: Services, messages: list[tuple[bytes, bytes]]) -> None:
    """Produce ``(trace id, record)`` messages to ``spans.raw``; returns once all are acknowledged."""
    started = time.perf_counter()
    try:
        await services.bus.publish(TOPIC_SPANS, messages)
    except BusUnavailable as exc:
        metrics.SPANS_REJECTED.labels("bus_unavailable").inc(len(messages))
        raise HTTPException(503, "the span bus is unavailable; retry later",
                            headers={"Retry-After": str(max(1, round(exc.retry_after)))}) from None
    metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
    metrics.SPANS_ACCEPTED.inc(len(messages))


async def _accept(services: Services, project_id: str, records: list[dict[str, Any]]) -> None:
    """Admit, offload big payloads, publish keyed by trace id; raises HTTPException (413 / 429 / 503)."""
    await _admit(services, project_id, len(records))
    threshold = services.settings.payload_offload_bytes
    if any(len(r.get("input") or "") > threshold or len(r.get("output") or "") > threshold for r in records):
        def offload(r: dict[str, Any]) -> int:
            fill_missing_tokens(r)  # before the text leaves the record: the processor could not count it then
            return offload_payloads(r, services.blobs, threshold)

        moved = await asyncio.to_thread(lambda: sum(offload(r) for r in records))
        metrics.OFFLOADED_BYTES.inc(moved)
    await _publish(services, [(r["trace_id"].encode(), encode(r)) for r in records])


async def _accept_native(services: Services, project_id: str, messages: list[tuple[bytes, bytes]]) -> None:
    """:func:`_accept` for messages the native path already encoded (nothing to offload)."""
    await _admit(services, project_id, len(messages))
    await _publish(services, messages)


@router.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, optionally gzip)")
async def otlp_traces(request: Request, project: IngestProjectDep, services: ServicesDep) -> Response:
    content_type = request.headers.get("content-type")
    try:
        kind = media_type(content_type)
    except UnsupportedContentType as exc:
        metrics.REQUESTS.labels("otlp", "415").inc()
        return Response(encode_error(str(exc), JSON), status_code=415, media_type=JSON)
    try:
        body = await read_body(request, services.settings.max_body_bytes)
    except HTTPException as exc:
        metrics.REQUESTS.labels("otlp", str(exc.status_code)).inc()
        return Response(encode_error(str(exc.detail), kind), status_code=exc.status_code, media_type=kind)
    if not body.strip():
        return Response(encode_response(0, "", kind), media_type=kind)
    limits = _limits(services)
    messages = None
    if kind == PROTOBUF:  # the compiled path, when it can do this request exactly
        messages = native.encode_otlp(body, project.id, limits, services.settings.payload_offload_bytes,
                                      datetime.now(timezone.utc))
    if messages is None:
        try:
            result = decode_otlp(body, kind, project.id, limits=limits)
        except OTLPDecodeError as exc:
            metrics.REQUESTS.labels("otlp", "400").inc()
            return Response(encode_error(str(exc), kind), status_code=400, media_type=kind)
    else:
        result = DecodeResult()  # nothing rejected: the native path declines any request with a bad span
    if result.rejected:
        metrics.SPANS_REJECTED.labels("invalid").inc(len(result.rejected))
    if messages or result.records:
        try:
            if messages:
                await _accept_native(services, project.id, messages)
            else:
                await _accept(services, project.id, result.records)
        except HTTPException as exc:
            metrics.REQUESTS.labels("otlp", str(exc.status_code)).inc()
            return Response(encode_error(str(exc.detail), kind, code=14 if exc.status_code == 503 else 8),
                            status_code=exc.status_code, media_type=kind, headers=exc.headers)
    metrics.REQUESTS.labels("otlp", "200").inc()
    return Response(encode_response(len(result.rejected), result.error_message(), kind), media_type=kind)


@router.post("/api/v1/spans", summary="JSON span batch for non-OTel clients")
async def json_spans(request: Request, project: IngestProjectDep, services: ServicesDep) -> JSONResponse:
    body = await read_body(request, services.settings.max_body_bytes)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body: invalid JSON: {exc}") from None
    try:
        records, rejected = decode_span_batch(payload, project.id, limits=_limits(services))
    except BatchError as exc:
        raise HTTPException(400, str(exc)) from None
    if rejected:
        metrics.SPANS_REJECTED.labels("invalid").inc(len(rejected))
    if records:
        await _accept(services, project.id, records)
    metrics.REQUESTS.labels("json", "200").inc()
    return JSONResponse({"accepted": len(records), "rejected": [r.as_dict() for r in rejected]})


@router.post("/api/v1/scores", summary="Feedback / human / SDK scores for a trace or span")
async def post_scores(request: Request, project: IngestProjectDep, services: ServicesDep) -> JSONResponse:
    body = await read_body(request, services.settings.max_body_bytes)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body: invalid JSON: {exc}") from None
    items = payload.get("scores") if isinstance(payload, dict) and "scores" in payload else [payload]
    if not isinstance(items, list) or not items:
        raise HTTPException(400, "scores: expected a score object or {\"scores\": [...]}")
    rows, errors = [], []
    for index, item in enumerate(items):
        try:
            rows.append(validate_score(item, project.id))
        except ValueError as exc:
            errors.append({"index": index, "error": str(exc)})
    if errors and not rows:
        raise HTTPException(400, "; ".join(f"score {e['index']}: {e['error']}" for e in errors[:5]))
    try:
        await services.bus.publish(TOPIC_SCORES, [(r["trace_id"].encode(), orjson.dumps(r, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)) for r in rows])
    except BusUnavailable as exc:
        raise HTTPException(503, "the bus is unavailable; retry later",
                            headers={"Retry-After": str(max(1, round(exc.retry_after)))}) from None
    return JSONResponse({"accepted": len(rows), "ids": [r["score_id"] for r in rows], "rejected": errors},
                        status_code=202 if rows else 400)
