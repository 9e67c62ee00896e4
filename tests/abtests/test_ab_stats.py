"""The A/B statistics without I/O: sample sizes equal statsmodels', the mSPRT equals its formula
evaluated look by look, keeps the false-positive rate of A/A tests under continuous peeking near α
(where a t-test read at every look exceeds it), and detects a real difference; ramps move the least
traffic possible."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import samplesize_proportions_2indep_onetail

from query_api import ab_allocation
from query_api.ab_stats import msprt, rate_mde_problem, required_per_arm


@pytest.mark.parametrize("mde, sd, alpha, power", [(50, 300, 0.05, 0.8), (0.1, 1.0, 0.01, 0.9), (2, 3, 0.1, 0.8)])
def test_sample_size_for_means_equals_statsmodels(mde, sd, alpha, power):
    reference = NormalIndPower().solve_power(effect_size=mde / sd, alpha=alpha, power=power, ratio=1)
    assert required_per_arm(alpha=alpha, power=power, mde=mde, sd=sd) == math.ceil(reference)


@pytest.mark.parametrize("baseline, mde", [(0.10, 0.02), (0.03, 0.01), (0.5, 0.05)])
def test_sample_size_for_rates_equals_statsmodels(baseline, mde):
    # statsmodels: diff = prop1 - prop2 with prop2 the baseline
    reference = samplesize_proportions_2indep_onetail(mde, baseline, 0.8, alpha=0.05, alternative="two-sided")
    assert required_per_arm(alpha=0.05, power=0.8, mde=mde, baseline_rate=baseline) == math.ceil(reference)


@pytest.mark.parametrize("baseline, mde", [(0.1, 0.95), (0.5, 0.5), (0.3, 1.2), (0.9, 0.95)])
def test_sample_size_for_rates_is_none_when_no_rate_differs_by_the_mde(baseline, mde):
    # baseline ± mde leaves (0, 1): there is no such rate to detect (was a math domain error -> 500)
    assert required_per_arm(alpha=0.05, power=0.8, mde=mde, baseline_rate=baseline) is None
    assert "use a smaller mde" in rate_mde_problem(baseline, mde)


def test_sample_size_for_rates_detects_the_lower_rate_when_the_higher_leaves_0_1():
    # 0.9 + 0.2 > 1, so the test is sized for 0.9 -> 0.7 (statsmodels: prop2 the baseline)
    reference = samplesize_proportions_2indep_onetail(-0.2, 0.9, 0.8, alpha=0.05, alternative="two-sided")
    assert rate_mde_problem(0.9, 0.2) is None
    assert required_per_arm(alpha=0.05, power=0.8, mde=0.2, baseline_rate=0.9) == math.ceil(reference)


def test_sample_size_unknown_without_variance():
    assert required_per_arm(alpha=0.05, power=0.8, mde=1, sd=None) is None


def test_msprt_equals_its_formula_look_by_look():
    rng = np.random.default_rng(1)
    arm = rng.random(400) < 0.5
    values = rng.normal(10, 2, 400) + 0.4 * arm
    tau, best = 0.5, 0.0
    for n in range(1, 401):  # independent evaluation: scipy-free loops over each prefix
        a, b = values[:n][~arm[:n]], values[:n][arm[:n]]
        if a.size < 30 or b.size < 30:
            continue
        v = a.var(ddof=1) / a.size + b.var(ddof=1) / b.size
        d = b.mean() - a.mean()
        best = max(best, math.sqrt(v / (v + tau ** 2)) * math.exp(tau ** 2 * d ** 2 / (2 * v * (v + tau ** 2))))
    result = msprt(arm, values, tau=tau, alpha=0.05)
    assert result["p_value"] == pytest.approx(min(1.0, 1 / best), rel=1e-9)
    assert result["difference"] == pytest.approx(values[arm].mean() - values[~arm].mean(), rel=1e-12)
    lo, hi = result["ci"]
    assert lo < result["difference"] < hi


def _naive_peeking_rejections(a: np.ndarray, b: np.ndarray, looks: np.ndarray, alpha: float) -> np.ndarray:
    """Welch's t-test at each look, for many simulated tests at once (rows); True where any look rejected."""
    def moments(x):
        n = looks.astype(float)
        s, q = np.cumsum(x, axis=1)[:, looks - 1], np.cumsum(x * x, axis=1)[:, looks - 1]
        mean = s / n
        return mean, (q - n * mean ** 2) / (n - 1), n
    (ma, va, n), (mb, vb, _) = moments(a), moments(b)
    se2 = va / n + vb / n
    t = (mb - ma) / np.sqrt(se2)
    df = se2 ** 2 / ((va / n) ** 2 / (n - 1) + (vb / n) ** 2 / (n - 1))
    return (2 * stats.t.sf(np.abs(t), df) < alpha).any(axis=1)


def test_peeking_aa_tests_false_positive_rate():
    """500 A/A tests of 2,000 units per arm, looked at every 100 units per arm (the mSPRT even after
    every unit): the sequential test stays near α; naive peeking with a t-test exceeds it."""
    rng = np.random.default_rng(2024)
    sims, n, alpha = 500, 2000, 0.05
    a, b = rng.normal(size=(sims, n)), rng.normal(size=(sims, n))
    naive = _naive_peeking_rejections(a, b, np.arange(100, n + 1, 100), alpha).mean()
    arm = np.tile([False, True], n)
    sequential = np.mean([msprt(arm, np.column_stack([a[i], b[i]]).ravel(), tau=0.1, alpha=alpha)["p_value"] < alpha
                          for i in range(sims)])
    assert sequential <= 0.07
    assert naive > 0.10  # ~0.2 in theory for 20 looks
    assert naive > sequential


def test_msprt_detects_a_real_difference():
    rng = np.random.default_rng(5)
    detected = 0
    for _ in range(100):
        arm = rng.random(4000) < 0.5
        values = rng.normal(0, 1, 4000) + 0.15 * arm
        detected += msprt(arm, values, tau=0.15, alpha=0.05)["p_value"] < 0.05
    assert detected >= 80


def test_widths_sum_and_follow_weights():
    widths = ab_allocation.widths_for([1, 1, 1])
    assert sum(widths) == ab_allocation.BUCKETS and max(widths) - min(widths) <= 1
    assert ab_allocation.widths_for([0.9, 0.1]) == [900_000, 100_000]


def test_ramps_move_exactly_the_total_variation_distance():
    rng = np.random.default_rng(3)
    weights = [0.25, 0.25, 0.5]
    segments = ab_allocation.initial_allocation(weights)
    for _ in range(30):
        new = list(rng.integers(0, 10, 3).astype(float))
        if sum(new) == 0:
            continue
        after = ab_allocation.ramp(segments, new)
        target = ab_allocation.widths_for(new)
        assert ab_allocation.owned(after, 3) == target
        covered = sorted((s[0], s[1]) for s in after)
        assert covered[0][0] == 0 and covered[-1][1] == ab_allocation.BUCKETS
        assert all(x[1] == y[0] for x, y in zip(covered, covered[1:]))  # no gap, no overlap
        before = ab_allocation.owned(segments, 3)
        tv = sum(abs(b - t) for b, t in zip(before, target)) / 2 / ab_allocation.BUCKETS
        assert ab_allocation.moved_share(segments, after) == pytest.approx(tv, abs=1e-12)
        segments = after


def test_bucket_scheme_is_the_documented_one():
    import hashlib

    digest = hashlib.sha256(b"abc123:user-42").digest()
    assert ab_allocation.bucket_of("abc123", "user-42") == int.from_bytes(digest[:8], "big") % 1_000_000
