"""Tenant isolation: project A's key never sees project B's data through any endpoint, and B's key
sees exactly B's data."""

from __future__ import annotations

import io

import orjson
import polars as pl

from tests.query.conftest import BASE

B_FILTERS = [{"model": "model-b-only"}, {"user_id": "user_b_only"}, {"session_id": "sess_b_only"},
             {"tag": "b-tag"}, {"environment": "b-env"}, {"release": "b-release"}, {"q": "secret"},
             {"name": "b_root"}, {"score_name": "b-secret-score"}]


def test_trace_list(api, project_a, project_b):
    for params in B_FILTERS:
        body = api(project_a.key).get("/traces", params=params).json()
        assert body["data"] == [], params
    b_roots = {s["trace_id"] for s in project_b.spans if s["parent_span_id"] == ""}
    body = api(project_b.key).get("/traces", params={"limit": 500}).json()
    assert {row["trace_id"] for row in body["data"]} == b_roots


def test_trace_detail_and_session(api, project_a, project_b):
    b_trace = project_b.spans[0]["trace_id"]
    assert api(project_a.key).get(f"/traces/{b_trace}").status_code == 404
    assert api(project_b.key).get(f"/traces/{b_trace}").status_code == 200
    assert api(project_a.key).get("/sessions/sess_b_only").status_code == 404
    a_session = project_a.spans[0]["session_id"]
    assert api(project_b.key).get(f"/sessions/{a_session}").status_code == 404
    assert api(project_b.key).get(f"/traces/{project_a.spans[0]['trace_id']}").status_code == 404


def test_metrics(api, project_a, project_b):
    window = {"from": BASE.isoformat()}
    for params in B_FILTERS[:-1]:
        body = api(project_a.key).get("/metrics", params={"metric": "requests", **window, **params}).json()
        assert body["data"][0]["value"] == 0, params
    grouped = api(project_a.key).get("/metrics", params={"metric": "cost", "aggregation": "sum", "group_by": "model",
                                                          "limit": 1000, **window}).json()
    assert "model-b-only" not in {row["group"]["model"] for row in grouped["data"]}
    b_total = api(project_b.key).get("/metrics", params={"metric": "requests", "kind": "all", **window}).json()
    assert b_total["data"][0]["value"] == len(project_b.spans)
    score = api(project_a.key).get("/metrics", params={"metric": "score", "score_name": "b-secret-score", **window})
    assert score.json()["data"][0]["n"] == 0


def test_scores_summary(api, project_a, project_b):
    a_names = {row["name"] for row in api(project_a.key).get("/scores/summary").json()["data"]}
    assert "b-secret-score" not in a_names and {"helpfulness", "tone"} <= a_names
    b_rows = api(project_b.key).get("/scores/summary").json()["data"]
    assert [(r["name"], r["count"]) for r in b_rows] == [("b-secret-score", len(project_b.scores))]


def test_compare(api, project_a):
    body = api(project_a.key).post("/compare", json={"metric": "latency", "a": {"model": "model-b-only"},
                                                       "b": {"user_id": "user_b_only"}}).json()
    assert body["arms"]["a"]["n"] == 0 and body["arms"]["b"]["n"] == 0
    assert body["verdict"] == "insufficient_data"
    rate = api(project_a.key).post("/compare", json={"metric": "error_rate", "a": {"model": "model-b-only"},
                                                       "b": {"model": "model-b-only"}}).json()
    assert rate["arms"]["a"]["n"] == 0


def test_export(api, project_a, project_b):
    for params in B_FILTERS:
        resp = api(project_a.key).get("/export", params={"format": "jsonl", **params})
        assert resp.status_code == 200 and resp.content == b"", params
    resp = api(project_b.key).get("/export", params={"format": "parquet", "payloads": "true"})
    df = pl.read_parquet(io.BytesIO(resp.content))
    assert df.height == len(project_b.spans) and set(df["project_id"]) == {project_b.project_id}
    lines = api(project_b.key).get("/export", params={"format": "jsonl"}).content.splitlines()
    assert {orjson.loads(line)["project_id"] for line in lines} == {project_b.project_id}
