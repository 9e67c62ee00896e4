"""Quality evidence per model: finished experiments' scores (PostgreSQL) and an eval rule's online scores
(ClickHouse ``scores`` joined to the spans they scored).

An experiment's numbers are its summary's (``evaluators.experiments.stats.summarize``: mean, 95 %
percentile-bootstrap CI with seed 0, n), so the registry shows what the experiment page shows. Online
scores get the same CI function. The model of an experiment is its target's (server-side runs) or
``metadata.model`` (client-side runs, where the SDK called the model).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from core.model_registry import Registry
from evaluators.experiments import stats, store
from query_api.filters import READ_SETTINGS, TIME_TYPE, Binder
from query_api.model_profiles import Window


# A completed experiment's results no longer change, so its summary (a bootstrap per score: ~10 ms) is
# computed once per process; keyed with finished_at so a run finished again is summarised again.
_SUMMARIES: OrderedDict[tuple[str, str], tuple[dict[str, Any], dict[str, list[float]]]] = OrderedDict()
_SUMMARIES_MAX = 4096


async def _summary(conn, exp: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[float]]]:
    key = (exp["id"], str(exp["finished_at"]))
    hit = _SUMMARIES.get(key)
    if hit is not None:
        _SUMMARIES.move_to_end(key)
        return hit
    results = await store.results(conn, exp["id"])
    summary = await asyncio.to_thread(stats.summarize, results, exp["repetitions"])
    values = {name: [v for _, _, v, _ in rows] for name, rows in stats.score_values(results).items()}
    _SUMMARIES[key] = (summary, values)
    if len(_SUMMARIES) > _SUMMARIES_MAX:
        _SUMMARIES.popitem(last=False)
    return summary, values


def experiment_model(exp: dict[str, Any]) -> str | None:
    target = exp.get("target") or {}
    return target.get("model") or (exp.get("metadata") or {}).get("model")


def _task_label(exp: dict[str, Any]) -> dict[str, Any]:
    bench = exp.get("benchmark") or {}
    return {"dataset_id": exp.get("dataset_id"), "dataset_version": exp.get("dataset_version"),
            "benchmark": bench.get("name") if bench else None}


async def experiment_evidence(conn, project_id: str, registry: Registry, *, dataset_id: str | None = None,
                              benchmark: str | None = None, only: dict[str, Any] | None = None,
                              limit: int = 200) -> list[dict[str, Any]]:
    """The project's completed experiments (newest first), each with its model's registry id and its
    summary scores; filtered to a dataset or a benchmark, or to one registry entry."""
    sql = ("SELECT id, name, dataset_id, dataset_version, benchmark, target, metadata, repetitions, finished_at "
           "FROM experiments WHERE project_id = %s AND status = 'completed'")
    params: list[Any] = [project_id]
    if dataset_id is not None:
        sql += " AND dataset_id = %s"
        params.append(dataset_id)
    if benchmark is not None:
        sql += " AND benchmark->>'name' = %s"
        params.append(benchmark)
    rows = await (await conn.execute(sql + " ORDER BY finished_at DESC NULLS LAST, created_at DESC LIMIT %s",
                                     [*params, limit])).fetchall()
    out = []
    for r in rows:
        exp = dict(zip(("id", "name", "dataset_id", "dataset_version", "benchmark", "target", "metadata",
                        "repetitions", "finished_at"), r))
        model = experiment_model(exp)
        entry = registry.resolve(model, (exp.get("target") or {}).get("provider")) if model else None
        if entry is None or (only is not None and entry is not only):
            continue
        summary, values = await _summary(conn, exp)
        out.append({"experiment_id": exp["id"], "name": exp["name"], "model": f"{entry['provider']}/{entry['name']}",
                    "model_as_run": model, **_task_label(exp),
                    "finished_at": exp["finished_at"].isoformat() if exp["finished_at"] else None,
                    "scores": {name: {k: s[k] for k in ("mean", "ci_low", "ci_high", "n")}
                               for name, s in summary["scores"].items()},
                    "score_values": values,
                    "latency_ms": summary["latency_ms"], "cost_per_item": summary["cost"]["per_item"]})
    return out


def rule_score_name(rule: dict[str, Any]) -> str:
    """The name an eval rule's scores carry: its evaluator's configured score name, else the evaluator's."""
    return str((rule.get("config") or {}).get("score_name") or rule["evaluator"])


def online_scores(client, project_id: str, registry: Registry, score_name: str, evaluator: str,
                  win: Window) -> dict[str, dict[str, Any]]:
    """Registry id -> {mean, ci_low, ci_high, n, values} of a rule's numeric scores on model calls in the
    window: a score names the span it judged (span_id), else its trace's one model."""
    b = Binder()
    project = b.bind(project_id, "String")
    start, end = b.bind(win.start, TIME_TYPE), b.bind(win.end, TIME_TYPE)
    spans = (f"SELECT trace_id, span_id, model, provider FROM spans FINAL WHERE project_id = {project} "
             f"AND start_time >= {start} AND start_time < {end} AND counted = 1 AND kind = 'llm' AND model != ''")
    rows = client.query(
        f"WITH s AS ({spans}), "
        f"t AS (SELECT trace_id, any(model) AS trace_model, any(provider) AS trace_provider FROM s GROUP BY trace_id "
        f"HAVING uniqExact(model, provider) = 1) "
        f"SELECT if(sc.span_id != '', s.model, t.trace_model) AS scored_model, "
        f"if(sc.span_id != '', s.provider, t.trace_provider) AS scored_provider, sc.value FROM "
        f"(SELECT trace_id, span_id, value FROM scores FINAL WHERE project_id = {project} "
        f"AND name = {b.bind(score_name, 'String')} AND evaluator = {b.bind(evaluator, 'String')} "
        f"AND value IS NOT NULL) AS sc "
        f"LEFT JOIN s ON sc.trace_id = s.trace_id AND sc.span_id = s.span_id "
        f"LEFT JOIN t ON sc.trace_id = t.trace_id "
        f"WHERE scored_model != ''", parameters=b.params, settings={**READ_SETTINGS, "join_use_nulls": 0}).result_rows
    values: dict[str, list[float]] = {}
    for model, provider, value in rows:
        entry = registry.resolve(model, provider)
        if entry is not None:
            values.setdefault(f"{entry['provider']}/{entry['name']}", []).append(float(value))
    out = {}
    for key, vals in values.items():
        vals.sort()  # rows come in no fixed order; the seeded bootstrap resamples by position
        low, high = stats.mean_ci(vals)
        out[key] = {"mean": sum(vals) / len(vals), "ci_low": low, "ci_high": high, "n": len(vals), "values": vals}
    return out
