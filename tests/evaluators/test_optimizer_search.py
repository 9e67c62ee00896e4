"""The optimiser's search without any model: the deterministic split, the successive-halving race, the
budget, the optimiser's reply checks and the holdout decision."""

from __future__ import annotations

import asyncio

import pytest

from evaluators.optimizer.proposer import build_messages, parse_candidates, worst_cases
from evaluators.optimizer.search import (
    Budget,
    BudgetExhausted,
    Candidate,
    Limits,
    decide,
    split_items,
    successive_halving,
)


def items(n: int, **extra) -> list[dict]:
    return [{"id": f"item{i}", "input": {"q": i}, **extra} for i in range(n)]


def test_the_seeded_split_is_deterministic_disjoint_and_stable_when_items_are_added():
    a = split_items(items(50), seed=7, holdout_fraction=0.4, train_fraction=0.2)
    again = split_items(items(50), seed=7, holdout_fraction=0.4, train_fraction=0.2)
    ids = lambda part: [i["id"] for i in part]  # noqa: E731
    assert (ids(a.train), ids(a.dev), ids(a.holdout)) == (ids(again.train), ids(again.dev), ids(again.holdout))
    assert (len(a.holdout), len(a.train), len(a.dev)) == (20, 10, 20)
    assert sorted(ids(a.train) + ids(a.dev) + ids(a.holdout)) == sorted(ids(items(50)))
    other = split_items(items(50), seed=8, holdout_fraction=0.4, train_fraction=0.2)
    assert set(ids(other.holdout)) != set(ids(a.holdout))
    # an item added later never moves the others between parts of the same ordering
    grown = split_items(items(51), seed=7, holdout_fraction=0.4, train_fraction=0.2)
    order = ids(grown.holdout) + ids(grown.train) + ids(grown.dev)
    assert [i for i in order if i != "item50"] == ids(a.holdout) + ids(a.train) + ids(a.dev)


def test_the_datasets_own_splits_are_used_when_present():
    data = [{"id": f"t{i}", "split": "train"} for i in range(3)] + [{"id": f"d{i}", "split": "dev"} for i in range(4)] + \
           [{"id": f"h{i}", "split": "test"} for i in range(5)] + [{"id": "none", "split": None}]
    s = split_items(data, seed=0, holdout_fraction=0.4, train_fraction=0.2)
    assert (s.source, s.holdout_split) == ("dataset", "test")
    assert [i["id"] for i in s.holdout] == [f"h{i}" for i in range(5)]
    assert [i["id"] for i in s.dev] == [f"d{i}" for i in range(4)] and len(s.train) == 3


def test_too_few_items_to_decide_is_refused_naming_the_dataset():
    with pytest.raises(ValueError, match=r"^dataset_id: needs at least 2 dev and 2 holdout"):
        split_items(items(3), seed=0, holdout_fraction=0.4, train_fraction=0.2)


def test_successive_halving_keeps_the_better_half_and_scores_only_the_survivor_on_all_of_dev():
    dev = items(16)
    wrong = {"a": {0, 1, 3}, "b": {5}, "c": {1}, "d": set(), "e": set(range(8))}  # the items each gets wrong
    scored: dict[str, list[str]] = {k: [] for k in wrong}

    async def evaluate(c: Candidate, part: list[dict]) -> None:
        for i in part:
            if i["id"] not in c.values:
                scored[c.id].append(i["id"])
                c.values[i["id"]] = 0.0 if i["input"]["q"] in wrong[c.id] else 1.0

    cands = [Candidate(k, f"prompt {k}", 1) for k in wrong]
    winner = asyncio.run(successive_halving(cands, dev, evaluate))
    assert winner.id == "d" and winner.status == "round_winner" and winner.mean() == 1.0
    # 5 candidates: 3 rungs, slices of 2, 4, 8 items keep 3, 2, 1; the survivor then gets all 16.
    # Slices are prefixes: every item is scored once per candidate, eliminated ones only up to their slice.
    assert {k: len(v) for k, v in scored.items()} == {"a": 2, "b": 8, "c": 4, "d": 16, "e": 2}
    assert all(len(v) == len(set(v)) for v in scored.values())
    assert [s["items"] for s in winner.slices] == [2, 4, 8, 16]
    assert all(c.status == "eliminated" for c in cands if c.id != "d")


