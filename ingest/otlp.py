"""OTLP/HTTP trace export bodies (protobuf or JSON) -> canonical span records, and the replies.

Pure functions, no I/O; the ingest app decompresses the body, calls :func:`decode_otlp`, produces
the records and answers with :func:`encode_response` (or :func:`encode_error` for a 400).

JSON follows the OTLP JSON mapping: hex trace / span ids (base64 is accepted too, as emitted by
protobuf's own JSON printer), int64 as strings or numbers, camelCase or snake_case keys, enums as
numbers or names, unknown fields ignored. It is walked directly rather than through
``json_format.ParseDict``: that would need the ids rewritten to base64 first and is several times
slower than walking the dict.

A span that cannot be stored is rejected alone (``Rejection`` with its 0-based position in the
request and the bad field); a body that cannot be read at all raises :class:`OTLPDecodeError`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ingest.normalize import (
    DEFAULT_LIMITS,
    Limits,
    RawSpan,
    Rejection,
    Resource,
    SpanRejected,
    check_attribute_count,
    make_resource,
    to_record,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_MAX_VALUE_DEPTH = 32
_SPAN_KINDS = {f"SPAN_KIND_{n}": i for i, n in
               enumerate(("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"))}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class OTLPDecodeError(ValueError):
    """The body is not a readable ExportTraceServiceRequest (-> HTTP 400)."""


class UnsupportedContentType(OTLPDecodeError):
    """Neither protobuf nor JSON (-> HTTP 415)."""


@dataclass(slots=True)
class DecodeResult:
    """Records ready for the bus, the spans rejected, and how many values were truncated."""

    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    truncated: int = 0

    def error_message(self, limit: int = 5) -> str:
        """Partial-success message naming the first few rejected spans and their fields."""
        if not self.rejected:
            return ""
        parts = [f"span {r.index}: {r.field}: {r.message}" for r in self.rejected[:limit]]
        more = len(self.rejected) - limit
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def media_type(content_type: str | None) -> str:
    """``Content-Type`` header -> :data:`PROTOBUF` or :data:`JSON`; raises UnsupportedContentType."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in (PROTOBUF, "application/protobuf", "application/vnd.google.protobuf"):
        return PROTOBUF
    if mime == JSON or mime.endswith("+json"):
        return JSON
    raise UnsupportedContentType(f"unsupported content type {content_type!r}; "
                                 f"use {PROTOBUF} or {JSON}")


def iter_otlp(body: bytes, content_type: str | None,
              limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[Resource, RawSpan | SpanRejected]]:
    """Yield ``(resource, span)`` per span in request order; a span that cannot be decoded is
    yielded as a :class:`SpanRejected`. Raises :class:`OTLPDecodeError` for an unreadable body."""
    if media_type(content_type) == PROTOBUF:
        return _iter_protobuf(body, limits)
    return _iter_json(body, limits)


def decode_otlp(
    body: bytes,
    content_type: str | None,
    project_id: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    ingested_at: datetime | None = None,
) -> DecodeResult:
    """Decode an (already decompressed) OTLP/HTTP trace export body into canonical records."""
    result = DecodeResult()
    ingested_at = ingested_at or datetime.now(timezone.utc)
    records, rejected = result.records, result.rejected
    for index, (resource, span) in enumerate(iter_otlp(body, content_type, limits)):
        if isinstance(span, SpanRejected):
            rejected.append(Rejection(index, span.field, span.message))
            continue
        try:
            records.append(to_record(project_id, resource, None, span, limits=limits, ingested_at=ingested_at))
        except SpanRejected as exc:
            rejected.append(Rejection(index, exc.field, exc.message))
    result.truncated = sum(int(r["attributes"].get("evalforge.truncated", 0)) for r in records)
    return result


def encode_response(rejected_count: int, message: str, content_type: str | None) -> bytes:
    """ExportTraceServiceResponse; ``partial_success`` only when something was rejected or said."""
    if media_type(content_type) == PROTOBUF:
        response = ExportTraceServiceResponse()
        if rejected_count or message:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=rejected_count, error_message=message))
        return response.SerializeToString()
    if not (rejected_count or message):
        return b"{}"
    # int64 as a string, as the proto3 JSON mapping prints it
    return orjson.dumps({"partialSuccess": {"rejectedSpans": str(rejected_count), "errorMessage": message}})


def encode_error(message: str, content_type: str | None, code: int = 3) -> bytes:
    """A google.rpc.Status body for a failed request (code 3 = INVALID_ARGUMENT), as OTLP wants.

    Falls back to JSON when the content type is itself the problem.
    """
    try:
        kind = media_type(content_type)
    except UnsupportedContentType:
        kind = JSON
    if kind == JSON:
        return orjson.dumps({"code": code, "message": message})
    # Status{int32 code = 1; string message = 2;} encoded by hand: two fields, no dependency
    text = message.encode("utf-8")
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# --- protobuf -------------------------------------------------------------------------------------

