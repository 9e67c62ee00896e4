"""The optimiser's search, free of I/O: the dataset split, candidates and their dev scores, the
successive-halving race, the budget, and the holdout decision.

The scoring itself is a callable (``Evaluate``) so the race is tested without any model.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

ALPHA = 0.05  # the holdout test must be significant at 95 %
MIN_SLICE = 2  # the smallest dev slice a prompt is scored on (the race's first rung, the baseline's first step)
# The dataset's own split names, when its items carry them (datasets.Split): train / dev / test.
DATASET_SPLITS = {"train": "train", "dev": "dev", "test": "holdout"}


class BudgetExhausted(Exception):
    """The next step would exceed ``max_calls`` or ``max_usd``: the job stops with what it has."""


@dataclass
class Splits:
    train: list[dict[str, Any]]
    dev: list[dict[str, Any]]
    holdout: list[dict[str, Any]]
    source: str  # "dataset" (its train / dev / test items) or "seeded"
    holdout_split: str | None = None  # the dataset split the holdout is, when source is "dataset"


def split_items(items: list[dict[str, Any]], seed: int, holdout_fraction: float, train_fraction: float) -> Splits:
    """Train / dev / frozen holdout. The dataset's own splits when its items have them (``test`` is the
    holdout); otherwise a deterministic shuffle by ``seed`` (a hash of seed and item id, so the same
    item lands in the same part on every run and adding items never moves the others).
    ValueError (naming ``dataset_id``) when dev or holdout would be too small to decide anything."""
    if any(i.get("split") for i in items):
        parts: dict[str, list] = {"train": [], "dev": [], "holdout": []}
        for item in items:
            if item.get("split") in DATASET_SPLITS:
                parts[DATASET_SPLITS[item["split"]]].append(item)
        splits = Splits(parts["train"], parts["dev"], parts["holdout"], "dataset", "test")
    else:
        ordered = sorted(items, key=lambda i: hashlib.sha256(f"{seed}:{i['id']}".encode()).digest())
        n_holdout = round(len(ordered) * holdout_fraction)
        n_train = round(len(ordered) * train_fraction)
        splits = Splits(train=ordered[n_holdout:n_holdout + n_train], dev=ordered[n_holdout + n_train:],
                        holdout=ordered[:n_holdout], source="seeded")
    if len(splits.dev) < 2 or len(splits.holdout) < 2:
        raise ValueError(f"dataset_id: needs at least 2 dev and 2 holdout items (has {len(splits.dev)} dev, "
                         f"{len(splits.holdout)} holdout from {len(items)} items)")
    return splits


@dataclass
class Candidate:
    """A prompt under test and its per-item dev values (the objective score, 0 when the run failed)."""

    id: str
    prompt: Any
    round: int
    rationale: str = ""
    values: dict[str, float] = field(default_factory=dict)  # dev item id -> objective value
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # dev item id -> the run (output, scores)
    slices: list[dict[str, Any]] = field(default_factory=list)  # the race: [{items, mean}]
    status: str = "racing"  # racing | eliminated | round_winner | best | invalid

    def mean(self, item_ids: list[str] | None = None) -> float | None:
        ids = list(self.values) if item_ids is None else item_ids
        vals = [self.values[i] for i in ids if i in self.values]
        return sum(vals) / len(vals) if vals else None

    def summary(self) -> dict[str, Any]:
        """The candidate as the job's history shows it."""
        return {"id": self.id, "round": self.round, "prompt": self.prompt, "rationale": self.rationale,
                "status": self.status, "dev": {"n": len(self.values), "mean": self.mean()}, "race": self.slices}


Evaluate = Callable[[Candidate, list[dict[str, Any]]], Awaitable[None]]


