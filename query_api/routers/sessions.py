"""``GET /api/v1/sessions/{session_id}``: a session's traces in order, with rollups."""

from __future__ import annotations

from fastapi import APIRouter, Request

from core.deps import ProjectDep, ServicesDep
from query_api.filters import BadParam
from query_api.routers.common import http_errors, int_param, text_param
from query_api.traces_sql import get_session

router = APIRouter(tags=["sessions"])


@router.get("/sessions/{session_id}")
def session(session_id: str, request: Request, project: ProjectDep, services: ServicesDep) -> dict:
    """Traces of the session in start order (``limit``, ``cursor`` page through long sessions);
    ``rollup`` covers the whole session. 404 if the project has no such session."""
    qp = request.query_params
    with http_errors(f"session {session_id[:64]!r} not found"):
        for key in qp.keys():
            if key not in ("limit", "cursor", "project"):  # project: see core/deps.py
                raise BadParam(key, "unknown parameter")
        return get_session(services.clickhouse, project.id, session_id,
                           limit=int_param(qp, "limit", 100, 1, 1000), cursor=text_param(qp, "cursor"))
