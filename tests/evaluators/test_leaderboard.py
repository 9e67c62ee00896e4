"""Bradley–Terry ratings against an independent fit, ranking, and the leaderboard API on real runs."""

from __future__ import annotations

import numpy as np
import pytest

from evaluators import leaderboard as board

from .fake_llm import FakeLLMServer
from .test_experiments_api import PAIRS, make_dataset, run, stub_answer, wait_for, weak_is_right


def synthetic_comparisons(strengths: dict[str, float], per_pair: int, seed: int) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(seed)
    names = sorted(strengths)
    out = []
    for x in range(len(names)):
        for y in range(x + 1, len(names)):
            a, b = names[x], names[y]
            p = 1 / (1 + np.exp(strengths[b] - strengths[a]))
            out += [(a, b, 1.0 if rng.random() < p else 0.0) for _ in range(per_pair)]
    return out


def hunter_mm(comparisons: list[tuple[str, str, float]], iterations: int = 20_000) -> dict[str, float]:
    """Hunter's (2004) MM iteration for Bradley–Terry, written independently of the module under test."""
    names = sorted({p for a, b, _ in comparisons for p in (a, b)})
    wins = {n: 0.0 for n in names}
    games: dict[tuple[str, str], int] = {}
    for a, b, o in comparisons:
        wins[a] += o
        wins[b] += 1 - o
        games[(a, b)] = games.get((a, b), 0) + 1
        games[(b, a)] = games.get((b, a), 0) + 1
    p = {n: 1.0 for n in names}
    for _ in range(iterations):
        p = {i: wins[i] / sum(games.get((i, j), 0) / (p[i] + p[j]) for j in names if j != i) for i in names}
        g = np.exp(np.mean(np.log(list(p.values()))))
        p = {k: v / g for k, v in p.items()}
    return {k: float(np.log(v)) for k, v in p.items()}


def test_bradley_terry_equals_an_independent_fit_and_recovers_known_strengths():
    truth = {"a": 1.0, "b": 0.4, "c": 0.0, "d": -1.4}
    comparisons = synthetic_comparisons(truth, per_pair=400, seed=7)
    rows = board.bradley_terry(comparisons, rounds=100)
    fitted = {r["entry"]: r["theta"] for r in rows}
    reference = hunter_mm(comparisons)
    for name in truth:
        assert fitted[name] == pytest.approx(reference[name], abs=1e-4)
    centred = {k: v - np.mean(list(truth.values())) for k, v in truth.items()}
    for r in rows:
        assert abs(r["theta"] - centred[r["entry"]]) < 0.2
        assert r["theta_ci_low"] < r["theta"] < r["theta_ci_high"]
        assert r["elo"] == pytest.approx(1000 + 400 / np.log(10) * r["theta"])
        assert r["comparisons"] == 1200
    assert [r["entry"] for r in rows] == ["a", "b", "c", "d"]
    assert sum(r["wins"] for r in rows) == len(comparisons)


def test_ties_count_half_and_an_unbeaten_entry_stays_finite():
    rows = {r["entry"]: r for r in board.bradley_terry([("x", "y", 0.5)] * 10 + [("x", "z", 1.0)] * 5, rounds=20)}
    assert rows["x"]["wins"] == 10.0 and rows["y"]["wins"] == 5.0 and rows["z"]["wins"] == 0.0
    assert all(np.isfinite(r["theta"]) for r in rows.values())
    assert rows["x"]["theta"] > rows["y"]["theta"] > rows["z"]["theta"]


def test_item_comparisons_and_ranking_from_results():
    def res(item, value, rep=0):
        return {"item_id": item, "repetition": rep, "scores": [{"name": "acc", "value": value}], "latency_ms": 10.0,
                "cost": 0.002}
    results = {"m1": [res("i1", 1), res("i2", 1), res("i3", 0)],
               "m2": [res("i1", 1), res("i2", 0), res("i3", 0), res("i4", 1)]}
    comps = board.item_comparisons(results, "acc")
    assert comps == [("m1", "m2", 0.5), ("m1", "m2", 1.0), ("m1", "m2", 0.5)]  # i4: only m2 answered it
    exps = [{"id": "e2", "name": "m2", "target": {"provider": "openai", "model": "m2"}},
            {"id": "e1", "name": "m1", "metadata": {"agent": "m1"}},
            {"id": "e0", "name": "old m1 run", "metadata": {"agent": "m1"}}]  # older: ignored
    out = board.leaderboard(exps, {"e2": results["m2"], "e1": results["m1"], "e0": []})
    assert out["score"] == "acc"
    assert [(r["entry"], r["rank"], r["n"]) for r in out["entries"]] == [("m1", 1, 3), ("openai/m2", 2, 4)]
    assert out["entries"][0]["mean"] == pytest.approx(2 / 3)
    assert out["entries"][0]["cost_per_1000_items"] == pytest.approx(2.0)
    assert out["entries"][0]["latency_p50_ms"] == 10.0


