"""``GET /api/v1/metrics``: a metric, aggregated, grouped and bucketed over time."""

from __future__ import annotations

from fastapi import APIRouter, Request

from core.deps import ProjectDep, ServicesDep
from query_api.filters import BadParam, parse_filters
from query_api.metrics_sql import AGGREGATIONS, METRICS, MetricQuery, default_aggregation, run_metric
from query_api.routers.common import http_errors, int_param, one_of, text_param
from query_api.routers.openapi_params import METRICS as METRICS_PARAMETERS, openapi_parameters

router = APIRouter(tags=["metrics"])
METRIC_PARAMS = ("metric", "aggregation", "group_by", "interval", "limit")
# "how many requests" and "how slow" mean model calls unless the caller asks for other kinds (kind=...)
# or every span (kind=all): a trace's chain / tool / agent spans are not requests to a provider.
MODEL_CALL_METRICS = ("requests", "latency")


@router.get("/metrics", openapi_extra=openapi_parameters(METRICS_PARAMETERS))
def metrics(request: Request, project: ProjectDep, services: ServicesDep) -> dict:
    """metric: requests | latency | ttft | cost | input_tokens | output_tokens | errors | error_rate |
    tokens_per_second | score (with score_name); aggregation: count | sum | avg | min | max | p50 |
    p90 | p95 | p99 (several percentiles may be given: one scan, each row then also has ``values``,
    percentile -> value, and ``value`` is the first's); group_by (repeatable): model, provider, name, user_id, session_id, environment,
    release, tag, status, prompt_name, prompt_version; interval: minute | hour | day | week | month or a duration (30s, 5m,
    2h, 1d; buckets aligned to the Unix epoch, UTC) — omit for totals;
    limit: groups kept (largest totals); filters as on /traces. Default range: the last 7 days.
    requests and latency count model calls (kind=llm) unless kind is given; kind=all: every span."""
    qp = request.query_params
    with http_errors():
        f = parse_filters(qp, allowed_extra=METRIC_PARAMS)
        metric = one_of(qp, "metric", METRICS, None)
        if metric is None:
            raise BadParam("metric", "required")
        group_by = qp.getlist("group_by")
        aggregations = qp.getlist("aggregation") or [default_aggregation(metric)]
        for aggregation in aggregations:
            if aggregation not in AGGREGATIONS:
                raise BadParam("aggregation", f"must be one of {', '.join(AGGREGATIONS)}")
        mq = MetricQuery(
            metric=metric, aggregation=aggregations[0], also=tuple(aggregations[1:]),
            group_by=group_by, interval=text_param(qp, "interval"),
            limit=int_param(qp, "limit", 50, 1, 1000), score_name=f.score_name,
        )
        if metric == "score":  # score_name names the metric here, not a trace filter
            f.score_name = ""
        kinds = f.lists.get("kind")
        if kinds == ["all"]:  # every span kind, explicitly
            del f.lists["kind"]
        elif kinds and "all" in kinds:
            raise BadParam("kind", "'all' cannot be combined with other kinds")
        elif not kinds and metric in MODEL_CALL_METRICS:
            f.lists["kind"] = ["llm"]
        result = run_metric(services.clickhouse, project.id, mq, f)
        result["kind"] = f.lists.get("kind", ["all"])  # which span kinds were counted
        return result
