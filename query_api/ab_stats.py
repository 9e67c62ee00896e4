"""Statistics an online A/B test needs beyond a two-sample test: the fixed-horizon sample size and an
always-valid sequential test. Pure numpy / scipy functions, no I/O.

Sequential test: the mixture sequential probability ratio test (mSPRT) with a normal mixture,
Johari, Pekelis & Walsh, "Always valid inference: continuous monitoring of A/B tests" (2017/2022).
With Δ̂ the difference of arm means (B - A), V = s²_A/n_A + s²_B/n_B its estimated variance and
τ² the mixing variance, the likelihood ratio of H1: Δ ~ N(0, τ²) against H0: Δ = 0 is

    Λ_n = sqrt(V / (V + τ²)) · exp(τ² Δ̂² / (2 V (V + τ²)))

and p_n = min(1, min over every earlier look t ≤ n of 1 / Λ_t) is an always-valid p-value:
P(p_n ≤ α for some n) ≤ α under H0, so reading the results after every unit does not inflate false
positives. The same inversion gives a confidence sequence for Δ. τ is the design's minimum detectable
effect (the effect size the test should be most sensitive to, as the paper recommends).

What the results feed it (``query_api.ab_results``) is an approximation of that setting: one observation
per unit (the mean of the unit's values, which is only final once the unit stops sending), ordered by
the unit's first observation, with the variance estimated from the data at each look rather than
known. The history of looks is rebuilt from the data at every read, so the p-value is approximately
always-valid: exact for one call per unit and a known variance, close when the estimate is stable
(hence no look before ``MIN_PER_ARM`` units per arm).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

MIN_PER_ARM = 30  # no sequential look before each arm has this many observations (variance estimate)


def required_per_arm(*, alpha: float, power: float, mde: float, sd: float | None = None,
                     baseline_rate: float | None = None) -> int | None:
    """Units per arm of a two-sided, equal-allocation test (closed-form normal approximation).

    Means: n = 2 σ² (z₁₋α/₂ + z_power)² / mde².  Rates: n = (z₁₋α/₂ √(2 p̄ q̄) + z_power √(p₁q₁ + p₂q₂))² / mde²
    with p₁ the baseline rate, p₂ = p₁ ± mde and p̄ their mean. None when the variance is not known yet,
    or when neither p₁ + mde nor p₁ − mde is a rate strictly between 0 and 1 (``rate_mde_problem`` says why).
    """
    z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    if baseline_rate is not None:
        p1 = float(baseline_rate)
        if rate_mde_problem(p1, mde) is not None:
            return None
        p2 = p1 + mde if p1 + mde < 1 else p1 - mde
        p_bar = (p1 + p2) / 2
        top = z_alpha * math.sqrt(2 * p_bar * (1 - p_bar)) + z_power * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
        return max(2, math.ceil(top ** 2 / mde ** 2)) if top > 0 else None
    if sd is None or not math.isfinite(sd) or sd <= 0:
        return None
    return max(2, math.ceil(2 * sd ** 2 * (z_alpha + z_power) ** 2 / mde ** 2))


def rate_mde_problem(baseline_rate: float, mde: float) -> str | None:
    """Why a rate's sample size cannot be computed from this baseline and MDE, or None when it can:
    the rate the test should detect (baseline ± mde) must lie strictly between 0 and 1."""
    p1 = float(baseline_rate)
    if not 0 <= p1 <= 1:
        return f"the baseline rate {p1:.4g} is not between 0 and 1"
    if 0 < p1 + mde < 1 or 0 < p1 - mde < 1:
        return None
    return (f"baseline rate {p1:.4g} ± mde {mde:.4g} leaves (0, 1): no rate differs from the baseline "
            "by the MDE; use a smaller mde")


def msprt(arm: np.ndarray, values: np.ndarray, *, tau: float, alpha: float,
          min_per_arm: int = MIN_PER_ARM) -> dict[str, Any]:
    """Always-valid p-value and confidence sequence for mean(B) - mean(A), looking after every
    observation. ``arm`` (0 = A, 1 = B) and ``values`` are in arrival order."""
    arm = np.asarray(arm, dtype=bool)
    values = np.asarray(values, dtype=float)
    out: dict[str, Any] = {"test": "msprt_normal_mixture", "tau": tau, "p_value": None, "difference": None,
                           "ci": [None, None], "looks": 0}
    sums = {}
    for label, mask in (("a", ~arm), ("b", arm)):
        x = np.where(mask, values, 0.0)
        sums[label] = (np.cumsum(mask), np.cumsum(x), np.cumsum(x * x))
    (n_a, s_a, q_a), (n_b, s_b, q_b) = sums["a"], sums["b"]
    ready = (n_a >= min_per_arm) & (n_b >= min_per_arm)
    if not ready.any() or tau <= 0:
        return out
    n_a, s_a, q_a, n_b, s_b, q_b = (x[ready].astype(float) for x in (n_a, s_a, q_a, n_b, s_b, q_b))
    mean_a, mean_b = s_a / n_a, s_b / n_b
    var_a = np.maximum(q_a - n_a * mean_a ** 2, 0) / (n_a - 1)
    var_b = np.maximum(q_b - n_b * mean_b ** 2, 0) / (n_b - 1)
    v = var_a / n_a + var_b / n_b
    diff = mean_b - mean_a
    tau2 = tau * tau
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lr = 0.5 * np.log(v / (v + tau2)) + tau2 * diff ** 2 / (2 * v * (v + tau2))
    # a look with zero variance in both arms carries no evidence either way (identical constants)
    log_lr = np.where(v > 0, log_lr, np.where(diff == 0, 0.0, np.inf))
    p = float(min(1.0, math.exp(-float(np.max(log_lr))))) if np.isfinite(np.max(log_lr)) else 0.0
    last_v, last_diff = float(v[-1]), float(diff[-1])
    out.update(p_value=p, difference=last_diff, looks=int(ready.sum()))
    if last_v > 0:
        half = math.sqrt(last_v * (last_v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((last_v + tau2) / last_v)))
        out["ci"] = [last_diff - half, last_diff + half]
    return out

