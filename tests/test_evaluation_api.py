"""Human review queue, judge agreement, criteria proposal and synthetic datasets through the real app."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from evaluators.agreement import agreement
from evaluators.base import Score
from tests.processors.conftest import make_span
from tests.waiting import wait_until


def _wait(predicate, timeout: float = 20.0):
    return wait_until(predicate, timeout)


def test_review_queue_lists_spans_without_a_human_score(stack):
    project_id, key = stack.create_key()
    spans = [make_span(project_id, i) for i in range(3)]
    stack.insert_spans(spans)
    r = stack.client.post("/api/v1/scores", headers=stack.headers(key), json={
        "name": "correct", "value": True, "trace_id": spans[0]["trace_id"], "span_id": spans[0]["span_id"], "source": "human"})
    assert r.status_code == 202, r.text
    queue = _wait(lambda: (q := stack.client.get("/api/v1/review-queue", params={"score_name": "correct"},
                                                 headers=stack.headers(key)).json())["items"] and len(q["items"]) == 2 and q)
    assert {i["span_id"] for i in queue["items"]} == {s["span_id"] for s in spans[1:]}
    _, other_key = stack.create_key()
    assert stack.client.get("/api/v1/review-queue", params={"score_name": "correct"},
                            headers=stack.headers(other_key)).json()["items"] == []
    assert stack.client.get("/api/v1/review-queue", headers=stack.headers(key)).status_code == 400


def test_agreement_between_human_and_judge_scores(stack):
    project_id, key = stack.create_key()
    human = [True, True, False, False, True, False]
    judge = [True, False, False, False, True, True]
    now = datetime.now(timezone.utc)
    rows = []
    for h, j in zip(human, judge):
        trace, span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        human_row = Score("helpful", h).to_row(project_id, trace, span, timestamp=now)
        human_row["source"] = "human"
        rows += [human_row, Score("helpful_judge", j, evaluator="llm_judge").to_row(project_id, trace, span, timestamp=now)]
    columns = list(rows[0])
    stack.clickhouse.insert("scores", [[r[c] for c in columns] for r in rows], column_names=columns)
    r = stack.client.get("/api/v1/scores/agreement", params={"human": "helpful", "judge": "helpful_judge"},
                         headers=stack.headers(key))
    assert r.status_code == 200, r.text
    body = r.json()
    expected = agreement(human, judge, data_type="boolean")
    assert body["n"] == 6 and body["data_type"] == "boolean"
    assert abs(body["cohen_kappa"] - expected.cohen_kappa) < 1e-12
    assert abs(body["percent_agreement"] - 4 / 6) < 1e-12


def test_proposed_criteria_are_valid_eval_rules(stack):
    _, key = stack.create_key()
    prompt = ('You are a support bot. Reply in JSON like {"answer": "...", "confidence": 0.9}. '
              "Keep answers under 50 words and cite the provided context.")
    r = stack.client.post("/api/v1/criteria", headers=stack.headers(key), json={"system_prompt": prompt})
    assert r.status_code == 200, r.text
    criteria = r.json()["criteria"]
    evaluators = {c["evaluator"] for c in criteria}
    assert {"json_valid", "json_schema"} <= evaluators
    for c in criteria:  # each proposal can be saved as a rule as it is
        saved = stack.client.post("/api/v1/eval-rules", headers=stack.headers(key), json={
            "name": c["name"], "evaluator": c["evaluator"], "config": c["config"]})
        assert saved.status_code == 201, (c, saved.text)


def test_synthetic_dataset_is_generated_kept_and_scoped(stack):
    _, key = stack.create_key()
    r = stack.client.post("/api/v1/datasets", headers=stack.headers(key), json={
        "name": "faq", "user_template": "Answer the customer question: {question}", "n": 4})
    assert r.status_code == 201, r.text
    created = r.json()
    assert len(created["items"]) >= 4
    assert all(set(item["input"]) == {"question"} for item in created["items"])
    assert any(item["tags"] for item in created["items"])  # edge cases are tagged
    fetched = stack.client.get(f"/api/v1/datasets/{created['id']}", headers=stack.headers(key)).json()
    assert [i["input"] for i in fetched["items"]] == [i["input"] for i in created["items"]]
    again = stack.client.post("/api/v1/datasets", headers=stack.headers(key), json={
        "name": "faq", "user_template": "x {y}"})
    assert again.status_code == 409
    _, other_key = stack.create_key()
    assert stack.client.get(f"/api/v1/datasets/{created['id']}", headers=stack.headers(other_key)).status_code == 404


def test_model_assisted_criteria_are_merged_and_the_call_is_recorded_as_a_span(stack):
    import json

    from tests.evaluators.fake_llm import FakeLLMServer, Reply

    project_id, key = stack.create_key()
    fake = FakeLLMServer().start()
    try:
        fake.script = [Reply(json.dumps({"criteria": [
            {"name": "mentions_order_id", "evaluator": "regex", "config": {"pattern": r"ORD-\d+"},
             "rubric": "Reply quotes the order id.", "rationale": "the prompt says to reference the order"}]}),
            input_tokens=800, output_tokens=90)]
        r = stack.client.post("/api/v1/criteria", headers=stack.headers(key), json={
            "system_prompt": "Help customers with their orders; always quote the order id.",
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "base_url": fake.openai_base_url}})
    finally:
        fake.stop()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_calls"] == 1
    assert [c["name"] for c in body["criteria"] if c["source"] == "llm"] == ["mentions_order_id"]
    row = _wait(lambda: stack.clickhouse.query(
        "SELECT name, kind, input_tokens, output_tokens, cost_source FROM spans WHERE project_id = {p:String}",
        parameters={"p": project_id}).result_rows)
    assert row == [("evalforge.assist", "evaluator", 800, 90, "computed")]


def test_model_urls_to_internal_addresses_are_refused_naming_the_field(stack):
    """Rules and assisted prompts are project users' input: a base_url to any other host (cloud
    metadata, internal services) is a 400 before the server sends anything there."""
    _, key = stack.create_key()
    judge = {"provider": "openai", "model": "gpt-4o-mini", "base_url": "http://169.254.169.254/latest"}
    r = stack.client.post("/api/v1/eval-rules", headers=stack.headers(key), json={
        "name": "judge", "evaluator": "llm_judge", "config": judge})
    assert r.status_code == 400
    assert r.json()["error"].startswith("config.base_url: host '169.254.169.254' refused (link_local)")
    assert "EVALFORGE_EGRESS_ALLOWED_HOSTS" in r.json()["error"]
    r = stack.client.post("/api/v1/criteria", headers=stack.headers(key), json={
        "system_prompt": "Answer politely.", "llm": judge})
    assert r.status_code == 400 and r.json()["error"].startswith("llm.base_url: host '169.254.169.254'")
    assert stack.client.get("/api/v1/eval-rules", headers=stack.headers(key)).json()["rules"] == []
