"""A real local HTTP server speaking the OpenAI and Anthropic REST APIs (JSON and SSE streaming).

The real ``openai`` / ``anthropic`` SDKs talk to it through ``base_url``. Behaviour is chosen by the
request's model name: ``error-429`` / ``error-500`` answer with that provider error, ``slow`` sleeps
2 s (for client timeouts); a request with ``tools`` gets a tool call back.
Streams pause ``FIRST_CHUNK_DELAY`` before the first event (the envelope: the role-only chunk,
``response.created``, ``message_start``), then hold back the first *content* event a further
``FIRST_TOKEN_DELAY``: the true time to first token is their sum (``TRUE_TTFT``), which a client that
timed the envelope instead would miss by far more than 10 %.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable

FIRST_CHUNK_DELAY = 0.05
FIRST_TOKEN_DELAY = 1.0  # long enough that 10 % (~0.1 s) absorbs a loaded machine's scheduling
TRUE_TTFT = FIRST_CHUNK_DELAY + FIRST_TOKEN_DELAY  # seconds from the request to the first content token
CHUNK_DELAY = 0.005


def is_content_event(data: str) -> bool:
    """Whether an SSE payload carries generated content (text, tool-call name / arguments)."""
    try:
        obj = json.loads(data)
    except ValueError:
        return False
    kind = obj.get("type", "")
    if kind == "content_block_delta" or (kind.startswith("response.") and kind.endswith(".delta")):
        return True
    return any((c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("tool_calls")
               for c in obj.get("choices") or [])


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    model = body["model"] + "-resp"
    if body.get("tools"):
        message = {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
        finish = "tool_calls"
    elif body.get("response_format", {}).get("type") == "json_schema":
        message, finish = {"role": "assistant", "content": '{"answer": "42"}'}, "stop"
    else:
        message, finish = {"role": "assistant", "content": "Hello there!"}, "stop"
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model, "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                  "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2}},
    }


def chat_chunks(body: dict[str, Any]) -> Iterable[str]:
    base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": body["model"] + "-resp"}
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    yield chunk({"role": "assistant", "content": ""})
    if body.get("tools"):
        yield chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]})
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]})
        yield chunk({}, "tool_calls")
    else:
        for piece in ("Hel", "lo ", "stream!"):
            yield chunk({"content": piece})
        yield chunk({}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield json.dumps({**base, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
    yield "[DONE]"


def response_object(body: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    if body.get("tools"):
        output = [{"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "get_weather", "arguments": '{"city": "Paris"}', "status": "completed"}]
    else:
        output = [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": "Hi from responses", "annotations": []}]}]
    return {
        "id": "resp_1", "object": "response", "created_at": 1, "model": body["model"] + "-resp", "status": status,
        "output": output if status == "completed" else [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5,
                  "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 14} if status == "completed" else None,
    }


def response_events(body: dict[str, Any]) -> Iterable[tuple[str, str]]:
    yield "response.created", json.dumps({"type": "response.created", "sequence_number": 0, "response": response_object(body, "in_progress")})
    item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}
    yield "response.output_item.added", json.dumps({"type": "response.output_item.added", "output_index": 0, "item": item, "sequence_number": 1})
    part = {"type": "output_text", "text": "", "annotations": []}
    yield "response.content_part.added", json.dumps({"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0,
                                                     "content_index": 0, "part": part, "sequence_number": 2})
    for i, piece in enumerate(("Hi ", "from ", "responses")):
        yield "response.output_text.delta", json.dumps({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                                                        "content_index": 0, "delta": piece, "sequence_number": i + 1, "logprobs": []})
    yield "response.completed", json.dumps({"type": "response.completed", "sequence_number": 9, "response": response_object(body)})


def anthropic_message(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("tools"):
        content = [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
        stop = "tool_use"
    else:
        content, stop = [{"type": "text", "text": "Bonjour!"}], "end_turn"
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"] + "-resp", "content": content,
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 6, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20,
                      "cache_creation": {"ephemeral_5m_input_tokens": 12, "ephemeral_1h_input_tokens": 8}}}


def anthropic_events(body: dict[str, Any]) -> Iterable[tuple[str, str]]:
    start = anthropic_message(body)
    start.update(content=[], stop_reason=None, usage={"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20,
                        "cache_creation": {"ephemeral_5m_input_tokens": 12, "ephemeral_1h_input_tokens": 8}})
    yield "message_start", json.dumps({"type": "message_start", "message": start})
    yield "content_block_start", json.dumps({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    for piece in ("Bon", "jour!"):
        yield "content_block_delta", json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
    yield "content_block_stop", json.dumps({"type": "content_block_stop", "index": 0})
    stop = "end_turn"
    if body.get("tools"):
        yield "content_block_start", json.dumps({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}})
        for piece in ('{"city": ', '"Paris"}'):
            yield "content_block_delta", json.dumps({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}})
        yield "content_block_stop", json.dumps({"type": "content_block_stop", "index": 1})
        stop = "tool_use"
    yield "message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 6}})
    yield "message_stop", json.dumps({"type": "message_stop"})


class FakeLLM:
    """``first_event_is_first_token``: the whole hold-back comes before the first event, as a provider
    that sends its envelope with the first token (for clients that time their first chunk)."""

    def __init__(self, first_event_is_first_token: bool = False) -> None:
        self.requests: list[dict[str, Any]] = []
        # Real providers give every response its own id, and ingest takes two overlapping model calls
        # reporting one id for one call recorded twice: tests making concurrent calls turn this on.
        self.distinct_ids = False
        first_delay, token_delay = ((TRUE_TTFT, 0.0) if first_event_is_first_token
                                    else (FIRST_CHUNK_DELAY, FIRST_TOKEN_DELAY))

        server_self = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _json(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, events: Iterable[tuple[str | None, str]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                time.sleep(first_delay)
                held_back = False
                for event, data in events:
                    if not held_back and is_content_event(data):
                        held_back = True
                        time.sleep(token_delay)
                    frame = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
                    self.wfile.write(frame.encode())
                    self.wfile.flush()
                    if held_back:
                        time.sleep(CHUNK_DELAY)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server_self.requests.append({"path": self.path, "body": body})
                anthropic = self.path.startswith("/v1/messages")
                model = body.get("model", "")
                if model.startswith("error-"):
                    status = int(model.split("-")[1])
                    if anthropic:
                        kind = "rate_limit_error" if status == 429 else "api_error"
                        return self._json(status, {"type": "error", "error": {"type": kind, "message": f"fake {status}"}})
                    return self._json(status, {"error": {"message": f"fake {status}", "type": "server_error", "code": str(status)}})
                if model == "slow":
                    time.sleep(2)
                stream = body.get("stream") is True
                path = self.path.split("?")[0]
                if path.endswith("/chat/completions"):
                    if stream:
                        return self._sse((None, c) for c in chat_chunks(body))
                    completion = chat_completion(body)
                    if server_self.distinct_ids:
                        completion["id"] = f"chatcmpl-{uuid.uuid4().hex}"
                    return self._json(200, completion)
                if path.endswith("/responses"):
                    return self._sse(response_events(body)) if stream else self._json(200, response_object(body))
                if path.endswith("/embeddings"):
                    n = len(body["input"]) if isinstance(body["input"], list) else 1
                    return self._json(200, {"object": "list", "model": model + "-resp", "usage": {"prompt_tokens": 5, "total_tokens": 5},
                                            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]} for i in range(n)]})
                if anthropic:
                    return self._sse(anthropic_events(body)) if stream else self._json(200, anthropic_message(body))
                self._json(404, {"error": {"message": "no such route"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None  # clients that time out on purpose close early
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
