"""A real HTTP server speaking the OpenAI chat-completions and Anthropic messages wire protocols.

Tests point the real openai / anthropic SDKs at it via base_url. Replies come from a script (a queue
of ``Reply``), falling back to ``responders[model](request_json) -> str`` for the requested model, then
to ``responder(request_json) -> str``, when the queue is empty; every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted reply: assistant text with usage, or an HTTP error status."""

    text: str = ""
    status: int = 200
    input_tokens: int = 120
    output_tokens: int = 30
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLLMServer:
    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[Recorded] = []
        self.responder: Callable[[dict[str, Any]], str] | None = None
        # one stub per model name, so a single server plays several models (a target, a judge, an optimiser)
        self.responders: dict[str, Callable[[dict[str, Any]], str]] = {}
        self.delay_s = 0.0  # how long each reply takes (a model's latency)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server._handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self.script:
                return self.script.pop(0)
        if body.get("model") in self.responders:
            return Reply(text=self.responders[body["model"]](body))
        if self.responder is None:
            return Reply(status=500, text="fake server: script exhausted")
        return Reply(text=self.responder(body))

    def _handle(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        path = handler.path
        with self._lock:
            self.requests.append(Recorded(path, {k.lower(): v for k, v in handler.headers.items()}, body))
        reply = self._next(body)
        if self.delay_s:
            time.sleep(self.delay_s)
        anthropic = path.endswith("/messages")
        if reply.status != 200:
            if anthropic:
                payload = {"type": "error", "error": {"type": "rate_limit_error" if reply.status == 429 else "api_error", "message": reply.text or "error"}}
            else:
                payload = {"error": {"message": reply.text or "error", "type": "rate_limit_exceeded" if reply.status == 429 else "server_error", "code": None}}
        elif anthropic:
            payload = {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model"),
                "content": [{"type": "text", "text": reply.text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens,
                          "cache_read_input_tokens": reply.cache_read_tokens,
                          "cache_creation_input_tokens": reply.cache_creation_tokens},
            }
        elif path.endswith("/chat/completions"):
            payload = {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
                          "total_tokens": reply.input_tokens + reply.output_tokens,
                          "prompt_tokens_details": {"cached_tokens": reply.cache_read_tokens}},
            }
        else:
            reply, payload = Reply(status=404), {"error": {"message": f"no route {path}"}}
        data = json.dumps(payload).encode()
        handler.send_response(reply.status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        for k, v in reply.headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)
