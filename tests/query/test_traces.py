"""Trace list (filters, sort, cursor pages), trace detail (tree, offloaded payloads, events, scores)
and sessions, on a small project whose every trace is known."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from query_api.traces_sql import encode_cursor
from tests.query.conftest import BASE, _score, _span, insert_scores

BIG = "x" * 10_000 + " the end"  # larger than the stack's 4096-byte offload threshold


@pytest.fixture(scope="module")
def project_c(stack):
    """20 traces: t=0..19, root + one LLM child; attributes vary with t so filters are checkable."""
    project_id, key = stack.create_key()
    spans, traces = [], []
    for t in range(20):
        tid, root = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        start = BASE + timedelta(minutes=7 * t)
        common = {"user_id": f"u{t % 3}", "session_id": "s-main" if t < 8 else f"s-{t}",
                  "environment": "prod" if t % 2 else "dev", "release": "r1" if t < 10 else "r2",
                  "tags": ["vip"] if t % 5 == 0 else []}
        spans.append(_span(project_id, tid, root, "", start, 1000.0 + 100 * t, name=f"root-{t}", kind="agent",
                           input=BIG if t == 3 else f"hello {t}", output=f"world {t}",
                           events=orjson.dumps([{"name": "retry", "time": "2026-01-01T00:00:00Z",
                                                  "attributes": {"n": t}}]).decode(), **common))
        spans.append(_span(project_id, tid, uuid.uuid4().hex[:16], root, start + timedelta(milliseconds=5),
                           500.0, name="call", kind="llm", model="m-big" if t >= 15 else "m-small",
                           cost=0.01 * (t + 1), cost_source="user", input_tokens=10 * t, output_tokens=t,
                           status="error" if t in (4, 9) else "ok",
                           attributes={"http.route": "/x", "version": "9.10", "id": "12345678901234567890123",
                                       "flag": "false", "meta": '{"a": [1, 2]}'}, **common))
        traces.append({"trace_id": tid, "t": t, "start": start, "cost": 0.01 * (t + 1)})
    stack.insert_spans([dict(s) for s in spans])
    insert_scores(stack.clickhouse, [_score(project_id, traces[t]["trace_id"], "quality", t / 20) for t in range(20)])
    return {"project_id": project_id, "key": key, "traces": traces, "spans": spans}


def all_pages(api, key, **params):
    ids, cursor, pages = [], None, 0
    while True:
        resp = api(key).get("/traces", params={**params, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        ids += [row["trace_id"] for row in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            return ids, pages


def ts(c, *which):
    return [c["traces"][t]["trace_id"] for t in which]


def test_list_pages_newest_first_each_once(api, project_c):
    ids, pages = all_pages(api, project_c["key"], limit=6)
    assert ids == ts(project_c, *reversed(range(20)))
    assert pages == 4
    asc, _ = all_pages(api, project_c["key"], limit=7, order="asc")
    assert asc == ts(project_c, *range(20))


def test_list_row_contents(api, project_c):
    row = api(project_c["key"]).get("/traces", params={"limit": 1}).json()["data"][0]
    assert row["trace_id"] == project_c["traces"][19]["trace_id"]
    assert row["name"] == "root-19"
    assert row["duration_ms"] == pytest.approx(1000 + 1900)
    assert row["cost"] == pytest.approx(0.2)
    assert (row["input_tokens"], row["output_tokens"], row["span_count"]) == (190, 19, 2)
    assert row["status"] == "ok" and row["models"] == ["m-big"]
    assert [s["name"] for s in row["scores"]] == ["quality"]
    assert row["scores"][0]["value"] == pytest.approx(19 / 20)
    assert row["start_time"] == (BASE + timedelta(minutes=7 * 19)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("params,expected", [
    ({"model": "m-big"}, range(15, 20)),
    ({"model": ["m-big", "m-small"]}, range(20)),
    ({"status": "error"}, (4, 9)),
    ({"status": "ok"}, [t for t in range(20) if t not in (4, 9)]),
    ({"status": "error", "model": "m-small"}, (4, 9)),
    ({"model": "m-big", "min_cost": 0.185}, (18, 19)),
    ({"user_id": "u1"}, range(1, 20, 3)),
    ({"session_id": "s-main"}, range(8)),
    ({"tag": "vip"}, (0, 5, 10, 15)),
    ({"environment": "dev", "release": "r2"}, (10, 12, 14, 16, 18)),
    ({"name": "root-7"}, (7,)),
    ({"min_latency_ms": 2000, "max_latency_ms": 2200}, (10, 11, 12)),
    ({"min_cost": 0.185}, (18, 19)),
    ({"q": "HELLO 1"}, (1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)),
    ({"score_name": "quality", "min_score": 0.9}, (18, 19)),
    ({"from": (BASE + timedelta(minutes=14)).isoformat(), "to": (BASE + timedelta(minutes=28)).isoformat()}, (2, 3)),
])
def test_list_filters(api, project_c, params, expected):
    ids, _ = all_pages(api, project_c["key"], limit=50, **params)
    assert sorted(ids) == sorted(ts(project_c, *expected))


@pytest.mark.parametrize("sort,top", [("cost", 19), ("duration_ms", 19), ("total_tokens", 19)])
def test_list_sorts_with_cursor(api, project_c, sort, top):
    ids, pages = all_pages(api, project_c["key"], sort=sort, limit=3)
    assert ids == ts(project_c, *reversed(range(20))) and pages == 7
    asc, _ = all_pages(api, project_c["key"], sort=sort, order="asc", limit=8)
    assert asc == ts(project_c, *range(20))


def test_bad_list_parameters(api, project_c):
    for params, name in [({"sort": "name; DROP TABLE spans"}, "sort"), ({"limit": "1000"}, "limit"),
                         ({"cursor": "garbage!!"}, "cursor"), ({"order": "sideways"}, "order"),
                         ({"cursor": encode_cursor(2**63, "x")}, "cursor"), ({"from": "99999999999999"}, "from"),
                         ({"limit": ""}, "limit"), ({"min_cost": "1e400"}, "min_cost")]:
        resp = api(project_c["key"]).get("/traces", params=params)
        assert resp.status_code == 400 and resp.json()["error"].startswith(f"{name}:"), resp.text


def test_trace_detail_tree_payloads_events_scores(api, project_c):
    trace = project_c["traces"][3]
    resp = api(project_c["key"]).get(f"/traces/{trace['trace_id']}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["spans"]) == 1
    root = body["spans"][0]
    assert root["name"] == "root-3" and root["input"] == BIG  # offloaded to the blob store and back
    assert root["input_ref"]
    assert root["events"][0]["name"] == "retry" and root["events"][0]["attributes"] == {"n": 3}
    [child] = root["children"]
    assert child["model"] == "m-small" and child["cost"] == pytest.approx(0.04)
    # attributes keep the text they were sent with; only JSON objects / arrays come back structured
    assert child["attributes"] == {"http.route": "/x", "version": "9.10", "id": "12345678901234567890123",
                                   "flag": "false", "meta": {"a": [1, 2]}}
    assert body["scores"][0]["name"] == "quality"
    assert body["cost"] == pytest.approx(0.04)


def test_unknown_trace_is_404(api, project_c):
    assert api(project_c["key"]).get(f"/traces/{uuid.uuid4().hex}").status_code == 404
    assert api(project_c["key"]).get("/traces/" + "a" * 300).status_code == 404


def test_session_in_order_with_rollups(api, project_c):
    resp = api(project_c["key"]).get("/sessions/s-main")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [t["trace_id"] for t in body["traces"]] == ts(project_c, *range(8))
    roll = body["rollup"]
    assert roll["trace_count"] == 8 and roll["span_count"] == 16 and roll["error_count"] == 1
    assert roll["cost"] == pytest.approx(sum(0.01 * (t + 1) for t in range(8)))
    assert roll["input_tokens"] == sum(10 * t for t in range(8))
    paged = api(project_c["key"]).get("/sessions/s-main", params={"limit": 3}).json()
    assert len(paged["traces"]) == 3 and paged["next_cursor"]
    rest = api(project_c["key"]).get("/sessions/s-main", params={"limit": 10, "cursor": paged["next_cursor"]}).json()
    assert [t["trace_id"] for t in paged["traces"] + rest["traces"]] == ts(project_c, *range(8))
    assert api(project_c["key"]).get("/sessions/no-such-session").status_code == 404


def test_requires_api_key(stack):
    assert stack.client.get("/api/v1/traces").status_code == 401
    assert stack.client.get("/api/v1/traces", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_list_reaches_traces_older_than_lookback_windows(api, stack):
    project_id, key = stack.create_key()
    old = datetime.now(timezone.utc) - timedelta(days=90)
    recent = datetime.now(timezone.utc) - timedelta(hours=1)
    ids = [uuid.uuid4().hex for _ in range(3)]
    stack.insert_spans([_span(project_id, tid, uuid.uuid4().hex[:16], "", at, 10.0, name="r", kind="agent")
                        for tid, at in zip(ids, (old, old + timedelta(days=40), recent))])
    ids_seen, _ = all_pages(api, key, limit=1)
    assert ids_seen == [ids[2], ids[1], ids[0]]
