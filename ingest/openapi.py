"""Request-body schemas of the ingest endpoints, for ``/openapi.json``.

The handlers read their bodies themselves (size caps, gzip, protobuf, per-span rejection), so FastAPI
cannot infer these; they are written here so that clients, and the fuzz test over every operation,
know what each endpoint takes.
"""

from __future__ import annotations

from typing import Any

from ingest.json_batch import SpanIn


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined (OpenAPI would look for them elsewhere)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


SPAN_BATCH = _json_body({"type": "object", "required": ["spans"], "properties": {
    "spans": {"type": "array", "items": _inline(SpanIn.model_json_schema())}}})

_SCORE = {"type": "object", "required": ["name", "value", "trace_id"], "properties": {
    "name": {"type": "string"}, "value": {"type": ["number", "string", "boolean"]},
    "trace_id": {"type": "string", "description": "32 hex characters"},
    "span_id": {"type": "string", "description": "16 hex characters"},
    "id": {"type": "string", "description": "makes a re-sent score collapse onto the first"},
    "data_type": {"type": "string", "enum": ["numeric", "categorical", "boolean"]},
    "source": {"type": "string", "enum": ["api", "human", "evaluator", "sdk"]}, "comment": {"type": "string"}}}
SCORES = _json_body({"oneOf": [_SCORE, {"type": "object", "required": ["scores"], "properties": {
    "scores": {"type": "array", "items": _SCORE}}}]})
SCORES["parameters"] = [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"},
                         "description": "scores without an id get ids derived from it: a resent request stores each once"}]

_ANY_VALUE = {"type": "object", "properties": {
    "stringValue": {"type": "string"}, "intValue": {"type": ["string", "integer"]}, "doubleValue": {"type": "number"},
    "boolValue": {"type": "boolean"}, "arrayValue": {"type": "object"}, "kvlistValue": {"type": "object"}}}
_ATTRIBUTES = {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}, "value": _ANY_VALUE}}}
_OTLP_SPAN = {"type": "object", "properties": {
    "traceId": {"type": "string"}, "spanId": {"type": "string"}, "parentSpanId": {"type": "string"},
    "name": {"type": "string"}, "kind": {"type": ["integer", "string"]},
    "startTimeUnixNano": {"type": ["string", "integer"]}, "endTimeUnixNano": {"type": ["string", "integer"]},
    "attributes": _ATTRIBUTES, "status": {"type": "object", "properties": {"code": {"type": ["integer", "string"]},
                                                                          "message": {"type": "string"}}},
    "events": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "timeUnixNano": {"type": ["string", "integer"]}, "attributes": _ATTRIBUTES}}}}}
OTLP_TRACES = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "properties": {"resourceSpans": {"type": "array", "items": {
        "type": "object", "properties": {
            "resource": {"type": "object", "properties": {"attributes": _ATTRIBUTES}},
            "scopeSpans": {"type": "array", "items": {"type": "object", "properties": {
                "scope": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
                "spans": {"type": "array", "items": _OTLP_SPAN}}}}}}}}}},
    "application/x-protobuf": {"schema": {"type": "string", "format": "binary",
                                          "description": "an ExportTraceServiceRequest"}}}}}
