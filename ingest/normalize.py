"""One decoded span, in any instrumentation convention -> the canonical record of ``core.span``.

Pure functions, no I/O. Decoders (``ingest.otlp``, ``ingest.json_batch``) build a :class:`RawSpan`
with attributes as plain Python values; :func:`to_record` validates it and maps the conventions
below into the typed columns. When two conventions give the same column, the precedence is
``evalforge.*`` > OTel GenAI (current, then deprecated) > Langfuse > OpenInference > OpenLLMetry /
Traceloop, except that structured message lists beat flat strings (``_SLOTS`` has the exact order).
Attributes that lost, or that map to no column, stay in ``attributes``.

Token convention (see ``core.span``): ``input_tokens`` includes cache read + cache creation, and
``output_tokens`` includes reasoning. The current OTel GenAI convention, OpenInference and
OpenLLMetry all report it that way, for Anthropic too (their Anthropic instrumentations add
``cache_read_input_tokens + cache_creation_input_tokens`` to ``input_tokens``), so those counts are
taken as they are. Two sources are summed instead:
- Langfuse ``usage_details`` keys are disjoint (``input`` excludes cached tokens), so every
  input-side key is added up (and every output-side key).
- Any source whose input count is *smaller* than its own cache counts cannot be inclusive (older
  instrumentations copied Anthropic's raw ``input_tokens``), so the cache counts are added.
  Likewise reasoning tokens larger than the output count are added to it.

Metadata from every convention lands in ``attributes`` under ``metadata.<key>``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from core.span import empty_record, ns_to_datetime
from core.span_schema import PREVIEW_CHARS
from ingest.conventions import (
    FIRST_TOKEN_EVENTS, _COUNT_SLOTS, _DIRECT_TEXT_SLOTS, _INDEXED, _INDEXED_KEY, _INDEXED_PREFIXES, _KIND_ALIASES,
    _METADATA_PREFIXES, _OPERATION_ALIASES, _OPERATION_KINDS, _SLOTS, _SPECIAL_KEYS, _SPECIAL_PREFIXES,
    _TAG_KEYS, _TEXT_SLOTS, _TOKEN_SLOTS,
)
from ingest.messages import convert_messages, from_openinference, indexed_genai_messages, invocation_model

UINT32_MAX = 2**32 - 1
_MAX_MESSAGE_INDEX_DIGITS = 6  # gen_ai.prompt.<n>.…: a million messages is far beyond any real call
MAX_NS = 2**63 - 1  # int64 nanoseconds: year 2262, well inside what datetime holds
_TRUNCATED_KEY = "evalforge.truncated"
_HEX = re.compile(r"[0-9a-f]+")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_OTEL_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUS = {0: "unset", 1: "ok", 2: "error"}
_TEMPLATE = dict(empty_record(), kind="span", status="unset", events="[]")
_CACHE_1H = "gen_ai.usage.cache_creation.1h_input_tokens"  # what enrich prices as one-hour cache writes
_ANTHROPIC_1H = "anthropic.usage.cache_creation.ephemeral_1h_input_tokens"


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied while normalising. Values over a limit are cut and counted."""

    max_attribute_bytes: int = 64 * 1024  # one attribute / event attribute value, UTF-8 bytes
    max_payload_bytes: int = 8 * 1024 * 1024  # input / output; big ones are offloaded by ingest later
    # Counts beyond which a span is rejected (not cut): they bound the work one request can cause.
    max_attributes: int = 10_000  # attributes of one span
    max_tags: int = 1_000  # tags of one span, before de-duplication


DEFAULT_LIMITS = Limits()


class SpanRejected(ValueError):
    """A span is unusable; ``field`` names the offending field for the 400 / partial-success message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(slots=True)
class Rejection:
    """One rejected span of a batch: its 0-based position, the bad field and why."""

    index: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


@dataclass(slots=True)
class RawSpan:
    """A decoded span before normalisation. Ids are lowercase hex; attribute values plain Python."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    kind: int = 0  # OTel SpanKind number
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)  # {name, time_unix_nano, attributes}
    links: list[dict[str, Any]] = field(default_factory=list)  # {trace_id, span_id, attributes}


@dataclass(slots=True)
class Resource:
    """What a resource (and its scope) contributes to each of its spans; build once per resource."""

    service_name: str = ""
    environment: str = ""
    release: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    truncated: int = 0


