"""``POST /api/v1/experiments/plan``: a proposed experiment plan from a goal in plain language."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from core.bus import TOPIC_SPANS
from core.deps import ProjectDep, ServicesDep
from core.span import encode
from evaluators import planner
from evaluators.datasets import list_datasets
from evaluators.guard import redis_judge_guard
from evaluators.llm import JudgeError, LLMClient, LLMSettings, chat_parsed, check_base_url, server_key_for

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    goal: str = Field(min_length=3, max_length=5000)
    # The model that plans (same settings as a judge rule; key: EVALFORGE_JUDGE_API_KEY). Without it,
    # the heuristic plans.
    llm: LLMSettings | None = None


def _llm_plan(body: PlanIn, services, project_id: str, datasets: list[dict[str, Any]]):
    assert body.llm is not None  # the caller plans with a model only when one is given
    s = services.settings
    guard = redis_judge_guard(services.sync_redis(), s.judge_calls_per_minute,
                              s.judge_daily_budget_usd)
    client = LLMClient(body.llm, api_key=server_key_for(body.llm.base_url, s.judge_api_key), egress=s, purpose="llm_assist")
    return chat_parsed(client, guard, project_id, planner.SYSTEM, planner.llm_messages(body.goal, datasets),
                       lambda text: planner.parse_llm_plan(text, datasets), "the JSON plan object")


@router.post("/plan")
async def plan(body: PlanIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Datasets (existing, benchmark or synthetic), evaluators with rubrics, targets and repetitions."""
    if body.llm is not None:
        try:
            check_base_url(body.llm.base_url, services.settings)
        except ValueError as exc:
            raise HTTPException(400, f"llm.{exc}") from None
    async with services.require_pg().connection() as conn:
        datasets = await list_datasets(conn, project.id)
    out: dict[str, Any] = {"goal": body.goal}
    if body.llm is not None:
        try:
            (proposed, dropped), calls = await asyncio.to_thread(_llm_plan, body, services, project.id, datasets)
        except JudgeError as exc:
            calls, out["llm_error"] = exc.calls, exc.message
        else:
            out.update(source="llm", **proposed, dropped=dropped)
        if calls:  # the planner's model calls cost money: they become spans of the project
            await services.require_bus().publish(TOPIC_SPANS, [
                (rec["trace_id"].encode(), encode(rec))
                for rec in (c.to_span_record(project.id, name="evalforge.plan") for c in calls)])
    if "source" not in out:
        out.update(source="heuristic", **planner.heuristic_plan(body.goal, datasets))
    return out
