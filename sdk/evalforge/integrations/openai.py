"""OpenAI: chat.completions (create, parse, stream=True), responses (create, parse, stream), embeddings.

The SDK's own ``chat.completions.stream()`` / ``responses.stream()`` helpers call ``create`` under the
hood, so they are traced through it (the raw stream they wrap is instrumented in place).

Only translation lives here: request kwargs / responses / stream events -> GenAI attributes.
Token convention: OpenAI's ``prompt_tokens`` / ``input_tokens`` already include cached tokens and
``completion_tokens`` include reasoning tokens, so they map straight through.
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

# -- chat.completions -------------------------------------------------------------------------------


def _chat_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, (list, tuple)):
        return []
    parts = []
    for part in content:
        kind = get(part, "type")
        if kind == "text":
            parts.append(text_part(get(part, "text")))
        elif kind == "image_url":
            parts.append(media_part("image", get(get(part, "image_url"), "url")))
        elif kind == "refusal":
            parts.append({"type": "refusal", "content": get(part, "refusal")})
        else:
            parts.append({"type": kind or "unknown"})
    return parts


def _tool_call_parts(tool_calls: Any) -> list[dict[str, Any]]:
    parts = []
    for call in tool_calls or ():
        fn = get(call, "function")
        parts.append(
            {
                "type": "tool_call",
                "id": get(call, "id"),
                "name": get(fn, "name"),
                "arguments": parse_arguments(get(fn, "arguments")),
            }
        )
    return parts


def chat_input_messages(messages: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not isinstance(messages, (list, tuple)):
        return out  # never iterate a user's generator: it would be consumed before the request
    for msg in messages:
        role = get(msg, "role")
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": get(msg, "tool_call_id"), "response": dump(get(msg, "content"))}]
        else:
            parts = _chat_parts(get(msg, "content")) + _tool_call_parts(get(msg, "tool_calls"))
            fn_call = get(msg, "function_call")
            if fn_call:
                parts.append({"type": "tool_call", "name": get(fn_call, "name"), "arguments": parse_arguments(get(fn_call, "arguments"))})
        out.append({"role": role, "parts": parts})
    return out


def _response_format(fmt: Any) -> str | None:
    if fmt is None or type(fmt).__name__ in ("NotGiven", "Omit"):
        return None
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        return "json" if kind in ("json_object", "json_schema") else kind
    return "json"  # a pydantic class given to .parse()


def chat_request(kw: dict[str, Any]) -> dict[str, Any]:
    stop = kw.get("stop")
    return {
        "gen_ai.request.model": kw.get("model"),
        "gen_ai.request.temperature": kw.get("temperature"),
        "gen_ai.request.top_p": kw.get("top_p"),
        "gen_ai.request.max_tokens": kw.get("max_completion_tokens") or kw.get("max_tokens"),
        "gen_ai.request.frequency_penalty": kw.get("frequency_penalty"),
        "gen_ai.request.presence_penalty": kw.get("presence_penalty"),
        "gen_ai.request.seed": kw.get("seed"),
        "gen_ai.request.choice.count": kw.get("n") if kw.get("n") != 1 else None,
        "gen_ai.request.stop_sequences": [stop] if isinstance(stop, str) else (list(stop) if isinstance(stop, (list, tuple)) else None),
        "gen_ai.request.stream": True if kw.get("stream") is True else None,
        "gen_ai.output.type": _response_format(kw.get("response_format")),
        INPUT_MESSAGES: chat_input_messages(kw.get("messages")),
        TOOL_DEFINITIONS: [dump(t) for t in kw["tools"]] if isinstance(kw.get("tools"), (list, tuple)) else None,
    }


def _chat_usage(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {}
    return usage_attributes(
        input_tokens=get(usage, "prompt_tokens"),
        output_tokens=get(usage, "completion_tokens"),
        cache_read=get(get(usage, "prompt_tokens_details"), "cached_tokens"),
        reasoning=get(get(usage, "completion_tokens_details"), "reasoning_tokens"),
    )


def chat_response(resp: Any) -> dict[str, Any]:
    choices = get(resp, "choices") or []
    output = []
    for choice in choices:
        msg = get(choice, "message")
        parts = _chat_parts(get(msg, "content")) + _tool_call_parts(get(msg, "tool_calls"))
        if get(msg, "refusal"):
            parts.append({"type": "refusal", "content": get(msg, "refusal")})
        output.append({"role": get(msg, "role") or "assistant", "parts": parts, "finish_reason": get(choice, "finish_reason")})
    attrs = {
        "gen_ai.response.id": get(resp, "id"),
        "gen_ai.response.model": get(resp, "model"),
        "gen_ai.response.finish_reasons": [c["finish_reason"] for c in output if c["finish_reason"]],
        "gen_ai.openai.response.system_fingerprint": get(resp, "system_fingerprint"),
        OUTPUT_MESSAGES: output,
    }
    attrs.update(_chat_usage(get(resp, "usage")))
    return attrs


class ChatStreamAccumulator(Accumulator):
    """Rebuilds choices (text + tool-call deltas) from ``ChatCompletionChunk`` events."""

    def __init__(self) -> None:
        self.id = self.model = self.fingerprint = None
        self.usage: Any = None
        self.choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: Any) -> bool:
        # Hot path (every chunk): plain attribute access on the SDK's chunk models, no generic get().
        content = False
        if self.id is None:
            self.id, self.model, self.fingerprint = chunk.id, chunk.model, chunk.system_fingerprint
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            acc = self.choices.get(choice.index)
            if acc is None:
                acc = self.choices[choice.index] = {"text": [], "tools": {}, "finish": None, "role": None}
            delta = choice.delta
            if delta is not None:
                if delta.role and not acc["role"]:
                    acc["role"] = delta.role
                if delta.content:
                    acc["text"].append(delta.content)
                    content = True
                if getattr(delta, "refusal", None):
                    content = True
                if delta.tool_calls:
                    content = True
                    for tc in delta.tool_calls:
                        slot = acc["tools"].setdefault(tc.index, {"id": None, "name": None, "args": []})
                        slot["id"] = slot["id"] or tc.id
                        fn = tc.function
                        if fn is not None:
                            slot["name"] = slot["name"] or fn.name
                            if fn.arguments:
                                slot["args"].append(fn.arguments)
            if choice.finish_reason:
                acc["finish"] = choice.finish_reason
        return content

    def attributes(self) -> dict[str, Any]:
        output = []
        for _, acc in sorted(self.choices.items()):
            parts = [text_part("".join(acc["text"]))] if acc["text"] else []
            for _, t in sorted(acc["tools"].items()):
                parts.append({"type": "tool_call", "id": t["id"], "name": t["name"], "arguments": parse_arguments("".join(t["args"]))})
            output.append({"role": acc["role"] or "assistant", "parts": parts, "finish_reason": acc["finish"]})
        attrs = {
            "gen_ai.response.id": self.id,
            "gen_ai.response.model": self.model,
            "gen_ai.response.finish_reasons": [c["finish_reason"] for c in output if c["finish_reason"]],
            "gen_ai.openai.response.system_fingerprint": self.fingerprint,
            OUTPUT_MESSAGES: output,
        }
        attrs.update(_chat_usage(self.usage))
        return attrs


# -- responses --------------------------------------------------------------------------------------


def _responses_input(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "parts": [text_part(value)]}]
    out: list[dict[str, Any]] = []
    if not isinstance(value, (list, tuple)):
        return out  # never consume a user's iterator
    for item in value:
        kind = get(item, "type")
        if kind == "function_call":
            out.append({"role": "assistant", "parts": [{"type": "tool_call", "id": get(item, "call_id"), "name": get(item, "name"), "arguments": parse_arguments(get(item, "arguments"))}]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "parts": [{"type": "tool_call_response", "id": get(item, "call_id"), "response": get(item, "output")}]})
        elif get(item, "role") is not None:
            content = get(item, "content")
            if isinstance(content, str):
                parts = [text_part(content)]
            else:
                parts = []
                for p in content or ():
                    ptype = get(p, "type")
                    if ptype in ("input_text", "output_text"):
                        parts.append(text_part(get(p, "text")))
                    elif ptype == "input_image":
                        parts.append(media_part("image", get(p, "image_url")))
                    else:
                        parts.append({"type": ptype or "unknown"})
            out.append({"role": get(item, "role"), "parts": parts})
        else:
            out.append({"role": "user", "parts": [{"type": kind or "unknown"}]})
    return out


def responses_request(kw: dict[str, Any]) -> dict[str, Any]:
    instructions = kw.get("instructions")
    return {
        "gen_ai.request.model": kw.get("model"),
        "gen_ai.request.temperature": kw.get("temperature"),
        "gen_ai.request.top_p": kw.get("top_p"),
        "gen_ai.request.max_tokens": kw.get("max_output_tokens"),
        "gen_ai.request.stream": True if kw.get("stream") is True else None,
        "gen_ai.conversation.id": kw.get("previous_response_id") if isinstance(kw.get("previous_response_id"), str) else None,
        SYSTEM_INSTRUCTIONS: [text_part(instructions)] if isinstance(instructions, str) else None,
        INPUT_MESSAGES: _responses_input(kw.get("input")),
        TOOL_DEFINITIONS: [dump(t) for t in kw["tools"]] if isinstance(kw.get("tools"), (list, tuple)) else None,
    }


def responses_response(resp: Any) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for item in get(resp, "output") or ():
        kind = get(item, "type")
        if kind == "message":
            for c in get(item, "content") or ():
                if get(c, "type") == "output_text":
                    parts.append(text_part(get(c, "text")))
                elif get(c, "type") == "refusal":
                    parts.append({"type": "refusal", "content": get(c, "refusal")})
        elif kind == "function_call":
            parts.append({"type": "tool_call", "id": get(item, "call_id"), "name": get(item, "name"), "arguments": parse_arguments(get(item, "arguments"))})
        elif kind == "reasoning":
            summary = " ".join(get(s, "text") or "" for s in get(item, "summary") or ())
            if summary:
                parts.append({"type": "reasoning", "content": summary})
    status = get(resp, "status")
    incomplete = get(get(resp, "incomplete_details"), "reason")
    finish = incomplete or ("tool_call" if any(p["type"] == "tool_call" for p in parts) else ("stop" if status == "completed" else status))
    output.append({"role": "assistant", "parts": parts, "finish_reason": finish})
    usage = get(resp, "usage")
    attrs = {
        "gen_ai.response.id": get(resp, "id"),
        "gen_ai.response.model": get(resp, "model"),
        "gen_ai.response.finish_reasons": [finish] if finish else None,
        OUTPUT_MESSAGES: output,
    }
    if usage is not None:
        attrs.update(
            usage_attributes(
                input_tokens=get(usage, "input_tokens"),
                output_tokens=get(usage, "output_tokens"),
                cache_read=get(get(usage, "input_tokens_details"), "cached_tokens"),
                reasoning=get(get(usage, "output_tokens_details"), "reasoning_tokens"),
            )
        )
    return attrs


class ResponsesStreamAccumulator(Accumulator):
    """The terminal event (completed / incomplete / failed) carries the whole ``Response``."""

    def __init__(self) -> None:
        self.response: Any = None
        self.error: Any = None

    def add(self, event: Any) -> bool:
        kind = get(event, "type")
        if kind in ("response.created", "response.in_progress", "response.completed", "response.incomplete", "response.failed"):
            self.response = get(event, "response")
        elif kind == "error":
            self.error = get(event, "code") or "error"
        # content arrives as deltas (output_text, refusal, function_call_arguments, reasoning text, ...)
        return isinstance(kind, str) and kind.endswith(".delta")

    def attributes(self) -> dict[str, Any]:
        attrs = responses_response(self.response) if self.response is not None else {}
        if self.error is not None or get(self.response, "status") == "failed":
            attrs["error.type"] = str(self.error or get(get(self.response, "error"), "code") or "failed")
        return attrs


# -- embeddings -------------------------------------------------------------------------------------


def embeddings_request(kw: dict[str, Any]) -> dict[str, Any]:
    fmt = kw.get("encoding_format")
    return {
        "gen_ai.request.model": kw.get("model"),
        "gen_ai.request.encoding_formats": [fmt] if isinstance(fmt, str) else None,
        "gen_ai.embeddings.dimension.count": kw.get("dimensions") if isinstance(kw.get("dimensions"), int) else None,
    }


def embeddings_response(resp: Any) -> dict[str, Any]:
    usage = get(resp, "usage")
    data = get(resp, "data") or []
    first = get(data[0], "embedding") if data else None
    return {
        "gen_ai.response.model": get(resp, "model"),
        "gen_ai.embeddings.dimension.count": len(first) if isinstance(first, list) else None,
        **usage_attributes(input_tokens=get(usage, "prompt_tokens")),
    }


CHAT = Endpoint("chat", chat_request, chat_response, ChatStreamAccumulator)
RESPONSES = Endpoint("chat", responses_request, responses_response, ResponsesStreamAccumulator)
EMBEDDINGS = Endpoint("embeddings", embeddings_request, embeddings_response)

# (resource path on the client, method name, endpoint); classes for instrument() are resolved lazily.
TARGETS = (
    (("chat", "completions"), "create", CHAT),
    (("chat", "completions"), "parse", CHAT),
    (("responses",), "create", RESPONSES),
    (("responses",), "parse", RESPONSES),
    (("embeddings",), "create", EMBEDDINGS),
)
CLASS_TARGETS = (
    ("openai.resources.chat.completions", "Completions", "AsyncCompletions", "create", CHAT),
    ("openai.resources.chat.completions", "Completions", "AsyncCompletions", "parse", CHAT),
    ("openai.resources.responses", "Responses", "AsyncResponses", "create", RESPONSES),
    ("openai.resources.responses", "Responses", "AsyncResponses", "parse", RESPONSES),
    ("openai.resources.embeddings", "Embeddings", "AsyncEmbeddings", "create", EMBEDDINGS),
)


def provider_name(client: Any) -> str:
    return "azure.ai.openai" if type(client).__name__.startswith("AsyncAzure") or type(client).__name__.startswith("Azure") else "openai"


def stream_types() -> tuple[type, ...]:
    import openai

    return (openai.Stream, openai.AsyncStream)


def is_async_client(client: Any) -> bool:
    import openai

    return isinstance(client, openai.AsyncOpenAI)


STREAM_MANAGER_TARGETS: tuple = ()
CLASS_STREAM_MANAGER_TARGETS: tuple = ()
