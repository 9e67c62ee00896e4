"""Chat messages of every convention -> one canonical shape, the OTel GenAI one our SDK also sends:

    {"role": "assistant", "parts": [{"type": "text", "content": "..."},
                                    {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {...}},
                                    {"type": "tool_call_response", "id": "call_1", "response": "..."},
                                    {"type": "uri", "modality": "image", "uri": "..."}],
     "finish_reason": "tool_calls"}

Tool calls and content parts are structures, never dotted keys. Pure functions; ``ingest.normalize``
calls them when a convention's messages win the input / output column.
"""

from __future__ import annotations

from typing import Any

import orjson


def _json(value: Any) -> Any:
    """A JSON text (tool arguments, Vercel's message lists) parsed; anything else as it is."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _text(content: Any) -> dict[str, Any]:
    return {"type": "text", "content": content}


def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": _json(arguments)}


def _nested(flat: dict[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """``{"tool_calls.0.tool_call.id": v, ...}`` with prefix ``tool_calls.`` -> ``{0: {"tool_call.id": v}}``."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            if index.isdigit():
                out.setdefault(int(index), {})[rest] = value
    return dict(sorted(out.items()))


def _finish(message: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    if flat.get("finish_reason"):
        message["finish_reason"] = flat["finish_reason"]
    return message


def from_openinference(flat: dict[str, Any]) -> dict[str, Any]:
    """One OpenInference message (``llm.*_messages.N.message.*`` with the prefix removed)."""
    parts: list[dict[str, Any]] = []
    seen_calls: set[Any] = set()
    if flat.get("content") not in (None, ""):
        parts.append(_text(flat["content"]))
    for item in _nested(flat, "contents.").values():
        kind = item.get("message_content.type")
        if "message_content.text" in item:
            parts.append(_text(item["message_content.text"]))
        elif "message_content.image.image.url" in item:
            parts.append({"type": "uri", "modality": "image", "uri": item["message_content.image.image.url"]})
        elif "tool_call.function.name" in item:  # Anthropic tool_use blocks, also listed in tool_calls
            seen_calls.add(item.get("tool_call.id"))
            parts.append(_tool_call(item.get("tool_call.id"), item["tool_call.function.name"],
                                    item.get("tool_call.function.arguments")))
        elif kind:
            parts.append({"type": kind, **{k.rpartition(".")[2]: v for k, v in item.items() if k != "message_content.type"}})
    for call in _nested(flat, "tool_calls.").values():
        if call.get("tool_call.id") is not None and call.get("tool_call.id") in seen_calls:
            continue
        parts.append(_tool_call(call.get("tool_call.id"), call.get("tool_call.function.name"),
                                call.get("tool_call.function.arguments")))
    if flat.get("tool_call_id"):  # a tool's answer: its content is the response
        response = parts.pop(0)["content"] if parts and parts[0]["type"] == "text" else None
        parts.insert(0, {"type": "tool_call_response", "id": flat["tool_call_id"], "response": response})
    message: dict[str, Any] = {"role": flat.get("role") or "", "parts": parts}
    if flat.get("name"):
        message["name"] = flat["name"]
    return _finish(message, flat)


def from_indexed_genai(flat: dict[str, Any]) -> dict[str, Any]:
    """One OpenLLMetry / LiteLLM message (``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``)."""
    content = flat.get("content")
    parsed = _json(content)
    parts: list[dict[str, Any]] = []
    if isinstance(parsed, list):  # content blocks sent as a JSON list (OpenLLMetry's Anthropic)
        parts += [from_block(block) for block in parsed]
    elif content not in (None, ""):
        parts.append(_text(content))
    if flat.get("function_call.name"):
        parts.append(_tool_call(flat.get("function_call.id"), flat["function_call.name"],
                                flat.get("function_call.arguments")))
    for call in _nested(flat, "tool_calls.").values():
        parts.append(_tool_call(call.get("id"), call.get("name"), call.get("arguments")))
    if flat.get("tool_call_id"):
        response = parts.pop(0)["content"] if parts and parts[0]["type"] == "text" else None
        parts.insert(0, {"type": "tool_call_response", "id": flat["tool_call_id"], "response": response})
    return _finish({"role": flat.get("role") or "", "parts": parts}, flat)


def from_block(block: Any) -> dict[str, Any]:
    """One content block of the OpenAI / Anthropic / Vercel wire formats -> a part."""
    if not isinstance(block, dict):
        return _text(block)
    kind = block.get("type")
    if kind in ("text", "input_text", "output_text"):
        return _text(block.get("text"))
    if kind in ("tool_use", "tool-call", "function_call"):
        return _tool_call(block.get("id") or block.get("toolCallId") or block.get("call_id"),
                          block.get("name") or block.get("toolName"),
                          block.get("input", block.get("args", block.get("arguments"))))
    if kind in ("tool_result", "tool-result"):
        return {"type": "tool_call_response", "id": block.get("tool_use_id") or block.get("toolCallId"),
                "response": block.get("content", block.get("result", block.get("output")))}
    if kind in ("image_url", "image"):
        url = block.get("image_url", block.get("image"))
        url = url.get("url") if isinstance(url, dict) else url
        return {"type": "uri", "modality": "image", "uri": url}
    return dict(block)


def from_chat_message(message: Any) -> dict[str, Any]:
    """An OpenAI-style / Vercel AI SDK message (``content`` a string or blocks) -> canonical."""
    if not isinstance(message, dict):
        return {"role": "", "parts": [_text(message)]}
    content = message.get("content")
    parts = [from_block(b) for b in content] if isinstance(content, list) else \
        ([_text(content)] if content not in (None, "") else [])
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        parts.append(_tool_call(call.get("id"), fn.get("name"), fn.get("arguments")))
    if message.get("tool_call_id"):
        response = parts.pop(0)["content"] if parts and parts[0]["type"] == "text" else None
        parts.insert(0, {"type": "tool_call_response", "id": message["tool_call_id"], "response": response})
    out: dict[str, Any] = {"role": message.get("role") or "", "parts": parts}
    if message.get("finish_reason"):
        out["finish_reason"] = message["finish_reason"]
    return out


def from_chat_messages(value: Any) -> Any:
    """A JSON list of chat messages (Vercel ``ai.prompt.messages``) -> canonical; else unchanged."""
    parsed = _json(value)
    if isinstance(parsed, list):
        return [from_chat_message(m) for m in parsed]
    return value


def vercel_prompt(value: Any) -> Any:
    """Vercel ``ai.prompt``: ``{"system", "prompt"}`` or ``{"system", "messages"}`` -> canonical."""
    parsed = _json(value)
    if not isinstance(parsed, dict):
        return value
    out = [{"role": "system", "parts": [_text(parsed["system"])]}] if parsed.get("system") else []
    if isinstance(parsed.get("messages"), list):
        out += [from_chat_message(m) for m in parsed["messages"]]
    elif parsed.get("prompt") is not None:
        out.append({"role": "user", "parts": [_text(parsed["prompt"])]})
    return out


def vercel_output(attributes: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Vercel ``ai.response.text`` + ``ai.response.toolCalls`` (+ finish reason) -> one assistant message."""
    text, calls = attributes.get("ai.response.text"), _json(attributes.get("ai.response.toolCalls"))
    if text is None and not calls:
        return None
    parts = [_text(text)] if text not in (None, "") else []
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, dict):
            parts.append(_tool_call(call.get("toolCallId"), call.get("toolName"), call.get("args", call.get("input"))))
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    if attributes.get("ai.response.finishReason"):
        message["finish_reason"] = attributes["ai.response.finishReason"]
    return [message]


def logfire_input(value: Any) -> Any:
    """Logfire ``request_data`` (the request body as JSON) -> its messages, canonical."""
    parsed = _json(value)
    if isinstance(parsed, dict) and isinstance(parsed.get("messages"), list):
        return [from_chat_message(m) for m in parsed["messages"]]
    return value


def logfire_output(value: Any) -> Any:
    """Logfire ``response_data`` (``{"message": {...}, "usage": {...}}``) -> the message, canonical."""
    parsed = _json(value)
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), dict):
        return [from_chat_message(parsed["message"])]
    return value
