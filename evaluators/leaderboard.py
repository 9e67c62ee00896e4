"""Leaderboards: the models / agents run on one dataset or benchmark, ranked, and Bradley–Terry ratings.

An entry is a target's latest completed experiment on the dataset or benchmark: its mean score with
the experiments' own 95 % bootstrap CI (``stats.mean_ci``) and n, cost per 1,000 items and p50
latency. Pairwise comparisons: the stored verdicts of a pairwise LLM judge between the entries' runs
(``evaluators.pairwise``) by one judge; for every pair of entries that judge did not compare, on
every item both answered, the higher per-item score wins (equal: a tie, half a win each).
``bradley_terry_source`` says which were used (``judge``, ``scores`` or ``judge+scores``) and
``bradley_terry_pairs`` which one rates each pair. Bradley–Terry strengths
are the maximum-likelihood fit of P(i beats j) = 1 / (1 + exp(θj − θi)) (scipy L-BFGS, θ centred on
0), reported also on the familiar Elo scale; their CIs are percentile bootstraps over the comparisons.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations
from typing import Any

import numpy as np
from scipy import optimize

from evaluators.experiments import stats

BOOTSTRAP_ROUNDS = 200
SEED = 0
ELO_SCALE = 400 / math.log(10)  # θ -> Elo points: a 400-point gap is 10:1 odds
_RIDGE = 1e-6  # keeps θ finite when one entry won every comparison


def entry_label(exp: dict[str, Any]) -> str:
    """Who ran: the target's provider/model for server-side runs, else the agent named in the
    metadata, else the experiment's name."""
    target = exp.get("target") or {}
    if target.get("model"):
        return f"{target.get('provider') or 'openai'}/{target['model']}"
    return str((exp.get("metadata") or {}).get("agent") or exp.get("name") or exp.get("id"))


def primary_score(results_by_entry: dict[str, list[dict[str, Any]]], wanted: str | None) -> str | None:
    """``wanted``, else the score name most entries have (ties: alphabetical)."""
    if wanted:
        return wanted
    counts: dict[str, int] = defaultdict(int)
    for results in results_by_entry.values():
        for name in stats.score_values(results):
            counts[name] += 1
    return min(counts, key=lambda n: (-counts[n], n)) if counts else None


def entry_row(label: str, exp: dict[str, Any], results: list[dict[str, Any]], score: str | None) -> dict[str, Any]:
    summary = stats.summarize(results, exp.get("repetitions") or 1, with_ci=False)
    values = [v for _, _, v, _ in stats.score_values(results).get(score or "", [])]
    low, high = stats.mean_ci(values)
    per_item = summary["cost"]["per_item"]
    return {"entry": label, "experiment_id": exp["id"], "experiment_name": exp.get("name"),
            "finished_at": exp.get("finished_at"), "score": score,
            "mean": float(np.mean(values)) if values else None, "ci_low": low, "ci_high": high, "n": len(values),
            "cost_per_1000_items": per_item * 1000 if per_item is not None else None,
            "latency_p50_ms": summary["latency_ms"]["p50"], "error_rate": summary["error_rate"],
            "pass_at_k": pass_at_k_table(results, score) if score == "pass@1" else None}


def pass_at_k_table(results: list[dict[str, Any]], score: str = "pass@1") -> dict[str, float]:
    """Code benchmarks run with repetitions: the unbiased pass@k over items, for k = 1, 5, 10 up to
    the fewest samples any item has."""
    from evaluators.benchmarks.code import mean_pass_at_k

    per_item: dict[str, list[bool]] = defaultdict(list)
    for item_id, _, value, passed in stats.score_values(results).get(score, []):
        per_item[item_id].append(bool(passed) if passed is not None else value >= 1.0)
    if not per_item:
        return {}
    counts = [(len(v), sum(v)) for v in per_item.values()]
    fewest = min(n for n, _ in counts)
    return {f"pass@{k}": mean_pass_at_k(counts, k) for k in (1, 5, 10) if k <= fewest}


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best mean first (entries without a score last); rank 1, 2, ... with equal means sharing a rank."""
    rows = sorted(rows, key=lambda r: (r["mean"] is None, -(r["mean"] or 0.0), r["entry"]))
    for i, r in enumerate(rows):
        same = i > 0 and rows[i - 1]["mean"] == r["mean"]
        r["rank"] = rows[i - 1]["rank"] if same else i + 1
    return rows


def item_comparisons(results_by_entry: dict[str, list[dict[str, Any]]], score: str) -> list[tuple[str, str, float]]:
    """(a, b, outcome for a: 1 win, 0.5 tie, 0 loss) on every item both a and b were scored on."""
    means: dict[str, dict[str, float]] = {}
    for label, results in results_by_entry.items():
        per_item: dict[str, list[float]] = defaultdict(list)
        for item_id, _, value, _ in stats.score_values(results).get(score, []):
            per_item[item_id].append(value)
        means[label] = {k: float(np.mean(v)) for k, v in per_item.items()}
    out = []
    for a, b in combinations(sorted(means), 2):
        for item in sorted(means[a].keys() & means[b].keys()):
            x, y = means[a][item], means[b][item]
            out.append((a, b, 1.0 if x > y else 0.0 if x < y else 0.5))
    return out


_OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5}


def verdict_comparisons(verdicts: list[dict[str, Any]], label_of: dict[str, str]) -> list[tuple[str, str, float]]:
    """Stored pairwise judge verdicts ({experiment_a, experiment_b, winner}) between the runs in
    ``label_of`` (experiment id -> entry) as (a, b, outcome for a)."""
    out = []
    for v in verdicts:
        a, b = label_of.get(v["experiment_a"]), label_of.get(v["experiment_b"])
        if a is not None and b is not None and a != b:
            out.append((a, b, _OUTCOME[v["winner"]]))
    return out


def _fit(n_players: int, i: np.ndarray, j: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ML Bradley–Terry log-strengths for comparisons i vs j where i scored ``w`` (ties = 0.5)."""

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta[i] - theta[j]
        p = 1.0 / (1.0 + np.exp(-d))
        # -[w log p + (1-w) log (1-p)], written with logaddexp for stability
        loss = np.sum(w * np.logaddexp(0.0, -d) + (1 - w) * np.logaddexp(0.0, d)) + _RIDGE * theta @ theta
        g_d = p - w
        grad = np.bincount(i, g_d, n_players) - np.bincount(j, g_d, n_players) + 2 * _RIDGE * theta
        return float(loss), grad

    res = optimize.minimize(nll, np.zeros(n_players), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000})
    return res.x - res.x.mean()


