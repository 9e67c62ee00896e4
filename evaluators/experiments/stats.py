"""Experiment statistics: a run's summary, and the paired comparison of runs on the same items.

Every test is scipy's own (``bootstrap``, ``binomtest``, ``wilcoxon``) with a fixed seed where there is
randomness, so a comparison is reproducible and its p-values are exactly scipy's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def mean_ci(values: list[float]) -> tuple[float | None, float | None]:
    """95 % percentile-bootstrap CI of the mean (seed 0). A constant sample's CI is that constant."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (None, None)
    data = np.asarray(values, dtype=float)
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    res = stats.bootstrap((data,), np.mean, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES,
                          method="percentile", random_state=SEED)
    return _finite(res.confidence_interval.low), _finite(res.confidence_interval.high)


def score_values(results: list[dict[str, Any]]) -> dict[str, list[tuple[str, int, float, bool | None]]]:
    """score name -> [(item_id, repetition, value, passed)] over results without error."""
    out: dict[str, list] = defaultdict(list)
    for r in results:
        for s in r.get("scores") or []:
            if s.get("value") is not None:
                out[s["name"]].append((r["item_id"], r["repetition"], float(s["value"]), s.get("passed")))
    return out


def summarize(results: list[dict[str, Any]], repetitions: int = 1, with_ci: bool = True) -> dict[str, Any]:
    """Per score: mean, 95 % CI, n, pass rate; latency p50 / p95; tokens and cost (total, per item);
    error rate; consistency across repetitions. ``with_ci=False`` skips the bootstrap (progress polls)."""
    n = len(results)
    items = {r["item_id"] for r in results}
    errors = sum(1 for r in results if r.get("error"))
    scores = {}
    for name, rows in sorted(score_values(results).items()):
        values = [v for _, _, v, _ in rows]
        low, high = mean_ci(values) if with_ci else (None, None)
        passed = [p for _, _, _, p in rows if p is not None]
        scores[name] = {"mean": float(np.mean(values)), "ci_low": low, "ci_high": high, "n": len(values),
                        "pass_rate": (sum(passed) / len(passed)) if passed else None}
    latencies = [r["latency_ms"] for r in results if r.get("latency_ms") is not None and not r.get("error")]
    tokens_in = sum(r.get("input_tokens") or 0 for r in results)
    tokens_out = sum(r.get("output_tokens") or 0 for r in results)
    costs = [r["cost"] for r in results if r.get("cost") is not None]
    cost = float(sum(costs)) if costs else None
    return {
        "results": n, "items": len(items), "errors": errors, "error_rate": errors / n if n else None,
        "scores": scores,
        "latency_ms": {"p50": float(np.percentile(latencies, 50)) if latencies else None,
                       "p95": float(np.percentile(latencies, 95)) if latencies else None},
        "tokens": {"input": tokens_in, "output": tokens_out, "total": tokens_in + tokens_out,
                   "per_item": (tokens_in + tokens_out) / n if n else None},
        "cost": {"total": cost, "per_item": cost / n if cost is not None and n else None},
        "consistency": consistency(results) if repetitions > 1 else None,
    }


