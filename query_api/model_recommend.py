"""Model recommendation: which registry models fit a task under constraints, with the evidence.

1. Each model is judged on what we hold: quality on the task (a finished experiment's score on that
   dataset or benchmark, or an eval rule's online scores), p95 latency and cost per 1,000 calls from
   production spans over the window (else from that experiment's own calls), its capabilities and its
   deprecation date.
   A model is excluded with every reason that applies (a missing capability, no evidence, a constraint
   it breaks).
2. Of the rest, the candidates are those on the quality / cost / latency Pareto frontier; a model
   another beats or equals on all three (better on one) is excluded as "dominated by".
3. Decision: the best-scoring candidate wins confidently when its 95 % CI does not overlap any other
   candidate's. Otherwise the evidence cannot rank them, and we propose the experiment that would: the
   best and the k - 1 models whose CIs overlap it on one dataset, with the items each needs so that
   every comparison of the best with one of them detects its observed difference at power 0.8
   (two-sided), at alpha = 0.05 / (k - 1) (Bonferroni over the k - 1 comparisons): the largest
   items_needed of those comparisons. Scores that are all 0 / 1 use the two-proportion normal
   test on Cohen's h (statsmodels ``NormalIndPower``); other scores the two-sample t-test on Cohen's d
   with the pooled SD (``TTestIndPower``). Independent samples, not paired: it assumes nothing about
   how two models' per-item scores correlate, so it asks for at least as many items as a paired run needs.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

ALPHA, POWER = 0.05, 0.8


def items_needed(a: list[float], b: list[float], alpha: float = ALPHA) -> dict[str, Any]:
    """Items per model to detect the difference between two samples' means at ``alpha`` (see the module doc)."""
    binary = all(v in (0.0, 1.0) for v in (*a, *b))
    diff = float(np.mean(a) - np.mean(b))
    if binary:
        effect = float(proportion_effectsize(np.mean(a), np.mean(b)))
        formula = "two-proportion z-test on Cohen's h (statsmodels NormalIndPower), two-sided"
        solver: Any = NormalIndPower()
    else:
        pooled = math.sqrt(((len(a) - 1) * np.var(a, ddof=1) + (len(b) - 1) * np.var(b, ddof=1))
                           / (len(a) + len(b) - 2)) if len(a) + len(b) > 2 else 0.0
        effect = diff / pooled if pooled > 0 else (math.inf if diff else 0.0)
        formula = "two-sample t-test on Cohen's d with pooled SD (statsmodels TTestIndPower), two-sided"
        solver = TTestIndPower()
    out: dict[str, Any] = {"difference": diff, "effect_size": effect, "alpha": alpha, "power": POWER,
                           "formula": formula, "items_needed": None}
    if effect == 0 or not math.isfinite(effect):
        out["note"] = ("no observed difference: no sample size detects it" if effect == 0
                       else "no variance in the scores: any difference is certain")
        return out
    n = solver.solve_power(effect_size=abs(effect), alpha=alpha, power=POWER, ratio=1.0, alternative="two-sided")
    out["items_needed"] = int(math.ceil(float(np.asarray(n).item())))
    return out


def _ms(x: float) -> str:
    return f"{x:,.0f} ms"


def _usd(x: float) -> str:
    return f"${x:,.2f}"


def _fmt_score(q: dict[str, Any]) -> str:
    ci = "" if q["ci_low"] is None else f" [{q['ci_low']:.3f}, {q['ci_high']:.3f}]"
    return f"{q['mean']:.3f}{ci}, n={q['n']}"


def judge(entries: list[dict[str, Any]], quality: dict[str, dict[str, Any]], profiles: dict[str, dict[str, Any]],
          constraints: dict[str, Any], no_quality_reason: str) -> tuple[list[dict], list[dict]]:
    """(candidates, excluded) before the Pareto step. ``quality``: registry id -> {mean, ci_low, ci_high,
    n, values, latency_p95?, cost_per_1k?, source}."""
    kept, excluded = [], []
    today = date.today().isoformat()
    for e in entries:
        key = f"{e['provider']}/{e['name']}"
        reasons = [f"lacks capability {c}" for c in constraints.get("capabilities") or () if not e["capabilities"].get(c)]
        if e.get("deprecation_date") and str(e["deprecation_date"]) <= today:
            reasons.append(f"deprecated as of {e['deprecation_date']}")
        q = quality.get(key)
        profile = profiles.get(key) or {}
        p95 = (profile.get("latency_ms") or {}).get("p95")
        cost = profile.get("cost_per_1k_calls")
        sources = ([f"spans {profile['window']['from']} .. {profile['window']['to']} ({profile['calls']} calls)"]
                   if profile else [])
        if q is not None:
            sources.append(q["source"])
            if p95 is None and q.get("latency_p95") is not None:
                p95 = q["latency_p95"]
            if cost is None and q.get("cost_per_1k") is not None:
                cost = q["cost_per_1k"]
        if q is None:
            reasons.append(no_quality_reason)
        elif constraints.get("min_score") is not None and q["mean"] < constraints["min_score"]:
            reasons.append(f"score {q['mean']:.3f} < {constraints['min_score']:.3f}")
        limit = constraints.get("max_p95_latency_ms")
        if limit is not None:
            if p95 is None:
                reasons.append("no latency evidence (no calls in the window, no experiment latency)")
            elif p95 > limit:
                reasons.append(f"p95 {_ms(p95)} > {_ms(limit)}")
        limit = constraints.get("max_cost_per_1k_calls")
        if limit is not None:
            if cost is None:
                reasons.append("no cost evidence (no priced calls in the window, no experiment cost)")
            elif cost > limit:
                reasons.append(f"cost {_usd(cost)} per 1k calls > {_usd(limit)}")
        if reasons:
            excluded.append({"model": key, "reasons": reasons})
            continue
        assert q is not None
        kept.append({"model": key, "evidence": {
            "n": q["n"], "score": q["mean"], "ci": [q["ci_low"], q["ci_high"]], "p95_latency_ms": p95,
            "cost_per_1k_calls": cost, "sources": sources}, "_values": q["values"]})
    return kept, excluded