def bradley_terry(comparisons: list[tuple[str, str, float]], *, rounds: int = BOOTSTRAP_ROUNDS,
                  seed: int = SEED) -> list[dict[str, Any]]:
    """Ratings (θ, Elo = 1000 + 400·log10 e·θ) with 95 % bootstrap CIs, best first."""
    if not comparisons:
        return []
    players = sorted({p for a, b, _ in comparisons for p in (a, b)})
    index = {p: k for k, p in enumerate(players)}
    i = np.array([index[a] for a, _, _ in comparisons])
    j = np.array([index[b] for _, b, _ in comparisons])
    w = np.array([o for _, _, o in comparisons], dtype=float)
    theta = _fit(len(players), i, j, w)
    rng = np.random.default_rng(seed)
    boot = np.empty((rounds, len(players)))
    for r in range(rounds):
        pick = rng.integers(0, len(w), len(w))
        boot[r] = _fit(len(players), i[pick], j[pick], w[pick])
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    counts = np.bincount(i, minlength=len(players)) + np.bincount(j, minlength=len(players))
    wins = np.bincount(i, w, len(players)) + np.bincount(j, 1 - w, len(players))
    rows = [{"entry": p, "theta": float(theta[k]), "theta_ci_low": float(low[k]), "theta_ci_high": float(high[k]),
             "elo": 1000 + ELO_SCALE * float(theta[k]), "elo_ci_low": 1000 + ELO_SCALE * float(low[k]),
             "elo_ci_high": 1000 + ELO_SCALE * float(high[k]), "comparisons": int(counts[k]), "wins": float(wins[k])}
            for k, p in enumerate(players)]
    return sorted(rows, key=lambda r: -r["theta"])


def leaderboard(experiments: list[dict[str, Any]], results: dict[str, list[dict[str, Any]]],
                score: str | None = None, verdicts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``experiments`` newest first (completed ones); ``results`` by experiment id; ``verdicts`` one
    judge's stored pairwise verdicts between them (mixing judges would count an item once per judge)."""
    latest: dict[str, dict[str, Any]] = {}
    for exp in experiments:
        latest.setdefault(entry_label(exp), exp)
    by_entry = {label: results.get(exp["id"], []) for label, exp in latest.items()}
    name = primary_score(by_entry, score)
    rows = rank([entry_row(label, exp, by_entry[label], name) for label, exp in latest.items()])
    judged = verdict_comparisons(verdicts or [], {exp["id"]: label for label, exp in latest.items()})
    covered = {frozenset((a, b)) for a, b, _ in judged}
    # pairs the judge did not compare keep their per-item score outcomes, so every entry gets a rating
    scored = [c for c in item_comparisons(by_entry, name) if frozenset(c[:2]) not in covered] if name else []
    sources = {"judge"} if judged else set()
    sources |= {"scores"} if scored else set()
    return {"score": name, "entries": rows, "bradley_terry": bradley_terry(judged + scored),
            "bradley_terry_source": "+".join(sorted(sources)) or None,
            "bradley_terry_pairs": pair_sources(judged, scored)}


def pair_sources(judged: list[tuple[str, str, float]], scored: list[tuple[str, str, float]]) -> list[dict[str, Any]]:
    """Which comparisons rate each pair of entries: the judge's verdicts or the per-item score outcomes."""
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for source, comparisons in (("judge", judged), ("scores", scored)):
        for a, b, _ in comparisons:
            first, second = sorted((a, b))
            counts[(first, second, source)] += 1
    return [{"entry_a": a, "entry_b": b, "source": source, "comparisons": n} for (a, b, source), n in sorted(counts.items())]
