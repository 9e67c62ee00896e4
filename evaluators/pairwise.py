"""Pairwise LLM judging: which of two runs answered an item better, asked in both orders.

Judges favour the answer shown first (or second) more often than chance, so every item is asked
twice, with each run's output in each position; a run wins only when both orders pick it, and any
disagreement (or a tie in either order) is a tie. The verdicts feed the leaderboard's Bradley–Terry
fit (``evaluators.leaderboard``).

Calls go through ``LLMClient`` (the egress guard) and ``JudgeGuard`` (the project's judge rate limit
and spend cap). The work is synchronous and bounded by a time budget: once it has run out (or the
rate limit would make it overrun), it stops and says so; each verdict is saved as it is made, and
asking again continues where it stopped.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from evaluators.judge import extract_json_object
from evaluators.llm import JudgeError, JudgeGuard, LLMCall, LLMClient, LLMSettings, chat_parsed

Pick = Literal["a", "b", "tie"]

DEFAULT_CRITERIA = ("The better answer is the more correct, helpful and complete response to the input "
                    "(agreeing with the reference answer, when one is given), without needless length.")
SYSTEM = ("You compare two answers to the same input and decide which is better.\n"
          "Criteria: {criteria}\n"
          "Judge the content only: not which answer comes first, nor its length. If they are equally "
          'good, say "tie".\n'
          'Reply with only a JSON object: {{"reasoning": "<one or two sentences>", "winner": "A" | "B" | "tie"}}.')
SECOND_ORDER_GRACE_S = 30.0
FORMAT_HINT = 'the JSON object {"reasoning": "...", "winner": "A" | "B" | "tie"}'


class Stopped(Exception):
    """The time budget ran out while the judge was rate limited."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def render(item_input: Any, expected: Any, first: Any, second: Any) -> str:
    parts = [f"Input:\n{as_text(item_input)}"]
    if expected is not None:
        parts.append(f"Reference answer:\n{as_text(expected)}")
    parts += [f"Answer A:\n{as_text(first)}", f"Answer B:\n{as_text(second)}"]
    return "\n\n".join(parts)


def parse_pick(text: str) -> tuple[Literal["A", "B", "tie"], str]:
    """``{"winner": "A" | "B" | "tie", "reasoning": ...}`` -> (pick, reasoning); ValueError says what is wrong."""
    data = extract_json_object(text)
    raw = data.get("winner")
    key = str(raw).strip().lower() if raw is not None else ""
    picks: dict[str, Literal["A", "B", "tie"]] = {"a": "A", "b": "B", "tie": "tie", "draw": "tie"}
    if key not in picks:
        raise ValueError(f'"winner" must be "A", "B" or "tie", got {raw!r}')
    reasoning = data.get("reasoning", "")
    return picks[key], reasoning if isinstance(reasoning, str) else orjson.dumps(reasoning).decode()


def combine(first_pick: Pick, second_pick: Pick) -> Pick:
    """Both orders agree on a run: it wins; otherwise (disagreement, or a tie in either): a tie."""
    return first_pick if first_pick == second_pick else "tie"


@dataclass
class Verdict:
    item_id: str
    winner: Pick
    first_pick: Pick  # with run a's output shown as "A"
    second_pick: Pick  # with run b's output shown as "A"
    reasoning: str
    trace_id: str