def _iter_protobuf(body: bytes, limits: Limits) -> Iterator[tuple[Resource, RawSpan | SpanRejected]]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OTLPDecodeError(f"body is not a valid protobuf ExportTraceServiceRequest: {exc}") from None
    return _walk_protobuf(request, limits)


def _walk_protobuf(request: ExportTraceServiceRequest,
                   limits: Limits) -> Iterator[tuple[Resource, RawSpan | SpanRejected]]:
    for resource_spans in request.resource_spans:
        resource_attrs = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            resource = make_resource(resource_attrs, scope.name, scope.version, limits)
            for span in scope_spans.spans:
                try:
                    check_attribute_count(len(span.attributes), limits)
                except SpanRejected as exc:
                    yield resource, exc
                    continue
                status = span.status
                events = [
                    {"name": event.name, "time_unix_nano": event.time_unix_nano,
                     "attributes": _pb_attributes(event.attributes)}
                    for event in span.events
                ] if span.events else []
                links = [
                    {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                     "attributes": _pb_attributes(link.attributes)}
                    for link in span.links
                ] if span.links else []
                yield resource, RawSpan(
                    span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                    span.start_time_unix_nano, span.end_time_unix_nano, _pb_attributes(span.attributes),
                    span.kind, status.code, status.message, events, links,
                )


_SCALARS = frozenset(("string_value", "int_value", "double_value", "bool_value"))


def _pb_attributes(key_values: Any) -> dict[str, Any]:
    # the hot loop of protobuf ingest: one WhichOneof + getattr per scalar attribute
    out = {}
    for kv in key_values:
        value = kv.value
        which = value.WhichOneof("value")
        out[kv.key] = getattr(value, which) if which in _SCALARS else _pb_value(value, which)
    return out


def _pb_value(value: Any, which: str | None) -> Any:
    if which in _SCALARS:
        return getattr(value, which)
    if which == "array_value":
        return [_pb_value(item, item.WhichOneof("value")) for item in value.array_value.values]
    if which == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


# --- JSON -----------------------------------------------------------------------------------------

