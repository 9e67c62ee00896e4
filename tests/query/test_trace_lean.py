"""``GET /traces/{id}?view=lean``: the trace page's first answer (summary, scores, span fields as
columns) carries the same tree and the same numbers as the full answer, for a trace with nesting,
an orphan, a retried span (two versions), a call recorded twice, errors, tags and scores."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

import pytest

from core.span import DUPLICATE_OF
from query_api.trace_lean import LEAN_FIELDS
from tests.query.conftest import BASE, _score, _span, insert_scores


@pytest.fixture(scope="module")
def big_trace(stack):
    """One trace: a root, 3 agents with 40 tool / LLM calls each, an orphan, a retried span whose later
    version says something else, and an LLM call recorded twice (the copy points at the counted one)."""
    project_id, key = stack.create_key()
    tid, root = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    start = BASE + timedelta(hours=6)
    common = {"user_id": "lean-user", "session_id": "lean-session", "environment": "prod", "release": "r7"}
    spans = [_span(project_id, tid, root, "", start, 9000.0, name="root", kind="agent", input="the question",
                   output="the answer", tags=["vip"], **common)]
    for a in range(3):
        agent = uuid.uuid4().hex[:16]
        spans.append(_span(project_id, tid, agent, root, start + timedelta(milliseconds=10 + a), 3000.0,
                           name=f"agent-{a}", kind="agent", **common))
        for i in range(40):
            llm = i % 4 == 0
            spans.append(_span(
                project_id, tid, uuid.uuid4().hex[:16], agent, start + timedelta(milliseconds=20 + a * 3000 + i * 7),
                5.0 + i, name=f"step-{a}-{i}", kind="llm" if llm else "tool", model="m-lean" if llm else "",
                input_tokens=100 + i if llm else 0, output_tokens=i if llm else 0,
                cost=0.001 * (i + 1) if llm else None, cost_source="user" if llm else "",
                status="error" if i == 13 else "ok", status_message="boom" if i == 13 else "",
                tags=["t1"] if i == 5 else [], input=f"in {a}.{i}", output=f"out {a}.{i}", **common))
    counted = spans[-4]  # an LLM call (i = 36); its second record names it
    spans.append(dict(counted, span_id=uuid.uuid4().hex[:16], attributes={DUPLICATE_OF: counted["span_id"]},
                      start_time=counted["start_time"] + timedelta(microseconds=1)))
    spans.append(_span(project_id, tid, uuid.uuid4().hex[:16], "not-stored", start + timedelta(seconds=5), 1.0,
                       name="orphan", kind="tool", **common))
    retried = spans[7]
    stack.insert_spans([dict(s) for s in spans])
    stack.insert_spans([dict(retried, output="second version", ingested_at=retried["ingested_at"] + timedelta(seconds=3))])
    insert_scores(stack.clickhouse, [_score(project_id, tid, "quality", 0.75), _score(project_id, tid, "tone", None, "kind", data_type="categorical")])
    latest = {s["span_id"]: s for s in spans}
    latest[retried["span_id"]] = dict(retried, output="second version")
    return {"key": key, "trace_id": tid, "spans": list(latest.values())}


def lean_rows(body: dict) -> list[dict]:
    cols = body["span_columns"]
    assert set(cols) == set(LEAN_FIELDS)
    return [{f: cols[f][i] for f in LEAN_FIELDS} for i in range(len(cols["span_id"]))]


def nest(rows: list[dict]) -> list[dict]:
    """The tree from parent ids, as a client builds it (orphans become roots), rows in the given order."""
    nodes = {r["span_id"]: dict(r, children=[]) for r in rows}
    roots = []
    for r in rows:
        parent = nodes.get(r["parent_span_id"])
        (parent["children"] if parent else roots).append(nodes[r["span_id"]])
    return roots


def project(tree: list[dict]) -> list[dict]:
    return [dict({f: s[f] for f in LEAN_FIELDS}, children=project(s["children"])) for s in tree]


def test_lean_tree_equals_full_tree(api, big_trace):
    client = api(big_trace["key"])
    full = client.get(f"/traces/{big_trace['trace_id']}", params={"payloads": "false"}).json()
    resp = client.get(f"/traces/{big_trace['trace_id']}", params={"view": "lean"})
    assert resp.status_code == 200, resp.text
    lean = resp.json()
    rows = lean_rows(lean)
    assert len(rows) == len(big_trace["spans"]) == 126  # the retried span once
    assert nest(rows) == project(full["spans"])
    assert {k: v for k, v in lean.items() if k != "span_columns"} == {k: v for k, v in full.items() if k != "spans"}
    by_id = {r["span_id"]: r for r in rows}
    assert any(r["output_preview"] == "second version" for r in rows)  # the later version wins
    assert [r["name"] for r in nest(rows)] == ["root", "orphan"]
    assert by_id[big_trace["spans"][0]["span_id"]]["input_preview"] == "the question"


def test_lean_numbers_equal_an_independent_count(api, big_trace):
    lean = api(big_trace["key"]).get(f"/traces/{big_trace['trace_id']}", params={"view": "lean"}).json()
    spans = big_trace["spans"]
    once = [s for s in spans if DUPLICATE_OF not in (s.get("attributes") or {})]
    assert lean["span_count"] == len(spans) and lean["error_count"] == sum(s["status"] == "error" for s in spans)
    assert lean["input_tokens"] == sum(s.get("input_tokens", 0) for s in once)
    assert lean["output_tokens"] == sum(s.get("output_tokens", 0) for s in once)
    assert math.isclose(lean["cost"], math.fsum(s["cost"] for s in once if s.get("cost") is not None), rel_tol=1e-12)
    assert lean["status"] == "error" and lean["tags"] == ["t1", "vip"] and lean["models"] == ["m-lean"]
    assert lean["user_id"] == "lean-user" and lean["name"] == "root"
    assert sorted(s["name"] for s in lean["scores"]) == ["quality", "tone"]
    # start order, then span id; times as the full answer writes them
    rows = lean_rows(lean)
    order = [(datetime.fromisoformat(r["start_time"]), r["span_id"]) for r in rows]
    assert order == sorted(order)
    root = next(s for s in spans if s["name"] == "root")
    assert rows[0]["start_time"] == root["start_time"].isoformat().replace("+00:00", "Z")


def test_lean_bad_parameters_unknown_trace_other_project(api, stack, big_trace):
    client = api(big_trace["key"])
    url = f"/traces/{big_trace['trace_id']}"
    for params, name in [({"view": "thin"}, "view"), ({"view": "lean", "payloads": "true"}, "payloads")]:
        resp = client.get(url, params=params)
        assert resp.status_code == 400 and resp.json()["error"].startswith(f"{name}:"), resp.text
    assert client.get(f"/traces/{uuid.uuid4().hex}", params={"view": "lean"}).status_code == 404
    _, other_key = stack.create_key()  # another project's key does not see it
    assert api(other_key).get(url, params={"view": "lean"}).status_code == 404