@dataclass
class PairwiseJudge:
    """Asks one judge model about pairs of outputs; ``calls`` collects every model call made (for
    spans and cost), ``deadline`` (time.monotonic) bounds the request: no item is started after it,
    and no wait on the rate limit ends after it."""

    settings: LLMSettings
    criteria: str | None
    guard: JudgeGuard
    api_key: str | None
    egress: Any
    deadline: float
    calls: list[tuple[str, dict[str, str], LLMCall]] = field(default_factory=list)  # (trace id, attributes, call)

    def __post_init__(self) -> None:
        self.client = LLMClient(self.settings, api_key=self.api_key, egress=self.egress, purpose="llm_judge")
        self.system = SYSTEM.format(criteria=self.criteria or DEFAULT_CRITERIA)

    @property
    def name(self) -> str:
        return f"{self.settings.provider}/{self.settings.model}"

    def _ask(self, project_id: str, prompt: str, trace_id: str, attributes: dict[str, str],
             grace: float = 0.0) -> tuple[str, str]:
        """One order's pick; rate limited, it waits while that ends by ``deadline + grace``."""
        while True:
            try:
                (pick, reasoning), calls = chat_parsed(self.client, self.guard, project_id, self.system,
                                                       [{"role": "user", "content": prompt}], parse_pick, FORMAT_HINT)
            except JudgeError as exc:
                self.calls += [(trace_id, attributes, c) for c in exc.calls]
                wait = exc.retry_after or 1.0
                if exc.kind != "rate_limited":
                    raise
                if time.monotonic() + wait > self.deadline + grace:
                    raise Stopped(exc.retry_after) from None
                time.sleep(wait)
                continue
            self.calls += [(trace_id, attributes, c) for c in calls]
            return pick, reasoning

    def judge_item(self, project_id: str, pair: tuple[str, str], item_id: str, item_input: Any, expected: Any,
                   output_a: Any, output_b: Any) -> Verdict:
        """Both orders for one item; one trace holds both calls."""
        trace_id = secrets.token_hex(16)
        attrs = {"evalforge.pairwise.experiment_a": pair[0], "evalforge.pairwise.experiment_b": pair[1],
                 "evalforge.dataset_item_id": item_id}
        p1, why1 = self._ask(project_id, render(item_input, expected, output_a, output_b), trace_id,
                             {**attrs, "evalforge.pairwise.order": "a_first"})
        # The second order may wait past the deadline a little: stopping there would waste the first call.
        p2, why2 = self._ask(project_id, render(item_input, expected, output_b, output_a), trace_id,
                             {**attrs, "evalforge.pairwise.order": "b_first"}, grace=SECOND_ORDER_GRACE_S)
        first: Pick = {"A": "a", "B": "b", "tie": "tie"}[p1]  # type: ignore[assignment]
        second: Pick = {"A": "b", "B": "a", "tie": "tie"}[p2]  # type: ignore[assignment]
        return Verdict(item_id, combine(first, second), first, second, f"a first: {why1}\nb first: {why2}", trace_id)


def first_outputs(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """item id -> its first answered repetition (errors skipped), in the run's item order."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: (r.get("position") or 0, r["item_id"], r["repetition"])):
        if not r.get("error") and r["item_id"] not in out:
            out[r["item_id"]] = r
    return out


def shared_items(results_a: list[dict[str, Any]], results_b: list[dict[str, Any]], limit: int) -> list[tuple[dict, dict]]:
    """The first ``limit`` items both runs answered, in dataset order: the same items for every pair."""
    a, b = first_outputs(results_a), first_outputs(results_b)
    return [(a[i], b[i]) for i in a if i in b][:limit]


def pending_items(runs: dict[str, list[dict[str, Any]]], limit: int,
                  already: set[tuple[str, str, str]]) -> dict[tuple[str, str], list[tuple[dict, dict]]]:
    """Every pair of ``runs`` (experiment id -> results; a < b) -> its first ``limit`` shared items
    not in ``already`` (the stored (a, b, item) verdicts): what a request still has to judge."""
    ids = sorted(runs)
    return {(a, b): [(ra, rb) for ra, rb in shared_items(runs[a], runs[b], limit) if (a, b, ra["item_id"]) not in already]
            for n, a in enumerate(ids) for b in ids[n + 1:]}


def judge_pairs(judge: PairwiseJudge, project_id: str, pending: dict[tuple[str, str], list[tuple[dict, dict]]],
                save: Callable[[str, str, Verdict], None]) -> dict[str, Any]:
    """Judges the ``pending`` items (``pending_items``) pair by pair; ``save`` gets each verdict as soon
    as it is made, so a request cut short (a disconnect, a restart) keeps every paid call's verdict. It
    stops before an item once ``judge.deadline`` has passed (asking again continues). Returns verdicts
    by pair, errors, and why it stopped."""
    out: dict[str, Any] = {"verdicts": {pair: [] for pair in pending}, "errors": [], "stopped": None}
    for (a, b), items in pending.items():
        for ra, rb in items:
            if time.monotonic() > judge.deadline:
                out["stopped"] = {"reason": "time_budget", "retry_after": None}
                return out
            try:
                verdict = judge.judge_item(project_id, (a, b), ra["item_id"], ra.get("input"),
                                           ra.get("expected_output"), ra.get("output"), rb.get("output"))
            except Stopped as exc:
                out["stopped"] = {"reason": "rate_limited", "retry_after": exc.retry_after}
                return out
            except JudgeError as exc:
                out["errors"].append({"experiment_a": a, "experiment_b": b, "item_id": ra["item_id"],
                                      "error": f"{exc.kind}: {exc.message}"})
                if exc.kind != "malformed_output":  # the provider refuses or fails: asking on is futile
                    out["stopped"] = {"reason": exc.kind, "retry_after": exc.retry_after}
                    return out
                continue
            save(a, b, verdict)
            out["verdicts"][(a, b)].append(verdict)
    return out


def planned_calls(pending: dict[tuple[str, str], list[tuple[dict, dict]]]) -> int:
    """Judge calls a request may make at most: two for each item still to judge."""
    return sum(2 * len(items) for items in pending.values())
