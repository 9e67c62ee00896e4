"""Server-side experiments through the real app and its background experiment worker: exact accuracy
against two stub models (OpenAI and Anthropic wire protocols), traces, cost, compare, cancel, benchmarks,
bad input."""

from __future__ import annotations

import json
import re
import time

import pytest
from scipy import stats

from core.pricing import Usage, compute_call_cost

from .fake_llm import FakeLLMServer

PAIRS = [(3 + (i * 7) % 41, 5 + (i * 11) % 37) for i in range(50)]
TEMPLATE = [{"role": "system", "content": "Answer with the number only."},
            {"role": "user", "content": "What is {{input.a}} plus {{input.b}}?"}]


def weak_is_right(a: int, b: int) -> bool:
    return a % 3 != 0


def stub_answer(body: dict) -> str:
    """'gpt-4o-mini' always adds right; 'claude-3-5-haiku' is wrong whenever a is a multiple of 3."""
    a, b = map(int, re.findall(r"\d+", body["messages"][-1]["content"]))
    right = body["model"].startswith("gpt") or weak_is_right(a, b)
    return str(a + b if right else a + b + 1)


@pytest.fixture
def stub():
    server = FakeLLMServer().start()
    server.responder = stub_answer
    yield server
    server.stop()


def wait_for(stack, key, experiment_id, statuses=("completed",), timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        exp = stack.client.get(f"/api/v1/experiments/{experiment_id}", headers=stack.headers(key)).json()
        if exp["status"] in statuses:
            return exp
        assert exp["status"] not in ("failed",), exp
        assert time.monotonic() < deadline, f"experiment still {exp['status']}: {exp['progress']}"
        time.sleep(0.1)


def make_dataset(stack, key, pairs=PAIRS) -> str:
    r = stack.client.post("/api/v1/datasets", headers=stack.headers(key), json={
        "name": f"sums-{len(pairs)}", "items": [{"input": {"a": a, "b": b}, "expected_output": str(a + b)} for a, b in pairs]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def run(stack, key, dataset_id, provider, model, base_url, **extra) -> str:
    r = stack.client.post("/api/v1/experiments", headers=stack.headers(key), json={
        "name": f"{model}", "dataset_id": dataset_id, "evaluators": [{"evaluator": "exact_match"}],
        "target": {"provider": provider, "model": model, "base_url": base_url, "messages": TEMPLATE}, **extra})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "queued" and r.json()["total"] == 50 * extra.get("repetitions", 1)
    return r.json()["id"]


def test_two_stub_models_get_their_exact_accuracy_cost_traces_and_a_significance_test(stack, stub):
    project_id, key = stack.create_key()
    h = stack.headers(key)
    dataset_id = make_dataset(stack, key)
    good = run(stack, key, dataset_id, "openai", "gpt-4o-mini", stub.openai_base_url, max_concurrency=8)
    weak = run(stack, key, dataset_id, "anthropic", "claude-3-5-haiku", stub.anthropic_base_url, repetitions=2)
    expected_weak = sum(weak_is_right(a, b) for a, b in PAIRS) / len(PAIRS)
    assert 0 < expected_weak < 1

    g, w = wait_for(stack, key, good), wait_for(stack, key, weak)
    assert g["progress"] == {"done": 50, "total": 50} and w["progress"] == {"done": 100, "total": 100}
    assert g["summary"]["scores"]["exact_match"]["mean"] == 1.0
    assert g["summary"]["scores"]["exact_match"]["n"] == 50
    ws = w["summary"]["scores"]["exact_match"]
    assert (ws["mean"], ws["pass_rate"], ws["n"]) == (expected_weak, expected_weak, 100)
    assert ws["ci_low"] <= expected_weak <= ws["ci_high"]
    assert w["summary"]["consistency"] == {"items": 50, "identical_outputs": 1.0, "scores": {"exact_match": 1.0}}
    assert g["summary"]["error_rate"] == 0 and g["summary"]["tokens"]["total"] == 50 * (120 + 30)
    # cost: the fake reports 120 input / 30 output tokens a call; gpt-4o-mini costs $0.15 / $0.60 per 1M
    assert g["summary"]["cost"]["total"] == pytest.approx(50 * (120 * 0.15 + 30 * 0.6) / 1e6, rel=1e-9)
    haiku = compute_call_cost("anthropic", "claude-3-5-haiku", None, Usage(120, 30)).cost
    assert w["summary"]["cost"]["total"] == pytest.approx(100 * haiku, rel=1e-9)
    assert g["dataset_version"] == 1
    listed = stack.client.get("/api/v1/experiments", headers=h, params={"dataset_id": dataset_id}).json()["experiments"]
    assert [(e["id"], e["progress"]) for e in listed] == [(weak, {"done": 100, "total": 100}), (good, {"done": 50, "total": 50})]
    assert stack.client.get("/api/v1/experiments", headers=h, params={"dataset_id": "other"}).json()["experiments"] == []
    # the stubs saw both wire protocols and the rendered template
    paths = {r.path for r in stub.requests}
    assert paths == {"/v1/chat/completions", "/v1/messages"}
    assert any(r.body["messages"][-1]["content"] == f"What is {PAIRS[0][0]} plus {PAIRS[0][1]}?" for r in stub.requests)
    assert all(r.body.get("system") == "Answer with the number only." for r in stub.requests if r.path == "/v1/messages")

    items = stack.client.get(f"/api/v1/experiments/{weak}/items", headers=h).json()["items"]
    assert len(items) == 100 and len({(i["item_id"], i["repetition"]) for i in items}) == 100
    first = items[0]
    assert first["scores"][0]["name"] == "exact_match" and first["scores"][0]["reason"]
    assert first["latency_ms"] > 0 and first["input_tokens"] == 120 and first["trace_id"]

    # every item run is a trace: root span + the model call under it, tagged with experiment and item
    deadline = time.monotonic() + 30
    while True:
        rows = stack.clickhouse.query(
            "SELECT name, kind, parent_span_id, span_id, attributes['evalforge.experiment_id'], "
            "attributes['evalforge.dataset_item_id'], model FROM spans FINAL WHERE project_id = {p:String} "
            "AND trace_id = {t:String} ORDER BY parent_span_id", parameters={"p": project_id, "t": first["trace_id"]}).result_rows
        if len(rows) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(rows) == 2, rows
    root, call = rows
    assert (root[1], root[2], call[1], call[2], call[6]) == ("chain", "", "llm", root[3], "claude-3-5-haiku")
    assert root[4] == weak and call[5] == first["item_id"]

    # compare: exact McNemar on the per-item verdicts equals scipy's
    cmp = stack.client.post("/api/v1/experiments/compare", headers=h, json={"experiment_ids": [good, weak]})
    assert cmp.status_code == 200, cmp.text
    m = cmp.json()["comparisons"][0]["metrics"]["exact_match"]
    regressed = sum(1 for a, b in PAIRS if not weak_is_right(a, b))
    assert (m["regressed"], m["improved"], m["mcnemar"]["base_only"], m["mcnemar"]["other_only"]) == (regressed, 0, regressed, 0)
    assert m["p_value"] == stats.binomtest(0, regressed, 0.5).pvalue
    assert m["delta"] == pytest.approx(expected_weak - 1.0)
    assert len(cmp.json()["items"]) == 50


def test_results_are_priced_with_the_projects_own_prices(stack, stub):
    """A project that set its own price for the target model sees results costed with it (as its spans are)."""
    _, key = stack.create_key()
    h = stack.headers(key)
    put = stack.client.put("/api/v1/model-prices", headers=h, json={
        "provider": "openai", "model": "gpt-4o-mini", "prices": {"input": 2.0, "output": 8.0}})
    assert put.status_code == 200, put.text
    dataset_id = make_dataset(stack, key)
    exp = wait_for(stack, key, run(stack, key, dataset_id, "openai", "gpt-4o-mini", stub.openai_base_url))
    # 50 calls of 120 input / 30 output tokens at $2 / $8 per 1M (the shipped price is $0.15 / $0.60)
    assert exp["summary"]["cost"]["total"] == pytest.approx(50 * (120 * 2.0 + 30 * 8.0) / 1e6, rel=1e-9)
    items = stack.client.get(f"/api/v1/experiments/{exp['id']}/items", headers=h).json()["items"]
    assert len(items) == 50 and all(i["cost"] == pytest.approx((120 * 2.0 + 30 * 8.0) / 1e6, rel=1e-9) for i in items)


def test_cancel_stops_a_running_experiment(stack, stub):
    _, key = stack.create_key()
    stub.delay_s = 0.1
    experiment_id = run(stack, key, make_dataset(stack, key), "openai", "gpt-4o-mini", stub.openai_base_url,
                        max_concurrency=2)
    wait_for(stack, key, experiment_id, statuses=("running",))
    deadline = time.monotonic() + 30
    while stack.client.get(f"/api/v1/experiments/{experiment_id}", headers=stack.headers(key)).json()["progress"]["done"] < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = stack.client.post(f"/api/v1/experiments/{experiment_id}/cancel", headers=stack.headers(key))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    time.sleep(1.0)  # in-flight calls finish; no new ones start
    sent = len(stub.requests)
    time.sleep(1.0)
    assert len(stub.requests) == sent
    exp = stack.client.get(f"/api/v1/experiments/{experiment_id}", headers=stack.headers(key)).json()
    assert exp["status"] == "cancelled" and exp["progress"]["done"] < 50
    assert stack.client.post(f"/api/v1/experiments/{experiment_id}/cancel", headers=stack.headers(key)).status_code == 409


def test_a_benchmark_run_and_provider_errors_retried(stack, stub):
    _, key = stack.create_key()
    from .fake_llm import Reply

    stub.script = [Reply(status=429, headers={"retry-after": "0"}), Reply(status=503)]  # then the responder
    r = stack.client.post("/api/v1/experiments", headers=stack.headers(key), json={
        "name": "arith", "benchmark": "arithmetic", "limit": 12, "seed": 3, "subset": "addition",
        "target": {"model": "gpt-4o-mini", "base_url": stub.openai_base_url}, "max_concurrency": 1})
    assert r.status_code == 201, r.text
    exp = wait_for(stack, key, r.json()["id"])
    assert exp["summary"]["scores"]["accuracy"]["mean"] == 1.0 and exp["summary"]["errors"] == 0
    assert exp["progress"] == {"done": 12, "total": 12}
    assert len(stub.requests) == 14  # two retried failures
    assert exp["benchmark"] == {"name": "arithmetic", "limit": 12, "seed": 3, "subset": "addition"}
    cheap = stack.client.get(f"/api/v1/experiments/{r.json()['id']}", headers=stack.headers(key), params={"ci": "false"})
    assert cheap.json()["summary"]["scores"]["accuracy"] == {"mean": 1.0, "ci_low": None, "ci_high": None, "n": 12,
                                                             "pass_rate": 1.0}
    listed = stack.client.get("/api/v1/benchmarks", headers=stack.headers(key)).json()["benchmarks"]
    arithmetic = next(b for b in listed if b["name"] == "arithmetic")
    assert (arithmetic["items"], arithmetic["metric"], arithmetic["license"]) == (300, "accuracy", "Apache-2.0")


def test_a_provider_that_keeps_failing_gives_error_results_not_a_failed_run(stack, stub):
    _, key = stack.create_key()
    stub.responder = None  # every call answers 500
    r = stack.client.post("/api/v1/experiments", headers=stack.headers(key), json={
        "name": "down", "benchmark": "arithmetic", "limit": 3,
        "target": {"model": "gpt-4o-mini", "base_url": stub.openai_base_url, "max_retries": 1}})
    exp = wait_for(stack, key, r.json()["id"])
    assert exp["summary"]["error_rate"] == 1.0 and exp["summary"]["scores"] == {}
    items = stack.client.get(f"/api/v1/experiments/{r.json()['id']}/items", headers=stack.headers(key)).json()["items"]
    assert all(i["error"].startswith("HTTP 500") for i in items)


def test_bad_experiments_are_refused_naming_the_field(stack, stub):
    _, key = stack.create_key()
    h = stack.headers(key)
    dataset_id = make_dataset(stack, key, PAIRS[:3])
    target = {"model": "gpt-4o-mini", "base_url": stub.openai_base_url, "messages": TEMPLATE}

    def post(**body):
        r = stack.client.post("/api/v1/experiments", headers=h, json={"name": "x", **body})
        return r.status_code, r.json().get("error", "")

    assert post(target=target) == (400, "dataset_id: give exactly one of dataset_id and benchmark")
    assert post(dataset_id=dataset_id, benchmark="arithmetic", target=target)[1].startswith("dataset_id:")
    code, err = post(benchmark="no-such-bench", target=target)
    assert code == 400 and err.startswith("benchmark: unknown benchmark 'no-such-bench'")
    code, err = post(dataset_id=dataset_id, target=target, evaluators=[{"evaluator": "nope"}])
    assert code == 400 and err.startswith("evaluators[0].evaluator: unknown evaluator 'nope'")
    code, err = post(dataset_id=dataset_id, target={**target, "base_url": "http://169.254.169.254/v1"})
    assert code == 400 and err.startswith("target.base_url:")
    code, err = post(dataset_id=dataset_id, target={**target, "messages": [{"role": "user", "content": "{{input.c}}"}]})
    assert code == 400 and err.startswith("target.messages: template variable 'input.c'")
    code, err = post(dataset_id=dataset_id, dataset_version=9, target=target)
    assert code == 400 and err.startswith("dataset_version:")
    assert post(dataset_id=dataset_id, target=target, repetitions=0)[1].startswith("repetitions:")
    _, other = stack.create_key()
    assert stack.client.post("/api/v1/experiments", headers=stack.headers(other), json={
        "name": "x", "dataset_id": dataset_id, "target": target}).status_code == 404
    a = stack.client.post("/api/v1/experiments", headers=h, json={"name": "a", "dataset_id": dataset_id}).json()["id"]
    b = stack.client.post("/api/v1/experiments", headers=h, json={"name": "b", "benchmark": "arithmetic", "limit": 3}).json()["id"]
    r = stack.client.post("/api/v1/experiments/compare", headers=h, json={"experiment_ids": [a, b]})
    assert r.status_code == 400 and r.json()["error"].startswith("experiment_ids[1]: ran on other items")
    assert stack.client.post("/api/v1/experiments/compare", headers=h, json={"experiment_ids": [a]}).status_code == 400
    assert stack.client.get(f"/api/v1/experiments/{a}", headers=stack.headers(other)).status_code == 404
    assert stack.client.post(f"/api/v1/experiments/{a}/cancel", headers=stack.headers(other)).status_code == 404


def test_an_llm_judge_scores_each_item_and_its_calls_are_recorded(stack, stub):
    project_id, key = stack.create_key()
    stub.responder = lambda body: ('{"score": 4, "reasoning": "clear and correct"}' if body["model"] == "judge-model"
                                   else stub_answer(body))
    r = stack.client.post("/api/v1/experiments", headers=stack.headers(key), json={
        "name": "judged", "benchmark": "arithmetic", "subset": "addition", "limit": 4, "seed": 9,
        "target": {"model": "gpt-4o-mini", "base_url": stub.openai_base_url},
        "evaluators": [{"evaluator": "llm_judge", "config": {"model": "judge-model", "base_url": stub.openai_base_url,
                                                             "rubric": "helpfulness", "max_retries": 0}}]})
    assert r.status_code == 201, r.text
    exp = wait_for(stack, key, r.json()["id"])
    assert exp["summary"]["scores"]["accuracy"]["mean"] == 1.0
    judge = exp["summary"]["scores"]["llm_judge"]
    assert (judge["mean"], judge["n"]) == (4.0, 4)
    items = stack.client.get(f"/api/v1/experiments/{r.json()['id']}/items", headers=stack.headers(key)).json()["items"]
    assert {s["reason"] for i in items for s in i["scores"] if s["name"] == "llm_judge"} == {"clear and correct"}
    deadline = time.monotonic() + 30
    while True:
        judged = stack.clickhouse.query(
            "SELECT attributes['evalforge.evaluated.trace_id'] FROM spans FINAL WHERE project_id = {p:String} "
            "AND kind = 'evaluator'", parameters={"p": project_id}).result_rows
        if len(judged) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(t for (t,) in judged) == sorted(i["trace_id"] for i in items)


def test_client_side_results_keep_the_good_rows_and_name_the_bad(stack):
    _, key = stack.create_key()
    h = stack.headers(key)
    dataset_id = make_dataset(stack, key, PAIRS[:2])
    exp = stack.client.post("/api/v1/experiments", headers=h, json={"name": "client", "dataset_id": dataset_id,
                                                                     "repetitions": 2}).json()
    assert exp["kind"] == "client" and exp["status"] == "running" and len(exp["items"]) == 2
    first, second = (i["id"] for i in exp["items"])
    rows = [{"item_id": first, "repetition": 0, "output": "5", "scores": [{"name": "ok", "value": 1, "passed": True}]},
            {"item_id": "not-an-item", "repetition": 0},
            {"item_id": first, "repetition": 2},
            {"item_id": second, "repetition": 0, "scores": [{"name": "ok", "value": "high"}]},
            {"item_id": second, "repetition": 1, "output": float("nan")},
            {"item_id": second, "repetition": 0, "latency_ms": -1},
            {"item_id": second, "repetition": 0, "cost": float("inf")}]
    # Python's JSON parser takes NaN / Infinity literals, which PostgreSQL cannot store
    r = stack.client.post(f"/api/v1/experiments/{exp['id']}/results", content=json.dumps({"results": rows}),
                          headers={**h, "content-type": "application/json"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["inserted"]) == (1, 1)
    assert [e["error"].split(":")[0] for e in body["rejected"]] == [
        "results[1].item_id", "results[2].repetition", "results[3].scores[0].value", "results[4].output",
        "results[5].latency_ms", "results[6].cost"]
    again = stack.client.post(f"/api/v1/experiments/{exp['id']}/results", headers=h, json={"results": rows[:1]}).json()
    assert (again["accepted"], again["inserted"]) == (1, 0)  # a retried upload counts once
    assert stack.client.post("/api/v1/experiments", headers=h, json={
        "name": "bad\x00name", "dataset_id": dataset_id}).json()["error"].startswith("name: must not contain a NUL")
    assert stack.client.post(f"/api/v1/experiments/{exp['id']}/finish", headers=h, json={}).json()["status"] == "completed"
    got = stack.client.get(f"/api/v1/experiments/{exp['id']}", headers=h).json()
    assert got["status"] == "completed" and got["progress"] == {"done": 1, "total": 4}
    assert stack.client.post(f"/api/v1/experiments/{exp['id']}/results", headers=h,
                             json={"results": rows[:1]}).status_code == 409


def test_client_run_usage_counts_a_call_recorded_twice_once_and_a_summarised_list_reads_clickhouse_once(stack, monkeypatch):
    """Tokens and cost of a client-side run come from its traces' model-call spans; the second record of
    one call (ingest.duplicates) does not count, and listing many runs with summaries is one span query."""
    import uuid
    from datetime import datetime, timezone

    from core.span import DUPLICATE_OF
    from tests.query.conftest import _span

    project_id, key = stack.create_key()
    h = stack.headers(key)
    dataset_id = make_dataset(stack, key, PAIRS[:2])
    spans, runs = [], []
    for n in range(3):
        exp = stack.client.post("/api/v1/experiments", headers=h, json={"name": f"client-{n}", "dataset_id": dataset_id}).json()
        results = []
        for i, item in enumerate(exp["items"]):
            tid, root = uuid.uuid4().hex, uuid.uuid4().hex[:16]
            start = datetime.now(timezone.utc)
            call = _span(project_id, tid, uuid.uuid4().hex[:16], root, start, 50.0, name="chat", kind="llm", model="m-usage",
                         input_tokens=100 + i, output_tokens=10 + n, cost=0.25 * (n + 1), cost_source="user")
            # the same call's second record (another instrumentor), marked by ingest as a duplicate of the first
            copy = dict(call, span_id=uuid.uuid4().hex[:16], attributes={DUPLICATE_OF: call["span_id"]})
            spans += [_span(project_id, tid, root, "", start, 60.0, name="agent", kind="agent"), call, copy]
            results.append({"item_id": item["id"], "output": "x", "trace_id": tid, "scores": [{"name": "ok", "value": 1.0}]})
        assert stack.client.post(f"/api/v1/experiments/{exp['id']}/results", headers=h, json={"results": results}).status_code == 202
        assert stack.client.post(f"/api/v1/experiments/{exp['id']}/finish", headers=h, json={}).status_code == 200
        runs.append(exp["id"])
    stack.insert_spans(spans)

    items = stack.client.get(f"/api/v1/experiments/{runs[0]}/items", headers=h).json()["items"]
    assert sorted((r["input_tokens"], r["output_tokens"], r["cost"]) for r in items) == [(100, 10, 0.25), (101, 10, 0.25)]

    clickhouse = stack.services.clickhouse
    real_query, usage_queries = clickhouse.query, []

    def query(*args, **kwargs):
        sql, params = args[0] if args else kwargs.get("query", ""), kwargs.get("parameters") or {}
        if "trace_id IN {t:Array(String)}" in sql and params.get("p") == project_id:
            usage_queries.append(sql)
        return real_query(*args, **kwargs)

    monkeypatch.setattr(clickhouse, "query", query)
    listed = stack.client.get("/api/v1/experiments", headers=h, params={"summary": "true"}).json()["experiments"]
    assert {e["id"]: e["cost"] for e in listed} == {runs[n]: pytest.approx(2 * 0.25 * (n + 1)) for n in range(3)}
    assert len(usage_queries) == 1
