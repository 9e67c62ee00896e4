"""Anthropic: messages.create (incl. stream=True) and the messages.stream() context managers, on
``client.messages`` and ``client.beta.messages``.

Token convention: Anthropic's ``input_tokens`` EXCLUDES cached tokens, so the span's
``gen_ai.usage.input_tokens`` is input + cache_read + cache_creation (what EvalForge and the GenAI
conventions mean by input); the cache parts are also emitted on their own. ``output_tokens``
already includes thinking tokens, reported as ``gen_ai.usage.reasoning.output_tokens``.
"""

from __future__ import annotations

from typing import Any

from ._genai import (
    INPUT_MESSAGES,
    OUTPUT_MESSAGES,
    SYSTEM_INSTRUCTIONS,
    TOOL_DEFINITIONS,
    Accumulator,
    Endpoint,
    dump,
    get,
    media_part,
    parse_arguments,
    text_part,
    usage_attributes,
)

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_call"}


def _block_part(block: Any) -> dict[str, Any]:
    kind = get(block, "type")
    if kind == "text":
        return text_part(get(block, "text"))
    if kind == "tool_use" or kind == "server_tool_use":
        return {"type": "tool_call", "id": get(block, "id"), "name": get(block, "name"), "arguments": dump(get(block, "input"))}
    if kind == "tool_result":
        content = get(block, "content")
        if not isinstance(content, str) and content is not None:
            content = [dump(c) for c in content]
        return {"type": "tool_call_response", "id": get(block, "tool_use_id"), "response": content}
    if kind == "thinking":
        return {"type": "reasoning", "content": get(block, "thinking")}
    if kind in ("image", "document"):
        source = get(block, "source")
        if get(source, "type") == "url":
            return media_part(kind, get(source, "url"))
        return {"type": "blob", "modality": kind, "mime_type": get(source, "media_type"), "content": "<omitted>"}
    return {"type": kind or "unknown"}


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    if isinstance(content, (list, tuple)):
        return [_block_part(b) for b in content]
    return []


def _system(system: Any) -> list[dict[str, Any]] | None:
    if isinstance(system, str):
        return [text_part(system)]
    if isinstance(system, (list, tuple)):
        return [text_part(get(b, "text")) for b in system]
    return None


def request(kw: dict[str, Any]) -> dict[str, Any]:
    stops = kw.get("stop_sequences")
    messages = kw.get("messages")
    return {
        "gen_ai.request.model": kw.get("model"),
        "gen_ai.request.max_tokens": kw.get("max_tokens"),
        "gen_ai.request.temperature": kw.get("temperature"),
        "gen_ai.request.top_p": kw.get("top_p"),
        "gen_ai.request.top_k": kw.get("top_k"),
        "gen_ai.request.stop_sequences": list(stops) if isinstance(stops, (list, tuple)) else None,
        "gen_ai.request.stream": True if kw.get("stream") is True else None,
        SYSTEM_INSTRUCTIONS: _system(kw.get("system")),
        INPUT_MESSAGES: [{"role": get(m, "role"), "parts": _parts(get(m, "content"))} for m in messages]
        if isinstance(messages, (list, tuple))  # never consume a user's iterator
        else None,
        TOOL_DEFINITIONS: [dump(t) for t in kw["tools"]] if isinstance(kw.get("tools"), (list, tuple)) else None,
    }


