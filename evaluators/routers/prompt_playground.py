"""``POST /api/v1/prompts/{name}/playground``: run one prompt version against a model and record the
call as a trace of the project carrying the prompt's name and version.

Here rather than beside the other prompt routes (``query_api/routers/prompts.py``) because calling a
model is the evaluators' job: it reuses the experiment target's wire code (``call_model``) and its
egress-guarded HTTP client, so a playground ``base_url`` reaches only hosts the operator allowed.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import orjson
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from core import prompts as store
from core.bus import TOPIC_SPANS
from core.deps import ProjectDep, ServicesDep
from core.span import empty_record, encode
from evaluators.experiments.targets import ModelTarget, TargetError, call_model, http_client
from evaluators.guard import redis_judge_guard
from evaluators.llm import JudgeError, LLMCall, check_base_url, server_key_for

router = APIRouter(prefix="/api/v1/prompts", tags=["prompts"])

# Keys of a version's saved config that are request parameters (sent unless the body overrides them).
CONFIG_PARAMETERS = ("temperature", "max_tokens", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")


class PlaygroundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1, le=2**31 - 1)
    label: str | None = Field(None, max_length=64, description="default: production (when no version)")
    variables: dict[str, Any] = Field(default_factory=dict)
    model: str | None = Field(None, min_length=1, max_length=200, description="default: the version's config.model")
    provider: Literal["openai", "anthropic"] | None = Field(None, description="default: config.provider or openai")
    base_url: str | None = Field(None, max_length=2000)
    parameters: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, ... sent as is")
    timeout_s: float = Field(60.0, gt=0, le=600)


def _messages(version: dict, variables: dict) -> list[dict[str, str]]:
    try:
        return store.compile_messages(version["prompt"], variables)
    except KeyError as exc:
        raise HTTPException(400, f"variables: {exc.args[0]}") from None


def _target(body: PlaygroundIn, config: dict) -> ModelTarget:
    model = body.model or config.get("model")
    if not isinstance(model, str) or not model:
        raise HTTPException(400, "model: required (the version's config names none)")
    provider = body.provider or config.get("provider") or "openai"
    if provider not in ("openai", "anthropic"):
        raise HTTPException(400, "provider: must be 'openai' or 'anthropic'")
    parameters = {k: config[k] for k in CONFIG_PARAMETERS if k in config} | body.parameters
    return ModelTarget(provider=provider, model=model, base_url=body.base_url, messages=None, parameters=parameters,
                       timeout_s=body.timeout_s, max_retries=1)


def _span(project_id: str, version: dict, target: ModelTarget, messages: list, start: datetime,
          latency_ms: float) -> dict[str, Any]:
    rec = empty_record()
    end = start + timedelta(milliseconds=latency_ms)
    attrs = {"evalforge.prompt.name": version["name"], "evalforge.prompt.version": str(version["version"]),
             "evalforge.playground": "true"}
    rec.update(project_id=project_id, trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8), parent_span_id="",
               name=f"playground {version['name']} v{version['version']}", kind="llm", operation="chat",
               start_time=start, end_time=end, duration_ms=latency_ms, status="ok",
               service_name="evalforge-playground", ingested_at=datetime.now(timezone.utc),
               provider=target.provider, request_model=target.model, model=target.model,
               prompt_name=version["name"], prompt_version=str(version["version"]),
               input=orjson.dumps(messages).decode(), attributes=attrs)
    return rec


def _as_call(target: ModelTarget, messages: list, reply, start: datetime) -> LLMCall:
    """The reply as the judge guard prices it (to book its cost against the project's daily budget)."""
    return LLMCall(provider=target.provider, request_model=target.model, model=reply.model, messages=messages,
                   output=reply.text, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                   cache_read_tokens=reply.cache_read_tokens, cache_creation_tokens=0, reasoning_tokens=0,
                   start_time=start, end_time=start + timedelta(milliseconds=reply.latency_ms))


@router.post("/{name}/playground")
async def playground(name: str, body: PlaygroundIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Compile a version with ``variables``, call ``model`` once, record the call as a trace."""
    if body.version is not None and body.label is not None:
        raise HTTPException(400, "version: give a version or a label, not both")
    try:
        version = await store.get_version(services.require_pg(), project.id, name, version=body.version,
                                          label=body.label)
    except store.PromptError as exc:
        raise HTTPException(400, str(exc)) from None
    if version is None:
        what = f"version {body.version}" if body.version else f"label {body.label or store.PRODUCTION!r}"
        raise HTTPException(404, f"prompt {name!r} has no {what} in this project")
    messages = _messages(version, body.variables)
    target = _target(body, version["config"])
    settings = services.settings
    try:
        check_base_url(target.base_url, settings)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    api_key = server_key_for(target.base_url, settings.judge_api_key)
    # A model call on the operator's account: under the judge's per-project rate limit and daily budget.
    guard = redis_judge_guard(services.sync_redis(), settings.judge_calls_per_minute, settings.judge_daily_budget_usd)
    try:
        await asyncio.to_thread(guard.before_call, project.id)
    except JudgeError as exc:
        retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))} if exc.retry_after else None
        raise HTTPException(429, exc.message, headers=retry) from None
    start, t0 = datetime.now(timezone.utc), time.perf_counter()
    reply, error = None, None
    async with http_client(settings, 1) as client:
        try:
            reply = await call_model(client, target, messages, api_key)
        except TargetError as exc:
            error = exc
    if reply is not None:
        await asyncio.to_thread(guard.after_call, project.id, _as_call(target, messages, reply, start))
    span = _span(project.id, version, target, messages, start, (time.perf_counter() - t0) * 1000)
    if reply is not None:
        span.update(model=reply.model, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                    cache_read_tokens=reply.cache_read_tokens, output=reply.text, duration_ms=reply.latency_ms)
    else:
        span.update(status="error", status_message=str(error)[:2000])
    await services.require_bus().publish(TOPIC_SPANS, [(span["trace_id"].encode(), encode(span))])
    if reply is None:
        status = 400 if str(error).startswith("base_url:") else 502
        raise HTTPException(status, f"{error} (trace {span['trace_id']})" if status == 502 else str(error))
    return {"output": reply.text, "model": reply.model, "messages": messages,
            "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens,
            "latency_ms": round(reply.latency_ms, 3), "trace_id": span["trace_id"], "span_id": span["span_id"],
            "prompt": {"name": version["name"], "version": version["version"]}}
