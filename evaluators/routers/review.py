"""Human review and eval design over HTTP: the annotation queue, human-vs-judge agreement, criteria
proposed from a prompt (synthetic datasets: evaluators/routers/datasets.py). Every query is scoped to the caller's project."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from core.deps import ProjectDep, ServicesDep
from evaluators.agreement import agreement
from evaluators.criteria import propose_criteria
from evaluators.llm import LLMSettings
from evaluators.routers.assist import assistant, record_calls

router = APIRouter(prefix="/api/v1", tags=["evaluations"])


@router.get("/review-queue")
def review_queue(project: ProjectDep, services: ServicesDep,
                 score_name: str = Query(min_length=1, max_length=200, description="the human score to collect"),
                 kind: str = Query("llm", max_length=50), limit: int = Query(50, ge=1, le=500),
                 judge_score: str | None = Query(None, max_length=200, description="review the lowest judge scores first")) -> dict:
    """Spans still lacking a human ``score_name``: newest first, or lowest ``judge_score`` first."""
    params: dict[str, Any] = {"p": project.id, "n": score_name, "kind": kind, "limit": limit, "judge": judge_score or ""}
    order = "s.start_time DESC"
    join = ""
    if judge_score:
        join = ("LEFT JOIN (SELECT trace_id, span_id, avg(value) AS judge_value FROM scores FINAL "
                "WHERE project_id = {p:String} AND name = {judge:String} AND source = 'evaluator' "
                "GROUP BY trace_id, span_id) AS j ON j.trace_id = s.trace_id AND j.span_id = s.span_id")
        order = "j.judge_value ASC, s.start_time DESC"
    sql = f"""
        SELECT s.trace_id, s.span_id, s.name, s.model, s.start_time, s.input_preview, s.output_preview
               {', j.judge_value' if judge_score else ''}
        FROM spans AS s {join}
        WHERE s.project_id = {{p:String}} AND s.kind = {{kind:String}}
          AND (s.trace_id, s.span_id) NOT IN (
              SELECT trace_id, span_id FROM scores WHERE project_id = {{p:String}} AND name = {{n:String}}
                AND source IN ('human', 'api', 'sdk'))
        ORDER BY {order} LIMIT 1 BY s.trace_id, s.span_id LIMIT {{limit:UInt32}}"""
    result = services.clickhouse.query(sql, parameters=params)
    items = []
    for row in result.named_results():
        row["start_time"] = row["start_time"].isoformat()
        items.append(row)
    return {"score_name": score_name, "items": items}


@router.get("/scores/agreement")
def score_agreement(project: ProjectDep, services: ServicesDep,
                    human: str = Query(min_length=1, max_length=200), judge: str = Query(min_length=1, max_length=200)) -> dict:
    """How well a judge agrees with people on the spans both scored (kappa / correlations)."""
    sql = """SELECT trace_id, span_id, source, data_type, value, string_value FROM scores FINAL
             WHERE project_id = {p:String} AND ((name = {h:String} AND source IN ('human', 'api', 'sdk'))
                                              OR (name = {j:String} AND source = 'evaluator'))"""
    human_scores: dict[tuple[str, str], Any] = {}
    judge_scores: dict[tuple[str, str], Any] = {}
    kinds = set()
    for trace_id, span_id, source, data_type, value, string_value in services.clickhouse.query(
            sql, parameters={"p": project.id, "h": human, "j": judge}).result_rows:
        kinds.add(data_type)
        target = judge_scores if source == "evaluator" else human_scores
        target[(trace_id, span_id)] = string_value if data_type == "categorical" else value
    paired = len(human_scores.keys() & judge_scores.keys())
    if paired == 0:
        return {"human": human, "judge": judge, "n": 0, "note": "no span has both scores yet"}
    if len(kinds) > 1:
        raise HTTPException(400, f"human: {human!r} and judge: {judge!r} have different data types {sorted(kinds)}")
    result = agreement(human_scores, judge_scores, data_type=kinds.pop())
    return {"human": human, "judge": judge, **result.__dict__}


class PromptIn(BaseModel):
    system_prompt: str = Field("", max_length=100_000)
    user_template: str = Field("", max_length=100_000)
    # Optional model to assist (same settings as a judge rule); without it, heuristics alone.
    llm: LLMSettings | None = None


@router.post("/criteria")
async def criteria(body: PromptIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Eval criteria (evaluator + config + rubric) proposed from a prompt; ready to POST as eval rules."""
    if not (body.system_prompt or body.user_template):
        raise HTTPException(400, "system_prompt: give a system prompt or a user template")
    proposed, calls = await asyncio.to_thread(propose_criteria, body.system_prompt, body.user_template,
                                              project_id=project.id, **await asyncio.to_thread(assistant, body.llm, services))
    await record_calls(services.require_bus(), calls, project.id)
    return {"criteria": [c.to_dict() for c in proposed], "model_calls": len(calls)}