def test_a_single_candidate_is_scored_on_all_of_dev():
    seen = []

    async def evaluate(c, part):
        seen.append(len(part))
        for i in part:
            c.values[i["id"]] = 1.0

    winner = asyncio.run(successive_halving([Candidate("only", "p", 1)], items(10), evaluate))
    assert winner.mean() == 1.0 and seen[-1] == 10


def test_budget_refuses_a_step_that_would_pass_a_cap():
    b = Budget(max_calls=10, max_usd=1.0)
    b.reserve(10)
    b.charge(8, 0.5, item_runs=8)
    assert b.item_estimate(2) == pytest.approx(0.125)
    with pytest.raises(BudgetExhausted, match="needs 3 more calls"):
        b.reserve(3)
    with pytest.raises(BudgetExhausted):
        b.reserve(1, usd=0.6)
    b.reserve(2, usd=0.5)


def test_the_optimisers_reply_must_keep_the_prompts_shape_and_variables():
    base = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{question}}"}]
    reply = ('{"candidates": ['
             '{"prompt": "Be brief. {{question}}", "rationale": "text"},'
             '{"prompt": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "{{query}}"}]},'
             '{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{question}}"}]},'
             '{"prompt": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "{{ question }}"}],'
             ' "rationale": "exactness"},'
             '{"prompt": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "{{ question }}"}]}]}')
    usable, rejected = parse_candidates(f"Here you go:\n```json\n{reply}\n```", base, seen=[base], n=4)
    assert usable == [{"prompt": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "{{ question }}"}],
                       "rationale": "exactness"}]
    assert [r["reason"].split(" ")[0] for r in rejected] == ["not", "variables", "already", "already"]
    with pytest.raises(ValueError, match="no usable candidate"):
        parse_candidates('{"candidates": [{"prompt": "x"}]}', base, seen=[], n=2)
    with pytest.raises(ValueError, match="candidates"):
        parse_candidates('{"prompts": []}', base, seen=[], n=2)


def test_the_optimiser_is_shown_the_worst_dev_cases_with_their_reasons():
    rows = {f"i{k}": {"position": k, "input": {"q": k}, "expected_output": str(k), "output": "x", "error": None,
                      "scores": [{"name": "exact_match", "value": float(k > 2), "reason": f"reason {k}"}]}
            for k in range(5)}
    values = {i: r["scores"][0]["value"] for i, r in rows.items()}
    worst = worst_cases(rows, values, n=2)
    assert [w["input"] for w in worst] == ['{"q":0}', '{"q":1}']
    assert worst[0]["reasons"] == ["exact_match: reason 0"]
    msg = build_messages({"prompt": "Q: {{q}}", "dev_mean": 0.4}, worst, [{"prompt": "Q: {{q}}", "dev_score": 0.4}], [], 3)
    assert "Propose 3 new prompts" in msg[0]["content"] and "reason 0" in msg[0]["content"]


def _summary(cost: float | None, p95: float | None) -> dict:
    return {"cost": {"per_item": cost}, "latency_ms": {"p95": p95}}


def test_the_decision_needs_significance_in_the_right_direction_and_the_limits():
    better = {"n": 20, "delta": 0.5, "p_value": 0.001, "test": "mcnemar_exact"}
    assert decide(better, _summary(0.01, 100), _summary(0.01, 100), Limits())["accepted"] is True
    worse = {**better, "delta": -0.5}
    assert decide(worse, _summary(0.01, 100), _summary(0.01, 100), Limits())["accepted"] is False
    noise = {**better, "p_value": 0.06}
    assert "not significant" in decide(noise, _summary(0.01, 100), _summary(0.01, 100), Limits())["reason"]
    dear = decide(better, _summary(0.01, 100), _summary(0.03, 100), Limits(max_cost_ratio=2.0))
    assert dear["accepted"] is False and "3x the baseline" in dear["reason"]
    slow = decide(better, _summary(0.01, 100), _summary(0.01, 900), Limits(max_latency_p95_ms=500))
    assert slow["accepted"] is False and "latency p95 900.0 ms" in slow["reason"]
    assert decide(None, _summary(0, 0), _summary(0, 0), Limits())["accepted"] is False
