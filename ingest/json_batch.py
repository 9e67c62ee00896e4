"""The JSON span batch (``POST /api/v1/spans``) and score payload (``POST /api/v1/scores``).

For clients that do not speak OTel. A batch is ``{"spans": [span, ...]}``; each span::

    {
      "trace_id": "32 hex", "span_id": "16 hex", "parent_span_id": "16 hex" | null,
      "name": "chat", "kind": "llm" | "embedding" | "chain" | "tool" | "retriever" | "agent"
                              | "evaluator" | "span",
      "start_time": "2025-01-01T12:00:00.123Z" | 1735732800123000000,   # RFC 3339 or unix ns
      "end_time": same,
      "status": "ok" | "error" | "unset", "status_message": "...", "error_type": "RateLimitError",
      "model": "gpt-4o", "request_model": "...", "provider": "openai", "operation": "chat",
      "input": any JSON, "output": any JSON,          # non-strings are stored JSON-encoded
      "usage": {"input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
                "cache_creation_1h_tokens", "reasoning_tokens", "total_tokens"},
      "cost": 0.0012,                                 # USD; stored with cost_source "user"
      "ttft_ms": 180.5,
      "session_id", "user_id", "environment", "release", "prompt_name", "prompt_version",
      "service_name": "...", "tags": ["..."], "metadata": {...},
      "attributes": {...}                             # any OTel / GenAI / OpenInference keys
    }

``usage`` follows the canonical token convention: ``input_tokens`` *includes* cache read and
cache creation tokens, ``output_tokens`` includes reasoning tokens. (An ``input_tokens`` smaller
than the cache counts is taken as Anthropic's raw count and the cache counts are added.)
Unknown keys are ignored, so older servers accept newer clients. Typed fields win over the same
information given in ``attributes``. Each bad span is rejected alone with its index and field.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, ValidationError

from ingest.normalize import (
    DEFAULT_LIMITS,
    Limits,
    RawSpan,
    Rejection,
    Resource,
    SpanRejected,
    to_record,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_NS = 10**15  # below this an integer time is seconds or milliseconds, not nanoseconds
_STATUS_CODES = {"unset": 0, "ok": 1, "error": 2}


class BatchError(ValueError):
    """The whole payload is unusable (not an object, no ``spans`` list, bad score field) -> 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Usage(BaseModel):
    """Token counts of one call, in the canonical convention (see module docstring)."""

    model_config = ConfigDict(extra="ignore")
    input_tokens: NonNegativeInt | None = None
    output_tokens: NonNegativeInt | None = None
    cache_read_tokens: NonNegativeInt | None = None
    cache_creation_tokens: NonNegativeInt | None = None
    reasoning_tokens: NonNegativeInt | None = None
    total_tokens: NonNegativeInt | None = None
    cache_creation_1h_tokens: NonNegativeInt | None = None  # the part of cache_creation_tokens kept for 1 hour


