"""``GET /api/v1/scores/summary``: score distributions by name and group."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.datastructures import QueryParams

from core.deps import ProjectDep, ServicesDep
from query_api.filters import BadParam, parse_filters
from query_api.routers.common import http_errors, int_param, one_of
from query_api.routers.openapi_params import SCORES, SCORES_REPEATABLE, openapi_parameters
from query_api.scores_sql import SCORE_GROUPS, score_summary

router = APIRouter(tags=["scores"])


@router.get("/scores/summary", openapi_extra=openapi_parameters(SCORES, SCORES_REPEATABLE))
def scores_summary(request: Request, project: ProjectDep, services: ServicesDep) -> dict:
    """Per score name (``score_name`` repeatable to pick names) and optional ``group_by`` (source |
    evaluator | evaluator_version | data_type): count, mean, stddev, min, max, p50, p90, histogram
    (``bins``), top categorical values. Span filters select the traces; from / to the score times."""
    qp = request.query_params
    with http_errors():
        f = parse_filters(_without(qp, "score_name"), allowed_extra=("group_by", "bins"))
        names = qp.getlist("score_name")
        if len(names) > 100 or any(len(n) > 256 for n in names):
            raise BadParam("score_name", "at most 100 names of at most 256 characters")
        return score_summary(services.clickhouse, project.id, f,
                             group_by=one_of(qp, "group_by", SCORE_GROUPS, None), score_names=names or None,
                             bins=int_param(qp, "bins", 10, 1, 100))


def _without(qp: QueryParams, name: str) -> QueryParams:
    return QueryParams([(k, v) for k, v in qp.multi_items() if k != name])
