"""``GET /api/v1/ab-tests/{id}/results``: each variant against the control (the first variant) on the
primary metric and the guardrails, from the spans the SDK tagged (``evalforge.ab.test`` /
``evalforge.ab.variant`` in the spans' attributes) while the test ran.

Values are the tagged spans of the metric's ``span_kind`` (latency, cost, error rate) or the scores of
the traces holding a tagged span (score). Traffic is randomised by unit, and one unit's calls are not
independent, so the unit is what is compared: each unit's values are averaged into one observation
(``n`` counts units; ``observations`` the spans or scores). Tests are the ones of ``query_api.abtest``
(Welch's t on means; on error rates with one call per unit the two-proportion z-test), so p-values are
scipy's; with more than two variants each comparison runs at α / (variants - 1) (Bonferroni).
Fixed-horizon designs report the sample size per arm from the MDE (closed form, ``ab_stats``) and
whether it is reached; sequential designs the mSPRT's always-valid p-value and confidence sequence.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from query_api.ab_stats import msprt, rate_mde_problem, required_per_arm
from query_api.abtest import arm_summary, compare_continuous, compare_rates
from query_api.filters import READ_SETTINGS

TEST_KEY, VARIANT_KEY, UNIT_KEY = "evalforge.ab.test", "evalforge.ab.variant", "evalforge.ab.unit"
SPAN_EXPR = {"latency": "duration_ms", "cost": "cost", "error_rate": "status = 'error'"}
MAX_OBSERVATIONS = 2_000_000  # per metric; beyond that the newest are left out (reported as truncated)


def fetch_observations(client, project_id: str, test: dict[str, Any], metric: dict[str, Any]) -> dict[str, Any]:
    """One observation per (unit, variant): the mean of the unit's values, ordered by its first one.

    The unit is the SDK's ``evalforge.ab.unit`` key (an opaque hash of the unit id); spans sent
    without it count as one unit per span (per trace for scores)."""
    names = [v["name"] for v in test["variants"]]
    # Only spans the SDK tagged count, and it tags only while the test runs (names are unique per
    # project): the time bound just prunes partitions, with a day of slack for long spans and clock skew.
    since = test["created_at"]
    if isinstance(since, str):
        since = datetime.fromisoformat(since)
    since -= timedelta(days=1)
    params = {"p": project_id, "test": test["name"], "since": since.astimezone(timezone.utc).replace(tzinfo=None),
              "names": names}
    tagged = (f"project_id = {{p:String}} AND start_time >= {{since:DateTime64(6)}} "
              f"AND attributes['{TEST_KEY}'] = {{test:String}} AND attributes['{VARIANT_KEY}'] IN {{names:Array(String)}}")
    variant = f"indexOf({{names:Array(String)}}, attributes['{VARIANT_KEY}']) - 1"
    kind = str(metric.get("kind") or metric["metric"])  # a primary metric has kind, a guardrail metric
    if kind == "score":
        params["score"] = metric["score_name"]
        inner = (f"SELECT s.value AS v, toUnixTimestamp64Micro(s.timestamp) AS t, tr.variant AS variant, tr.unit AS unit "
                 f"FROM scores AS s FINAL INNER JOIN (SELECT trace_id, any({variant}) AS variant, "
                 f"any(if(attributes['{UNIT_KEY}'] != '', attributes['{UNIT_KEY}'], trace_id)) AS unit "
                 f"FROM spans WHERE {tagged} GROUP BY trace_id) AS tr ON s.trace_id = tr.trace_id "
                 f"WHERE s.project_id = {{p:String}} AND s.name = {{score:String}} AND s.value IS NOT NULL")
        settings = None
    else:
        expr = SPAN_EXPR[kind]
        where = f"{tagged} AND counted = 1" + ("" if kind == "error_rate" else f" AND {expr} IS NOT NULL")
        if metric.get("span_kind"):
            params["kind"] = metric["span_kind"]
            where += " AND kind = {kind:String}"
        inner = (f"SELECT toFloat64({expr}) AS v, toUnixTimestamp64Micro(start_time) AS t, {variant} AS variant, "
                 f"if(attributes['{UNIT_KEY}'] != '', attributes['{UNIT_KEY}'], span_id) AS unit "
                 f"FROM spans FINAL WHERE {where}")
        settings = READ_SETTINGS
    sql = (f"SELECT avg(v) AS v, min(t) AS t, variant, count() AS k FROM ({inner}) GROUP BY unit, variant "
           f"ORDER BY t LIMIT {MAX_OBSERVATIONS + 1}")
    table = client.query_arrow(sql, parameters=params, settings=settings)
    truncated = table.num_rows > MAX_OBSERVATIONS
    counts = table.column("k").to_numpy()[:MAX_OBSERVATIONS].astype(np.int64)
    return {"variant": table.column("variant").to_numpy()[:MAX_OBSERVATIONS].astype(np.int64),
            "value": table.column("v").to_numpy()[:MAX_OBSERVATIONS].astype(float),
            "observations": counts, "one_per_unit": bool((counts == 1).all()), "truncated": truncated}


def _binary(kind: str, obs: dict[str, Any]) -> bool:
    """Error rates with one call per unit are Bernoulli (two-proportion z-test, the rate sample size);
    with several calls per unit each unit's error rate is a mean like any other (Welch)."""
    return kind == "error_rate" and obs["one_per_unit"]