class _Bad(Exception):
    """A malformed JSON field; ``field`` is its path inside the span (or request)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _list(obj: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    value = _get(obj, camel, snake)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{where}{camel}", "must be an array")
    return value


def _iter_json(body: bytes, limits: Limits) -> Iterator[tuple[Resource, RawSpan | SpanRejected]]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OTLPDecodeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise OTLPDecodeError("body must be a JSON object (ExportTraceServiceRequest)")
    # Check the structure above the spans up front, so a bad request fails before anything is kept.
    try:
        plan = []
        for r, resource_spans in enumerate(_list(request, "resourceSpans", "resource_spans", "")):
            where = f"resourceSpans[{r}]."
            if not isinstance(resource_spans, dict):
                raise _Bad(where[:-1], "must be an object")
            resource = _get(resource_spans, "resource", "resource") or {}
            if not isinstance(resource, dict):
                raise _Bad(where + "resource", "must be an object")
            resource_attrs = _json_attributes(resource, where + "resource.")
            for s, scope_spans in enumerate(_list(resource_spans, "scopeSpans", "scope_spans", where)):
                swhere = f"{where}scopeSpans[{s}]."
                if not isinstance(scope_spans, dict):
                    raise _Bad(swhere[:-1], "must be an object")
                scope = _get(scope_spans, "scope", "scope") or {}
                if not isinstance(scope, dict):
                    raise _Bad(swhere + "scope", "must be an object")
                name, version = scope.get("name") or "", scope.get("version") or ""
                if not isinstance(name, str) or not isinstance(version, str):
                    raise _Bad(swhere + "scope", "name and version must be strings")
                spans = _list(scope_spans, "spans", "spans", swhere)
                plan.append((make_resource(resource_attrs, name, version, limits), spans))
    except _Bad as exc:
        raise OTLPDecodeError(f"{exc.field}: {exc.message}") from None
    return _walk_json(plan)


def _walk_json(plan: list[tuple[Resource, list[Any]]]) -> Iterator[tuple[Resource, RawSpan | SpanRejected]]:
    for resource, spans in plan:
        for span in spans:
            try:
                yield resource, _json_span(span)
            except _Bad as exc:
                yield resource, SpanRejected(exc.field, exc.message)


def _json_span(span: Any) -> RawSpan:
    if not isinstance(span, dict):
        raise _Bad("span", "must be an object")
    name = span.get("name", "")
    if not isinstance(name, str):
        raise _Bad("name", "must be a string")
    status = span.get("status") or {}
    if not isinstance(status, dict):
        raise _Bad("status", "must be an object")
    message = status.get("message") or ""
    if not isinstance(message, str):
        raise _Bad("status.message", "must be a string")
    events = []
    for i, event in enumerate(_list(span, "events", "events", "")):
        if not isinstance(event, dict) or not isinstance(event.get("name", ""), str):
            raise _Bad(f"events[{i}]", "must be an object with a string name")
        events.append({"name": event.get("name", ""),
                       "time_unix_nano": _json_uint(event, "timeUnixNano", "time_unix_nano", f"events[{i}]."),
                       "attributes": _json_attributes(event, f"events[{i}].")})
    links = []
    for i, link in enumerate(_list(span, "links", "links", "")):
        if not isinstance(link, dict):
            raise _Bad(f"links[{i}]", "must be an object")
        links.append({"trace_id": _json_id(link, "traceId", "trace_id", 16, f"links[{i}]."),
                      "span_id": _json_id(link, "spanId", "span_id", 8, f"links[{i}]."),
                      "attributes": _json_attributes(link, f"links[{i}].")})
    return RawSpan(
        _json_id(span, "traceId", "trace_id", 16, ""),
        _json_id(span, "spanId", "span_id", 8, ""),
        _json_id(span, "parentSpanId", "parent_span_id", 8, ""),
        name,
        _json_uint(span, "startTimeUnixNano", "start_time_unix_nano", ""),
        _json_uint(span, "endTimeUnixNano", "end_time_unix_nano", ""),
        _json_attributes(span, ""),
        _json_enum(span.get("kind", 0), _SPAN_KINDS, "kind"),
        _json_enum(status.get("code", 0), _STATUS_CODES, "status.code"),
        message,
        events,
        links,
    )


def _json_id(obj: dict[str, Any], camel: str, snake: str, size: int, where: str) -> str:
    value = _get(obj, camel, snake)
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise _Bad(where + snake, "must be a hex string")
    if len(value) == size * 2:
        return value.lower()  # validated as hex by normalize
    if len(value) == (size + 2) // 3 * 4:  # base64, as protobuf's JSON printer writes bytes
        try:
            return base64.b64decode(value, validate=True).hex()
        except (binascii.Error, ValueError):
            pass
    raise _Bad(where + snake, f"must be {size} bytes as {size * 2} hex characters")


def _json_uint(obj: dict[str, Any], camel: str, snake: str, where: str) -> int:
    value = _get(obj, camel, snake)
    if value is None:
        return 0
    if isinstance(value, str):
        value = _parse_int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT64_MAX:
        raise _Bad(where + snake, "must be unix nanoseconds (a uint64 as number or string)")
    return value


def _parse_int(text: str) -> int | None:
    """Decimal string -> int (JSON int64 / uint64 fields may be strings), else None."""
    if not text.isascii() or len(text) > 21:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _json_enum(value: Any, names: dict[str, int], field_name: str) -> int:
    if isinstance(value, str):
        if value in names:
            return names[value]
        value = _parse_int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return value
    raise _Bad(field_name, f"must be one of {', '.join(names)} or its number")


def _json_attributes(obj: dict[str, Any], where: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for i, kv in enumerate(_list(obj, "attributes", "attributes", where)):
        key = kv.get("key") if type(kv) is dict else None
        if type(key) is not str:
            raise _Bad(f"{where}attributes[{i}]", "must be an object with a string key")
        any_value = kv.get("value")
        if type(any_value) is dict:
            text = any_value.get("stringValue")  # the common case, without a call
            value = text if type(text) is str else _json_value(any_value, 0)
            if value is not None:
                attrs[key] = value
        elif any_value is not None:
            raise _Bad(f"{where}attributes[{i}]", "value must be an AnyValue object")
    return attrs


_NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _json_value(value: Any, depth: int) -> Any:
    """OTLP JSON AnyValue -> Python value; ``None`` for an empty or unreadable value."""
    if not isinstance(value, dict) or depth > _MAX_VALUE_DEPTH:
        return None
    for key, item in value.items():
        if key in ("stringValue", "string_value"):
            if isinstance(item, str):
                return item
        elif key in ("intValue", "int_value"):
            if isinstance(item, str):
                item = _parse_int(item)
            if isinstance(item, int) and not isinstance(item, bool) and -_INT64_MAX - 1 <= item <= _INT64_MAX:
                return item
        elif key in ("doubleValue", "double_value"):
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                return float(item)
            if isinstance(item, str):
                return _NON_FINITE.get(item)
        elif key in ("boolValue", "bool_value"):
            if isinstance(item, bool):
                return item
        elif key in ("arrayValue", "array_value"):
            values = item.get("values") if isinstance(item, dict) else None
            if isinstance(values, list):
                return [_json_value(v, depth + 1) for v in values]
            return []
        elif key in ("kvlistValue", "kvlist_value"):
            values = item.get("values") if isinstance(item, dict) else None
            if isinstance(values, list):
                return {kv["key"]: _json_value(kv.get("value"), depth + 1) for kv in values
                        if isinstance(kv, dict) and isinstance(kv.get("key"), str)}
            return {}
        elif key in ("bytesValue", "bytes_value"):
            if isinstance(item, str):
                return item  # already base64, which is how bytes are kept
    return None