_RESOURCE_KEYS = {
    "service.name": ("service_name", 0),
    "evalforge.environment": ("environment", 0),
    "langfuse.environment": ("environment", 1),
    "deployment.environment.name": ("environment", 2),
    "deployment.environment": ("environment", 3),
    "evalforge.release": ("release", 0),
    "langfuse.release": ("release", 1),
    "service.version": ("release", 2),
}


def make_resource(
    attributes: dict[str, Any],
    scope_name: str = "",
    scope_version: str = "",
    limits: Limits = DEFAULT_LIMITS,
) -> Resource:
    """Resource attributes (+ instrumentation scope) -> :class:`Resource`.

    ``service.name``, environment and release feed columns; everything else is kept in the span's
    attributes as ``resource.<key>``; the scope as ``otel.scope.name`` / ``otel.scope.version``.
    """
    res = Resource()
    ranks: dict[str, int] = {}
    counter = [0]
    for key, value in attributes.items():
        spec = _RESOURCE_KEYS.get(key)
        if spec is not None and isinstance(value, str):
            slot, rank = spec
            if rank < ranks.get(slot, 99):
                ranks[slot] = rank
                setattr(res, slot, value)
            if slot == "service_name":
                continue
        res.attributes["resource." + key] = _attr_str(value, limits.max_attribute_bytes, counter)
    if scope_name:
        res.attributes["otel.scope.name"] = scope_name
    if scope_version:
        res.attributes["otel.scope.version"] = scope_version
    res.truncated = counter[0]
    return res


