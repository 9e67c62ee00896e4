"""OpenAPI descriptions of the query parameters that ``/traces``, ``/metrics``, ``/export`` and
``/scores/summary`` read by hand.

Those handlers read ``request.query_params`` (repeatable filters, unknown names refused), so FastAPI
cannot infer their parameters; this table documents every one of them in ``/openapi.json``. A test
checks that it names exactly the parameters the parsers accept.
"""

from __future__ import annotations

from typing import Any

from query_api.filters import LIST_FILTERS, RANGE_FILTERS

_FILTERS: dict[str, tuple[str, str]] = {  # name -> (JSON schema type, description)
    "from": ("string", "start of the time range, inclusive: ISO-8601 (naive means UTC) or Unix seconds"),
    "to": ("string", "end of the time range, exclusive: ISO-8601 or Unix seconds"),
    "tag": ("string", "any of these tags (repeatable)"),
    "q": ("string", "case-insensitive text in the input / output previews"),
    "score_name": ("string", "score to filter on with min_score / max_score"),
    "attribute": ("string", "key=value: the span attribute key equals value exactly (repeatable)"),
    "metadata": ("string", "key=value: the metadata entry key equals value exactly, i.e. attribute "
                           "metadata.key=value (repeatable)"),
    **{name: ("string", f"{column} equals one of the given values (repeatable)")
       for name, column in LIST_FILTERS.items()},
    **{name: ("number", name.replace("_", " ")) for name in RANGE_FILTERS},
}
_FILTERS["kind"] = ("string", "span kind, one of llm, embedding, chain, tool, retriever, agent, evaluator, span "
                    "(repeatable); on /metrics, metric=requests and latency count model calls (kind=llm) "
                    "unless told otherwise, and kind=all counts every span kind")
_FILTERS["status"] = ("string", "ok | error | unset (repeatable)")

TRACES: dict[str, tuple[str, str]] = {
    **_FILTERS,
    "sort": ("string", "start_time | duration_ms | cost | total_tokens (default start_time)"),
    "order": ("string", "desc | asc (default desc)"),
    "limit": ("integer", "traces per page, 1-500 (default 50)"),
    "cursor": ("string", "next_cursor of the previous page"),
}
METRICS: dict[str, tuple[str, str]] = {
    **_FILTERS,
    "metric": ("string", "requests | latency | ttft | cost | input_tokens | output_tokens | errors | error_rate | "
                         "tokens_per_second | score (with score_name); required"),
    "aggregation": ("string", "count | sum | avg | min | max | p50 | p90 | p95 | p99"),
    "group_by": ("string", "model | provider | name | user_id | session_id | environment | release | tag | status "
                           "(repeatable, at most 3)"),
    "interval": ("string", "minute | hour | day | week | month, or a duration such as 30s, 5m, 2h, 1d; omit for totals"),
    "limit": ("integer", "groups kept, largest totals first, 1-1000 (default 50)"),
}
EXPORT: dict[str, tuple[str, str]] = {
    **_FILTERS,
    "format": ("string", "parquet | csv | jsonl (default jsonl)"),
    "payloads": ("string", "true to add full input / output (from the blob store when offloaded), attributes "
                           "and events (default false)"),
    "limit": ("integer", "rows at most, 1-10,000,000 (default 1,000,000)"),
}
SCORES: dict[str, tuple[str, str]] = {
    **_FILTERS,
    "score_name": ("string", "score names to summarise (repeatable; default all)"),
    "group_by": ("string", "source | evaluator | evaluator_version | data_type"),
    "bins": ("integer", "histogram bins, 1-100 (default 10)"),
}
_REPEATABLE = frozenset({"tag", "group_by", "attribute", "metadata", *LIST_FILTERS})
SCORES_REPEATABLE = (_REPEATABLE - {"group_by"}) | {"score_name"}


def openapi_parameters(params: dict[str, tuple[str, str]], repeatable: frozenset[str] = _REPEATABLE) -> dict[str, Any]:
    """``openapi_extra`` for a route: one query parameter object per entry."""
    out = []
    for name, (kind, description) in params.items():
        schema: dict[str, Any] = {"type": kind}
        if name in repeatable:
            schema = {"type": "array", "items": {"type": kind}}
        out.append({"name": name, "in": "query", "required": name == "metric", "description": description,
                    "schema": schema, **({"style": "form", "explode": True} if name in repeatable else {})})
    return {"parameters": out}
