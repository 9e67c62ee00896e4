"""The optimiser's search without any model: the deterministic split, the successive-halving race, the
budget, the optimiser's reply checks and the holdout decision."""

from __future__ import annotations

import asyncio

import pytest
from scipy import stats

from evaluators.experiments.stats import paired_tests
from evaluators.optimizer.proposer import build_messages, parse_candidates, worst_cases
from evaluators.optimizer.search import (
    Budget,
    BudgetExhausted,
    Candidate,
    Limits,
    decide,
    holdout_test,
    objective_verdicts,
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


def test_a_held_step_is_counted_once_whether_it_was_charged_or_its_run_died():
    b = Budget(max_calls=100, max_usd=1.0)
    b.hold(10, 0.2)
    b.charge(12, 0.25, item_runs=10)  # retries: it spent more than it held, and that is what counts
    assert (b.calls, b.usd, b.held_calls, b.held_usd) == (12, 0.25, 0, 0.0)
    b.hold(10, 0.25)
    resumed = Budget(max_calls=100, max_usd=1.0, calls=b.calls, usd=b.usd, held_calls=b.held_calls,
                     held_usd=b.held_usd)  # as saved in the job's state when its worker died mid-step
    resumed.spend_held()
    assert (resumed.calls, resumed.usd, resumed.held_calls) == (22, 0.5, 0)
    resumed.spend_held()  # nothing held any more
    assert resumed.calls == 22


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


def test_the_decision_needs_significance_and_the_limits():
    better = {"n": 20, "delta": 0.5, "p_value": 0.001, "test": "mcnemar_exact"}
    assert decide(better, _summary(0.01, 100), _summary(0.01, 100), Limits())["accepted"] is True
    lower_mean = {**better, "delta": -0.01}  # more passes (McNemar) but a lower mean value: not better
    assert decide(lower_mean, _summary(0.01, 100), _summary(0.01, 100), Limits())["accepted"] is False
    noise = {**better, "p_value": 0.06}
    assert "not significant" in decide(noise, _summary(0.01, 100), _summary(0.01, 100), Limits())["reason"]
    dear = decide(better, _summary(0.01, 100), _summary(0.03, 100), Limits(max_cost_ratio=2.0))
    assert dear["accepted"] is False and "3x the baseline" in dear["reason"]
    slow = decide(better, _summary(0.01, 100), _summary(0.01, 900), Limits(max_latency_p95_ms=500))
    assert slow["accepted"] is False and "latency p95 900.0 ms" in slow["reason"]
    assert decide(None, _summary(0, 0), _summary(0, 0), Limits())["accepted"] is False


PRICED = (_summary(0.01, 100), _summary(0.01, 100))


def _accept(base: dict, cand: dict, limits: Limits | None = None, summaries=PRICED) -> dict:
    return decide(holdout_test(base, cand), summaries[0], summaries[1], limits or Limits())


def test_losing_every_pass_is_refused_even_when_the_mean_rises_elsewhere():
    # items 0-9: the baseline passes, the candidate fails (and gains none); items 10-29: both fail, but the
    # candidate's value rises -- the mean delta is positive and the two-sided McNemar p is tiny
    base = {f"i{k}": (0.6, True) if k < 10 else (0.0, False) for k in range(30)}
    cand = {f"i{k}": (0.4, False) if k < 10 else (0.45, False) for k in range(30)}
    two_sided = paired_tests(base, cand)
    assert two_sided["delta"] > 0 and two_sided["p_value"] < 0.05  # what the old rule accepted
    test = holdout_test(base, cand)
    assert test["test"] == "mcnemar_exact" and (test["base_only"], test["other_only"]) == (10, 0)
    assert test["p_value"] == stats.binomtest(0, 10, 0.5, alternative="greater").pvalue
    verdict = _accept(base, cand)
    assert verdict["accepted"] is False and "not significant" in verdict["reason"]


def test_worse_on_nineteen_of_twenty_items_and_much_better_on_one_is_refused():
    base = {f"i{k}": (3.0, None) for k in range(20)}
    cand = {f"i{k}": (3.0 - 0.01 * (k + 1), None) for k in range(19)} | {"i19": (103.0, None)}
    two_sided = paired_tests(base, cand)
    assert two_sided["delta"] > 0 and two_sided["p_value"] < 0.05  # what the old rule accepted
    ids = sorted(base)
    test = holdout_test(base, cand)
    expected = stats.wilcoxon([cand[i][0] for i in ids], [base[i][0] for i in ids], alternative="greater").pvalue
    assert test["test"] == "wilcoxon" and test["p_value"] == pytest.approx(expected, rel=1e-12)
    assert test["p_value"] > 0.5 and _accept(base, cand)["accepted"] is False


def test_a_candidate_better_on_most_items_is_accepted_with_scipys_one_sided_p():
    base = {f"i{k}": (1.0, True) if k < 4 else (0.0, False) for k in range(20)}
    cand = {f"i{k}": (1.0, True) if k != 3 else (0.0, False) for k in range(20)}
    test = holdout_test(base, cand)
    assert test["p_value"] == stats.binomtest(16, 17, 0.5, alternative="greater").pvalue
    verdict = _accept(base, cand)
    assert verdict["accepted"] is True and "one-sided mcnemar_exact" in verdict["reason"]


def test_failed_holdout_runs_count_as_failures_not_as_missing_items():
    def row(item: str, passed: bool | None, error: str | None = None) -> dict:
        scores = [] if error else [{"name": "exact_match", "value": float(passed), "passed": passed}]
        return {"item_id": item, "repetition": 0, "scores": scores, "error": error}

    # the baseline passes items 0-9; the candidate crashes on exactly those and passes the other ten
    base_rows = [row(f"i{k}", k < 10) for k in range(20)]
    cand_rows = [row(f"i{k}", None, "HTTP 500") if k < 10 else row(f"i{k}", True) for k in range(20)]
    base, cand = objective_verdicts(base_rows, "exact_match"), objective_verdicts(cand_rows, "exact_match")
    assert cand["i0"] == (0.0, False) and len(cand) == 20
    test = holdout_test(base, cand)
    assert (test["n"], test["base_only"], test["other_only"], test["delta"]) == (20, 10, 10, 0.0)
    assert test["p_value"] == stats.binomtest(10, 20, 0.5, alternative="greater").pvalue
    assert _accept(base, cand)["accepted"] is False


def test_a_set_limit_whose_value_is_unknown_refuses():
    base = {f"i{k}": (0.0, False) for k in range(20)}
    cand = {f"i{k}": (1.0, True) for k in range(20)}
    unpriced = (_summary(None, 100), _summary(None, 100))
    assert _accept(base, cand, summaries=unpriced)["accepted"] is True  # no limit set: nothing to check
    for limits in (Limits(max_cost_per_item_usd=0.01), Limits(max_cost_ratio=2.0)):
        verdict = _accept(base, cand, limits, summaries=unpriced)
        assert verdict["accepted"] is False and "unknown" in verdict["reason"], limits
    no_latency = (_summary(0.01, 100), _summary(0.01, None))
    verdict = _accept(base, cand, Limits(max_latency_p95_ms=500), summaries=no_latency)
    assert verdict["accepted"] is False and "max_latency_p95_ms cannot be checked" in verdict["reason"]
