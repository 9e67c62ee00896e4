"""The real anthropic SDK against a local fake Anthropic server."""

from __future__ import annotations

import json

import anthropic
import pytest
from anthropic.lib.streaming import AsyncMessageStreamManager, MessageStream, MessageStreamManager
from sdk_helpers import assert_ttft, one_span

import evalforge

MESSAGES = [{"role": "user", "content": "Bonjour?"}]
TOOLS = [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.fixture
def client(sdk, llm):
    return evalforge.wrap(anthropic.Anthropic(api_key="sk-ant", base_url=llm.url, max_retries=0))


@pytest.fixture
def aclient(sdk, llm):
    return evalforge.wrap(anthropic.AsyncAnthropic(api_key="sk-ant", base_url=llm.url, max_retries=0))


def assert_usage(a: dict) -> None:
    # EvalForge convention: input includes cache read + cache creation (10 + 100 + 20).
    assert a["gen_ai.usage.input_tokens"] == 130
    assert a["gen_ai.usage.cache_read.input_tokens"] == 100
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 20
    assert a["gen_ai.usage.cache_creation.1h_input_tokens"] == 8  # of the 20: priced as 1-hour cache writes
    assert a["gen_ai.usage.output_tokens"] == 6


def test_messages_create(client, sdk):
    msg = client.messages.create(model="claude-x", max_tokens=64, system="Be French.", messages=MESSAGES, stop_sequences=["END"])
    assert msg.content[0].text == "Bonjour!"
    span = one_span(sdk)
    a = span["attributes"]
    assert span["name"] == "chat claude-x"
    assert a["gen_ai.provider.name"] == "anthropic" and a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.max_tokens"] == 64 and a["gen_ai.request.stop_sequences"] == ["END"]
    assert a["gen_ai.response.model"] == "claude-x-resp" and a["gen_ai.response.id"] == "msg_1"
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be French."}]
    assert_usage(a)


def test_beta_messages_create_and_stream(client, sdk):
    msg = client.beta.messages.create(model="claude-x", max_tokens=64, messages=MESSAGES, betas=["files-api-2025-04-14"])
    assert msg.content[0].text == "Bonjour!"
    with client.beta.messages.stream(model="claude-x", max_tokens=64, messages=MESSAGES, tools=TOOLS) as stream:
        assert "".join(stream.text_stream) == "Bonjour!"
    assert evalforge.flush(5)
    assert [s["name"] for s in sdk.spans] == ["chat claude-x", "chat claude-x"]
    for span in sdk.spans:
        assert span["attributes"]["gen_ai.provider.name"] == "anthropic"
        assert_usage(span["attributes"])


def test_messages_create_stream(client, sdk):
    stream = client.messages.create(model="claude-x", max_tokens=64, messages=MESSAGES, stream=True)
    assert type(stream) is anthropic.Stream
    text = "".join(e.delta.text for e in stream if e.type == "content_block_delta")
    assert text == "Bonjour!"
    a = one_span(sdk)["attributes"]
    assert_usage(a)
    assert_ttft(a)
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"] == [{"type": "text", "content": "Bonjour!"}]


def test_messages_stream_manager(client, sdk):
    manager = client.messages.stream(model="claude-x", max_tokens=64, messages=MESSAGES, tools=TOOLS)
    assert isinstance(manager, MessageStreamManager)
    with manager as stream:
        assert type(stream) is MessageStream
        assert "".join(stream.text_stream) == "Bonjour!"
        final = stream.get_final_message()
    assert final.content[1].input == {"city": "Paris"}
    a = one_span(sdk)["attributes"]
    assert_usage(a)
    parts = json.loads(a["gen_ai.output.messages"])[0]["parts"]
    assert parts[1] == {"type": "tool_call", "id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    assert a["gen_ai.response.finish_reasons"] == ["tool_call"]
    assert_ttft(a)


def test_messages_stream_exited_early_ends_span(client, sdk):
    with client.messages.stream(model="claude-x", max_tokens=64, messages=MESSAGES) as stream:
        next(iter(stream))
    one_span(sdk)


def test_tool_use_and_result(client, sdk):
    msgs = MESSAGES + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]
    msg = client.messages.create(model="claude-x", max_tokens=64, messages=msgs, tools=TOOLS)
    assert msg.stop_reason == "tool_use"
    a = one_span(sdk)["attributes"]
    inputs = json.loads(a["gen_ai.input.messages"])
    assert inputs[1]["parts"][0]["type"] == "tool_call"
    assert inputs[2]["parts"][0] == {"type": "tool_call_response", "id": "toolu_1", "response": "sunny"}
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"][1]["name"] == "get_weather"


def test_with_raw_response(client, sdk):
    raw = client.messages.with_raw_response.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    assert raw.parse().content[0].text == "Bonjour!"
    assert_usage(one_span(sdk)["attributes"])


@pytest.mark.asyncio
async def test_async_create_stream_and_manager(aclient, sdk):
    msg = await aclient.messages.create(model="claude-x", max_tokens=64, messages=MESSAGES)
    assert msg.content[0].text == "Bonjour!"
    stream = await aclient.messages.create(model="claude-x", max_tokens=64, messages=MESSAGES, stream=True)
    assert type(stream) is anthropic.AsyncStream
    async for _ in stream:
        pass
    manager = aclient.messages.stream(model="claude-x", max_tokens=64, messages=MESSAGES)
    assert isinstance(manager, AsyncMessageStreamManager)
    async with manager as s:
        assert await s.get_final_text() == "Bonjour!"
    assert evalforge.flush(5)
    assert len(sdk.spans) == 3
    for span in sdk.spans:
        assert_usage(span["attributes"])
    streamed = [s["attributes"] for s in sdk.spans if "gen_ai.response.time_to_first_chunk" in s["attributes"]]
    assert len(streamed) == 2  # create(stream=True) and messages.stream(), both timed to the first token
    for attributes in streamed:
        assert_ttft(attributes)


@pytest.mark.parametrize("model,exc_type", [("error-429", anthropic.RateLimitError), ("error-500", anthropic.InternalServerError)])
def test_errors(client, sdk, model, exc_type):
    with pytest.raises(exc_type):
        client.messages.create(model=model, max_tokens=8, messages=MESSAGES)
    span = one_span(sdk)
    assert span["status_code"] == 2 and span["attributes"]["error.type"].endswith(exc_type.__name__)


def test_stream_manager_error_on_enter(client, sdk):
    with pytest.raises(anthropic.RateLimitError):
        with client.messages.stream(model="error-429", max_tokens=8, messages=MESSAGES):
            pass
    assert one_span(sdk)["attributes"]["error.type"].endswith("RateLimitError")


def test_timeout(sdk, llm):
    client = evalforge.wrap(anthropic.Anthropic(api_key="k", base_url=llm.url, max_retries=0, timeout=0.3))
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(model="slow", max_tokens=8, messages=MESSAGES)
    assert one_span(sdk)["attributes"]["error.type"].endswith("APITimeoutError")


@pytest.mark.asyncio
async def test_async_with_raw_response(aclient, sdk):
    raw = await aclient.messages.with_raw_response.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    msg = await raw.parse()
    assert msg.content[0].text == "Bonjour!"
    assert_usage(one_span(sdk)["attributes"])


def test_instrument_covers_unwrapped_clients(sdk, llm):
    evalforge.instrument(("anthropic",))
    plain = anthropic.Anthropic(api_key="k", base_url=llm.url, max_retries=0)
    plain.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    with plain.messages.stream(model="claude-x", max_tokens=8, messages=MESSAGES) as s:
        s.until_done()
    plain.beta.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    evalforge.wrap(plain)  # no double tracing on top of instrument()
    plain.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    assert evalforge.flush(5)
    assert len(sdk.spans) == 4
    for span in sdk.spans:
        assert_usage(span["attributes"])
