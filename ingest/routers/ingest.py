"""Ingest endpoints: OTLP/HTTP traces, JSON span batches, scores.

2xx means every accepted record is on the bus. Rejected spans of a mixed batch are reported while
the good ones are kept; nothing the client sends can produce a 5xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers

from core.bus import TOPIC_SCORES, TOPIC_SPANS, BusUnavailable
from core.deps import IngestProjectDep, ServicesDep
from core.payloads import offload_payloads
from core.ratelimit import RateLimiter
from core.services import Services
from core.span import encode
from core.tokens import fill_missing_tokens
from ingest import metrics, native, openapi
from ingest.admission import (
    ClientGone,
    content_encoding,
    decompress,
    inflight,
    off_loop,
    read_raw_body,
)
from ingest.duplicates import mark_duplicate_calls, mark_duplicate_messages
from ingest.json_batch import BatchError, decode_span_batch, validate_score
from ingest.normalize import Limits
from ingest.otlp import (
    JSON,
    PROTOBUF,
    DecodeResult,
    OTLPDecodeError,
    UnsupportedContentType,
    decode_otlp,
    encode_error,
    encode_response,
    media_type,
)

router = APIRouter(tags=["ingest"])
log = logging.getLogger(__name__)
# A usual request (hundreds of spans) is one bus call; a 16 MiB one is cut so the loop breathes between.
_PUBLISH_SLICE_RECORDS = 1024
_PUBLISH_SLICE_BYTES = 1024 * 1024


def _limits(services: Services) -> Limits:
    s = services.settings
    return Limits(max_attribute_bytes=s.max_attribute_bytes, max_attributes=s.max_attributes_per_span,
                  max_tags=s.max_tags_per_span)


def _limiter(services: Services) -> RateLimiter:
    limiter = services.extras.get("rate_limiter")
    if limiter is None:
        s = services.settings
        limiter = services.extras["rate_limiter"] = RateLimiter(services.redis, s.rate_limit_spans_per_second, s.rate_limit_burst)
    return limiter


async def _admit(services: Services, project_id: str, count: int, *, what: str = "spans",
                 limit: int | None = None, rejected: Any = metrics.SPANS_REJECTED) -> None:
    """Records-per-request limit and the project's rate limit (spans and scores share it);
    raises HTTPException (413 / 429)."""
    limit = services.settings.max_spans_per_request if limit is None else limit
    if count > limit:
        rejected.labels(f"too_many_{what}").inc(count)
        raise HTTPException(413, f"{what}: {count} in one request; the limit is {limit}")
    allowed, retry_after = await _limiter(services).allow(project_id, count)
    if not allowed:
        rejected.labels("rate_limited").inc(count)
        raise HTTPException(429, "rate limit exceeded for this project",
                            headers={"Retry-After": str(max(1, round(retry_after + 0.5)))})


async def _publish(services: Services, messages: list[tuple[bytes, bytes]]) -> None:
    """Produce ``(trace id, record)`` messages to ``spans.raw``; returns once all are acknowledged."""
    started = time.perf_counter()
    try:
        # In slices: the client packs and parses a whole call on the event loop (8,000 records of 2 KiB
        # in one Redis pipeline stalled it ~160 ms; in slices of 500, ~20 ms, and the total was faster).
        start = 0
        while start < len(messages):
            end, size = start, 0
            while end < len(messages) and end - start < _PUBLISH_SLICE_RECORDS and size < _PUBLISH_SLICE_BYTES:
                size += len(messages[end][1])
                end += 1
            await services.require_bus().publish(TOPIC_SPANS, messages[start:end])
            start = end
    except BusUnavailable as exc:
        metrics.SPANS_REJECTED.labels("bus_unavailable").inc(len(messages))
        raise HTTPException(503, "the span bus is unavailable; retry later",
                            headers={"Retry-After": str(max(1, round(exc.retry_after)))}) from None
    metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
    metrics.SPANS_ACCEPTED.inc(len(messages))


async def _accept(services: Services, project_id: str, records: list[dict[str, Any]], size: int) -> None:
    """Admit, offload big payloads, publish keyed by trace id; raises HTTPException (413 / 429 / 503).

    ``size``: the body's size, which decides whether encoding runs off the event loop.
    """
    await _admit(services, project_id, len(records))
    mark_duplicate_calls(records)
    threshold = services.settings.payload_offload_bytes
    if any(len(r.get("input") or "") > threshold or len(r.get("output") or "") > threshold for r in records):
        def offload(r: dict[str, Any]) -> int:
            fill_missing_tokens(r)  # before the text leaves the record: the processor could not count it then
            return offload_payloads(r, services.blobs, threshold)

        moved = await asyncio.to_thread(lambda: sum(offload(r) for r in records))
        metrics.OFFLOADED_BYTES.inc(moved)
    messages = await off_loop(size, services.settings.ingest_thread_decode_bytes,
                              lambda: [(r["trace_id"].encode(), encode(r)) for r in records])
    await _publish(services, messages)


async def _accept_native(services: Services, project_id: str, messages: list[tuple[bytes, bytes]]) -> None:
    """:func:`_accept` for messages the native path already encoded (nothing to offload)."""
    await _admit(services, project_id, len(messages))
    await _publish(services, mark_duplicate_messages(messages))


def _client_gone(request: Request, endpoint: str) -> Response:
    """One line for a client that hung up mid-upload; the answer goes nowhere."""
    log.info("ingest %s: client %s disconnected before its body was complete", endpoint,
             request.client.host if request.client else "?")
    metrics.REQUESTS.labels(endpoint, "499").inc()
    return Response(status_code=400)


async def _read(request: Request, services: Services, held) -> bytes:
    """The decompressed body, counted in ``held``; decompression of a large body runs off the loop."""
    max_bytes = services.settings.max_body_bytes
    encoding = content_encoding(request)
    raw = await read_raw_body(request, max_bytes, held)
    if encoding == "identity":
        return raw
    body = await off_loop(len(raw), services.settings.ingest_thread_decode_bytes,
                          lambda: decompress(raw, encoding, max_bytes))
    held.grow(max(0, len(body) - len(raw)))
    return body


def _decode_otlp_body(body: bytes, kind: str, project_id: str, limits: Limits,
                      offload_chars: int) -> tuple[list[tuple[bytes, bytes]] | None, DecodeResult]:
    """The native path when it can do this request exactly, else the Python one (may raise OTLPDecodeError)."""
    if kind == PROTOBUF:
        messages = native.encode_otlp(body, project_id, limits, offload_chars, datetime.now(timezone.utc))
        if messages is not None:
            return messages, DecodeResult()  # nothing rejected: the native path declines any request with a bad span
    return None, decode_otlp(body, kind, project_id, limits=limits)


# A trailing slash is the same endpoint, not a 307 redirect (exporters do not re-POST the body).
@router.post("/v1/traces/", include_in_schema=False)
@router.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, optionally gzip)",
             openapi_extra=openapi.OTLP_TRACES)
async def otlp_traces(request: Request, project: IngestProjectDep, services: ServicesDep) -> Response:
    content_type = request.headers.get("content-type")
    try:
        kind = media_type(content_type)
    except UnsupportedContentType as exc:
        metrics.REQUESTS.labels("otlp", "415").inc()
        return Response(encode_error(str(exc), JSON), status_code=415, media_type=JSON)
    try:
        with inflight(services).reservation() as held:
            return await _otlp(request, project.id, services, kind, held)
    except ClientGone:
        return _client_gone(request, "otlp")
    except HTTPException as exc:
        metrics.REQUESTS.labels("otlp", str(exc.status_code)).inc()
        return Response(encode_error(str(exc.detail), kind, code=14 if exc.status_code == 503 else 8),
                        status_code=exc.status_code, media_type=kind, headers=exc.headers)


async def _otlp(request: Request, project_id: str, services: Services, kind: str, held) -> Response:
    body = await _read(request, services, held)
    if not body.strip():
        return Response(encode_response(0, "", kind), media_type=kind)
    limits = _limits(services)
    try:
        messages, result = await off_loop(
            len(body), services.settings.ingest_thread_decode_bytes,
            lambda: _decode_otlp_body(body, kind, project_id, limits, services.settings.payload_offload_bytes))
    except OTLPDecodeError as exc:
        metrics.REQUESTS.labels("otlp", "400").inc()
        return Response(encode_error(str(exc), kind), status_code=400, media_type=kind)
    if result.rejected:
        metrics.SPANS_REJECTED.labels("invalid").inc(len(result.rejected))
    if messages:
        await _accept_native(services, project_id, messages)
    elif result.records:
        await _accept(services, project_id, result.records, len(body))
    metrics.REQUESTS.labels("otlp", "200").inc()
    return Response(encode_response(len(result.rejected), result.error_message(), kind), media_type=kind)


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body: invalid JSON: {exc}") from None


@router.post("/api/v1/spans/", include_in_schema=False)
@router.post("/api/v1/spans", summary="JSON span batch for non-OTel clients", openapi_extra=openapi.SPAN_BATCH)
async def json_spans(request: Request, project: IngestProjectDep, services: ServicesDep) -> Response:
    limits = _limits(services)

    def decode(body: bytes) -> tuple[list[dict[str, Any]], list]:
        try:
            return decode_span_batch(_parse_json(body), project.id, limits=limits)
        except BatchError as exc:
            raise HTTPException(400, str(exc)) from None

    try:
        with inflight(services).reservation() as held:
            body = await _read(request, services, held)
            records, rejected = await off_loop(len(body), services.settings.ingest_thread_decode_bytes,
                                               lambda: decode(body))
            if rejected:
                metrics.SPANS_REJECTED.labels("invalid").inc(len(rejected))
            if records:
                await _accept(services, project.id, records, len(body))
    except ClientGone:
        return _client_gone(request, "json")
    except HTTPException as exc:
        metrics.REQUESTS.labels("json", str(exc.status_code)).inc()
        raise
    metrics.REQUESTS.labels("json", "200").inc()
    return JSONResponse({"accepted": len(records), "rejected": [r.as_dict() for r in rejected]})


def _score_ids(headers: Headers, project_id: str, count: int) -> list[str]:
    """Default ids of a request's scores: derived from its ``Idempotency-Key`` header, so that a
    client resending the same request after a timeout or a 503 stores each score once; random without it."""
    key = headers.get("idempotency-key")
    if not key:
        return [uuid.uuid4().hex for _ in range(count)]
    seed = hashlib.sha256(f"{project_id}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()
    return [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:32] for i in range(count)]


@router.post("/api/v1/scores/", include_in_schema=False)
@router.post("/api/v1/scores", summary="Feedback / human / SDK scores for a trace or span",
             openapi_extra=openapi.SCORES)
async def post_scores(request: Request, project: IngestProjectDep, services: ServicesDep) -> Response:
    try:
        with inflight(services).reservation() as held:
            return await _scores(request, project.id, services, held)
    except ClientGone:
        return _client_gone(request, "scores")
    except HTTPException as exc:
        metrics.REQUESTS.labels("scores", str(exc.status_code)).inc()
        raise


async def _scores(request: Request, project_id: str, services: Services, held) -> Response:
    body = await _read(request, services, held)
    payload = await off_loop(len(body), services.settings.ingest_thread_decode_bytes, lambda: _parse_json(body))
    items = payload.get("scores") if isinstance(payload, dict) and "scores" in payload else [payload]
    if not isinstance(items, list) or not items:
        raise HTTPException(400, "scores: expected a score object or {\"scores\": [...]}")
    limit = services.settings.max_scores_per_request
    if len(items) > limit:
        metrics.SCORES_REJECTED.labels("too_many_scores").inc(len(items))
        raise HTTPException(413, f"scores: {len(items)} in one request; the limit is {limit}")
    rows, errors = [], []
    for index, (item, default_id) in enumerate(zip(items, _score_ids(request.headers, project_id, len(items)), strict=True)):
        try:
            rows.append(validate_score(item, project_id, default_id=default_id))
        except ValueError as exc:
            errors.append({"index": index, "error": str(exc)})
    if errors:
        metrics.SCORES_REJECTED.labels("invalid").inc(len(errors))
    if errors and not rows:
        raise HTTPException(400, "; ".join(f"score {e['index']}: {e['error']}" for e in errors[:5]))
    await _admit(services, project_id, len(rows), what="scores", limit=limit, rejected=metrics.SCORES_REJECTED)
    ids = [r["score_id"] for r in rows]
    try:
        await services.require_bus().publish(TOPIC_SCORES, [(r["trace_id"].encode(), orjson.dumps(r, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)) for r in rows])
    except BusUnavailable as exc:
        # Some of them may be stored already: the ids let a retry collapse onto them instead of doubling.
        metrics.SCORES_REJECTED.labels("bus_unavailable").inc(len(rows))
        metrics.REQUESTS.labels("scores", "503").inc()
        return JSONResponse({"error": "the bus is unavailable; send the same scores again with these ids "
                                      "(or the same Idempotency-Key) so that none is stored twice", "ids": ids},
                            status_code=503, headers={"Retry-After": str(max(1, round(exc.retry_after)))})
    metrics.SCORES_ACCEPTED.inc(len(rows))
    metrics.REQUESTS.labels("scores", "202").inc()
    return JSONResponse({"accepted": len(rows), "ids": ids, "rejected": errors}, status_code=202)