def _dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """a is at least as good as b on score, cost and p95 and better on one (unknown cost / p95: not compared)."""
    ea, eb = a["evidence"], b["evidence"]
    pairs = [(ea["score"], eb["score"], 1)]
    for k in ("cost_per_1k_calls", "p95_latency_ms"):
        if ea[k] is None or eb[k] is None:
            return False
        pairs.append((ea[k], eb[k], -1))
    at_least = all((x - y) * sign >= 0 for x, y, sign in pairs)
    return at_least and any((x - y) * sign > 0 for x, y, sign in pairs)


def pareto(kept: list[dict[str, Any]], excluded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frontier = []
    for c in kept:
        better = [o["model"] for o in kept if o is not c and _dominates(o, c)]
        if better:
            excluded.append({"model": c["model"], "reasons": [f"dominated by {', '.join(better)}"]})
        else:
            frontier.append(c)
    frontier.sort(key=lambda c: (-c["evidence"]["score"], c["model"]))
    return frontier


def decide(candidates: list[dict[str, Any]], task: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(decision, proposed experiment or None)."""
    if not candidates:
        return {"winner": None, "confident": False, "why": "no model meets the constraints with evidence"}, None
    best = candidates[0]
    b_ev = best["evidence"]
    overlapping = [c for c in candidates[1:]
                   if b_ev["ci"][0] is None or c["evidence"]["ci"][1] is None or c["evidence"]["ci"][1] >= b_ev["ci"][0]]
    q_best = {"mean": b_ev["score"], "ci_low": b_ev["ci"][0], "ci_high": b_ev["ci"][1], "n": b_ev["n"]}
    if not overlapping:
        why = (f"{best['model']} is the only candidate ({_fmt_score(q_best)})" if len(candidates) == 1 else
               f"{best['model']} scores highest ({_fmt_score(q_best)}) and its 95 % CI is clear of every other "
               f"candidate's (next: {candidates[1]['model']}, upper bound {candidates[1]['evidence']['ci'][1]:.3f})")
        return {"winner": best["model"], "confident": True, "why": why}, None
    power = _sized_for_every_comparison(best, overlapping)
    names = ", ".join(c["model"] for c in overlapping)
    why = (f"{best['model']} scores highest ({_fmt_score(q_best)}) but its 95 % CI overlaps {names}'s: the evidence "
           f"cannot rank them; run the proposed experiment")
    proposal = {"models": [best["model"], *(c["model"] for c in overlapping)],
                "dataset_id": task.get("dataset_id"), "benchmark": task.get("benchmark"), **power}
    return {"winner": None, "confident": False, "why": why}, proposal


def _sized_for_every_comparison(best: dict[str, Any], overlapping: list[dict[str, Any]]) -> dict[str, Any]:
    """The proposal's size: each of the k - 1 comparisons (best vs one overlapping model) at
    alpha / (k - 1), and the largest items_needed among them (its difference and effect size shown)."""
    alpha = ALPHA / len(overlapping)
    pairs = [{"models": [best["model"], c["model"]], **items_needed(best["_values"], c["_values"], alpha)}
             for c in overlapping]
    sized = [p for p in pairs if p["items_needed"] is not None]
    deciding = max(sized, key=lambda p: p["items_needed"]) if sized else pairs[0]
    out = {k: v for k, v in deciding.items() if k != "models"}
    out["comparisons"] = pairs
    out["correction"] = (f"Bonferroni: {len(pairs)} comparison{'s' if len(pairs) > 1 else ''} with "
                         f"{best['model']}, each at alpha {ALPHA:g} / {len(pairs)} = {alpha:.4g}; items_needed is "
                         f"the largest any comparison needs")
    return out