@pytest.fixture
def stub():
    server = FakeLLMServer().start()
    server.responder = stub_answer
    yield server
    server.stop()


def test_leaderboard_api_ranks_two_models_on_a_dataset(stack, stub):
    _, key = stack.create_key()
    h = stack.headers(key)
    dataset_id = make_dataset(stack, key)
    good = run(stack, key, dataset_id, "openai", "gpt-4o-mini", stub.openai_base_url)
    weak = run(stack, key, dataset_id, "anthropic", "claude-3-5-haiku", stub.anthropic_base_url)
    wait_for(stack, key, good)
    w = wait_for(stack, key, weak)
    r = stack.client.get("/api/v1/leaderboards", headers=h, params={"dataset_id": dataset_id})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["score"] == "exact_match"
    top, second = body["entries"]
    assert (top["entry"], top["rank"], top["mean"], top["n"]) == ("openai/gpt-4o-mini", 1, 1.0, 50)
    expected_weak = sum(weak_is_right(a, b) for a, b in PAIRS) / len(PAIRS)
    assert (second["entry"], second["rank"], second["n"]) == ("anthropic/claude-3-5-haiku", 2, 50)
    assert second["mean"] == pytest.approx(expected_weak)
    assert second["ci_low"] <= expected_weak <= second["ci_high"]
    assert second["latency_p50_ms"] == pytest.approx(w["summary"]["latency_ms"]["p50"])
    if w["summary"]["cost"]["per_item"] is not None:
        assert second["cost_per_1000_items"] == pytest.approx(w["summary"]["cost"]["per_item"] * 1000)
    bt = body["bradley_terry"]
    assert [b["entry"] for b in bt] == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"]
    weak_right = sum(weak_is_right(a, b) for a, b in PAIRS)
    assert bt[0]["comparisons"] == 50 and bt[0]["wins"] == (50 - weak_right) + 0.5 * weak_right  # ties: both right
    assert bt[0]["elo_ci_low"] > bt[1]["elo"]

    # scoped to the project: another project sees nothing; bad input names the field
    _, other = stack.create_key()
    assert stack.client.get("/api/v1/leaderboards", headers=stack.headers(other),
                            params={"dataset_id": dataset_id}).json()["entries"] == []
    r = stack.client.get("/api/v1/leaderboards", headers=h)
    assert r.status_code == 422 and "dataset_id" in r.text
    r = stack.client.get("/api/v1/leaderboards", headers=h, params={"benchmark": "nope"})
    assert r.status_code == 422 and "benchmark" in r.text
    r = stack.client.get("/api/v1/leaderboards", headers=h, params={"benchmark": "arithmetic"})
    assert r.status_code == 200 and r.json()["entries"] == []


def test_pass_at_k_over_repetitions():
    from math import comb

    def res(item, rep, ok):
        return {"item_id": item, "repetition": rep, "scores": [{"name": "pass@1", "value": float(ok), "passed": ok}]}
    passes = {"t1": [True] * 3 + [False] * 7, "t2": [False] * 10, "t3": [True] * 9 + [False]}
    results = [res(t, r, ok) for t, oks in passes.items() for r, ok in enumerate(oks)]
    table = board.pass_at_k_table(results)
    assert set(table) == {"pass@1", "pass@5", "pass@10"}
    for k in (1, 5, 10):
        direct = sum(1 - comb(10 - sum(v), k) / comb(10, k) for v in passes.values()) / 3
        assert table[f"pass@{k}"] == pytest.approx(direct)
    out = board.leaderboard([{"id": "e", "name": "m", "repetitions": 10}], {"e": results})
    assert out["entries"][0]["pass_at_k"] == table
