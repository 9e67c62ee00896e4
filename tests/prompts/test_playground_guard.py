"""The playground calls a model on the operator's account: it is held to the judge's per-project rate
limit and daily budget (EVALFORGE_JUDGE_CALLS_PER_MINUTE / EVALFORGE_JUDGE_DAILY_BUDGET_USD), answering 429."""

from __future__ import annotations

import pytest

from tests.evaluators.fake_llm import FakeLLMServer, Reply


@pytest.fixture
def fake_llm():
    server = FakeLLMServer().start()
    yield server
    server.stop()


def _play(stack, headers, fake_llm):
    return stack.client.post("/api/v1/prompts/limited/playground", headers=headers, json={
        "model": "gpt-4o-mini", "base_url": fake_llm.openai_base_url, "variables": {"q": "hi"}})


@pytest.mark.parametrize(("limit", "expected"), [
    # burst max(6 / 6, 1) = 1 call, then the next token in 10 s
    ({"judge_calls_per_minute": 6.0}, "rate limit"),
    # one call of 100k input tokens costs more than the cap: checked before the next call
    ({"judge_calls_per_minute": 0.0, "judge_daily_budget_usd": 1e-6}, "budget"),
])
def test_the_judge_limits_answer_429_after_the_first_call(stack, fake_llm, monkeypatch, limit, expected):
    for name, value in limit.items():
        monkeypatch.setattr(stack.settings, name, value)
    _, key = stack.create_key()
    h = stack.headers(key)
    assert stack.client.post("/api/v1/prompts", headers=h, json={"name": "limited", "prompt": "Say {{q}}", "labels": ["production"]}).status_code == 201
    fake_llm.script = [Reply("hello", input_tokens=100_000, output_tokens=10)]
    first = _play(stack, h, fake_llm)
    assert first.status_code == 200, first.text
    second = _play(stack, h, fake_llm)
    assert second.status_code == 429, second.text
    assert expected in second.json()["error"]
    if expected == "rate limit":
        assert int(second.headers["retry-after"]) >= 1
    assert len(fake_llm.requests) == 1  # the refused call never reached the model
    _, other_key = stack.create_key()  # the limit is the project's own
    other = stack.headers(other_key)
    assert stack.client.post("/api/v1/prompts", headers=other, json={"name": "limited", "prompt": "Say {{q}}", "labels": ["production"]}).status_code == 201
    fake_llm.script = [Reply("hello", input_tokens=10, output_tokens=1)]
    assert _play(stack, other, fake_llm).status_code == 200