def to_record(
    project_id: str,
    resource: Resource | dict[str, Any],
    scope: tuple[str, str] | None,
    span: RawSpan,
    *,
    limits: Limits = DEFAULT_LIMITS,
    ingested_at: datetime | None = None,
) -> dict[str, Any]:
    """Validate ``span`` and build its canonical record (``core.span.COLUMNS``).

    ``resource`` is best a :class:`Resource` built once per OTLP resource; a plain attribute dict
    (and ``scope`` as ``(name, version)``) is accepted for convenience. Raises :class:`SpanRejected`
    naming the field when the span cannot be stored. Cost stays ``None`` unless the client sent one
    (``cost_source='user'``); processors compute the rest.
    """
    if not isinstance(resource, Resource):
        resource = make_resource(resource, *(scope or ("", "")), limits=limits)
    _validate(span)
    check_attribute_count(len(span.attributes), limits)
    max_attr = limits.max_attribute_bytes
    counter = [resource.truncated]
    attrs = dict(resource.attributes)
    found: dict[str, tuple[int, str, Any]] = {}
    tags: list[str] = []
    indexed: dict[str, dict[int, dict[str, Any]]] = {}
    slots_get, found_get = _SLOTS.get, found.get
    seen_tags: set[str] = set()
    # The hot loop: one dict lookup per attribute; plain short strings are stored without a call.
    key = ""
    try:
        for key, value in span.attributes.items():
            spec = slots_get(key)
            if spec is None:
                if key.startswith(_SPECIAL_PREFIXES) or key in _SPECIAL_KEYS:
                    _special(key, value, attrs, (tags, seen_tags, limits.max_tags), indexed, max_attr, counter)
                elif type(value) is str and len(value) * 4 <= max_attr:
                    attrs[key] = value
                else:
                    attrs[key] = _attr_str(value, max_attr, counter)
                continue
            slot, rank = spec
            current = found_get(slot)
            if current is None:
                found[slot] = (rank, key, value)
            elif rank < current[0]:
                found[slot] = (rank, key, value)
                attrs[current[1]] = _attr_str(current[2], max_attr, counter)
            else:
                attrs[key] = _attr_str(value, max_attr, counter)
    except _Unencodable as exc:
        raise SpanRejected(f"attributes.{key[:100]}", exc.message) from None
    for prefix, messages in indexed.items():
        slot, rank, _ = _INDEXED[prefix]
        if prefix.startswith("llm."):
            value = [from_openinference(messages[i]) for i in sorted(messages)]
        else:
            value = indexed_genai_messages([messages[i] for i in sorted(messages)])
        current = found.get(slot)
        if current is None or rank < current[0]:
            found[slot] = (rank, prefix, value)
            if current is not None:
                attrs[current[1]] = _attr_str(current[2], max_attr, counter)
        else:
            attrs[prefix] = _attr_str(value, max_attr, counter)

    text: dict[str, str] = {}
    for slot in _TEXT_SLOTS.intersection(found):
        value = found[slot][2]
        text[slot] = value if type(value) is str else _as_text(value)
    get = text.get
    request_model = get("request_model", "") or invocation_model(span.attributes)
    start_ns, end_ns = span.start_ns, span.end_ns
    # copying a ready record and setting what varies is ~4x cheaper than a 45-key dict display
    rec = _TEMPLATE.copy()
    rec["project_id"] = project_id
    rec["trace_id"] = span.trace_id
    rec["span_id"] = span.span_id
    rec["parent_span_id"] = span.parent_span_id
    rec["name"] = span.name
    rec["service_name"] = get("service_name") or resource.service_name
    rec["start_time"] = ns_to_datetime(start_ns)
    rec["end_time"] = ns_to_datetime(end_ns)
    rec["duration_ms"] = (end_ns - start_ns) / 1e6
    rec["environment"] = get("environment") or resource.environment
    rec["release"] = get("release") or resource.release
    rec["tags"] = tags
    rec["attributes"] = attrs
    rec["ingested_at"] = ingested_at or datetime.now(timezone.utc)
    rec["request_model"] = request_model
    rec["model"] = get("response_model") or request_model
    if text:
        for slot in _DIRECT_TEXT_SLOTS.intersection(text):
            rec[slot] = text[slot]
        if "provider" in text:
            provider = text["provider"].lower()
            # Vercel AI SDK names the API too ("openai.chat" is openai); GenAI's own names keep their
            # dots ("azure.ai.openai", "aws.bedrock" are providers of their own).
            rec["provider"] = provider.partition(".")[0] if found["provider"][1] == "ai.model.provider" else provider
    _set_operation_and_kind(rec, get)
    if span.status_code or span.status_message or span.events or "level" in found or "error_type" in found:
        _set_status(rec, span, get, max_attr, counter)
    if not _TOKEN_SLOTS.isdisjoint(found):
        _set_tokens(rec, found, attrs, max_attr, counter)
    if "input" in found or "output" in found or span.events:
        convert_messages(found, span.attributes)
        _set_payloads(rec, span, found, limits.max_payload_bytes, counter)
    if "cost" in found or "cost_details" in found:
        _set_cost(rec, found, attrs, max_attr, counter)
    if "ttft_ms" in found or "ttft_s" in found or "completion_start" in found:
        _set_ttft(rec, found)
    elif span.events:
        _ttft_from_events(rec, span)
    if _ANTHROPIC_1H in attrs and _CACHE_1H not in attrs:  # the anthropic SDK's own spans: priced higher
        attrs[_CACHE_1H] = attrs[_ANTHROPIC_1H]
    if 1 < span.kind < len(_OTEL_KINDS):
        attrs["otel.span_kind"] = _OTEL_KINDS[span.kind]
    if span.links:
        attrs["otel.links"] = _attr_str(span.links, max_attr, counter)
    if counter[0]:
        attrs[_TRUNCATED_KEY] = str(counter[0])
    return rec


def check_attribute_count(count: int, limits: Limits) -> None:
    """Raise :class:`SpanRejected` for a span with more attributes than ``limits`` allow (decoders call
    it before converting the attributes, which is most of the work for a hostile span)."""
    if count > limits.max_attributes:
        raise SpanRejected("attributes", f"{count} attributes; the limit is {limits.max_attributes} per span")


def _special(key, value, attrs, tags: tuple[list[str], set[str], int], indexed, limit, counter) -> None:
    """Attributes that are neither plain nor a single column: tags, metadata, indexed messages."""
    if key in _TAG_KEYS:
        _add_tags(*tags, value)
    elif key == "metadata":
        _expand_metadata(attrs, value, limit, counter)
    elif key.startswith(_INDEXED_PREFIXES) and (m := _INDEXED_KEY.fullmatch(key)):
        prefix, index, part = m.groups()
        if len(index) > _MAX_MESSAGE_INDEX_DIGITS:  # int() of 4,300+ digits raises; no call has 10^6 messages
            raise SpanRejected(f"attributes.{key[:100]}", f"message index has more than {_MAX_MESSAGE_INDEX_DIGITS} digits")
        drop = _INDEXED[prefix][2]
        if drop and part.startswith(drop):
            part = part[len(drop):]
        indexed.setdefault(prefix, {}).setdefault(int(index), {})[part] = value
    elif key.startswith(_METADATA_PREFIXES):
        attrs[_metadata_key(key)] = _attr_str(value, limit, counter)
    else:  # e.g. "gen_ai.prompt.name.extra": looks indexed but is not
        attrs[key] = _attr_str(value, limit, counter)


