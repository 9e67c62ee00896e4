"""Every user value is a bound parameter: injection attempts in each filter are rejected (400) or
matched as plain literals; identifiers (sort, group_by, interval, …) only come from whitelists."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from tests.query.conftest import BASE, _span

NASTY = "o'brien\\'); DROP TABLE spans; -- {p0:String} %s"
ATTEMPTS = ["' OR '1'='1", "x') OR 1=1 --", "\\' OR 1=1 #", "{p0:String}", "{project:String}", "%(p0)s",
            "1; DROP TABLE spans", "' UNION SELECT name FROM system.tables --", "`model`", "model) OR (1=1"]
LIST_PARAMS = ["model", "provider", "name", "user_id", "session_id", "environment", "release", "kind",
               "prompt_name", "prompt_version", "trace_id", "tag", "q", "score_name"]


@pytest.fixture(scope="module")
def project_d(stack):
    project_id, key = stack.create_key()
    tid = uuid.uuid4().hex
    stack.insert_spans([_span(project_id, tid, uuid.uuid4().hex[:16], "", BASE + timedelta(hours=1), 10.0,
                              name="weird", kind="llm", model="m", user_id=NASTY, tags=[NASTY], input="in")])
    return {"key": key, "trace_id": tid}


def spans_table_intact(stack) -> bool:
    return stack.clickhouse.command("EXISTS TABLE spans") == 1


@pytest.mark.parametrize("param", LIST_PARAMS)
def test_list_filters_take_injection_as_literal(api, stack, project_a, project_d, param):
    for attempt in ATTEMPTS:
        for path, extra in (("/traces", {}), ("/metrics", {"metric": "requests", "from": BASE.isoformat()}),
                            ("/export", {"format": "jsonl"}), ("/scores/summary", {})):
            resp = api(project_a.key).get(path, params={**extra, param: attempt})
            assert resp.status_code in (200, 400), (path, param, attempt, resp.text)
            if resp.status_code == 200 and path == "/traces":
                assert resp.json()["data"] == []
            if resp.status_code == 200 and path == "/metrics":
                assert resp.json()["data"][0]["value"] == 0
            if resp.status_code == 200 and path == "/export":
                assert resp.content == b""
    assert spans_table_intact(stack)


def test_literal_with_sql_characters_matches_exactly(api, project_d):
    rows = api(project_d["key"]).get("/traces", params={"user_id": NASTY}).json()["data"]
    assert [r["trace_id"] for r in rows] == [project_d["trace_id"]]
    rows = api(project_d["key"]).get("/traces", params={"tag": NASTY}).json()["data"]
    assert len(rows) == 1
    assert api(project_d["key"]).get("/traces", params={"user_id": NASTY[:-1]}).json()["data"] == []
    grouped = api(project_d["key"]).get("/metrics", params={"metric": "requests", "group_by": "user_id",
                                                             "from": BASE.isoformat()}).json()
    assert grouped["data"][0]["group"]["user_id"] == NASTY


@pytest.mark.parametrize("path,params,name", [
    ("/traces", {"sort": "start_time; DROP TABLE spans"}, "sort"),
    ("/traces", {"order": "desc, (SELECT 1)"}, "order"),
    ("/traces", {"limit": "10 OR 1=1"}, "limit"),
    ("/traces", {"min_cost": "0 OR 1=1"}, "min_cost"),
    ("/traces", {"from": "2026-01-01' OR '1'='1"}, "from"),
    ("/traces", {"user_id": "a\x00b"}, "user_id"),
    ("/metrics", {"metric": "requests", "group_by": "user_id, (SELECT 1)"}, "group_by"),
    ("/metrics", {"metric": "latency); DROP TABLE spans; --"}, "metric"),
    ("/metrics", {"metric": "latency", "aggregation": "avg(duration_ms)) --"}, "aggregation"),
    ("/metrics", {"metric": "latency", "interval": "hour), 1"}, "interval"),
    ("/scores/summary", {"group_by": "name; --"}, "group_by"),
    ("/export", {"format": "csv; rm -rf /"}, "format"),
])
def test_identifiers_only_from_whitelists(api, stack, project_a, path, params, name):
    resp = api(project_a.key).get(path, params=params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"].startswith(f"{name}:")
    assert spans_table_intact(stack)


def test_path_and_body_injection(api, stack, project_a):
    for attempt in ATTEMPTS:
        assert api(project_a.key).get(f"/traces/{attempt.replace('/', '')}").status_code == 404
        assert api(project_a.key).get(f"/sessions/{attempt.replace('/', '')}").status_code == 404
        body = api(project_a.key).post("/compare", json={"metric": "latency", "a": {"model": attempt},
                                                           "b": {"user_id": attempt}})
        assert body.status_code == 200 and body.json()["arms"]["a"]["n"] == 0
    assert spans_table_intact(stack)