async def successive_halving(candidates: list[Candidate], dev: list[dict[str, Any]], evaluate: Evaluate,
                             min_slice: int = MIN_SLICE) -> Candidate:
    """Race ``candidates`` on dev: score all on a first slice, keep the better half, double the slice
    (slices are prefixes, so an item is scored once per candidate), until one is left; it is then
    scored on the whole of dev, to compare with the current best on equal terms. Ties keep the
    earlier candidate. ``evaluate(candidate, items)`` scores the items the candidate lacks (and may
    raise BudgetExhausted, which ends the race)."""
    alive = list(candidates)
    rungs = math.ceil(math.log2(len(alive))) if len(alive) > 1 else 0
    size = min(len(dev), max(min_slice, math.ceil(len(dev) / 2 ** rungs)))
    while True:
        part = dev[:size]
        ids = [i["id"] for i in part]
        for c in alive:
            await evaluate(c, part)
            c.slices.append({"items": size, "mean": c.mean(ids)})
        if len(alive) > 1:
            ranked = sorted(alive, key=lambda c: -(c.mean(ids) or 0.0))  # stable: ties keep the earlier
            keep = ranked[:math.ceil(len(alive) / 2)]
            for c in alive:
                if c not in keep:
                    c.status = "eliminated"
            alive = [c for c in alive if c in keep]  # in proposal order
        if len(alive) == 1 and size == len(dev):
            alive[0].status = "round_winner"
            return alive[0]
        size = min(len(dev), size * 2) if len(alive) > 1 else len(dev)


@dataclass
class Budget:
    """Model calls (optimiser + target + judge) and USD spent, against the job's caps. A step reserves
    what it expects to need first: ``reserve`` raises BudgetExhausted when that would pass a cap. USD is
    estimated from the average cost of what has run so far (unknown until something ran). A step under
    way is ``hold``-ed (and saved with the job) until ``charge``: a run resumed after its worker died
    mid-step counts that step as spent (``spend_held``) rather than spending it again uncounted."""

    max_calls: int
    max_usd: float
    calls: int = 0
    usd: float = 0.0
    item_runs: int = 0
    item_usd: float = 0.0
    held_calls: int = 0
    held_usd: float = 0.0

    def affordable(self, calls: int, usd: float = 0.0) -> bool:
        return self.calls + calls <= self.max_calls and self.usd + usd <= self.max_usd

    def item_estimate(self, n: int) -> float:
        return n * (self.item_usd / self.item_runs) if self.item_runs else 0.0

    def reserve(self, calls: int, usd: float = 0.0, what: str = "the next step") -> None:
        if not self.affordable(calls, usd):
            raise BudgetExhausted(
                f"{what} needs {calls} more calls (~${usd:.4f}); spent {self.calls} of {self.max_calls} calls, "
                f"${self.usd:.4f} of ${self.max_usd:g}")

    def hold(self, calls: int, usd: float) -> None:
        self.held_calls, self.held_usd = calls, usd

    def spend_held(self) -> None:
        """The held step's calls went out (some or all) and were never charged: count them as spent."""
        self.charge(self.held_calls, self.held_usd)

    def charge(self, calls: int, usd: float, item_runs: int = 0) -> None:
        self.held_calls, self.held_usd = 0, 0.0  # what the step held is now counted by what it spent
        self.calls += calls
        self.usd += usd
        if item_runs:
            self.item_runs += item_runs
            self.item_usd += usd

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "usd": self.usd, "max_calls": self.max_calls, "max_usd": self.max_usd}


@dataclass
class Limits:
    """What the accepted prompt may cost and take on the holdout (None: no limit)."""

    max_cost_per_item_usd: float | None = None
    max_latency_p95_ms: float | None = None
    max_cost_ratio: float | None = None  # candidate / baseline cost per item
    max_latency_ratio: float | None = None  # candidate / baseline p95 latency


Verdicts = dict[str, tuple[float, bool | None]]  # item id -> (objective value, passed or None)


def objective_verdicts(results: list[dict[str, Any]], objective: str | None) -> Verdicts:
    """Per holdout item (one repetition): the objective's value and pass verdict; a run that failed or
    has no such score counts as 0 and a fail, as on dev -- leaving it out would hide the very items a
    prompt breaks."""
    out: Verdicts = {}
    for r in results:
        score = next((s for s in r.get("scores") or [] if s["name"] == objective and s.get("value") is not None), None)
        out[r["item_id"]] = (float(score["value"]), score.get("passed")) if score else (0.0, False)
    return out


