"""``GET /api/v1/leaderboards``: models / agents ranked on one dataset or benchmark (``evaluators.leaderboard``);
``POST /api/v1/leaderboards/pairwise``: a pairwise LLM judge between runs (``evaluators.pairwise``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from core.bus import TOPIC_SPANS
from core.deps import ProjectDep, ServicesDep
from core.span import encode
from evaluators import benchmarks
from evaluators import leaderboard as board
from evaluators import pairwise
from evaluators.experiments import store
from evaluators.guard import redis_judge_guard
from evaluators.llm import LLMSettings, check_base_url, server_key_for

router = APIRouter(prefix="/api/v1/leaderboards", tags=["experiments"])
_MAX_RUNS = 200  # the newest completed runs considered (each entry keeps its latest)


async def _completed(conn, project_id: str, dataset_id: str | None, benchmark: str | None) -> list[dict[str, Any]]:
    if dataset_id is not None:
        where, value = "dataset_id = %s", dataset_id
    else:
        assert benchmark is not None  # the route takes exactly one of them
        where, value = "benchmark->>'name' = %s", benchmark
    rows = await (await conn.execute(
        f"SELECT id FROM experiments WHERE project_id = %s AND status = 'completed' AND {where} "
        "ORDER BY finished_at DESC NULLS LAST, created_at DESC LIMIT %s", (project_id, value, _MAX_RUNS))).fetchall()
    return [await store.get(conn, r[0], project_id) for r in rows]


@router.get("")
async def get_leaderboard(project: ProjectDep, services: ServicesDep,
                          dataset_id: str | None = Query(None, max_length=64),
                          benchmark: str | None = Query(None, max_length=100),
                          score: str | None = Query(None, max_length=200, description="default: the score most entries have"),
                          judge: str | None = Query(None, max_length=300, description=(
                              "provider/model whose pairwise verdicts rate the entries; default: the judge that judged last"))
                          ) -> dict:
    """Entries ranked by mean score (± 95 % CI, n), cost per 1,000 items, p50 latency; Bradley–Terry
    ratings from one judge's stored pairwise verdicts (``bradley_terry_judge``; ``judges``: every judge
    with verdicts here, latest first), and from per-item score outcomes for the pairs that judge did
    not compare (``bradley_terry_source``: ``judge`` | ``scores`` | ``judge+scores``;
    ``bradley_terry_pairs``: the source of each pair)."""
    if (dataset_id is None) == (benchmark is None):
        raise HTTPException(422, "dataset_id / benchmark: give exactly one of them")
    if benchmark is not None and benchmark not in {b["name"] for b in benchmarks.list_benchmarks()}:
        raise HTTPException(422, f"benchmark: unknown benchmark {benchmark!r}")
    async with services.require_pg().connection() as conn:
        experiments = await _completed(conn, project.id, dataset_id, benchmark)
        latest: dict[str, dict[str, Any]] = {}
        for exp in experiments:
            latest.setdefault(board.entry_label(exp), exp)
        results = {exp["id"]: await store.results(conn, exp["id"]) for exp in latest.values()}
        ids = list(results)
        judges = [r[0] for r in await (await conn.execute(
            "SELECT judge FROM pairwise_verdicts WHERE project_id = %s AND experiment_a = ANY(%s) AND experiment_b = ANY(%s) "
            "GROUP BY judge ORDER BY max(created_at) DESC, judge", (project.id, ids, ids))).fetchall()]
        if judge is not None and judge not in judges:
            raise HTTPException(422, f"judge: no pairwise verdicts by {judge!r} between these entries "
                                     f"(judges with verdicts: {', '.join(judges) or 'none'})")
        chosen = judge or (judges[0] if judges else None)
        # one judge only: the same item judged by two judges would count twice
        rows = await (await conn.execute(
            "SELECT experiment_a, experiment_b, winner FROM pairwise_verdicts WHERE project_id = %s AND judge = %s "
            "AND experiment_a = ANY(%s) AND experiment_b = ANY(%s)", (project.id, chosen, ids, ids))).fetchall()
    verdicts = [{"experiment_a": a, "experiment_b": b, "winner": w} for a, b, w in rows]
    out = await asyncio.to_thread(board.leaderboard, list(latest.values()), results, score, verdicts)
    return {"dataset_id": dataset_id, "benchmark": benchmark, **out, "bradley_terry_judge": chosen if rows else None,
            "judges": judges}


MAX_JUDGE_CALLS = 1000  # a request's ceiling (two calls a pair of outputs)
TIME_BUDGET_S = 20.0  # no item is started, nor a wait on the judge rate limit ended, past this (resumable)


class PairwiseJudgeIn(LLMSettings):
    rubric: str | None = Field(None, max_length=10_000,
                               description="what makes an answer better (default: correct, helpful, complete)")


class PairwiseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    experiment_ids: list[str] = Field(min_length=2, max_length=10)
    judge: PairwiseJudgeIn
    limit: int = Field(20, ge=1, le=1000, description="items judged per pair of runs: the first ones both answered")


def _new_judge(body: PairwiseIn, services) -> pairwise.PairwiseJudge:
    s = services.settings
    guard = redis_judge_guard(services.sync_redis(), s.judge_calls_per_minute, s.judge_daily_budget_usd)
    settings = LLMSettings(**body.judge.model_dump(exclude={"rubric"}))
    return pairwise.PairwiseJudge(settings, body.judge.rubric, guard, server_key_for(settings.base_url, s.judge_api_key), s,
                                  deadline=time.monotonic() + TIME_BUDGET_S)


@router.post("/pairwise")
async def judge_pairwise(body: PairwiseIn, project: ProjectDep, services: ServicesDep) -> dict:
    """Synchronous: a judge model compares every pair of the runs on their first ``limit`` shared
    items, both orders per item (disagreement = a tie); verdicts are stored for the leaderboard's
    Bradley–Terry ratings as each item is judged, each item's two judge calls are one trace. Pairs
    already judged by this judge are skipped, so when the time budget or the judge rate limit stops a
    request early (``stopped``), sending it again continues."""
    if len(set(body.experiment_ids)) != len(body.experiment_ids):
        raise HTTPException(400, "experiment_ids: listed twice")
    try:
        check_base_url(body.judge.base_url, services.settings)
    except ValueError as exc:
        raise HTTPException(400, f"judge.{exc}") from None
    runs: dict[str, list[dict[str, Any]]] = {}
    async with services.require_pg().connection() as conn:
        first = None
        for i, eid in enumerate(body.experiment_ids):
            try:
                exp = await store.get(conn, eid, project.id)
            except store.NotFound:
                raise HTTPException(404, f"experiment_ids[{i}]: no such experiment in your project") from None
            if first is not None and not store.same_items(exp, first):
                raise HTTPException(400, f"experiment_ids[{i}]: ran on other items than experiment_ids[0] "
                                         "(dataset version, split or benchmark draw differ)")
            first = first or exp
            runs[eid] = await store.results(conn, eid)
        judge_name = f"{body.judge.provider}/{body.judge.model}"
        ids = sorted(runs)
        stored = await (await conn.execute(
            "SELECT experiment_a, experiment_b, item_id FROM pairwise_verdicts WHERE project_id = %s AND judge = %s "
            "AND experiment_a = ANY(%s) AND experiment_b = ANY(%s)", (project.id, judge_name, ids, ids))).fetchall()
    pending = pairwise.pending_items(runs, body.limit, {tuple(r) for r in stored})
    planned = pairwise.planned_calls(pending)
    if planned > MAX_JUDGE_CALLS:
        raise HTTPException(400, f"limit: {planned} judge calls still to make for these runs; at most {MAX_JUDGE_CALLS} "
                                 "a request (lower limit or compare fewer runs)")
    judge = _new_judge(body, services)
    sent = 0  # judge.calls already published as spans

    async def publish_calls() -> None:
        nonlocal sent
        new, sent = judge.calls[sent:], len(judge.calls)
        if new:  # the judge's calls cost money: each item's pair of calls is one trace of the project
            await services.require_bus().publish(TOPIC_SPANS, [
                (tid.encode(), encode(call.to_span_record(project.id, trace_id=tid, name="evalforge.pairwise_judge",
                                                          attributes=attrs)))
                for tid, attrs, call in new])

    async def save(a: str, b: str, v: pairwise.Verdict) -> None:
        async with services.require_pg().connection() as conn:
            await conn.execute(
                "INSERT INTO pairwise_verdicts (project_id, experiment_a, experiment_b, item_id, judge, winner, first_pick, "
                "second_pick, reasoning, trace_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (project.id, a, b, v.item_id, judge_name, v.winner, v.first_pick, v.second_pick, v.reasoning, v.trace_id))
        await publish_calls()

    loop = asyncio.get_running_loop()

    def save_from_thread(a: str, b: str, v: pairwise.Verdict) -> None:
        # each verdict is stored before the next item is asked: a disconnect or restart loses no paid call
        asyncio.run_coroutine_threadsafe(save(a, b, v), loop).result(timeout=60)

    out = await asyncio.to_thread(pairwise.judge_pairs, judge, project.id, pending, save_from_thread)
    await publish_calls()  # the calls of items that ended in an error
    async with services.require_pg().connection() as conn:
        tallies = await (await conn.execute(
            "SELECT experiment_a, experiment_b, count(*) FILTER (WHERE winner = 'a'), count(*) FILTER (WHERE winner = 'b'), "
            "count(*) FILTER (WHERE winner = 'tie') FROM pairwise_verdicts WHERE project_id = %s AND judge = %s "
            "AND experiment_a = ANY(%s) AND experiment_b = ANY(%s) GROUP BY 1, 2", (project.id, judge_name, ids, ids))).fetchall()
    totals = {(a, b): (wa, wb, t) for a, b, wa, wb, t in tallies}
    pairs = []
    for (a, b), vs in out["verdicts"].items():
        wa, wb, t = totals.get((a, b), (0, 0, 0))
        pairs.append({"experiment_a": a, "experiment_b": b, "judged_now": len(vs), "wins_a": wa, "wins_b": wb, "ties": t,
                      "verdicts": wa + wb + t})
    return {"judge": judge_name, "pairs": pairs, "calls": len(judge.calls), "errors": out["errors"],
            "stopped": out["stopped"], "complete": out["stopped"] is None and not out["errors"]}