def _summary(binary: bool, values: np.ndarray, alpha: float) -> dict[str, Any]:
    if binary:
        return compare_rates(int(values.sum()), values.size, 0, 0, test="two_proportion_z", lower_is_better=True,
                             alpha=alpha)["arms"]["a"]
    return arm_summary(values, 1 - alpha)


def _pair_test(binary: bool, a: np.ndarray, b: np.ndarray, lower: bool, alpha: float) -> dict[str, Any]:
    if binary:
        return compare_rates(int(a.sum()), a.size, int(b.sum()), b.size, test="two_proportion_z",
                             lower_is_better=lower, alpha=alpha)
    return compare_continuous(a, b, test="welch_t", lower_is_better=lower, alpha=alpha)


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def primary_comparison(test: dict[str, Any], obs: dict[str, Any], index: int, alpha: float) -> dict[str, Any]:
    """One variant against the control on the primary metric, with the design's decision rule."""
    metric, design = test["primary_metric"], test["design"]
    kind, lower = metric["kind"], metric["direction"] == "decrease"
    control, variant = obs["value"][obs["variant"] == 0], obs["value"][obs["variant"] == index]
    name, control_name = test["variants"][index]["name"], test["variants"][0]["name"]
    binary = _binary(kind, obs)
    fixed = _pair_test(binary, control, variant, lower, alpha)
    out: dict[str, Any] = {"variant": name, "against": control_name, "alpha": alpha, "p_value": fixed["p_value"],
                           "test": fixed["test"], "difference": fixed.get("difference"),
                           "effect_size": fixed.get("effect_size")}
    n_min = min(control.size, variant.size)
    if design["type"] == "fixed":
        if binary:
            rate = design.get("baseline_rate") or (float(control.mean()) if control.size else None)
            required = required_per_arm(alpha=alpha, power=design["power"], mde=design["mde"], baseline_rate=rate) \
                if rate is not None else None
            problem = rate_mde_problem(rate, design["mde"]) if rate is not None else None
            if problem:
                out["sample_size_note"] = f"no sample size: {problem}"
        else:
            sd = design.get("baseline_sd") or (float(control.std(ddof=1)) if control.size > 1 else None)
            required = required_per_arm(alpha=alpha, power=design["power"], mde=design["mde"], sd=sd)
        reached = required is not None and n_min >= required
        out.update(required_per_arm=required, sample_size_reached=reached,
                   sample_size_method="closed-form normal approximation, two-sided, equal allocation")
        significant = reached and fixed["verdict"] in ("a_better", "b_better")
        better = fixed["verdict"] == "b_better"
        if fixed["p_value"] is None:
            words = "Not enough data yet."
        elif out.get("sample_size_note"):
            words = (f"Collecting data: {n_min} units per arm; {out['sample_size_note']}. Do not decide on the "
                     f"p-value ({_fmt(fixed['p_value'])}) without a planned sample size.")
        elif not reached:
            words = (f"Collecting data: {n_min} of {required if required else '?'} units per arm. "
                     f"Do not decide on the p-value ({_fmt(fixed['p_value'])}) before the sample size is reached: "
                     "peeking at a fixed-horizon test inflates false positives.")
        else:
            words = None
    else:
        order = np.isin(obs["variant"], (0, index))
        seq = msprt(obs["variant"][order] == index, obs["value"][order], tau=design["mde"], alpha=alpha)
        out["sequential"] = seq
        diff = seq["difference"]
        significant = seq["p_value"] is not None and seq["p_value"] < alpha and bool(diff)
        better = significant and ((diff < 0) == lower)
        if seq["p_value"] is None:
            words = "Not enough data yet for the sequential test (30 units per arm)."
        elif not significant:
            words = (f"No conclusive difference yet (always-valid p = {_fmt(seq['p_value'])}); keep running — "
                     "looking at the results any time is safe.")
        else:
            words = None
    out["significant"] = bool(significant)
    out["winner"] = (name if better else control_name) if significant else None
    if words is None:
        a_mean, b_mean = _mean(control), _mean(variant)
        p = out["sequential"]["p_value"] if design["type"] == "sequential" else fixed["p_value"]
        if significant:
            words = (f"{name} is {'better' if better else 'worse'} than {control_name} on {kind} "
                     f"({_fmt(b_mean)} vs {_fmt(a_mean)}, p = {_fmt(p)} < α = {_fmt(alpha)}).")
        else:
            words = (f"No significant difference between {name} and {control_name} on {kind} "
                     f"({_fmt(b_mean)} vs {_fmt(a_mean)}, p = {_fmt(p)}).")
    out["verdict"] = words
    return out