def _validate(span: RawSpan) -> None:
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != 32 or not _HEX.fullmatch(trace_id):
        raise SpanRejected("trace_id", "must be 16 bytes (32 lowercase hex characters)")
    if trace_id == _ZERO_TRACE:
        raise SpanRejected("trace_id", "must not be all zeros")
    if len(span_id) != 16 or not _HEX.fullmatch(span_id):
        raise SpanRejected("span_id", "must be 8 bytes (16 lowercase hex characters)")
    if span_id == _ZERO_SPAN:
        raise SpanRejected("span_id", "must not be all zeros")
    if parent and (len(parent) != 16 or not _HEX.fullmatch(parent)):
        raise SpanRejected("parent_span_id", "must be empty or 8 bytes (16 lowercase hex characters)")
    if not span.name:
        raise SpanRejected("name", "must not be empty")
    if not 0 < span.start_ns <= MAX_NS:
        raise SpanRejected("start_time", "must be set (unix nanoseconds > 0, before year 2262)")
    if span.end_ns > MAX_NS:
        raise SpanRejected("end_time", "must be before year 2262")
    if span.end_ns < span.start_ns:
        raise SpanRejected("end_time", "must not be before start_time")


def _attr_str(value: Any, limit: int, counter: list[int]) -> str:
    """Attribute value -> stored string: strings as they are, anything else JSON-encoded."""
    if not isinstance(value, str):
        value = _dumps(value)
    return _truncate(value, limit, counter)


class _Unencodable(SpanRejected):
    """An attribute value that has no JSON text we would store (nested too deep, a huge integer)."""

    def __init__(self, message: str) -> None:
        super().__init__("attributes", message)


def _dumps(value: Any) -> str:
    """JSON text of an attribute value; orjson, falling back for what it refuses (ints > 64 bit).

    Raises :class:`_Unencodable` for values nested deeper than orjson's 255 levels that the
    fallback cannot write either (recursion), or integers beyond Python's int-to-text limit.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        try:
            return json.dumps(value, default=str, ensure_ascii=False, skipkeys=True)
        except (RecursionError, ValueError):
            raise _Unencodable("value is nested too deep (at most 255 levels) or holds an integer too long to store") from None


def _truncate(text: str, limit: int, counter: list[int]) -> str:
    # len() is in characters; UTF-8 is at most 4 bytes each, so only long strings need encoding
    if len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    counter[0] += 1
    return data[:limit].decode("utf-8", "ignore") + f"…[truncated {len(data) - limit} bytes]"


def _metadata_key(key: str) -> str:
    for prefix in _METADATA_PREFIXES:
        if key.startswith(prefix):
            return "metadata." + key[len(prefix):]
    return key


def _as_text(value: Any) -> str:
    """A non-string attribute value used as a text column: numbers plainly, the rest as JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return _dumps(value)


def _add_tags(tags: list[str], seen: set[str], max_tags: int, value: Any) -> None:
    """Append each new tag of ``value`` (a tag, a list, or a JSON list as text) to ``tags`` in order;
    ``seen`` mirrors ``tags`` so that de-duplication stays linear."""
    if isinstance(value, str):
        if value.startswith("["):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                value = [value]
        else:
            value = [value]
    if not isinstance(value, (list, tuple)):
        value = [value]
    if len(tags) + len(value) > max_tags:
        raise SpanRejected("tags", f"more than {max_tags} tags on one span")
    for tag in value:
        tag = tag if isinstance(tag, str) else _dumps(tag)
        if tag and tag not in seen:
            seen.add(tag)
            tags.append(tag)


