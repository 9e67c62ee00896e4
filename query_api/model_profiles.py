"""Observed model profiles: how each model behaved in one project's production traffic over a window.

Every figure comes from one scan of the deduplicated model calls (``spans FINAL``, ``counted = 1``,
``kind = 'llm'``): percentiles with ``quantileExactInclusive`` (numpy's default linear percentile,
exactly), error classes, and in the same pass the calls, errors, cost and output tokens. Not from the
per-minute rollups: the percentiles need the span scan anyway, and with many models the rollups barely
compress (bench/models_bench.py: metrics_1m held 9.2M rows for 10M spans over 50 models), so reading
them too doubled the time (measured there).

A span names a model as the provider answered ("gpt-4o-2024-08-06"); the registry maps such names,
within the span's provider, to their entry, and the spans query groups by that entry so a percentile covers all its snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from core.errors_class import CLASSES
from core.model_registry import Registry
from query_api.filters import READ_SETTINGS, TIME_TYPE, BadParam, Binder, parse_time
from query_api.timefmt import num

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


# One scan of the deduplicated model calls yields every figure of a profile, grouped by the key.
_PROFILE_COLUMNS = (
    "count(), countIf(status = 'error'), sum(ifNull(cost, 0)), countIf(cost IS NOT NULL), sum(toUInt64(output_tokens)), "
    "quantilesExactInclusive(0.5, 0.95)(duration_ms), quantilesExactInclusive(0.5, 0.95)(ttft_ms), count(ttft_ms), "
    "quantileExactInclusive(0.5)(tokens_per_second), count(tokens_per_second), "
    + ", ".join(f"countIf(status = 'error' AND if(error_class = '', 'other', error_class) = '{c}')" for c in CLASSES))


# What a recommendation needs of each model (p95, cost per call, calls): a third of the work.
_EVIDENCE_COLUMNS = "count(), sum(ifNull(cost, 0)), countIf(cost IS NOT NULL), quantileExactInclusive(0.95)(duration_ms)"


# Filter on project, time, kind, counted and model before FINAL (PREWHERE), so only the model calls'
# other columns are read: ~2x faster for one model's profile (bench/models_bench.py). Safe here because
# those columns are the same in every copy of a span (a retry resends the span as it was).
_SCAN_SETTINGS = {**READ_SETTINGS, "optimize_move_to_prewhere_if_final": 1}


def _scan(client, project_id: str, win: Window, pairs: list[tuple[str, str]] | None, b: Binder,
          columns: str = _PROFILE_COLUMNS) -> list[tuple]:
    """Rows (model, provider, figures...) per model name and provider as sent; with ``pairs``, one row
    (``''``, ``''``, figures...) over just those (model, provider) pairs."""
    where = (f"project_id = {b.bind(project_id, 'String')} AND start_time >= {b.bind(win.start, TIME_TYPE)} "
             f"AND start_time < {b.bind(win.end, TIME_TYPE)} AND counted = 1 AND kind = 'llm' AND model != ''")
    if pairs is None:
        sql = f"SELECT model, provider, {columns} FROM spans FINAL WHERE {where} GROUP BY model, provider"
    else:  # the model is in the sort key: only these models' granules are read
        models, providers = [m for m, _ in pairs], [p for _, p in pairs]
        where += (f" AND model IN {b.bind(sorted(set(models)), 'Array(String)')} AND arrayExists((pm, pp) -> "
                  f"pm = model AND pp = provider, {b.bind(models, 'Array(String)')}, {b.bind(providers, 'Array(String)')})")
        sql = f"SELECT '' AS g_model, '' AS g_provider, {columns} FROM spans FINAL WHERE {where} GROUP BY g_model, g_provider"
    return client.query(sql, parameters=b.params, settings=_SCAN_SETTINGS).result_rows


def _profile(win: Window, row: tuple) -> dict[str, Any]:
    _model, _provider, calls, errors, cost, priced, output_tokens, latency, ttft, ttft_n, tps, tps_n, *by_class = row
    # a model the price table does not know has NULL costs: no cost, not free
    cost_per_call = cost / calls if calls and priced else None
    return {
        "window": win.public(),
        "calls": int(calls),
        "errors": int(errors),
        "error_rate": errors / calls if calls else None,
        "errors_by_class": {c: int(n) for c, n in zip(CLASSES, by_class) if n},
        "latency_ms": {"p50": num(latency[0]), "p95": num(latency[1])},
        "ttft_ms": {"p50": num(ttft[0]), "p95": num(ttft[1]), "n": int(ttft_n)} if ttft_n else
                   {"p50": None, "p95": None, "n": 0},
        "cost_per_call": cost_per_call,
        "cost_per_1k_calls": cost_per_call * 1000 if cost_per_call is not None else None,
        "priced_calls": int(priced),
        "output_tokens": int(output_tokens),
        "output_tokens_per_second": {"p50": num(tps) if tps_n else None, "n": int(tps_n)},
        "source": "spans (deduplicated model calls)",
    }


def _evidence(win: Window, row: tuple) -> dict[str, Any]:
    _model, _provider, calls, cost, priced, p95 = row
    cost_per_call = cost / calls if calls and priced else None
    return {"window": win.public(), "calls": int(calls), "latency_ms": {"p95": num(p95)},
            "cost_per_1k_calls": cost_per_call * 1000 if cost_per_call is not None else None}


def observed_profiles(client, project_id: str, registry: Registry, win: Window,
                      only: dict[str, Any] | None = None, evidence_only: bool = False) -> dict[str, dict[str, Any]]:
    """Registry id ("provider/name") -> observed profile, for the models with model calls in the window
    (``only``: just that entry; ``evidence_only``: calls, p95 latency and cost per 1k calls alone).

    All models: one scan grouped by the model name and provider as sent; an entry seen under several
    (a model and its dated snapshots) is scanned again for just those, since percentiles do not add up.
    One model: the (name, provider) pairs seen in the window that resolve to it, then a scan of those.
    A span's provider, when it has one, must be the entry's (``Registry.resolve``)."""
    if only is not None:
        seen = client.query(
            "SELECT DISTINCT model, provider FROM spans WHERE project_id = {p:String} "
            "AND start_time >= {s:DateTime64(6, 'UTC')} AND start_time < {e:DateTime64(6, 'UTC')} "
            "AND kind = 'llm' AND model != ''",
            parameters={"p": project_id, "s": win.start, "e": win.end}, settings=READ_SETTINGS).result_rows
        pairs = [(m, p) for m, p in seen if registry.resolve(m, p) is only]
        if not pairs:
            return {}
        rows = _scan(client, project_id, win, pairs, Binder())
        return {f"{only['provider']}/{only['name']}": _profile(win, rows[0])} if rows else {}
    columns, build = (_EVIDENCE_COLUMNS, _evidence) if evidence_only else (_PROFILE_COLUMNS, _profile)
    by_pair = {(row[0], row[1]): row for row in _scan(client, project_id, win, None, Binder(), columns)}
    pairs_of: dict[str, list[tuple[str, str]]] = {}
    for model, provider in by_pair:
        entry = registry.resolve(model, provider)
        if entry is not None:
            pairs_of.setdefault(f"{entry['provider']}/{entry['name']}", []).append((model, provider))
    out = {}
    for key, pairs in pairs_of.items():
        if len(pairs) == 1:
            out[key] = build(win, by_pair[pairs[0]])
        else:
            rows = _scan(client, project_id, win, pairs, Binder(), columns)
            out[key] = build(win, rows[0])
    return out
