"""Server-side experiment targets: a model call (OpenAI-compatible chat completions or Anthropic
messages) with a messages template over the item.

Calls go over one shared httpx client per experiment rather than the provider SDKs: the runner's
budget is 1.15x a bare asyncio loop, and the SDKs' per-call object building costs more than the
call itself against a fast model; the wire format is small and stable. 429 / 408 / 409 / 5xx and
connection errors are retried with exponential backoff (honouring Retry-After).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from core.egress import EgressRefused
from core.prompts import variable_value

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
DEFAULT_MESSAGES = [{"role": "user", "content": "{{input}}"}]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class ModelTarget(BaseModel):
    """What the server calls for each item. Holds no secret: the key comes from the server's settings."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["openai", "anthropic"] = "openai"
    model: str = Field(min_length=1, max_length=200)
    base_url: str | None = Field(None, max_length=2000)
    messages: list[Message] | None = Field(None, max_length=100, description="templates: {{input.field}}, "
                                           "{{input}}, {{expected_output}}, {{metadata.key}}")
    parameters: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, ... sent as is")
    timeout_s: float = Field(60.0, gt=0, le=600)
    max_retries: int = Field(4, ge=0, le=10)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def render(messages: list[dict[str, str]], item: dict[str, Any]) -> list[dict[str, str]]:
    """Fill ``{{input.field}}``-style variables from the item; KeyError names a missing one."""
    scope = {"input": item.get("input"), "expected_output": item.get("expected_output"),
             "metadata": item.get("metadata") or {}}

    def fill(m: re.Match) -> str:
        try:
            return _text(variable_value(scope, m.group(1)))
        except KeyError:
            raise KeyError(f"template variable {m.group(1)!r} is not in the item") from None

    return [{"role": m["role"], "content": _VARIABLE.sub(fill, m["content"])} for m in messages]


def template_variables(messages: list[dict[str, str]]) -> list[str]:
    return [v for m in messages for v in _VARIABLE.findall(m["content"])]


@dataclass
class Reply:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    latency_ms: float
    attempts: int


class TargetError(Exception):
    def __init__(self, message: str, status: int | None = None, attempts: int = 1):
        super().__init__(message)
        self.status = status
        self.attempts = attempts


def _request(target: ModelTarget, messages: list[dict[str, str]]) -> tuple[str, dict[str, Any]]:
    if target.provider == "openai":
        body = {"model": target.model, "messages": messages, **target.parameters}
        return "chat/completions", body
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    body = {"model": target.model, "messages": [m for m in messages if m["role"] != "system"],
            "max_tokens": 1024, **target.parameters}
    if system:
        body["system"] = system
    return "v1/messages", body


def _parse(target: ModelTarget, data: dict[str, Any]) -> tuple[str, str, int, int, int]:
    if target.provider == "openai":
        choices = data.get("choices") or []
        if not choices:
            raise TargetError("openai response has no choices", 200)
        usage = data.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return (choices[0].get("message", {}).get("content") or "", data.get("model") or target.model,
                usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, cached)
    text = "".join(b.get("text", "") for b in data.get("content") or [] if b.get("type") == "text")
    u = data.get("usage") or {}
    cache_read, cache_write = u.get("cache_read_input_tokens") or 0, u.get("cache_creation_input_tokens") or 0
    # core.span convention: input_tokens includes cache reads and writes (Anthropic's excludes them).
    return (text, data.get("model") or target.model, (u.get("input_tokens") or 0) + cache_read + cache_write,
            u.get("output_tokens") or 0, cache_read)


def _retry_after(resp: httpx.Response | None, attempt: int) -> float:
    if resp is not None:
        header = resp.headers.get("retry-after")
        try:
            if header is not None:
                return min(max(float(header), 0.0), 60.0)
        except ValueError:
            pass
    return min(0.25 * 2 ** attempt, 20.0) * (0.5 + random.random() / 2)  # jittered exponential backoff


async def call_model(client: httpx.AsyncClient, target: ModelTarget, messages: list[dict[str, str]],
                     api_key: str | None) -> Reply:
    """One call, retried on transient failures. Raises TargetError with the last status."""
    path, body = _request(target, messages)
    base = (target.base_url or ("https://api.openai.com/v1" if target.provider == "openai"
                                else "https://api.anthropic.com")).rstrip("/")
    if target.provider == "anthropic" and base.endswith("/v1"):
        path = path.removeprefix("v1/")
    headers = {"content-type": "application/json"}
    if target.provider == "openai":
        headers["authorization"] = f"Bearer {api_key or 'EMPTY'}"
    else:
        headers["x-api-key"] = api_key or "EMPTY"
        headers["anthropic-version"] = "2023-06-01"
    payload = orjson.dumps(body)
    t0 = time.perf_counter()
    for attempt in range(target.max_retries + 1):
        resp = None
        try:
            resp = await client.post(f"{base}/{path}", content=payload, headers=headers, timeout=target.timeout_s)
        except EgressRefused as exc:  # the host is not allowed: retrying cannot help
            raise TargetError(f"base_url: {exc}", None, attempt + 1) from None
        except httpx.TransportError as exc:
            if attempt >= target.max_retries:
                raise TargetError(f"{type(exc).__name__}: {exc}", None, attempt + 1) from None
        else:
            if resp.status_code == 200:
                try:
                    text, model, tin, tout, cached = _parse(target, orjson.loads(resp.content))
                except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
                    raise TargetError(f"unreadable response: {exc}", 200, attempt + 1) from None
                return Reply(text, model, tin, tout, cached, (time.perf_counter() - t0) * 1000, attempt + 1)
            if resp.status_code not in RETRY_STATUS or attempt >= target.max_retries:
                raise TargetError(f"HTTP {resp.status_code}: {resp.text[:300]}", resp.status_code, attempt + 1)
        await asyncio.sleep(_retry_after(resp, attempt))
    raise AssertionError("unreachable")


def http_client(settings, concurrency: int) -> httpx.AsyncClient:
    """The HTTP client an experiment's target calls go through: the egress guard's, so a base URL on
    loopback, a private or link-local address... is refused at connect time unless the operator
    allowed its host (EVALFORGE_EGRESS_ALLOWED_HOSTS), and the connection goes to the checked address."""
    from core.egress import guarded_async_client

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return guarded_async_client(settings, purpose="experiment", limits=limits, follow_redirects=False)
