"""Shared GenAI span machinery: one ``LLMCall`` per model call, built once, ended once.

Provider modules only translate their request kwargs / responses / stream events into attribute
dicts (OTel GenAI semantic conventions); this module owns the span, timing, content capture
(``capture_content`` / ``mask``) and error recording, for sync and async alike.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from opentelemetry.trace import SpanKind

from .._client import State
from .._guard import capture_internal_exceptions
from .._prompts import prompt_link
from .._tracing import record_error

# attribute keys used by several providers
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
CONTENT_KEYS = frozenset({INPUT_MESSAGES, OUTPUT_MESSAGES, SYSTEM_INSTRUCTIONS, TOOL_DEFINITIONS})
MAX_CONTENT_CHARS = 64_000


@dataclass(frozen=True)
class Endpoint:
    """How to read one API method: request kwargs -> attrs, response -> attrs, stream -> accumulator."""

    operation: str  # gen_ai.operation.name
    request: Callable[[dict[str, Any]], dict[str, Any]]
    response: Callable[[Any], dict[str, Any]]
    accumulator: Optional[Callable[[], "Accumulator"]] = None


class Accumulator:
    """Collects stream events; ``attributes()`` returns what a non-streamed response would have given."""

    def add(self, event: Any) -> bool:  # pragma: no cover - interface
        """Take one event; True when it carried content (text, a tool call's name or arguments,
        thinking): time to first token is measured to the first such event, not to the envelope
        (``message_start``, ``response.created``, a chunk with only the role)."""
        raise NotImplementedError

    def attributes(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError


def dump(obj: Any) -> Any:
    """Pydantic model / TypedDict / plain value -> plain JSON-able value."""
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json", exclude_none=True)
    return obj


def get(obj: Any, key: str, default: Any = None) -> Any:
    """Read a field from a dict or an object alike (requests are dicts, responses are models)."""
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def parse_arguments(raw: Any) -> Any:
    """Tool-call arguments arrive as a JSON string; keep the string if it does not parse."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def clean(attrs: dict[str, Any]) -> dict[str, Any]:
    """Drop unset values and provider sentinels; OTel rejects None attribute values."""
    out = {}
    for k, v in attrs.items():
        if v is None or type(v).__name__ in ("NotGiven", "Omit"):
            continue
        out[k] = v
    return out


class LLMCall:
    """The span of one model call. ``finish``/``fail`` are idempotent: the span ends exactly once."""

    __slots__ = ("span", "state", "start_ns", "first_chunk_ns", "_ended", "_lock")

    def __init__(self, state: State, provider: str, endpoint: Endpoint, kwargs: dict[str, Any]) -> None:
        self.state = state
        request = clean(endpoint.request(kwargs))
        model = request.get("gen_ai.request.model", "")
        request["gen_ai.operation.name"] = endpoint.operation
        request["gen_ai.provider.name"] = provider
        request["evalforge.span.kind"] = "embedding" if endpoint.operation == "embeddings" else "llm"
        request.update(prompt_link(kwargs))  # a compiled evalforge prompt names its version
        self._content(request)
        self.span = state.tracer.start_span(
            f"{endpoint.operation} {model}".strip(), kind=SpanKind.CLIENT, attributes=request
        )
        self.start_ns = time.time_ns()
        self.first_chunk_ns = 0
        self._ended = False
        self._lock = threading.Lock()

    def _content(self, attrs: dict[str, Any]) -> None:
        """Serialise (or strip) captured content in place, honouring capture_content and mask."""
        opts = self.state.options
        for key in CONTENT_KEYS.intersection(attrs):
            if not opts.capture_content:
                del attrs[key]
                continue
            value = attrs[key]
            if opts.mask is not None:
                value = opts.mask(value)
            text = json.dumps(value, ensure_ascii=False, default=str)
            attrs[key] = text if len(text) <= MAX_CONTENT_CHARS else text[:MAX_CONTENT_CHARS] + "…"

    def chunk(self) -> None:
        """The first content of a stream arrived (time to first token; later calls are ignored)."""
        if not self.first_chunk_ns:
            self.first_chunk_ns = time.time_ns()

    @property
    def ended(self) -> bool:
        return self._ended

    def _claim(self) -> bool:
        with self._lock:
            if self._ended:
                return False
            self._ended = True
            return True

    def _set(self, attrs: dict[str, Any] | None) -> None:
        if attrs:
            attrs = clean(attrs)
            self._content(attrs)
            self.span.set_attributes(attrs)

    def finish(self, attrs: dict[str, Any] | None) -> None:
        if not self._claim():
            return
        with capture_internal_exceptions():
            self._set(attrs)
            if self.first_chunk_ns:
                self.span.set_attribute(
                    "gen_ai.response.time_to_first_chunk", (self.first_chunk_ns - self.start_ns) / 1e9
                )
        with capture_internal_exceptions():
            self.span.end()

    def fail(self, exc: BaseException, attrs: dict[str, Any] | None = None) -> None:
        if not self._claim():
            return
        with capture_internal_exceptions():
            self._set(attrs)
            record_error(self.span, exc)
        with capture_internal_exceptions():
            self.span.end()


def usage_attributes(
    input_tokens: Any = None,
    output_tokens: Any = None,
    cache_read: Any = None,
    cache_creation: Any = None,
    reasoning: Any = None,
    cache_creation_1h: Any = None,
) -> dict[str, Any]:
    """Usage in the EvalForge convention: input includes cache read+creation, output includes reasoning;
    ``cache_creation_1h`` is the part of ``cache_creation`` written for one hour (priced higher)."""
    attrs: dict[str, Any] = {}
    if isinstance(input_tokens, int):
        attrs["gen_ai.usage.input_tokens"] = input_tokens
    if isinstance(output_tokens, int):
        attrs["gen_ai.usage.output_tokens"] = output_tokens
    if isinstance(cache_read, int):
        attrs["gen_ai.usage.cache_read.input_tokens"] = cache_read
    if isinstance(cache_creation, int):
        attrs["gen_ai.usage.cache_creation.input_tokens"] = cache_creation
    if isinstance(reasoning, int):
        attrs["gen_ai.usage.reasoning.output_tokens"] = reasoning
    if isinstance(cache_creation_1h, int) and cache_creation_1h:
        attrs["gen_ai.usage.cache_creation.1h_input_tokens"] = cache_creation_1h
    return attrs


def text_part(text: Any) -> dict[str, Any]:
    return {"type": "text", "content": text}


def media_part(modality: str, uri: Any) -> dict[str, Any]:
    # Inline data URLs can be megabytes of base64: keep only their kind, never the bytes.
    if isinstance(uri, str) and uri.startswith("data:"):
        return {"type": "blob", "modality": modality, "mime_type": uri[5 : uri.find(";")] or None, "content": "<omitted>"}
    return {"type": "uri", "modality": modality, "uri": uri}
