"""observe / span / context / score / content capture: what users build their traces with."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from sdk_helpers import API_KEY, one_span

import evalforge


def by_name(spans):
    return {s["name"]: s for s in spans}


def test_nested_observe_tree_sync_async_generators(sdk):
    @evalforge.observe(kind="tool")
    def tool(x):
        return x * 2

    @evalforge.observe
    def numbers(n):
        for i in range(n):
            yield tool(i)

    @evalforge.observe(name="agen")
    async def agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield tool(i)

    @evalforge.observe(name="root", kind="agent")
    async def root():
        total = sum(numbers(3))
        items = [x async for x in agen(2)]
        return {"total": total, "items": items}

    assert asyncio.run(root()) == {"total": 6, "items": [0, 2]}
    assert evalforge.flush(5)
    spans = sdk.spans
    assert len(spans) == 8  # root, numbers, agen, 5 x tool
    names = by_name(spans)
    root_span, gen_span, agen_span = names["root"], names["test_nested_observe_tree_sync_async_generators.<locals>.numbers"], names["agen"]
    assert root_span["parent_span_id"] == "" and root_span["attributes"]["evalforge.span.kind"] == "agent"
    assert gen_span["parent_span_id"] == root_span["span_id"] and agen_span["parent_span_id"] == root_span["span_id"]
    tools = [s for s in spans if s["attributes"]["evalforge.span.kind"] == "tool"]
    assert sorted(s["parent_span_id"] == gen_span["span_id"] for s in tools) == [False, False, True, True, True]
    assert {s["trace_id"] for s in spans} == {root_span["trace_id"]}
    assert json.loads(gen_span["attributes"]["evalforge.output"]) == [0, 2, 4]
    assert json.loads(root_span["attributes"]["evalforge.output"]) == {"total": 6, "items": [0, 2]}


def test_llm_call_is_child_of_observe_and_span(sdk, llm):
    client = evalforge.wrap(openai.OpenAI(api_key="k", base_url=llm.url + "/v1", max_retries=0))

    @evalforge.observe
    def answer():
        with evalforge.span("retrieve", kind="retriever") as s:
            s.set_attribute("docs", 3)
        return client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}]).choices[0].message.content

    assert answer() == "Hello there!"
    assert evalforge.flush(5)
    names = by_name(sdk.spans)
    root = names["test_llm_call_is_child_of_observe_and_span.<locals>.answer"]
    assert names["retrieve"]["parent_span_id"] == root["span_id"]
    assert names["retrieve"]["attributes"]["docs"] == 3
    assert names["chat gpt-4o"]["parent_span_id"] == root["span_id"]


def test_user_exception_unchanged(sdk):
    boom = KeyError("boom")

    @evalforge.observe
    def fails():
        raise boom

    with pytest.raises(KeyError) as info:
        fails()
    assert info.value is boom
    with pytest.raises(ValueError):
        with evalforge.span("s"):
            raise ValueError("x")
    assert evalforge.flush(5)
    assert {s["attributes"]["error.type"] for s in sdk.spans} == {"KeyError", "ValueError"}


def test_context_crosses_threads_and_tasks(sdk):
    @evalforge.observe(name="work")
    def work(i):
        return i

    async def task(i):
        with evalforge.span(f"task-{i}"):
            await asyncio.sleep(0)

    with evalforge.context(session_id="sess-1", user_id="u-7", tags=["beta"], metadata={"plan": "pro", "n": 3}):
        with evalforge.span("parent") as parent:
            with evalforge.context(tags=["inner"], prompt_name="greet", prompt_version=2):
                t = threading.Thread(target=work, args=(1,))
                t.start()
                t.join()
                with ThreadPoolExecutor(2) as pool:
                    list(pool.map(work, [2, 3]))

                async def main():
                    await asyncio.gather(task(1), task(2))

                asyncio.run(main())
    assert evalforge.flush(5)
    spans = sdk.spans
    assert len(spans) == 6
    parent_id = format(parent.get_span_context().span_id, "016x")
    for s in spans:
        a = s["attributes"]
        assert a["evalforge.session_id"] == "sess-1" and a["evalforge.user_id"] == "u-7"
        assert a["evalforge.metadata.plan"] == "pro" and a["evalforge.metadata.n"] == 3
        if s["name"] != "parent":
            assert s["parent_span_id"] == parent_id, s["name"]
            assert a["evalforge.tags"] == ["beta", "inner"]
            assert a["evalforge.prompt.name"] == "greet" and a["evalforge.prompt.version"] == "2"
        else:
            assert a["evalforge.tags"] == ["beta"]


def test_score_posted_in_background(sdk):
    with evalforge.span("judged") as s:
        evalforge.score("helpfulness", 0.9, comment="good")
    trace_id = format(s.get_span_context().trace_id, "032x")
    evalforge.score("thumbs", 1, trace_id=trace_id)
    assert evalforge.flush(5)
    scores = sdk.wait_scores(2)
    assert scores[0] == {"name": "helpfulness", "value": 0.9, "trace_id": trace_id, "span_id": format(s.get_span_context().span_id, "016x"), "comment": "good", "source": "sdk"}
    assert scores[1] == {"name": "thumbs", "value": 1, "trace_id": trace_id, "source": "sdk"}
    assert sdk.scores[0]["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert evalforge.stats()["scores_sent"] == 2


def test_capture_content_off_and_mask(receiver, llm):
    receiver.reset()
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.05, capture_content=False)
    client = evalforge.wrap(openai.OpenAI(api_key="k", base_url=llm.url + "/v1", max_retries=0))
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "my secret"}])
    a = one_span(receiver)["attributes"]
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    assert a["gen_ai.usage.input_tokens"] == 11

    def mask(messages):
        return json.loads(json.dumps(messages).replace("secret", "[REDACTED]"))

    receiver.reset()
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.05, mask=mask)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "my secret"}])
    a = one_span(receiver)["attributes"]
    assert "[REDACTED]" in a["gen_ai.input.messages"] and "secret" not in a["gen_ai.input.messages"]
    evalforge.shutdown(1)


def test_sdk_bug_never_reaches_the_app(receiver, llm):
    """A mask that raises is our-side failure: the call still returns its normal result."""
    receiver.reset()

    def broken_mask(_):
        raise RuntimeError("bug in hook")

    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.05, mask=broken_mask)
    client = evalforge.wrap(openai.OpenAI(api_key="k", base_url=llm.url + "/v1", max_retries=0))
    resp = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content == "Hello there!"
    evalforge.shutdown(1)


def test_sampling_is_per_trace(receiver):
    receiver.reset()
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.05, sample_rate=0.5)
    for _ in range(200):
        with evalforge.span("root"):
            with evalforge.span("child"):
                pass
    assert evalforge.flush(5)
    roots = [s for s in receiver.spans if s["name"] == "root"]
    children = [s for s in receiver.spans if s["name"] == "child"]
    assert 50 < len(roots) < 150
    assert {c["trace_id"] for c in children} == {r["trace_id"] for r in roots}  # whole traces kept or dropped
    evalforge.shutdown(1)


def test_global_provider_left_alone(receiver):
    app_provider = TracerProvider()
    trace.set_tracer_provider(app_provider)
    evalforge.init(api_key=API_KEY, endpoint=receiver.url)
    assert trace.get_tracer_provider() is app_provider
    evalforge.shutdown(1)


def test_noop_api_before_init():
    evalforge.shutdown()

    @evalforge.observe
    def f():
        return 1

    with evalforge.context(session_id="s"), evalforge.span("x"):
        assert f() == 1
        evalforge.score("s", 1)
    assert evalforge.flush(0.1) is True
    assert evalforge.stats()["exported"] == 0


def test_environment_release_and_attach_to_app_provider(receiver):
    receiver.reset()
    app_provider = trace.get_tracer_provider()
    if not isinstance(app_provider, TracerProvider):
        app_provider = TracerProvider()
        trace.set_tracer_provider(app_provider)
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.05, environment="prod", release="1.2.3",
                   attach_to_global_provider=True)
    with trace.get_tracer("app").start_as_current_span("app-span"):  # the app's own instrumentation
        with evalforge.span("ours"):
            pass
    assert evalforge.flush(5)
    names = by_name(receiver.spans)
    assert set(names) == {"app-span", "ours"}
    assert names["ours"]["parent_span_id"] == names["app-span"]["span_id"]
    for s in receiver.spans:
        assert s["attributes"]["evalforge.environment"] == "prod" and s["attributes"]["evalforge.release"] == "1.2.3"
    evalforge.shutdown(1)


def test_suppress_instrumentation_is_honoured(sdk, llm):
    """The OTel-wide switch (used by exporters and by apps) turns our LLM spans off too."""
    from opentelemetry import context as otel_context
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY

    client = evalforge.wrap(openai.OpenAI(api_key="k", base_url=llm.url + "/v1", max_retries=0))
    token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    finally:
        otel_context.detach(token)
    assert evalforge.flush(2)
    assert sdk.spans == []
