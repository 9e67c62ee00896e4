"""Observed model profiles: how each model behaved in one project's production traffic over a window.

Volume, errors, cost and output tokens come from the per-minute rollups (``core.rollups.read_sql``:
exact by construction, ~100x fewer rows than spans). Percentiles and error classes are not in the
rollups, so they come from the deduplicated model-call spans (``spans FINAL``, ``counted = 1``) with
``quantileExactInclusive`` (numpy's default linear percentile, exactly) in one scan grouped by model.

A span names a model as the provider answered ("gpt-4o-2024-08-06"); the registry maps such names
to their entry, and the spans query groups by that entry so a percentile covers all its snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from core.errors_class import CLASSES
from core.model_registry import Registry
from core.rollups import read_sql
from query_api.filters import READ_SETTINGS, TIME_TYPE, BadParam, Binder, parse_time

MAX_DAYS = 400


@dataclass
class Window:
    start: datetime
    end: datetime

    def public(self) -> dict[str, str]:
        return {"from": _iso(self.start), "to": _iso(self.end)}


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def window(days: int | None, start: str | None, end: str | None) -> Window:
    """[from, to) in whole minutes (the rollups' grain): ``days`` back from now, or from / to."""
    if days is not None and (start or end):
        raise BadParam("days", "give either days or from / to")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise BadParam("days", f"must be between 1 and {MAX_DAYS}")
    minute = timedelta(minutes=1)
    stop = (parse_time("to", end) if end else datetime.now(timezone.utc) + minute).replace(second=0, microsecond=0)
    begin = parse_time("from", start).replace(second=0, microsecond=0) if start else stop - timedelta(days=days or 30)
    if begin >= stop:
        raise BadParam("from", "must be before to")
    if stop - begin > timedelta(days=MAX_DAYS):
        raise BadParam("from", f"the window may span at most {MAX_DAYS} days")
    return Window(begin, stop)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def observed_profiles(client, project_id: str, registry: Registry, win: Window,
                      only: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Registry id ("provider/name") -> observed profile, for the models with model calls in the window
    (``only``: just that entry)."""
    b = Binder()
    project = b.bind(project_id, "String")
    start, end = b.bind(win.start, TIME_TYPE), b.bind(win.end, TIME_TYPE)
    rollup = read_sql("metrics_1m", project, f"toDateTime({start}, 'UTC')", f"toDateTime({end}, 'UTC')")
    sums = client.query(
        f"SELECT model, sum(requests), sum(errors), sum(cost), sum(output_tokens) FROM {rollup} "
        "WHERE kind = 'llm' AND model != '' GROUP BY model", parameters=b.params, settings=READ_SETTINGS).result_rows
    key_of: dict[str, str] = {}
    totals: dict[str, list[float]] = {}
    for model, requests, errors, cost, output_tokens in sums:
        entry = registry.resolve(model)
        if entry is None or (only is not None and entry is not only):
            continue
        key = f"{entry['provider']}/{entry['name']}"
        key_of[model] = key
        acc = totals.setdefault(key, [0, 0, 0.0, 0])
        for i, value in enumerate((requests, errors, cost, output_tokens)):
            acc[i] += value
    if not key_of:
        return {}
    names, keys = list(key_of), [key_of[m] for m in key_of]
    b2 = Binder("q")
    class_counts = ", ".join(f"countIf(status = 'error' AND if(error_class = '', 'other', error_class) = '{c}')"
                             for c in CLASSES)
    rows = client.query(
        f"SELECT transform(model, {b2.bind(names, 'Array(String)')}, {b2.bind(keys, 'Array(String)')}, '') AS entry, "
        "quantilesExactInclusive(0.5, 0.95)(duration_ms), quantilesExactInclusive(0.5, 0.95)(ttft_ms), "
        "count(ttft_ms), quantileExactInclusive(0.5)(tokens_per_second), count(tokens_per_second), "
        f"countIf(cost IS NOT NULL), {class_counts} "
        f"FROM spans FINAL WHERE project_id = {b2.bind(project_id, 'String')} "
        f"AND start_time >= {b2.bind(win.start, TIME_TYPE)} AND start_time < {b2.bind(win.end, TIME_TYPE)} "
        f"AND counted = 1 AND kind = 'llm' AND model IN {b2.bind(names, 'Array(String)')} GROUP BY entry",
        parameters=b2.params, settings=READ_SETTINGS).result_rows
    out: dict[str, dict[str, Any]] = {}
    for entry_key, latency, ttft, ttft_n, tps, tps_n, priced, *by_class in rows:
        requests, errors, cost, output_tokens = totals[entry_key]
        # a model the price table does not know has NULL costs (summed as 0 by the rollups): no cost, not free
        cost_per_call = cost / requests if requests and priced else None
        out[entry_key] = {
            "window": win.public(),
            "calls": int(requests),
            "errors": int(errors),
            "error_rate": errors / requests if requests else None,
            "errors_by_class": {c: int(n) for c, n in zip(CLASSES, by_class) if n},
            "latency_ms": {"p50": _num(latency[0]), "p95": _num(latency[1])},
            "ttft_ms": {"p50": _num(ttft[0]), "p95": _num(ttft[1]), "n": int(ttft_n)} if ttft_n else
                       {"p50": None, "p95": None, "n": 0},
            "cost_per_call": cost_per_call,
            "cost_per_1k_calls": cost_per_call * 1000 if cost_per_call is not None else None,
            "priced_calls": int(priced),
            "output_tokens": int(output_tokens),
            "output_tokens_per_second": {"p50": _num(tps) if tps_n else None, "n": int(tps_n)},
            "sources": ["rollups: calls, errors, cost, output tokens", "spans: percentiles, error classes"],
        }
    return out
