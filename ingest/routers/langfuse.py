"""Drop-in endpoints for the unmodified Langfuse SDKs (point ``LANGFUSE_BASE_URL`` / ``base_url`` here).

Keys: the EvalForge API key goes in as the Langfuse *secret* key, any text as the public key (see
``core.auth_header``); the key decides the project. Traces arrive over OTLP at
``/api/public/otel/v1/traces`` (``ingest.routers.otlp_aliases``); this module answers what else the
SDKs call: the auth check (``GET /api/public/projects``), scores as the Python SDK v3+ sends them
(``POST /api/public/scores``, a list) and the batch endpoint the JS SDK and older SDKs use
(``POST /api/public/ingestion``, 207 with a result per event; only ``score-create`` is stored,
``sdk-log`` is acknowledged and dropped, other event types are refused one by one: these SDKs send
traces over OTLP). Scores are translated and handed to our own ``POST /api/v1/scores`` handler
(``ingest.inprocess``): one score path, with its limits and its promise.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from core.auth import Project
from core.deps import IngestProjectDep, ServicesDep
from core.services import Services
from ingest.inprocess import call
from ingest.json_batch import BatchError, validate_score
from ingest.routers.request_body import drop_in_body
from ingest.routers.ingest import post_scores

router = APIRouter(tags=["drop-in: Langfuse"])

# Langfuse dataType -> ours; TEXT scores are free text, stored as a categorical value
_DATA_TYPES = {"NUMERIC": "numeric", "BOOLEAN": "boolean", "CATEGORICAL": "categorical", "TEXT": "categorical"}
# our field -> the name a Langfuse user knows, for error messages
_FIELD_NAMES = {"trace_id": "traceId", "span_id": "observationId", "data_type": "dataType"}
_ORGANIZATION = {"id": "evalforge", "name": "EvalForge"}


def langfuse_score(body: Any, project_id: str) -> dict[str, Any]:
    """A Langfuse score body (camelCase) -> the payload of our ``POST /api/v1/scores``, checked the
    way that endpoint checks it; raises BatchError naming the field the way Langfuse spells it."""
    if not isinstance(body, dict):
        raise BatchError("body", "must be a JSON object")
    data_type = body.get("dataType")
    if data_type is not None and data_type not in _DATA_TYPES:
        raise BatchError("dataType", f"must be one of {', '.join(_DATA_TYPES)} ({data_type!r} is not stored here)")
    if not body.get("traceId") and body.get("sessionId"):
        raise BatchError("traceId", "is required: scores on a session alone are not stored here")
    ours = {
        "id": body.get("id"), "trace_id": body.get("traceId"), "span_id": body.get("observationId"),
        "name": body.get("name"), "value": body.get("value"), "comment": body.get("comment"),
        "data_type": _DATA_TYPES.get(data_type) if data_type else None,
    }
    payload = {k: v for k, v in ours.items() if v is not None}
    try:
        validate_score(payload, project_id)  # its verdict per score, before the batch goes in
    except BatchError as exc:
        raise BatchError(_FIELD_NAMES.get(exc.field, exc.field), exc.message) from None
    return payload


async def _store(payloads: list[dict[str, Any]], project: Project, services: Services) -> list[str]:
    """Hand the scores to ``POST /api/v1/scores`` (its limits, its bus promise); their ids. Whatever it
    refuses (rate limit, bus down) is refused here with the same status and Retry-After."""
    answer = await call(post_scores, "/api/v1/scores", orjson.dumps({"scores": payloads}), "application/json",
                        project, services)
    reply = orjson.loads(answer.body) if answer.body else {}
    if answer.status != 202:
        retry = {"Retry-After": answer.headers["retry-after"]} if "retry-after" in answer.headers else None
        raise HTTPException(answer.status, reply.get("error") or "scores not stored", headers=retry)
    if reply.get("rejected"):  # checked above with the same validator: only a mismatch between the two
        raise HTTPException(400, f"scores refused: {reply['rejected']}")
    return reply["ids"]


async def _json_body(request: Request, services) -> Any:
    body = await drop_in_body(request, services)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body: invalid JSON: {exc}") from None


@router.get("/api/public/projects", summary="Langfuse SDK auth check: the project of the key")
async def projects(project: IngestProjectDep) -> dict[str, Any]:
    return {"data": [{"id": project.id, "name": project.name, "organization": _ORGANIZATION, "metadata": {}}]}


@router.post("/api/public/scores/", include_in_schema=False)
@router.post("/api/public/scores", summary="Langfuse scores (one score or a list); 202, or 207 when some were refused")
async def scores(request: Request, project: IngestProjectDep, services: ServicesDep) -> JSONResponse:
    payload = await _json_body(request, services)
    items = payload if isinstance(payload, list) else [payload]
    good, errors = [], []
    for index, item in enumerate(items):
        try:
            good.append(langfuse_score(item, project.id))
        except BatchError as exc:
            errors.append({"message": f"score {index}: {exc}"})
    if not good:
        raise HTTPException(400, "; ".join(e["message"] for e in errors[:5]) or "body: no scores")
    await _store(good, project, services)
    if not errors:
        return JSONResponse({"message": "Accepted"}, status_code=202)
    return JSONResponse({"accepted": len(good), "rejected": len(errors), "errors": errors}, status_code=207)


@router.post("/api/public/ingestion/", include_in_schema=False)
@router.post("/api/public/ingestion", summary="Langfuse batch ingestion (legacy SDKs): 207 with a result per event")
async def ingestion(request: Request, project: IngestProjectDep, services: ServicesDep) -> JSONResponse:
    payload = await _json_body(request, services)
    batch = payload.get("batch") if isinstance(payload, dict) else None
    if not isinstance(batch, list):
        raise HTTPException(400, "batch: must be an array of events")
    successes: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    scores: list[tuple[str, dict[str, Any]]] = []
    for index, event in enumerate(batch):
        event_id = raw_id if isinstance(event, dict) and isinstance(raw_id := event.get("id"), str) else str(index)
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "score-create":
            try:
                scores.append((event_id, langfuse_score(event.get("body"), project.id)))
            except BatchError as exc:
                where = "body" if exc.field == "body" else f"body.{exc.field}"
                errors.append({"id": event_id, "status": 400, "message": f"{where}: {exc.message}",
                               "error": "invalid score"})
        elif kind == "sdk-log":
            successes.append({"id": event_id, "status": 201})  # the SDK's own log lines: nothing to keep
        else:
            errors.append({"id": event_id, "status": 400, "error": "unsupported event type",
                           "message": f"type: {kind!r} is not accepted here; send traces over OTLP to "
                                      "/api/public/otel/v1/traces (Langfuse SDK v3 and later do)"})
    if scores:  # a bus outage is a 503 for the whole batch: the SDK retries batches, not events
        await _store([payload for _, payload in scores], project, services)
        successes.extend({"id": event_id, "status": 201} for event_id, _ in scores)
    return JSONResponse({"successes": successes, "errors": errors}, status_code=207)
