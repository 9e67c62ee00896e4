"""One optimisation job, start to finish: split the dataset, score the base version on dev, then each
round ask the optimiser model for candidates and race them on dev; at the end run the best and the
baseline on the frozen holdout as two experiments and accept the best only if the paired test (the one
experiments' compare uses) says it is better at 95 % within the cost and latency limits. An accepted
prompt becomes a new unlabelled version; no label ever moves.

Every model call counts against the job's budget (calls and USD) before it is made; when the next step
would pass it, the job stops and decides with what it has (on the holdout only if the budget still
covers those runs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from core.project_prices import project_overrides
from evaluators.datasets import read_items
from evaluators.experiments import stats
from evaluators.experiments import store as experiments
from evaluators.experiments.targets import http_client
from evaluators.guard import judge_call_cost
from evaluators.llm import JudgeError, JudgeGuard, LLMCall, LLMClient, chat_parsed, server_key_for
from evaluators.optimizer import prompt_store, store
from evaluators.optimizer.proposer import SYSTEM, build_messages, model_settings, parse_candidates, worst_cases
from evaluators.optimizer.scoring import OPTIMIZATION_ATTRIBUTE, PromptScorer
from evaluators.optimizer.search import (
    MIN_SLICE,
    BudgetExhausted,
    Budget,
    Candidate,
    Limits,
    Splits,
    decide,
    holdout_test,
    objective_verdicts,
    split_items,
    successive_halving,
)
from evaluators.routers.assist import record_calls

log = logging.getLogger(__name__)
RATE_LIMIT_WAIT_S = 300.0  # how long one judge or optimiser call waits on the judge's rate limit before failing


class Cancelled(Exception):
    pass


class PacedGuard(JudgeGuard):
    """The project's judge guard (rate limit, daily judge budget), waiting out the rate limit instead
    of failing: in a batch job a judge call refused for the rate would score 0 and skew the race."""

    def __init__(self, inner: JudgeGuard | None) -> None:
        super().__init__()
        self.inner = inner or JudgeGuard()

    def chat(self, client: LLMClient, project_id: str, system: str, messages: list[dict[str, str]]) -> LLMCall:
        deadline = time.monotonic() + RATE_LIMIT_WAIT_S
        while True:
            try:
                return self.inner.chat(client, project_id, system, messages)
            except JudgeError as exc:
                if exc.kind != "rate_limited" or time.monotonic() > deadline:
                    raise
                time.sleep(min(exc.retry_after or 1.0, 10.0))  # in a worker thread: the event loop runs on


class BudgetedGuard(JudgeGuard):
    """The optimiser model's calls: each reserved against the job's budget first, then through the
    paced judge guard, priced, and kept to be recorded as traces."""

    def __init__(self, budget: Budget, inner: PacedGuard) -> None:
        super().__init__()
        self.budget = budget
        self.inner = inner
        self.calls: list[LLMCall] = []

    def chat(self, client: LLMClient, project_id: str, system: str, messages: list[dict[str, str]]) -> LLMCall:
        last = self.calls[-1].cost if self.calls and self.calls[-1].cost else 0.0
        self.budget.reserve(1, last, "asking the optimiser model")
        try:
            call = self.inner.chat(client, project_id, system, messages)
        except JudgeError as exc:
            if exc.kind == "budget_exceeded":
                raise BudgetExhausted(f"the project's daily judge budget: {exc.message}") from None
            raise
        if call.cost is None:
            call.cost = judge_call_cost(call)
        self.budget.charge(1, call.cost or 0.0)
        self.calls.append(call)
        return call


class OptimizationRun:
    def __init__(self, pg, bus, settings, job: dict[str, Any], *, judge_deps: dict[str, Any] | None = None) -> None:
        self.pg, self.bus, self.settings, self.job = pg, bus, settings, job
        self.spec = job["spec"]
        self.project_id = job["project_id"]
        self.guard = PacedGuard((judge_deps or {}).get("guard"))
        self.judge_deps = {**(judge_deps or {}), "guard": self.guard}
        self.budget = Budget(self.spec["budget"]["max_calls"], self.spec["budget"]["max_usd"])
        self.objective: str | None = self.spec.get("objective")
        self.judges = sum(1 for e in self.spec["evaluators"] if e["evaluator"] == "llm_judge")
        self.candidates: list[Candidate] = []
        self.rounds: list[dict[str, Any]] = []
        self.round = 0
        self.stage = "starting"
        self.best_id = "baseline"
        self.positions: dict[str, int] = {}
        self.prices: list[dict[str, Any]] = []
        self._dev_scorers: dict[str, PromptScorer] = {}
        self.holdout_experiments: list[str] = []  # started by this run (a resumed run fails the earlier ones)
        # the holdout's decision once made: {"decision", "message", "version"}, saved before any version is
        # created, so a run resumed after the holdout settles it instead of running the holdout again
        self.outcome: dict[str, Any] | None = None
        self.client: Any = None

    # --- the job --------------------------------------------------------------------------------------

    async def run(self) -> str:
        """Run the job (already claimed and marked running); returns its final status."""
        job = self.job
        base = await prompt_store.get_version(self.pg, self.project_id, job["prompt_name"], version=job["base_version"])
        if base is None:
            raise ValueError(f"base: version {job['base_version']} of prompt {job['prompt_name']!r} is gone")
        async with self.pg.connection() as conn:
            items = await read_items(conn, job["dataset_id"], job["dataset_version"])
            self.prices = await project_overrides(conn, self.project_id)
        self.positions = {i["id"]: p for p, i in enumerate(items)}
        splits = split_items(items, self.spec["seed"], self.spec["holdout_fraction"], self.spec["train_fraction"])
        await self._restore(job.get("state") or {})  # a resumed job: what its earlier run saved
        if self.outcome is not None:  # an earlier run decided on the holdout and died before finishing
            version = await self._settle(base)
            return await self._finish(self.outcome["decision"], version)
        if not self.candidates:
            self.candidates.append(Candidate("baseline", base["prompt"], 0, "the base version"))
        baseline = self.candidates[0]
        best, stopped = baseline, ""
        try:
            async with http_client(self.settings, self.spec["max_concurrency"]) as client:
                self.client = client
                try:
                    self.stage = "baseline"
                    # a first slice prices an item run before the budget is committed to all of dev
                    await self._evaluate(baseline, splits.dev[:MIN_SLICE])
                    await self._evaluate(baseline, splits.dev)
                    baseline.status = "baseline"
                    for rnd in range(1, self.spec["rounds"] + 1):
                        self.round, self.stage = rnd, "proposing"
                        # a resumed job replays its rounds: proposals already made are not asked for
                        # again, and the race scores only the items it had not scored
                        if any(r["round"] == rnd and "proposed" in r for r in self.rounds):
                            proposed = [c for c in self.candidates if c.round == rnd]
                        else:
                            self.rounds = [r for r in self.rounds if r["round"] != rnd]
                            proposed = await self._propose(best, splits)
                        if not proposed:
                            continue
                        self.stage = "racing"
                        for c in proposed:
                            c.slices, c.status = [], "racing"
                        winner = await successive_halving(proposed, splits.dev, self._evaluate)
                        improved = (winner.mean() or 0.0) > (best.mean() or 0.0)
                        next(r for r in self.rounds if r["round"] == rnd).update(
                            winner=winner.id, winner_dev=winner.mean(), improved=improved)
                        if improved:
                            if best is not baseline:
                                best.status = "round_winner"
                            winner.status = "best"
                            best, self.best_id = winner, winner.id
                        await self._save()
                except BudgetExhausted as exc:  # finish with what it has
                    stopped = str(exc)
                self.stage = "holdout"
                decision = await self._decide(base, baseline, best, splits, stopped)
                version = await self._settle(base)
        except Cancelled:
            await self._close_holdout("cancelled", "the optimisation was cancelled")
            return "cancelled"
        except Exception as exc:  # the job fails (the worker records why); so do its unfinished holdout runs
            await self._close_holdout("failed", f"the optimisation failed: {type(exc).__name__}")
            raise
        return await self._finish(decision, version)

    async def _finish(self, decision: dict[str, Any], version: int | None) -> str:
        self.stage = "done"
        await self._save()
        async with self.pg.connection() as conn:
            if await store.finish(conn, self.job["id"], "completed", decision=decision, result_version=version):
                return "completed"
            return await store.status(conn, self.job["id"]) or "gone"

    # --- steps ----------------------------------------------------------------------------------------

    async def _save(self) -> None:
        progress = {"round": self.round, "rounds": self.spec["rounds"], "stage": self.stage, **self.budget.as_dict(),
                    "objective": self.objective, "best": self.best_id, "round_log": self.rounds,
                    "attempt": self.job.get("attempts", 1)}
        b = self.budget
        state = {"objective": self.objective, "rounds": self.rounds, "holdout_experiments": self.holdout_experiments,
                 "outcome": self.outcome,
                 "budget": {"calls": b.calls, "usd": b.usd, "item_runs": b.item_runs, "item_usd": b.item_usd,
                            "held_calls": b.held_calls, "held_usd": b.held_usd},
                 "candidates": [{"id": c.id, "prompt": c.prompt, "round": c.round, "rationale": c.rationale,
                                 "status": c.status, "values": c.values, "rows": c.rows} for c in self.candidates]}
        async with self.pg.connection() as conn:
            status = await store.save_progress(conn, self.job["id"], progress, [c.summary() for c in self.candidates],
                                               state)
        if status == "cancelled":
            raise Cancelled

    async def _restore(self, state: dict[str, Any]) -> None:
        """Take up where an earlier run of this job stopped (its worker died): candidates with their
        scored dev items, the round log, the budget spent. Holdout runs it had started are marked failed
        (the resumed run makes its own)."""
        if not state:
            return
        self.objective = state.get("objective") or self.objective
        self.rounds = state.get("rounds") or []
        self.outcome = state.get("outcome")
        for k, v in (state.get("budget") or {}).items():
            setattr(self.budget, k, v)
        self.budget.spend_held()  # a step the earlier run died in: its calls were made
        self.candidates = [Candidate(c["id"], c["prompt"], c["round"], c["rationale"], values=c["values"],
                                     rows=c["rows"], status=c["status"]) for c in state.get("candidates") or []]
        if self.outcome is not None:  # its holdout runs completed: they are the decision's evidence
            return
        async with self.pg.connection() as conn:
            for exp_id in state.get("holdout_experiments") or []:
                await experiments.set_status(conn, exp_id, "failed", expect=("running",),
                                             error="the optimisation's worker stopped; its resumed run made new ones")

    def _value(self, row: dict[str, Any]) -> float:
        """A run's objective value; a failed run (no score) counts as 0."""
        if self.objective is None:
            names = [s["name"] for s in row.get("scores") or [] if s.get("value") is not None]
            if names:
                self.objective = names[0]
        for s in row.get("scores") or []:
            if s["name"] == self.objective and s.get("value") is not None:
                return float(s["value"])
        return 0.0

    def _scorer(self, run_id: str, name: str, prompt: Any) -> PromptScorer:
        return PromptScorer(self.pg, self.bus, self.settings, project_id=self.project_id, run_id=run_id, name=name,
                            target=self.spec["target"], prompt=prompt, evaluators=self.spec["evaluators"],
                            judge_deps=self.judge_deps, optimization_id=self.job["id"], prices=self.prices)

    async def _run(self, scorer: PromptScorer, items: list[dict[str, Any]], what: str,
                   reserved: bool = False) -> list[dict[str, Any]]:
        """Score ``items`` with the budget reserved first (unless the caller did), held in the saved
        state while the calls are made (also where a cancel is noticed, before anything is spent), and
        charged after."""
        calls, usd = len(items) * (1 + self.judges), self.budget.item_estimate(len(items))
        if not reserved:
            self.budget.reserve(calls, usd, what)
        self.budget.hold(calls, usd)
        await self._save()
        judge_calls, judge_usd = scorer.judge_calls, scorer.judge_usd
        rows = await scorer.run_items(self.client, [(self.positions[i["id"]], i) for i in items],
                                      self.spec["max_concurrency"])
        usd = sum(r.get("cost") or 0.0 for r in rows) + scorer.judge_usd - judge_usd
        target_calls = sum(r.get("attempts", 1) for r in rows)  # a retried request is a call too
        self.budget.charge(target_calls + scorer.judge_calls - judge_calls, usd, item_runs=len(rows))
        return rows

    async def _evaluate(self, cand: Candidate, items: list[dict[str, Any]]) -> None:
        todo = [i for i in items if i["id"] not in cand.values]
        if not todo:
            return
        if cand.id not in self._dev_scorers:  # one per candidate: its judges' clients are reused across slices
            self._dev_scorers[cand.id] = self._scorer(self.job["id"], f"optimize {self.job['prompt_name']} {cand.id}",
                                                      cand.prompt)
        rows = await self._run(self._dev_scorers[cand.id], todo, f"scoring {cand.id} on {len(todo)} dev items")
        for r in rows:
            cand.rows[r["item_id"]] = r
            cand.values[r["item_id"]] = self._value(r)
        await self._save()

    async def _propose(self, best: Candidate, splits: Splits) -> list[Candidate]:
        n = self.spec["candidates_per_round"]
        entry: dict[str, Any] = {"round": self.round}  # "proposed" is set once the optimiser has answered
        self.rounds.append(entry)
        await self._save()
        history = [{"prompt": c.prompt, "dev_score": c.mean(), "dev_items": len(c.values)} for c in self.candidates]
        messages = build_messages({"prompt": best.prompt, "dev_mean": best.mean()}, worst_cases(best.rows, best.values),
                                  history, splits.train[:3], n)
        seen = [c.prompt for c in self.candidates]
        m = self.spec["optimizer_model"]
        client = LLMClient(model_settings(m), api_key=server_key_for(m.get("base_url"), self.settings.judge_api_key), egress=self.settings, purpose="prompt_optimizer")
        guard = BudgetedGuard(self.budget, self.guard)
        try:
            (usable, rejected), _ = await asyncio.to_thread(
                chat_parsed, client, guard, self.project_id, SYSTEM, messages,
                lambda text: parse_candidates(text, best.prompt, seen, n), 'a JSON object {"candidates": [...]}')
        except JudgeError as exc:
            usable, rejected = [], []
            entry["error"] = exc.message[:500]
        finally:
            await record_calls(self.bus, guard.calls, self.project_id, name="optimizer.propose",
                               attributes={OPTIMIZATION_ATTRIBUTE: self.job["id"]})
        entry.update(proposed=len(usable), rejected=rejected)
        out = [Candidate(f"r{self.round}c{k}", c["prompt"], self.round, c["rationale"])
               for k, c in enumerate(usable, start=1)]
        self.candidates += out
        await self._save()
        return out

    async def _close_holdout(self, status: str, why: str) -> None:
        """Holdout experiments this run started and did not finish end with the job."""
        async with self.pg.connection() as conn:
            for exp_id in self.holdout_experiments:
                await experiments.set_status(conn, exp_id, status, expect=("running",), error=why)

    async def _decide(self, base: dict[str, Any], baseline: Candidate, best: Candidate, splits: Splits,
                      stopped: str) -> dict[str, Any]:
        """The decision, kept in ``self.outcome`` (saved, after a holdout) with the new version's message
        when accepted."""
        common: dict[str, Any] = {"objective": self.objective, "best_candidate": best.id,
                                  "stopped_early": stopped or None,
                                  "dev": {"baseline": baseline.mean(), "best": best.mean()}}
        if best is baseline:
            why = "the budget ran out before any candidate beat" if stopped else "no candidate beat"
            self.outcome = {"decision": {**common, "accepted": False, "reason": f"{why} the baseline on dev"}}
            return self.outcome["decision"]
        n = len(splits.holdout)  # both holdout runs are reserved here, together
        if not self.budget.affordable(2 * n * (1 + self.judges), self.budget.item_estimate(2 * n)):
            self.outcome = {"decision": {**common, "accepted": False, "reason": "budget exhausted, no decision"}}
            return self.outcome["decision"]
        await self._save()
        runs = []
        for role, cand in (("baseline", baseline), ("candidate", best)):
            runs.append(await self._holdout_run(role, cand, splits))
        async with self.pg.connection() as conn:
            await store.link_experiments(conn, self.job["id"], runs[0]["id"], runs[1]["id"])
        test = holdout_test(*(objective_verdicts(r["results"], self.objective) for r in runs))
        summaries = [stats.summarize(r["results"], 1, with_ci=False) for r in runs]
        verdict = decide(test, summaries[0], summaries[1], Limits(**(self.spec.get("limits") or {})))
        holdout = {role: {"experiment_id": r["id"], "mean": test[mean],
                          "cost_per_item": s["cost"]["per_item"], "latency_p95_ms": s["latency_ms"]["p95"]}
                   for role, mean, r, s in zip(("baseline", "candidate"), ("mean_base", "mean_other"), runs, summaries)}
        decision = {**common, **verdict, "holdout": {"items": n, **holdout}, "test": test}
        self.outcome = {"decision": decision}
        if verdict["accepted"]:
            self.outcome["message"] = (
                f"prompt optimisation {self.job['id']}: {self.objective} on {n} holdout items "
                f"{holdout['baseline']['mean']:.4g} -> {holdout['candidate']['mean']:.4g}, one-sided "
                f"{test['test']} p = {test['p_value']:.4g} (experiments {runs[0]['id']} vs {runs[1]['id']})")
        await self._save()
        return decision

    async def _settle(self, base: dict[str, Any]) -> int | None:
        """The accepted prompt as a new unlabelled version, once: a run resumed after it was created
        finds it (its message names the job) and records it."""
        outcome = self.outcome or {}
        if not outcome.get("decision", {}).get("accepted"):
            return None
        if outcome.get("version") is None:
            best = next(c for c in self.candidates if c.id == outcome["decision"]["best_candidate"])
            pid, name = self.project_id, self.job["prompt_name"]
            created = (await prompt_store.version_made_by(self.pg, pid, name, self.job["id"])
                       or await prompt_store.create_unlabelled_version(self.pg, pid, name, base, best.prompt,
                                                                       outcome["message"]))
            outcome["version"] = created["version"]
            await self._save()
        return outcome["version"]

    async def _holdout_run(self, role: str, cand: Candidate, splits: Splits) -> dict[str, Any]:
        """One side of the holdout comparison, stored as a finished server-side experiment on the holdout
        items (so ``/api/v1/experiments/compare`` gives the same test)."""
        job = self.job
        spec = {"name": f"optimize {job['prompt_name']} holdout: {role} ({cand.id})", "kind": "server",
                "dataset_id": job["dataset_id"], "dataset_version": job["dataset_version"],
                "split": splits.holdout_split, "repetitions": 1, "max_concurrency": self.spec["max_concurrency"],
                "status": "running", "total": len(splits.holdout), "target": self.spec["target"],
                "evaluators": self.spec["evaluators"],
                "metadata": {"optimization_id": job["id"], "role": role, "candidate": cand.id, "prompt": cand.prompt,
                             "prompt_name": job["prompt_name"], "base_version": job["base_version"]}}
        async with self.pg.connection() as conn:
            exp_id = await experiments.create(conn, self.project_id, spec)
        self.holdout_experiments.append(exp_id)
        await self._save()
        scorer = self._scorer(exp_id, spec["name"], cand.prompt)
        rows = await self._run(scorer, splits.holdout, f"the holdout run of the {role}", reserved=True)
        async with self.pg.connection() as conn:
            await experiments.insert_results(conn, exp_id, rows)
            await experiments.set_status(conn, exp_id, "completed", expect=("running",))
            results = await experiments.results(conn, exp_id)
        return {"id": exp_id, "name": spec["name"], "results": results}