def _usage(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {}
    uncached = get(usage, "input_tokens")
    cache_read = get(usage, "cache_read_input_tokens")
    cache_creation = get(usage, "cache_creation_input_tokens")
    total_input = None
    if isinstance(uncached, int):
        total_input = uncached + (cache_read or 0) + (cache_creation or 0)
    return usage_attributes(
        input_tokens=total_input,
        output_tokens=get(usage, "output_tokens"),
        cache_read=cache_read,
        cache_creation=cache_creation,
        reasoning=get(get(usage, "output_tokens_details"), "thinking_tokens"),
        cache_creation_1h=get(get(usage, "cache_creation"), "ephemeral_1h_input_tokens"),
    )


def _finish(stop_reason: Any) -> str | None:
    return FINISH_REASONS.get(stop_reason, stop_reason) if stop_reason else None


def response(msg: Any) -> dict[str, Any]:
    finish = _finish(get(msg, "stop_reason"))
    attrs = {
        "gen_ai.response.id": get(msg, "id"),
        "gen_ai.response.model": get(msg, "model"),
        "gen_ai.response.finish_reasons": [finish] if finish else None,
        OUTPUT_MESSAGES: [{"role": get(msg, "role") or "assistant", "parts": _parts(get(msg, "content")), "finish_reason": finish}],
    }
    attrs.update(_usage(get(msg, "usage")))
    return attrs


class StreamAccumulator(Accumulator):
    """Rebuilds the message from raw SSE events (also fine with MessageStream's extra events)."""

    def __init__(self) -> None:
        self.id = self.model = self.stop_reason = None
        self.usage: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}

    def _merge_usage(self, usage: Any) -> None:
        # message_delta usage is cumulative; later non-null values win.
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation",
                    "output_tokens_details"):
            value = get(usage, key)
            if value is not None:
                self.usage[key] = value

    def add(self, event: Any) -> bool:
        kind = get(event, "type")
        if kind == "message_start":
            msg = get(event, "message")
            self.id, self.model = get(msg, "id"), get(msg, "model")
            self._merge_usage(get(msg, "usage"))
        elif kind == "content_block_start":
            block = get(event, "content_block")
            self.blocks[get(event, "index", 0)] = {"block": block, "text": [], "json": []}
        elif kind == "content_block_delta":
            slot = self.blocks.setdefault(get(event, "index", 0), {"block": None, "text": [], "json": []})
            delta = get(event, "delta")
            dtype = get(delta, "type")
            if dtype == "text_delta":
                slot["text"].append(get(delta, "text"))
            elif dtype == "thinking_delta":
                slot["text"].append(get(delta, "thinking"))
            elif dtype == "input_json_delta":
                slot["json"].append(get(delta, "partial_json"))
            return True
        elif kind == "message_delta":
            self.stop_reason = get(get(event, "delta"), "stop_reason") or self.stop_reason
            self._merge_usage(get(event, "usage"))
        return False

    def attributes(self) -> dict[str, Any]:
        parts = []
        for _, slot in sorted(self.blocks.items()):
            block = slot["block"]
            kind = get(block, "type")
            if kind in ("tool_use", "server_tool_use"):
                args = parse_arguments("".join(slot["json"])) if slot["json"] else dump(get(block, "input"))
                parts.append({"type": "tool_call", "id": get(block, "id"), "name": get(block, "name"), "arguments": args})
            elif kind == "thinking":
                parts.append({"type": "reasoning", "content": "".join(slot["text"])})
            else:
                parts.append(text_part((get(block, "text") or "") + "".join(slot["text"])))
        finish = _finish(self.stop_reason)
        attrs = {
            "gen_ai.response.id": self.id,
            "gen_ai.response.model": self.model,
            "gen_ai.response.finish_reasons": [finish] if finish else None,
            OUTPUT_MESSAGES: [{"role": "assistant", "parts": parts, "finish_reason": finish}],
        }
        attrs.update(_usage(self.usage or None))
        return attrs


MESSAGES = Endpoint("chat", request, response, StreamAccumulator)

# client.messages and client.beta.messages (tool / computer-use / files betas): same shapes
TARGETS = ((("messages",), "create", MESSAGES), (("beta", "messages"), "create", MESSAGES))
STREAM_MANAGER_TARGETS = ((("messages",), "stream", MESSAGES), (("beta", "messages"), "stream", MESSAGES))
_MODULES = ("anthropic.resources.messages", "anthropic.resources.beta.messages.messages")
CLASS_TARGETS = tuple((m, "Messages", "AsyncMessages", "create", MESSAGES) for m in _MODULES)
CLASS_STREAM_MANAGER_TARGETS = tuple((m, "Messages", "AsyncMessages", "stream", MESSAGES) for m in _MODULES)


def provider_name(client: Any) -> str:
    return "anthropic"


def stream_types() -> tuple[type, ...]:
    import anthropic

    return (anthropic.Stream, anthropic.AsyncStream)


def is_async_client(client: Any) -> bool:
    import anthropic

    return isinstance(client, anthropic.AsyncAnthropic)
