"""``POST /api/v1/experiments/plan``: a model's plan through the fake LLM server, and the heuristic."""

from __future__ import annotations

import json

import pytest

from evaluators import planner

from .fake_llm import FakeLLMServer, Reply


def test_heuristic_plans_benchmarks_evaluators_targets_and_repetitions():
    plan = planner.heuristic_plan("Is claude-3-5-haiku as good as gpt-4o-mini at Python code and math word problems, "
                                  "and is it consistent?", [])
    names = [d["name"] for d in plan["datasets"]]
    assert names == ["gsm8k", "humaneval", "mbpp"]
    assert all(d["kind"] == "benchmark" and d["limit"] == 200 for d in plan["datasets"])
    assert [e["evaluator"] for e in plan["evaluators"]] == ["benchmark"]
    assert plan["targets"] == [{"model": "claude-3-5-haiku", "provider": "anthropic"},
                               {"model": "gpt-4o-mini", "provider": "openai"}]
    assert plan["repetitions"] == 5  # "consistent"


def test_heuristic_prefers_the_projects_data_and_otherwise_proposes_synthetic_cases():
    datasets = [{"id": "d1", "name": "refund-tickets", "description": "customer support refunds"},
                {"id": "d2", "name": "sql-queries", "description": ""}]
    plan = planner.heuristic_plan("Our support bot should answer refund questions politely", datasets)
    assert plan["datasets"][0] == {"kind": "existing", "dataset_id": "d1", "name": "refund-tickets",
                                   "why": "your dataset matches: refund, support"}
    judge = next(e for e in plan["evaluators"] if e["evaluator"] == "llm_judge")
    assert "refund questions politely" in judge["rubric"]
    plan = planner.heuristic_plan("Extract invoice fields", [])
    assert plan["datasets"][0]["kind"] == "synthetic" and plan["repetitions"] == 1
    assert {"exact_match", "json_schema"} <= {e["evaluator"] for e in plan["evaluators"]}


def test_a_model_plan_keeps_only_what_exists():
    reply = json.dumps({"datasets": [{"kind": "benchmark", "name": "gsm8k", "limit": 100, "why": "math"},
                                     {"kind": "benchmark", "name": "made-up-bench"},
                                     {"kind": "existing", "dataset_id": "d1"}, {"kind": "existing", "dataset_id": "other"}],
                        "evaluators": [{"evaluator": "benchmark", "why": "its scorer"}, {"evaluator": "telepathy"}],
                        "targets": [{"provider": "openai", "model": "gpt-4o"}], "repetitions": 500, "notes": "n"})
    plan, dropped = planner.parse_llm_plan(f"Here:\n{reply}", [{"id": "d1", "name": "mine"}])
    assert [d.get("name") for d in plan["datasets"]] == ["gsm8k", "mine"]
    assert [e["evaluator"] for e in plan["evaluators"]] == ["benchmark"]
    assert plan["repetitions"] == 20 and len(dropped) == 3
    with pytest.raises(ValueError):
        planner.parse_llm_plan("no json here", [])
    with pytest.raises(ValueError, match="at least one"):
        planner.parse_llm_plan('{"datasets": [], "evaluators": []}', [])


@pytest.fixture
def fake():
    server = FakeLLMServer().start()
    yield server
    server.stop()


def test_plan_endpoint_with_the_fake_model_then_falling_back(stack, fake):
    _, key = stack.create_key()
    h = stack.headers(key)
    llm = {"provider": "openai", "model": "planner-model", "base_url": fake.openai_base_url, "max_retries": 0}
    good = {"datasets": [{"kind": "benchmark", "name": "mmlu", "limit": 300, "why": "knowledge"}],
            "evaluators": [{"evaluator": "benchmark", "why": "letter accuracy"}],
            "targets": [{"provider": "anthropic", "model": "claude-3-5-sonnet"}], "repetitions": 2, "notes": "go"}
    fake.script = [Reply(text=json.dumps(good))]
    r = stack.client.post("/api/v1/experiments/plan", headers=h, json={"goal": "How much does it know?", "llm": llm})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "llm" and body["datasets"][0]["name"] == "mmlu" and body["repetitions"] == 2
    sent = fake.requests[-1].body
    assert sent["model"] == "planner-model" and "How much does it know?" in sent["messages"][-1]["content"]
    assert "humaneval" in sent["messages"][-1]["content"]  # the benchmarks it may choose from

    fake.script = [Reply(text="not a plan"), Reply(text="still not a plan")]  # unusable twice -> heuristic
    r = stack.client.post("/api/v1/experiments/plan", headers=h, json={"goal": "math word problems", "llm": llm})
    body = r.json()
    assert body["source"] == "heuristic" and "reply unusable" in body["llm_error"]
    assert body["datasets"][0]["name"] == "gsm8k"

    fake.script = [Reply(status=500, text="down")]
    r = stack.client.post("/api/v1/experiments/plan", headers=h, json={"goal": "math word problems", "llm": llm})
    assert r.json()["source"] == "heuristic" and r.json()["llm_error"]

    r = stack.client.post("/api/v1/experiments/plan", headers=h, json={"goal": "python coding"})
    assert r.status_code == 200 and r.json()["source"] == "heuristic" and "llm_error" not in r.json()
    assert [d["name"] for d in r.json()["datasets"]] == ["humaneval", "mbpp"]

    r = stack.client.post("/api/v1/experiments/plan", headers=h, json={})
    assert r.status_code in (400, 422) and "goal" in r.text
    r = stack.client.post("/api/v1/experiments/plan", headers=h,
                          json={"goal": "x y z", "llm": {**llm, "base_url": "http://10.1.2.3/v1"}})
    assert r.status_code == 400 and "llm.base_url" in r.text
