"""Summary and comparison statistics against scipy computed directly on the same numbers."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats as sp

from evaluators.experiments import stats


def _results(values: dict[str, list[float]], passed: bool = False, reps: int = 1, **extra) -> list[dict]:
    """Results of one run: item i, repetition r gets values[name][i * reps + r]."""
    n = len(next(iter(values.values())))
    out = []
    for k in range(n):
        scores = [{"name": name, "value": vals[k], "passed": (vals[k] == 1.0) if passed else None, "reason": ""}
                  for name, vals in values.items()]
        out.append({"item_id": f"item{k // reps}", "repetition": k % reps, "scores": scores, "output": str(k // reps),
                    "latency_ms": 10.0 + k, "input_tokens": 5, "output_tokens": 2, "cost": 0.001, "error": None, **extra})
    return out


def test_summary_matches_numpy_and_scipy():
    rng = random.Random(7)
    values = [rng.random() for _ in range(40)]
    s = stats.summarize(_results({"quality": values}))
    q = s["scores"]["quality"]
    assert q["mean"] == pytest.approx(np.mean(values)) and q["n"] == 40 and q["pass_rate"] is None
    ref = sp.bootstrap((np.array(values),), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                       random_state=0).confidence_interval
    assert (q["ci_low"], q["ci_high"]) == (ref.low, ref.high)
    latencies = [10.0 + k for k in range(40)]
    assert s["latency_ms"] == {"p50": np.percentile(latencies, 50), "p95": np.percentile(latencies, 95)}
    assert s["tokens"] == {"input": 200, "output": 80, "total": 280, "per_item": 7.0}
    assert s["cost"]["total"] == pytest.approx(0.04) and s["cost"]["per_item"] == pytest.approx(0.001)
    assert s["error_rate"] == 0 and s["consistency"] is None


def test_consistency_across_repetitions():
    # 3 items x 2 repetitions: item0 agrees, item1 flips, item2 agrees
    res = _results({"correct": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]}, passed=True, reps=2)
    c = stats.summarize(res, repetitions=2)["consistency"]
    assert c == {"items": 3, "identical_outputs": 1.0, "scores": {"correct": pytest.approx(2 / 3)}}
    assert stats.summarize(res, repetitions=2)["scores"]["correct"]["pass_rate"] == 0.5


def test_paired_tests_equal_scipy():
    rng = random.Random(11)
    base = [float(rng.random() < 0.6) for _ in range(60)]
    other = [float(rng.random() < 0.75) for _ in range(60)]
    base_q = [rng.gauss(0.5, 0.2) for _ in range(60)]
    other_q = [b + rng.gauss(0.05, 0.1) for b in base_q]
    runs = [{"id": "A", "results": _results({"correct": base, "quality": base_q})},
            {"id": "B", "results": _results({"correct": other, "quality": other_q})}]
    for r in runs:  # verdicts for the pass / fail metric
        for row in r["results"]:
            row["scores"][0]["passed"] = row["scores"][0]["value"] == 1.0
    out = stats.compare(runs)["comparisons"][0]["metrics"]
    b01 = sum(1 for x, y in zip(base, other) if x and not y)
    b10 = sum(1 for x, y in zip(base, other) if not x and y)
    assert out["correct"]["mcnemar"] == {"base_only": b01, "other_only": b10,
                                         "p_value": sp.binomtest(b10, b01 + b10, 0.5).pvalue}
    assert out["correct"]["p_value"] == sp.binomtest(b10, b01 + b10, 0.5).pvalue
    diffs = np.array(other_q) - np.array(base_q)
    assert out["quality"]["wilcoxon"]["p_value"] == sp.wilcoxon(other_q, base_q).pvalue
    assert out["quality"]["p_value"] == sp.wilcoxon(other_q, base_q).pvalue
    pos, neg = int((diffs > 0).sum()), int((diffs < 0).sum())
    assert out["quality"]["sign_test"]["p_value"] == sp.binomtest(pos, pos + neg, 0.5).pvalue
    ci = sp.bootstrap((diffs,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                      random_state=0).confidence_interval
    assert (out["quality"]["delta_ci_low"], out["quality"]["delta_ci_high"]) == (ci.low, ci.high)
    assert out["quality"]["delta"] == pytest.approx(diffs.mean())
    assert (out["quality"]["improved"], out["quality"]["regressed"]) == (pos, neg)
    assert out["quality"]["improved"] + out["quality"]["regressed"] + out["quality"]["unchanged"] == 60


def test_holm_correction_with_more_than_two_runs():
    rng = random.Random(3)
    base = [rng.gauss(0, 1) for _ in range(30)]
    shifted = {name: [b + rng.gauss(shift, 1) for b in base] for name, shift in (("B", 0.1), ("C", 0.8), ("D", 0.4))}
    runs = [{"id": "A", "results": _results({"q": base})}] + [
        {"id": name, "results": _results({"q": vals})} for name, vals in shifted.items()]
    comps = stats.compare(runs)["comparisons"]
    raw = [sp.wilcoxon(shifted[c["experiment"]], base).pvalue for c in comps]
    assert [c["metrics"]["q"]["p_value"] for c in comps] == raw
    # Holm by hand: sort ascending, multiply by (m - rank), running max, cap at 1
    order = np.argsort(raw)
    expected = [0.0] * 3
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        expected[i] = running
    assert [c["metrics"]["q"]["p_value_holm"] for c in comps] == pytest.approx(expected, rel=1e-12)
    assert all(c["metrics"]["q"]["p_value_holm"] >= c["metrics"]["q"]["p_value"] for c in comps)
    two = stats.compare(runs[:2])["comparisons"][0]["metrics"]["q"]
    assert "p_value_holm" not in two


def test_identical_runs_have_no_difference():
    vals = [0.2, 0.4, 0.9, 0.1]
    out = stats.compare([{"id": "A", "results": _results({"q": vals})},
                         {"id": "B", "results": _results({"q": vals})}])["comparisons"][0]["metrics"]["q"]
    assert out["wilcoxon"]["p_value"] == 1.0 and out["unchanged"] == 4 and out["delta"] == 0.0
