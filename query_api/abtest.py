"""A/B statistics on two samples (scipy.stats): per-arm summaries with confidence intervals, the test,
p-value, effect size and a verdict. Pure functions: no I/O, testable against scipy directly."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

CONTINUOUS_TESTS = ("welch_t", "mann_whitney")
RATE_TESTS = ("two_proportion_z", "chi_square")


def _f(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def arm_summary(values: np.ndarray, confidence: float) -> dict[str, Any]:
    """n, mean (t interval), median (distribution-free order-statistic interval), std."""
    n = int(values.size)
    out: dict[str, Any] = {"n": n, "mean": None, "median": None, "std": None,
                           "mean_ci": [None, None], "median_ci": [None, None]}
    if n == 0:
        return out
    mean, median = float(values.mean()), float(np.median(values))
    out.update(mean=mean, median=median)
    if n > 1:
        std = float(values.std(ddof=1))
        out["std"] = std
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
        out["mean_ci"] = [_f(mean - half), _f(mean + half)]
        # ranks j < k with P(X_(j) <= median <= X_(k)) >= confidence, from Binomial(n, 1/2)
        lo = int(stats.binom.ppf((1 - confidence) / 2, n, 0.5))
        hi = n - lo
        if lo >= 1 and hi <= n:
            ordered = np.sort(values)
            out["median_ci"] = [float(ordered[lo - 1]), float(ordered[hi - 1])]
    return out


def compare_continuous(a: np.ndarray, b: np.ndarray, *, test: str, lower_is_better: bool,
                       alpha: float = 0.05) -> dict[str, Any]:
    """Welch's t-test (means) or Mann–Whitney U (distributions); effect size Cohen's d or rank-biserial r."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    result: dict[str, Any] = {"test": test, "alpha": alpha, "arms": {"a": arm_summary(a, 1 - alpha),
                                                                     "b": arm_summary(b, 1 - alpha)}}
    if a.size < 2 or b.size < 2:
        return {**result, "p_value": None, "statistic": None, "effect_size": None, "verdict": "insufficient_data"}
    if test == "welch_t":
        if a.std() == 0 and b.std() == 0:
            p, stat = (1.0, 0.0) if a[0] == b[0] else (0.0, math.inf)
            ci: list[float | None] = [float(b[0] - a[0])] * 2
        else:
            res = stats.ttest_ind(b, a, equal_var=False)
            p, stat = float(res.pvalue), float(res.statistic)
            low, high = res.confidence_interval(1 - alpha)
            ci = [_f(low), _f(high)]
        pooled = math.sqrt((a.var(ddof=1) * (a.size - 1) + b.var(ddof=1) * (b.size - 1)) / (a.size + b.size - 2))
        diff = float(b.mean() - a.mean())
        effect = {"name": "cohens_d", "value": _f(diff / pooled) if pooled > 0 else None}
        result["difference"] = {"name": "mean_b_minus_a", "value": diff, "ci": ci}
        direction = diff
    elif test == "mann_whitney":
        res = stats.mannwhitneyu(b, a, alternative="two-sided")
        p, stat = float(res.pvalue), float(res.statistic)
        r = 2 * stat / (a.size * b.size) - 1  # > 0: B tends to be larger
        effect = {"name": "rank_biserial", "value": _f(r)}
        result["difference"] = {"name": "median_b_minus_a", "value": float(np.median(b) - np.median(a))}
        direction = r
    else:
        raise ValueError(f"unknown continuous test {test!r}")
    result.update(p_value=_f(p), statistic=_f(stat), effect_size=effect,
                  verdict=_verdict(p, direction, alpha, lower_is_better))
    return result


def compare_rates(k_a: int, n_a: int, k_b: int, n_b: int, *, test: str, lower_is_better: bool,
                  alpha: float = 0.05) -> dict[str, Any]:
    """Two-proportion z-test (pooled) or Pearson chi-square on the 2x2 table; effect size Cohen's h."""
    arms = {}
    for arm, k, n in (("a", k_a, n_a), ("b", k_b, n_b)):
        rate = k / n if n else None
        ci: list[float | None] = [None, None]
        if n:
            interval = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
            ci = [float(interval.low), float(interval.high)]
        arms[arm] = {"n": n, "successes": k, "rate": rate, "rate_ci": ci}
    result: dict[str, Any] = {"test": test, "alpha": alpha, "arms": arms}
    if n_a == 0 or n_b == 0:
        return {**result, "p_value": None, "statistic": None, "effect_size": None, "verdict": "insufficient_data"}
    pa, pb = k_a / n_a, k_b / n_b
    pooled = (k_a + k_b) / (n_a + n_b)
    if test == "two_proportion_z":
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        stat = (pb - pa) / se if se > 0 else 0.0
        p = float(2 * stats.norm.sf(abs(stat))) if se > 0 else 1.0
    elif test == "chi_square":
        table = np.array([[k_a, n_a - k_a], [k_b, n_b - k_b]])
        if (table.sum(axis=0) == 0).any():
            stat, p = 0.0, 1.0
        else:
            res = stats.chi2_contingency(table, correction=False)
            stat, p = float(res.statistic), float(res.pvalue)
    else:
        raise ValueError(f"unknown rate test {test!r}")
    h = 2 * math.asin(math.sqrt(pb)) - 2 * math.asin(math.sqrt(pa))
    result.update(p_value=_f(p), statistic=_f(stat), effect_size={"name": "cohens_h", "value": h},
                  difference={"name": "rate_b_minus_a", "value": pb - pa},
                  verdict=_verdict(p, pb - pa, alpha, lower_is_better))
    return result


def _verdict(p: float, direction: float, alpha: float, lower_is_better: bool) -> str:
    """'a_better' / 'b_better' when significant at alpha, else 'no_significant_difference'."""
    if not math.isfinite(p) or p >= alpha or direction == 0:
        return "no_significant_difference"
    b_larger = direction > 0
    return "b_better" if b_larger != lower_is_better else "a_better"
