"""Score distributions for ``GET /api/v1/scores/summary``: per score name (and optional group), count,
mean, spread, exact quantiles and a histogram for numeric / boolean scores, value counts for categorical."""

from __future__ import annotations

from typing import Any

from query_api.filters import BadParam, Binder, Filters, trace_filter_subquery, window_conditions
from query_api.timefmt import num

SCORE_GROUPS = ("source", "evaluator", "evaluator_version", "data_type")
TOP_VALUES = 20


def score_summary(client, project_id: str, f: Filters, *, group_by: str | None = None,
                  score_names: list[str] | None = None, bins: int = 10) -> dict[str, Any]:
    """Distributions of the project's scores in [from, to) on traces matching the span filters."""
    if group_by is not None and group_by not in SCORE_GROUPS:
        raise BadParam("group_by", f"must be one of {', '.join(SCORE_GROUPS)}")
    b = Binder()
    where = window_conditions(f, b, project_id, time_column="timestamp")
    if score_names:
        where.append(f"has({b.bind(score_names, 'Array(String)')}, name)")
    # Span filters pick the traces; the time range applies to the scores themselves.
    span_only = f.span_only()
    sub = trace_filter_subquery(span_only, b, project_id)
    if sub:
        where.append(f"trace_id IN ({sub})")
    group = group_by or "''"
    base = f"FROM scores FINAL WHERE {' AND '.join(where)}"
    stats_sql = f"""
        SELECT name, {group} AS grp, any(data_type), count(), count(value), avg(value), stddevSamp(value),
            min(value), max(value), quantileExactInclusive(0.5)(value), quantileExactInclusive(0.9)(value),
            histogram({int(bins)})(value)
        {base} GROUP BY name, grp ORDER BY name, grp"""
    values_sql = f"""
        SELECT name, {group} AS grp, string_value, count() AS c {base} AND string_value != ''
        GROUP BY name, grp, string_value ORDER BY name, grp, c DESC, string_value LIMIT {TOP_VALUES} BY name, grp"""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in client.query(stats_sql, parameters=b.params).result_rows:
        has_numeric = r[4] > 0
        out[(r[0], r[1])] = {
            "name": r[0], "group": ({group_by: r[1]} if group_by else {}), "data_type": r[2], "count": r[3],
            "numeric_count": r[4],
            "mean": num(r[5]) if has_numeric else None, "stddev": num(r[6]) if r[4] > 1 else None,
            "min": num(r[7]) if has_numeric else None, "max": num(r[8]) if has_numeric else None,
            "p50": num(r[9]) if has_numeric else None, "p90": num(r[10]) if has_numeric else None,
            "histogram": [{"lower": num(lo), "upper": num(hi), "count": num(h)} for lo, hi, h in r[11]],
            "values": [],
        }
    for name, grp, value, count in client.query(values_sql, parameters=b.params).result_rows:
        if (name, grp) in out:
            out[(name, grp)]["values"].append({"value": value, "count": count})
    return {"group_by": group_by, "data": list(out.values())}
