"""A span written twice (a client retry that slipped past the processor) counts once in every read
of the spans table (ReplacingMergeTree + FINAL), before any background merge."""

from __future__ import annotations

import uuid
from datetime import timedelta

from tests.query.conftest import BASE, _span


def test_duplicate_span_counted_once(api, stack):
    project_id, key = stack.create_key()
    tid, root = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    spans = [_span(project_id, tid, root, "", BASE + timedelta(hours=2), 100.0, name="r", kind="agent",
                   session_id="dup-session"),
             _span(project_id, tid, uuid.uuid4().hex[:16], root, BASE + timedelta(hours=2), 50.0, name="c",
                   kind="llm", model="m", cost=0.25, cost_source="user", session_id="dup-session")]
    stack.insert_spans([dict(s) for s in spans])
    stack.insert_spans([dict(s) for s in spans])  # second part, same identities
    detail = api(key).get(f"/traces/{tid}").json()
    assert len(detail["spans"]) == 1 and len(detail["spans"][0]["children"]) == 1
    [row] = api(key).get("/traces").json()["data"]
    assert row["span_count"] == 2 and row["cost"] == 0.25
    session = api(key).get("/sessions/dup-session").json()
    assert session["rollup"]["span_count"] == 2 and session["rollup"]["cost"] == 0.25
    p50 = api(key).get("/metrics", params={"metric": "latency", "aggregation": "p50", "kind": "all",
                                           "from": BASE.isoformat()}).json()
    assert p50["source"] == "spans" and p50["data"][0]["n"] == 2
    export = api(key).get("/export", params={"format": "jsonl"}).content.splitlines()
    assert len(export) == 2


def test_trace_detail_shows_latest_version_of_a_span(api, stack):
    """The detail read collapses versions itself (no FINAL): the greatest ingested_at wins, as in merges."""
    project_id, key = stack.create_key()
    tid, root = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    first = _span(project_id, tid, root, "", BASE + timedelta(hours=3), 100.0, name="r", kind="agent", output="v1")
    later = dict(first, output="v2", ingested_at=first["ingested_at"] + timedelta(seconds=5))
    stack.insert_spans([dict(later)])
    stack.insert_spans([dict(first)])  # the older version arrives last
    [span] = api(key).get(f"/traces/{tid}").json()["spans"]
    assert span["output"] == "v2"
    final = stack.clickhouse.query("SELECT output FROM spans FINAL WHERE project_id = {p:String}",
                                   parameters={"p": project_id}).result_rows
    assert final == [("v2",)]  # the same answer as FINAL
