"""Scoring a prompt on dataset items through the experiment runner's own item path: each item run is a
trace (root span + the target's model call, tagged with the optimisation), scored by the registry
evaluators (LLM judges through the judge's rate limit and budget), priced like an experiment's."""

from __future__ import annotations

import asyncio
from typing import Any

from core.bus import TOPIC_SCORES, TOPIC_SPANS
from evaluators.experiments.runner import ExperimentRun
from evaluators.llm import server_key_for
from evaluators.optimizer.prompt_store import messages_for

OPTIMIZATION_ATTRIBUTE = "evalforge.optimization_id"


class PromptScorer(ExperimentRun):
    """One prompt on items, outside the experiment results table (the optimiser keeps the rows; the
    holdout runs store them as two experiments). ``run_id`` is the ``evalforge.experiment_id`` of the
    traces: the holdout experiment's id, or the optimisation's for the dev race."""

    def __init__(self, pg, bus, settings, *, project_id: str, run_id: str, name: str, target: dict[str, Any],
                 prompt: Any, evaluators: list[dict[str, Any]], judge_deps: dict[str, Any] | None,
                 optimization_id: str, prices: list[dict[str, Any]]) -> None:
        exp = {"id": run_id, "project_id": project_id, "name": name, "target": target, "evaluators": evaluators}
        super().__init__(pg, bus, settings, exp, judge_deps=judge_deps)
        self._prices = prices  # the project's price overrides (an experiment reads them when it starts)
        self.prompt = prompt
        self.optimization_id = optimization_id
        self.judge_calls = 0
        self.judge_usd = 0.0

    def _messages(self, item: dict[str, Any]) -> list[dict[str, str]]:
        try:
            return messages_for(self.prompt, item)
        except (KeyError, ValueError) as exc:  # a variable the item lacks: that item's run fails, visibly
            raise KeyError(f"prompt: {exc}") from None

    def _span(self, trace_id, span_id, parent, name, kind, start, end, attrs):
        return super()._span(trace_id, span_id, parent, name, kind, start, end,
                             {**attrs, OPTIMIZATION_ATTRIBUTE: self.optimization_id})

    async def _score(self, item, output, root, spans):
        before = len(spans)
        scores = await super()._score(item, output, root, spans)
        judged = spans[before:]  # the judges' model calls, priced by the judge guard
        self.judge_calls += len(judged)
        self.judge_usd += sum(s.get("cost") or 0.0 for s in judged)
        return scores

    async def run_items(self, client, items: list[tuple[int, dict[str, Any]]], concurrency: int) -> list[dict[str, Any]]:
        """Run ``[(dataset position, item)]``, publish their traces and scores; the result rows in order."""
        api_key = server_key_for(self.target.base_url, self.settings.judge_api_key)
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(pos: int, item: dict[str, Any]):
            async with gate:
                return await self._run_one(client, api_key, pos, item, 0)

        done = await asyncio.gather(*(one(pos, item) for pos, item in items))
        spans = [s for _, sp, _ in done for s in sp]
        scores = [s for _, _, sc in done for s in sc]
        if spans:
            await self.bus.publish(TOPIC_SPANS, spans)
        if scores:
            await self.bus.publish(TOPIC_SCORES, scores)
        return [row for row, _, _ in done]