def _expand_metadata(attrs: dict[str, str], value: Any, limit: int, counter: list[int]) -> None:
    """OpenInference ``metadata`` is a JSON object string: one ``metadata.<key>`` per entry."""
    parsed = value
    if isinstance(value, str):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = None
    if isinstance(parsed, dict):
        for key, item in parsed.items():
            attrs["metadata." + str(key)] = _attr_str(item, limit, counter)
    else:
        attrs["metadata"] = _attr_str(value, limit, counter)


def _set_operation_and_kind(rec: dict[str, Any], get: Any) -> None:
    operation = get("operation")
    if operation:
        operation = operation.lower()
        operation = rec["operation"] = _OPERATION_ALIASES.get(operation, operation)
    kind = get("kind")
    kind = _KIND_ALIASES.get(kind.lower()) if kind else None
    if kind is None:
        kind = _OPERATION_KINDS.get(operation) if operation else None
    if kind is None:
        kind = "llm" if rec["model"] else "span"
    rec["kind"] = kind


def _set_status(rec, span, get, limit, counter) -> None:
    status = _STATUS.get(span.status_code, "unset")
    message = span.status_message
    error_type = rec["error_type"]
    for event in span.events:
        if event.get("name") == "exception":
            event_attrs = event.get("attributes") or {}
            if not error_type and isinstance(event_attrs.get("exception.type"), str):
                error_type = event_attrs["exception.type"]
            if not message and isinstance(event_attrs.get("exception.message"), str):
                message = event_attrs["exception.message"]
    if (get("level") or "").upper() == "ERROR":
        status = "error"
        message = message or get("level_message", "")
    if status == "unset" and rec["error_type"]:
        status = "error"  # gen_ai convention: error.type is set only when the call failed
    rec["status"] = status
    rec["status_message"] = _truncate(message, limit, counter)
    rec["error_type"] = error_type
    if span.events:
        events = [
            {"name": e.get("name", ""), "time": _event_time(e.get("time_unix_nano")),
             "attributes": {k: _truncate(v, limit, counter) if isinstance(v, str) else v
                            for k, v in (e.get("attributes") or {}).items()}}
            for e in span.events
        ]
        try:
            rec["events"] = orjson.dumps(events, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            rec["events"] = json.dumps(events, default=str, ensure_ascii=False, skipkeys=True)


def _event_time(ns: Any) -> datetime | None:
    if isinstance(ns, int) and 0 < ns <= MAX_NS:
        return ns_to_datetime(ns)
    return None


def _to_count(value: Any) -> int | None:
    """A token count as sent (int, float or numeric string) -> int in UInt32 range, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value):
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(float(value))
        except (ValueError, OverflowError):
            return None
    else:
        return None
    return min(max(number, 0), UINT32_MAX)


def _langfuse_usage(value: Any) -> dict[str, int] | None:
    """Langfuse usage_details (disjoint keys) -> inclusive counts in our convention."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(value, dict):
        return None
    out = {"input_tokens": 0, "output_tokens": 0, "cache_read": 0, "cache_creation": 0, "reasoning": 0}
    total = None
    for key, raw in value.items():
        number = _to_count(raw)
        if number is None:
            continue
        key = str(key).lower()
        if key in ("total", "total_tokens"):
            total = number
            continue
        if "reasoning" in key:
            out["reasoning"] += number
        if "cache_read" in key or "cached" in key:
            out["cache_read"] += number
        elif "cache_creation" in key or "cache_write" in key:
            out["cache_creation"] += number
        side = "output_tokens" if ("reasoning" in key or key.startswith(("output", "completion"))) \
            else "input_tokens"
        out[side] += number
    if total is not None:
        out["total_tokens"] = total
    return out


def _set_tokens(rec, found, attrs, limit, counter) -> None:
    counts: dict[str, int | None] = {}
    for slot in _COUNT_SLOTS:
        entry = found.get(slot)
        if entry is None:
            continue
        value = entry[2]
        number = value if type(value) is int and 0 <= value <= UINT32_MAX else _to_count(value)
        if number is None:  # unusable as a count: keep what was sent
            attrs[entry[1]] = _attr_str(value, limit, counter)
        counts[slot] = number
    if "usage_details" in found:
        langfuse = _langfuse_usage(found["usage_details"][2])
        if langfuse is None:
            attrs["langfuse.observation.usage_details"] = _attr_str(found["usage_details"][2], limit, counter)
        else:  # lowest precedence: only fills what no other convention reported
            for slot, number in langfuse.items():
                if counts.get(slot) is None:
                    counts[slot] = number
    cache_read = counts.get("cache_read") or 0
    cache_creation = counts.get("cache_creation") or 0
    reasoning = counts.get("reasoning") or 0
    input_tokens = counts.get("input_tokens")
    output_tokens = counts.get("output_tokens")
    if input_tokens is not None and input_tokens < cache_read + cache_creation:
        input_tokens += cache_read + cache_creation  # cannot be inclusive: it was Anthropic's raw count
    if output_tokens is not None and output_tokens < reasoning:
        output_tokens += reasoning
    input_tokens = min(input_tokens or 0, UINT32_MAX)
    output_tokens = min(output_tokens or 0, UINT32_MAX)
    total = counts.get("total_tokens") or 0
    if total < input_tokens + output_tokens:
        total = input_tokens + output_tokens
    rec["input_tokens"] = input_tokens
    rec["output_tokens"] = output_tokens
    rec["cache_read_tokens"] = cache_read
    rec["cache_creation_tokens"] = cache_creation
    rec["reasoning_tokens"] = reasoning
    rec["total_tokens"] = min(total, UINT32_MAX)


def _payload_text(value: Any) -> str:
    return value if isinstance(value, str) else _dumps(value)


def _event_payload(span: RawSpan, event_name: str, key: str) -> Any:
    # OTel GenAI conventions before 1.28 sent prompts / completions as span events
    for event in span.events:
        if event.get("name") == event_name:
            value = (event.get("attributes") or {}).get(key)
            if value is not None:
                return value
    return None


def _set_payloads(rec, span, found, limit, counter) -> None:
    for column, event_name, event_key in (("input", "gen_ai.content.prompt", "gen_ai.prompt"),
                                          ("output", "gen_ai.content.completion", "gen_ai.completion")):
        entry = found.get(column)
        value = entry[2] if entry is not None else (_event_payload(span, event_name, event_key)
                                                    if span.events else None)
        if value is None:
            continue
        try:
            text = _truncate(_payload_text(value), limit, counter)
        except _Unencodable as exc:
            raise SpanRejected(column, exc.message) from None
        rec[column] = text
        rec[column + "_preview"] = text[:PREVIEW_CHARS]


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _set_cost(rec, found, attrs, limit, counter) -> None:
    cost = None
    if "cost" in found:
        cost = _to_float(found["cost"][2])
        if cost is None:
            attrs[found["cost"][1]] = _attr_str(found["cost"][2], limit, counter)
    if "cost_details" in found:
        details = raw = found["cost_details"][2]
        attrs["langfuse.observation.cost_details"] = _attr_str(raw, limit, counter)  # keep the breakdown
        try:
            details = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            details = None
        if cost is None and isinstance(details, dict):
            cost = _to_float(details["total"]) if "total" in details else \
                sum(filter(None, (_to_float(v) for v in details.values())), 0.0)
    if cost is not None:
        rec["cost"] = cost
        rec["cost_source"] = "user"


def _ttft_from_events(rec: dict[str, Any], span: RawSpan) -> None:
    """Time to first token from a first-token / first-chunk event (OpenInference, OpenLLMetry)."""
    first = min((e["time_unix_nano"] for e in span.events
                 if e.get("name") in FIRST_TOKEN_EVENTS and isinstance(e.get("time_unix_nano"), int)
                 and e["time_unix_nano"] >= span.start_ns), default=None)
    if first is not None:
        rec["ttft_ms"] = (first - span.start_ns) / 1e6


def _set_ttft(rec: dict[str, Any], found: dict[str, tuple[int, str, Any]]) -> None:
    ttft = None
    if "ttft_ms" in found:
        ttft = _to_float(found["ttft_ms"][2])
    if ttft is None and "ttft_s" in found:
        seconds = _to_float(found["ttft_s"][2])
        ttft = seconds * 1000 if seconds is not None else None
    if ttft is None and "completion_start" in found:
        value = found["completion_start"][2]
        try:
            started = datetime.fromisoformat(str(value).replace("Z", "+00:00").strip('"'))
            if started.tzinfo is None:
                started = started.replace(tzinfo=timezone.utc)
            ttft = _to_float((started - rec["start_time"]).total_seconds() * 1000)
        except ValueError:
            ttft = None
    rec["ttft_ms"] = ttft