def consistency(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Across repetitions of each item: the share of items whose outputs are identical, and per score
    the share whose repetitions all got the same value (only items with 2+ repetitions count)."""
    by_item: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_item[r["item_id"]].append(r)
    repeated = [rs for rs in by_item.values() if len(rs) > 1]
    if not repeated:
        return {"items": 0, "identical_outputs": None, "scores": {}}
    same_output = sum(1 for rs in repeated if len({repr(r.get("output")) for r in rs}) == 1)
    per_score: dict[str, list[bool]] = defaultdict(list)
    for rs in repeated:
        values: dict[str, set] = defaultdict(set)
        counts: dict[str, int] = defaultdict(int)
        for r in rs:
            for s in r.get("scores") or []:
                values[s["name"]].add(s.get("value"))
                counts[s["name"]] += 1
        for name, vals in values.items():
            if counts[name] > 1:
                per_score[name].append(len(vals) == 1)
    return {"items": len(repeated), "identical_outputs": same_output / len(repeated),
            "scores": {name: sum(flags) / len(flags) for name, flags in sorted(per_score.items())}}


# --- comparison ------------------------------------------------------------------------------------

def per_item_means(results: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, bool | None]]]:
    """score name -> item -> (mean value over repetitions, passed when every repetition has a verdict
    and there is one repetition, else the majority verdict)."""
    acc: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for name, rows in score_values(results).items():
        for item_id, _, value, passed in rows:
            acc[name][item_id].append((value, passed))
    out: dict[str, dict[str, tuple[float, bool | None]]] = {}
    for name, items in acc.items():
        out[name] = {}
        for item_id, vals in items.items():
            verdicts = [p for _, p in vals if p is not None]
            passed = (sum(verdicts) * 2 > len(verdicts)) if verdicts and len(verdicts) == len(vals) else None
            out[name][item_id] = (float(np.mean([v for v, _ in vals])), passed)
    return out


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); None stays None."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def paired_tests(base: dict[str, tuple[float, bool | None]], other: dict[str, tuple[float, bool | None]]) -> dict[str, Any]:
    """Paired tests on the items both runs scored: exact McNemar (binomial on the discordant pairs) for
    pass / fail, sign test, Wilcoxon signed-rank and a paired bootstrap CI of the mean difference."""
    shared = [i for i in base if i in other]  # in dataset order (results come ordered by position)
    a = np.array([base[i][0] for i in shared], dtype=float)
    b = np.array([other[i][0] for i in shared], dtype=float)
    diff = b - a
    improved = [i for i, d in zip(shared, diff) if d > 0]
    regressed = [i for i, d in zip(shared, diff) if d < 0]
    out: dict[str, Any] = {
        "n": len(shared), "mean_base": float(a.mean()) if len(a) else None, "mean_other": float(b.mean()) if len(b) else None,
        "delta": float(diff.mean()) if len(diff) else None,
        "improved": len(improved), "regressed": len(regressed), "unchanged": len(shared) - len(improved) - len(regressed),
        "improved_items": improved, "regressed_items": regressed,
    }
    verdicts = [(base[i][1], other[i][1]) for i in shared]
    if verdicts and all(x is not None and y is not None for x, y in verdicts):
        b01 = sum(1 for x, y in verdicts if x and not y)  # passed in base, failed in other
        b10 = sum(1 for x, y in verdicts if not x and y)
        out["mcnemar"] = {"base_only": b01, "other_only": b10,
                          "p_value": float(stats.binomtest(b10, b01 + b10, 0.5).pvalue) if b01 + b10 else 1.0}
    pos, neg = len(improved), len(regressed)
    out["sign_test"] = {"positive": pos, "negative": neg,
                        "p_value": float(stats.binomtest(pos, pos + neg, 0.5).pvalue) if pos + neg else 1.0}
    if np.any(diff != 0):
        w = stats.wilcoxon(b, a)
        out["wilcoxon"] = {"statistic": float(w.statistic), "p_value": float(w.pvalue)}
    else:
        out["wilcoxon"] = {"statistic": None, "p_value": 1.0}  # identical on every item: no difference at all
    low, high = mean_ci(list(diff))
    out["delta_ci_low"], out["delta_ci_high"] = low, high
    out["p_value"] = out["mcnemar"]["p_value"] if "mcnemar" in out else out["wilcoxon"]["p_value"]
    out["test"] = "mcnemar_exact" if "mcnemar" in out else "wilcoxon"
    return out


def compare(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``runs``: [{"id", "name", "results"}], the first is the baseline. Each other run is compared to it
    on every score both have; with more than one comparison, p-values get a Holm correction per score."""
    base = runs[0]
    base_means = per_item_means(base["results"])
    comparisons = []
    for run in runs[1:]:
        other_means = per_item_means(run["results"])
        metrics = {name: paired_tests(base_means[name], other_means[name])
                   for name in sorted(base_means.keys() & other_means.keys())}
        comparisons.append({"baseline": base["id"], "experiment": run["id"], "name": run.get("name"), "metrics": metrics})
    if len(comparisons) > 1:
        names = {n for c in comparisons for n in c["metrics"]}
        for name in names:
            having = [c["metrics"][name] for c in comparisons if name in c["metrics"]]
            for m, adj in zip(having, holm([m["p_value"] for m in having])):
                m["p_value_holm"] = adj
    items = _item_table(runs)
    return {"baseline": base["id"], "comparisons": comparisons, "items": items}


def _item_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per item, each run's output and scores side by side (first repetition's output)."""
    table: dict[str, dict[str, Any]] = {}
    for run in runs:
        means = per_item_means(run["results"])
        for r in run["results"]:
            row = table.setdefault(r["item_id"], {"item_id": r["item_id"], "input": r.get("input"),
                                                  "expected_output": r.get("expected_output"), "runs": {}})
            entry = row["runs"].setdefault(run["id"], {"output": r.get("output"), "error": r.get("error"),
                                                       "trace_id": r.get("trace_id"), "scores": {}})
            for name, by_item in means.items():
                if r["item_id"] in by_item:
                    entry["scores"][name] = by_item[r["item_id"]][0]
    return list(table.values())
