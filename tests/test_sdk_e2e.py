"""The SDK against the real ingest service: a wrapped OpenAI call, through the bus and the processor,
comes back from the query API as a priced trace with its feedback score."""

from __future__ import annotations

import time

import evalforge
import openai
import pytest

from core.pricing import Usage, compute_cost
from tests.harness.live_server import LiveServer
from tests.sdk.fake_llm import FakeLLM


@pytest.fixture(scope="module")
def ingest_url(stack):
    """A real ingest port on the stack's parts: the stack's processor persists what arrives."""
    from launcher.cli import INGEST_PARTS
    from core.http import build_app
    from ingest.routers.ingest import router

    with LiveServer(build_app(stack.settings, parts=INGEST_PARTS, routers=[router])) as server:
        yield server.url


def _trace(stack, key: str, trace_id: str, spans: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = stack.client.get(f"/api/v1/traces/{trace_id}", headers=stack.headers(key))
        if r.status_code == 200 and r.json()["span_count"] >= spans and r.json().get("scores"):
            return r.json()
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)


def test_wrapped_openai_call_becomes_a_priced_trace_with_its_score(stack, ingest_url):
    _, key = stack.create_key()
    llm = FakeLLM()
    evalforge.init(api_key=key, endpoint=ingest_url, schedule_delay=0.05, service_name="e2e-app")
    try:
        client = evalforge.wrap(openai.OpenAI(api_key="sk-test", base_url=llm.url + "/v1", max_retries=0))

        @evalforge.observe(name="answer-question")
        def answer() -> tuple[str, str]:
            reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Say hello"}])
            return reply.choices[0].message.content, evalforge.current_trace_id()

        with evalforge.context(session_id="session-e2e", user_id="user-e2e", tags=["e2e"]):
            text, trace_id = answer()
        assert text == "Hello there!"
        evalforge.score("thumbs_up", True, trace_id=trace_id, comment="helpful")
        assert evalforge.flush(10)
    finally:
        evalforge.shutdown(2)
        llm.close()

    detail = _trace(stack, key, trace_id, spans=2)
    flat, todo = [], list(detail["spans"])
    while todo:
        node = todo.pop()
        flat.append(node)
        todo.extend(node["children"])
    by_name = {s["name"]: s for s in flat}
    root, call = by_name["answer-question"], by_name["chat gpt-4o"]
    assert call["parent_span_id"] == root["span_id"]
    assert (call["provider"], call["request_model"]) == ("openai", "gpt-4o")
    assert (call["input_tokens"], call["output_tokens"], call["cache_read_tokens"]) == (11, 7, 3)
    assert call["model"] == "gpt-4o-resp"  # what the provider answered; priced as the requested gpt-4o
    expected = compute_cost("openai", "gpt-4o", Usage(input_tokens=11, output_tokens=7, cache_read_tokens=3)).cost
    assert call["cost"] == pytest.approx(expected, abs=1e-12) and call["cost_source"] == "computed"
    assert "Hello there!" in call["output"]
    assert (root["session_id"], root["user_id"]) == ("session-e2e", "user-e2e")
    assert [(s["name"], s["value"]) for s in detail["scores"]] == [("thumbs_up", 1.0)]
