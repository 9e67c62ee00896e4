"""``POST /api/v1/compare``: two filters (arms) -> samples of one metric -> abtest statistics.

Body::

    {"metric": "latency", "a": {"model": "gpt-4o"}, "b": {"model": "gpt-4o-mini"},
     "from": "...", "to": "...", "filters": {...shared by both arms...},
     "test": "auto" | "welch_t" | "mann_whitney" | "two_proportion_z" | "chi_square",
     "alpha": 0.05, "score_name": "helpfulness", "max_samples": 100000}

Arms bigger than ``max_samples`` are thinned (reported as ``sampled``): to a seeded random subset when
both arms fit in one read of ``FETCH_ALL`` rows, else by a hash of the span / score id after a count;
either way the answer stays fast on large projects and is reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from query_api.abtest import CONTINUOUS_TESTS, RATE_TESTS, compare_continuous, compare_rates
from query_api.filters import (BadParam, Binder, Filters, parse_filters, parse_float, parse_int,
                               score_value_conditions, span_conditions, READ_SETTINGS)
from query_api.metrics_sql import SPAN_VALUES

COMPARE_METRICS = (*SPAN_VALUES, "score", "error_rate")
LOWER_IS_BETTER = {"latency", "ttft", "cost", "input_tokens", "output_tokens", "error_rate"}
BODY_KEYS = {"metric", "a", "b", "from", "to", "filters", "test", "alpha", "score_name", "max_samples"}
FETCH_ALL = 2_000_000  # rows of both arms read in one scan before falling back to count + thin
DEFAULT_MAX_SAMPLES = 100_000  # per arm; ample power, and keeps fetch + rank test well under 300 ms


def parse_body(body: Any) -> dict[str, Any]:
    """Validate the JSON body; BadParam names the offending field (``a.model``, ``alpha``, …)."""
    if not isinstance(body, dict):
        raise BadParam("body", "must be a JSON object")
    for key in body:
        if key not in BODY_KEYS:
            raise BadParam(key, "unknown field")
    metric = body.get("metric")
    if metric not in COMPARE_METRICS:
        raise BadParam("metric", f"must be one of {', '.join(COMPARE_METRICS)}")
    test = body.get("test", "auto")
    allowed = RATE_TESTS if metric == "error_rate" else CONTINUOUS_TESTS
    if test == "auto":
        # latency / cost / tokens are skewed: compare distributions; scores: compare means
        test = "two_proportion_z" if metric == "error_rate" else "welch_t" if metric == "score" else "mann_whitney"
    elif test not in allowed:
        raise BadParam("test", f"for metric={metric} must be auto or one of {', '.join(allowed)}")
    alpha = parse_float("alpha", body.get("alpha", 0.05))
    if not 0 < alpha < 0.5:
        raise BadParam("alpha", "must be between 0 and 0.5")
    max_samples = parse_int("max_samples", body.get("max_samples", DEFAULT_MAX_SAMPLES), minimum=100,
                            maximum=2_000_000)
    score_name = body.get("score_name") or ""
    if metric == "score" and (not isinstance(score_name, str) or not score_name):
        raise BadParam("score_name", "required for metric=score")
    shared = body.get("filters") or {}
    if not isinstance(shared, dict):
        raise BadParam("filters", "must be an object")
    arms = {}
    for arm in ("a", "b"):
        spec = body.get(arm)
        if not isinstance(spec, dict):
            raise BadParam(arm, "must be an object of filters")
        merged = {**shared, **{k: body[k] for k in ("from", "to") if k in body}, **spec}
        try:
            arms[arm] = parse_filters(merged)
        except BadParam as exc:
            raise BadParam(f"{arm}.{exc.param}", str(exc).split(": ", 1)[1]) from None
    return {"metric": metric, "test": test, "alpha": alpha, "max_samples": max_samples,
            "score_name": score_name, "arms": arms}


def _arm_condition(metric: str, f: Filters, b: Binder, project_id: str, score_name: str) -> str:
    """One arm's filters as a single SQL condition on the metric's table (spans or scores)."""
    if metric == "score":
        where = score_value_conditions(f, b, project_id, score_name)
    else:
        where = span_conditions(f, b, project_id=project_id) + ["counted = 1"]  # a call recorded twice: once
        if metric in SPAN_VALUES:
            where.append(f"{SPAN_VALUES[metric]} IS NOT NULL")
    return "(" + " AND ".join(where) + ")"


def _fetch_arms(client, table: str, value: str, flags: str, where: str, params: dict, settings: dict | None,
                limit: int | None) -> dict[str, np.ndarray] | None:
    """Values of both arms in one read (a row may belong to both); None if more than ``limit`` rows."""
    sql = f"SELECT toFloat64({value}) AS v, {flags} FROM {table} FINAL WHERE {where}"
    result = client.query_arrow(sql + (f" LIMIT {int(limit)}" if limit else ""), parameters=params, settings=settings)
    if limit and result.num_rows >= limit:
        return None
    values = result.column("v").to_numpy().astype(float, copy=False)
    return {arm: values[result.column(f"in_{arm}").to_numpy().astype(bool)] for arm in ("a", "b")}


def run_compare(client, project_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Fetch both arms and run the chosen test. Both arms are read together in one scan; an arm above
    max_samples is thinned to a seeded random subset (deterministic for the same data)."""
    metric, arms, cap = spec["metric"], spec["arms"], spec["max_samples"]
    lower = metric in LOWER_IS_BETTER
    b = Binder()
    ca, cb = (_arm_condition(metric, arms[arm], b, project_id, spec["score_name"]) for arm in ("a", "b"))
    table, id_col, value = ("scores", "score_id", "value") if metric == "score" else ("spans", "span_id",
                                                                                      SPAN_VALUES.get(metric, ""))
    # ("" for error_rate, which counts rows and reads no value column)
    # scores are partitioned by month of their own timestamp, so a re-sent score may sit in another
    # partition: only spans get the no-merge-across-partitions FINAL shortcut
    settings = None if metric == "score" else READ_SETTINGS
    base = f"FROM {table} FINAL WHERE {ca} OR {cb}"
    if metric == "error_rate":
        n_a, k_a, n_b, k_b = client.query(
            f"SELECT countIf({ca}), countIf({ca} AND status = 'error'), countIf({cb}), "
            f"countIf({cb} AND status = 'error') {base}", parameters=b.params, settings=settings).result_rows[0]
        result = compare_rates(k_a, n_a, k_b, n_b, test=spec["test"], lower_is_better=lower, alpha=spec["alpha"])
        return {"metric": metric, "lower_is_better": lower, "sampled": False, **result}
    samples = _fetch_arms(client, table, value, f"{ca} AS in_a, {cb} AS in_b", f"{ca} OR {cb}", b.params,
                          settings, limit=FETCH_ALL + 1)
    if samples is not None:  # one scan: both arms fit in memory; thin in numpy if needed
        n_a, n_b = samples["a"].size, samples["b"].size
        rng = np.random.default_rng(0)
        for arm in ("a", "b"):
            if samples[arm].size > cap:  # sorted first, so the draw does not depend on row order
                samples[arm] = rng.choice(np.sort(samples[arm]), cap, replace=False)
    else:  # huge arms: count them, then read a hash-thinned sample of each
        n_a, n_b = client.query(f"SELECT countIf({ca}), countIf({cb}) {base}", parameters=b.params,
                                settings=settings).result_rows[0]
        thin_a, thin_b = (f"cityHash64({id_col}) % {math.ceil(n / cap)} = 0" if n > cap else "1" for n in (n_a, n_b))
        in_a, in_b = f"({ca} AND {thin_a})", f"({cb} AND {thin_b})"
        samples = _fetch_arms(client, table, value, f"{in_a} AS in_a, {in_b} AS in_b", f"{in_a} OR {in_b}",
                              b.params, settings, limit=None)
        assert samples is not None  # no limit: never None
    result = compare_continuous(samples["a"], samples["b"], test=spec["test"], lower_is_better=lower,
                                alpha=spec["alpha"])
    result["arms"]["a"]["n_total"], result["arms"]["b"]["n_total"] = int(n_a), int(n_b)
    sampled = n_a > samples["a"].size or n_b > samples["b"].size
    return {"metric": metric, "lower_is_better": lower, "sampled": bool(sampled), **result}
