"""What the routers with model-assisted proposals share (criteria, synthetic tests): the assistant's
client under the judge's rate limit and budget, and its calls recorded as the project's spans."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from core.bus import TOPIC_SPANS
from core.span import encode
from evaluators.guard import redis_judge_guard
from evaluators.llm import LLMClient, LLMSettings, check_base_url, server_key_for


def assistant(llm: LLMSettings | None, services) -> dict[str, Any]:
    """The LLM client and guard for model-assisted proposals (rate limit and budget of the judge):
    keyword arguments for the proposers, empty when no model is configured (their heuristic fallback)."""
    if llm is None:
        return {}
    s = services.settings
    try:
        check_base_url(llm.base_url, s)
    except ValueError as exc:
        raise HTTPException(400, f"llm.{exc}") from None
    # the services' pooled client: a client per request would open (and leak) a pool per request
    guard = redis_judge_guard(services.sync_redis(), s.judge_calls_per_minute,
                              s.judge_daily_budget_usd)
    return {"llm": LLMClient(llm, api_key=server_key_for(llm.base_url, s.judge_api_key), egress=s, purpose="llm_assist"),
            "guard": guard}


async def record_calls(bus, calls: list, project_id: str, *, name: str = "evalforge.assist",
                       attributes: dict[str, str] | None = None) -> None:
    """The assistant's model calls become spans of the project (one trace each, named ``name``, with
    ``attributes`` added), priced like any other."""
    if calls:
        records = [c.to_span_record(project_id, name=name, attributes=attributes) for c in calls]
        await bus.publish(TOPIC_SPANS, [(r["trace_id"].encode(), encode(r)) for r in records])