def guardrail_check(rule: dict[str, Any], obs: dict[str, Any], index: int, alpha: float) -> dict[str, Any]:
    kind, lower = rule["metric"], rule["direction"] == "decrease"
    control, variant = obs["value"][obs["variant"] == 0], obs["value"][obs["variant"] == index]
    out: dict[str, Any] = {"metric": kind, "score_name": rule.get("score_name"), "n": int(variant.size),
                           "value": _mean(variant), "control_value": _mean(control)}
    if variant.size == 0 or (rule.get("max_relative_change") is not None and control.size == 0):
        return {**out, "status": "insufficient_data"}
    test = _pair_test(_binary(kind, obs), control, variant, lower, alpha)
    out["p_value"] = test["p_value"]
    value = out["value"]
    if rule.get("threshold") is not None:
        limit = rule["threshold"]
        violated = value > limit if lower else value < limit
        out["limit"] = {"threshold": limit}
    else:
        base = out["control_value"]
        change = (value - base) / abs(base) if base else (0.0 if value == base else math.copysign(math.inf, value - base))
        out["relative_change"] = change if math.isfinite(change) else None
        worse = change if lower else -change
        violated = worse > rule["max_relative_change"]
        out["limit"] = {"max_relative_change": rule["max_relative_change"]}
    return {**out, "status": "violated" if violated else "ok"}


def build_results(test: dict[str, Any], fetch) -> dict[str, Any]:
    """Everything the results page shows. ``fetch(metric_spec)`` returns observations."""
    design = test["design"]
    k = len(test["variants"])
    alpha = design["alpha"] / (k - 1)
    primary = fetch(test["primary_metric"])
    kind = test["primary_metric"]["kind"]
    variants = []
    for i, v in enumerate(test["variants"]):
        mine = primary["variant"] == i
        values = primary["value"][mine]
        variants.append({"name": v["name"], "n": int(values.size), "observations": int(primary["observations"][mine].sum()),
                         "primary": _summary(_binary(kind, primary), values, alpha)})
    comparisons = [primary_comparison(test, primary, i, alpha) for i in range(1, k)]
    guard_obs = [fetch(rule) for rule in test["guardrails"]]
    for comparison, i in zip(comparisons, range(1, k)):
        comparison["guardrails"] = [guardrail_check(rule, obs, i, alpha)
                                    for rule, obs in zip(test["guardrails"], guard_obs)]
        broken = [g["metric"] for g in comparison["guardrails"] if g["status"] == "violated"]
        if broken:
            comparison["verdict"] += f" Guardrail violated: {', '.join(broken)}."
    winners = {c["winner"] for c in comparisons if c["winner"]}
    clean = [c for c in comparisons if c["winner"] == c["variant"]
             and not any(g["status"] == "violated" for g in c["guardrails"])]
    if clean:
        best = clean[0]["variant"] if len(clean) == 1 else None
        summary = (f"{best} beats the control with no guardrail violated." if best
                   else f"{', '.join(c['variant'] for c in clean)} each beat the control; compare them directly.")
    elif winners:
        summary = "Significant differences, but no variant beats the control without a guardrail violation."
    else:
        summary = "No variant differs significantly from the control yet."
    return {"test_id": test["id"], "name": test["name"], "status": test["status"], "design": design,
            "primary_metric": test["primary_metric"], "alpha_per_comparison": alpha,
            "observations_truncated": bool(primary["truncated"]), "variants": variants,
            "comparisons": comparisons, "verdict": summary}