class SpanIn(BaseModel):
    """One span of a JSON batch."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    trace_id: str = Field(min_length=1)
    span_id: str = Field(min_length=1)
    parent_span_id: str | None = None
    name: str = Field(min_length=1)
    kind: Literal["llm", "embedding", "chain", "tool", "retriever", "agent", "evaluator", "span"] | None = None
    start_time: int | str
    end_time: int | str
    status: Literal["ok", "error", "unset"] = "unset"
    status_message: str = ""
    error_type: str | None = None
    model: str | None = None
    request_model: str | None = None
    provider: str | None = None
    operation: str | None = None
    input: Any = None
    output: Any = None
    usage: Usage | None = None
    cost: NonNegativeFloat | None = None
    ttft_ms: NonNegativeFloat | None = None
    session_id: str | None = None
    user_id: str | None = None
    environment: str | None = None
    release: str | None = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    service_name: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None


# typed field -> the evalforge.* attribute that normalize maps with top precedence
_TYPED = {
    "model": "evalforge.model", "request_model": "evalforge.request_model", "provider": "evalforge.provider",
    "operation": "evalforge.operation", "kind": "evalforge.span.kind", "input": "evalforge.input",
    "output": "evalforge.output", "cost": "evalforge.cost", "ttft_ms": "evalforge.ttft_ms",
    "session_id": "evalforge.session_id", "user_id": "evalforge.user_id",
    "environment": "evalforge.environment", "release": "evalforge.release",
    "prompt_name": "evalforge.prompt.name", "prompt_version": "evalforge.prompt.version",
    "error_type": "error.type",
}


def parse_time(value: int | str, field: str) -> int:
    """RFC 3339 string or unix nanoseconds -> unix nanoseconds. Raises SpanRejected."""
    if isinstance(value, int):
        if value < _MIN_NS:
            raise SpanRejected(field, "integer times are unix nanoseconds (this looks like seconds or ms)")
        return value
    if value.isascii() and value.isdigit():
        if len(value) > 19:  # int64 nanoseconds; int() of 4,300+ digits would raise
            raise SpanRejected(field, "must be unix nanoseconds before year 2262")
        return parse_time(int(value), field)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SpanRejected(field, "must be an RFC 3339 time or unix nanoseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _MICROSECOND * 1000


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - _EPOCH


_CACHE_1H = "gen_ai.usage.cache_creation.1h_input_tokens"  # read by the processor's pricing


def _raw_span(item: SpanIn) -> RawSpan:
    attrs: dict[str, Any] = dict(item.attributes) if item.attributes else {}
    for name, key in _TYPED.items():
        value = getattr(item, name)
        if value is not None:
            attrs[key] = value
    if item.model and not item.request_model and "gen_ai.request.model" not in attrs:
        attrs["evalforge.request_model"] = item.model
    if item.usage is not None:
        for name, value in item.usage:
            if value is not None:
                attrs[_CACHE_1H if name == "cache_creation_1h_tokens" else "evalforge.usage." + name] = value
    if item.tags is not None:
        attrs["evalforge.tags"] = item.tags
    if item.metadata:
        for key, value in item.metadata.items():
            attrs["evalforge.metadata." + key] = value
    return RawSpan(
        trace_id=item.trace_id.lower(),
        span_id=item.span_id.lower(),
        parent_span_id=(item.parent_span_id or "").lower(),
        name=item.name,
        start_ns=parse_time(item.start_time, "start_time"),
        end_ns=parse_time(item.end_time, "end_time"),
        attributes=attrs,
        status_code=_STATUS_CODES[item.status],
        status_message=item.status_message,
    )


def _field_of(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "span"
    return field, error["msg"]


def decode_span_batch(
    payload: Any,
    project_id: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    ingested_at: datetime | None = None,
) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """Parsed JSON body -> (canonical records, rejected spans with index + field + message).

    Raises :class:`BatchError` when the body is not ``{"spans": [...]}``.
    """
    if not isinstance(payload, dict):
        raise BatchError("body", 'must be a JSON object {"spans": [...]}')
    spans = payload.get("spans")
    if not isinstance(spans, list):
        raise BatchError("spans", "must be an array of spans")
    ingested_at = ingested_at or datetime.now(timezone.utc)
    records: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    resources: dict[str, Resource] = {}
    for index, item in enumerate(spans):
        try:
            span_in = SpanIn.model_validate(item)
            service = span_in.service_name or ""
            resource = resources.get(service)
            if resource is None:
                resource = resources[service] = Resource(service_name=service)
            records.append(to_record(project_id, resource, None, _raw_span(span_in),
                                     limits=limits, ingested_at=ingested_at))
        except ValidationError as exc:
            rejected.append(Rejection(index, *_field_of(exc)))
        except SpanRejected as exc:
            rejected.append(Rejection(index, exc.field, exc.message))
    return records, rejected


# --- scores ---------------------------------------------------------------------------------------

_SCORE_SOURCES = ("api", "human", "evaluator", "sdk")
_DATA_TYPES = ("numeric", "categorical", "boolean")
MAX_COMMENT_CHARS = 64 * 1024


def _require_hex(payload: dict[str, Any], key: str, size: int, required: bool) -> str:
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise BatchError(key, "is required")
        return ""
    if not isinstance(value, str):
        raise BatchError(key, f"must be {size * 2} hex characters")
    value = value.strip().lower()
    if len(value) != size * 2 or any(c not in "0123456789abcdef" for c in value) or not value.strip("0"):
        raise BatchError(key, f"must be {size * 2} hex characters, not all zeros")
    return value


def _optional_str(payload: dict[str, Any], key: str, max_chars: int) -> str:
    value = payload.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BatchError(key, "must be a string")
    if len(value) > max_chars:
        raise BatchError(key, f"must be at most {max_chars} characters")
    return value


def validate_score(payload: Any, project_id: str, *, now: datetime | None = None,
                   default_id: str | None = None) -> dict[str, Any]:
    """Score payload -> a row of the ClickHouse ``scores`` table. Raises :class:`BatchError`.

    ``data_type`` is inferred from ``value`` when absent: bool -> boolean (stored 1/0), number ->
    numeric, string -> categorical. ``id`` makes re-sent scores collapse; ``default_id`` (or a uuid4
    hex) otherwise.
    """
    if not isinstance(payload, dict):
        raise BatchError("body", "must be a JSON object")
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BatchError("name", "is required and must be a non-empty string")
    if len(name) > 200:
        raise BatchError("name", "must be at most 200 characters")
    value = payload.get("value")
    if value is None:
        raise BatchError("value", "is required")
    data_type = payload.get("data_type")
    if data_type is None:
        data_type = ("boolean" if isinstance(value, bool) else "numeric" if isinstance(value, (int, float))
                     else "categorical" if isinstance(value, str) else None)
        if data_type is None:
            raise BatchError("value", "must be a number, string or boolean")
    if data_type not in _DATA_TYPES:
        raise BatchError("data_type", f"must be one of {', '.join(_DATA_TYPES)}")
    number, text = _score_value(value, data_type)
    source = payload.get("source", "api")
    if source not in _SCORE_SOURCES:
        raise BatchError("source", f"must be one of {', '.join(_SCORE_SOURCES)}")
    score_id = _optional_str(payload, "id", 128) or default_id or uuid.uuid4().hex
    return {
        "project_id": project_id,
        "score_id": score_id,
        "trace_id": _require_hex(payload, "trace_id", 16, True),
        "span_id": _require_hex(payload, "span_id", 8, False),
        "name": name.strip(),
        "data_type": data_type,
        "value": number,
        "string_value": text,
        "comment": _optional_str(payload, "comment", MAX_COMMENT_CHARS),
        "source": source,
        "evaluator": "",
        "evaluator_version": "",
        "timestamp": now or datetime.now(timezone.utc),
    }


def _score_value(value: Any, data_type: str) -> tuple[float | None, str]:
    """(numeric value, string value) for the declared data type."""
    if data_type == "boolean":
        if isinstance(value, bool):
            return (1.0 if value else 0.0), ""
        if isinstance(value, (int, float)) and value in (0, 1):
            return float(value), ""
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return (1.0 if value.lower() == "true" else 0.0), ""
        raise BatchError("value", "must be true or false for a boolean score")
    if data_type == "numeric":
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        except OverflowError:  # an integer beyond float range
            number = math.nan
        if not math.isfinite(number):
            raise BatchError("value", "must be a finite number for a numeric score")
        return number, ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BatchError("value", "must be a string for a categorical score")
    text = value if isinstance(value, str) else str(value)
    if not text or len(text) > 1000:
        raise BatchError("value", "must be 1 to 1000 characters for a categorical score")
    return None, text