def holdout_test(base: Verdicts, cand: Verdicts) -> dict[str, Any]:
    """The one-sided paired test that the candidate beats the baseline on the items both have: exact
    McNemar (binomial on the discordant pairs, candidate-only passes as successes) when every item has a
    pass / fail verdict, else Wilcoxon signed-rank; both with ``alternative="greater"``. One-sided
    because the decision is directional: a two-sided p with the sign of the mean delta accepts a prompt
    that loses many pass verdicts but gains value elsewhere, or that is worse on most items."""
    shared = [i for i in base if i in cand]
    diff = [cand[i][0] - base[i][0] for i in shared]
    out: dict[str, Any] = {"n": len(shared), "alternative": "greater",
                           "mean_base": sum(base[i][0] for i in shared) / len(shared) if shared else None,
                           "mean_other": sum(cand[i][0] for i in shared) / len(shared) if shared else None,
                           "delta": sum(diff) / len(diff) if diff else None,
                           "improved": sum(1 for d in diff if d > 0), "regressed": sum(1 for d in diff if d < 0)}
    verdicts = [(base[i][1], cand[i][1]) for i in shared]
    if verdicts and all(b is not None and c is not None for b, c in verdicts):
        base_only = sum(1 for b, c in verdicts if b and not c)
        cand_only = sum(1 for b, c in verdicts if c and not b)
        p = stats.binomtest(cand_only, base_only + cand_only, 0.5, alternative="greater").pvalue \
            if base_only + cand_only else 1.0
        out.update(test="mcnemar_exact", base_only=base_only, other_only=cand_only)
    else:
        p = stats.wilcoxon([cand[i][0] for i in shared], [base[i][0] for i in shared], alternative="greater").pvalue \
            if any(d != 0 for d in diff) else 1.0
        out["test"] = "wilcoxon"
    out["p_value"] = float(p)
    return out


def decide(test: dict[str, Any] | None, base: dict[str, Any], cand: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Accept the candidate only if the one-sided paired holdout test (``holdout_test`` on the
    objective) is significant at 95 %, its mean is higher, and it keeps within the cost and latency limits; a set limit
    whose value is unknown (a model without a price, no latency) refuses, it cannot be checked.
    ``base`` / ``cand``: the two holdout runs' ``stats.summarize``."""
    if test is None or not test.get("n"):
        return {"accepted": False, "reason": "the holdout runs share no scored item"}
    if not (test["p_value"] < ALPHA and test["delta"] > 0):  # more passes yet a lower mean value: not better
        direction = "better" if test["delta"] > 0 else "not better"
        return {"accepted": False, "reason": f"not significant on the holdout: {direction} by {test['delta']:+.4g} "
                                             f"on average, one-sided {test['test']} p = {test['p_value']:.4g} "
                                             f"(needs < {ALPHA})"}
    cost_b, cost_c = base["cost"]["per_item"], cand["cost"]["per_item"]
    lat_b, lat_c = base["latency_ms"]["p95"], cand["latency_ms"]["p95"]
    checks = [
        ("max_cost_per_item_usd", cost_c, "cost per item ${:.6g} exceeds the limit ${:.6g}"),
        ("max_latency_p95_ms", lat_c, "latency p95 {:.1f} ms exceeds the limit {:.1f} ms"),
        ("max_cost_ratio", cost_c / cost_b if cost_c is not None and cost_b else None,
         "cost per item is {:.3g}x the baseline's (limit {:.3g}x)"),
        ("max_latency_ratio", lat_c / lat_b if lat_c is not None and lat_b else None,
         "latency p95 is {:.3g}x the baseline's (limit {:.3g}x)"),
    ]
    for name, value, message in checks:
        limit = getattr(limits, name)
        if limit is None:
            continue
        if value is None:
            return {"accepted": False, "reason": f"significantly better but {name} cannot be checked: the value is "
                                                 "unknown (a model without a price, or no successful run)"}
        if value > limit:
            return {"accepted": False, "reason": "significantly better but " + message.format(value, limit)}
    return {"accepted": True, "reason": f"better on the holdout by {test['delta']:+.4g}, one-sided {test['test']} "
                                        f"p = {test['p_value']:.4g}"}
