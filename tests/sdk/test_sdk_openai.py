"""The real openai SDK against a local fake OpenAI server: one correct span per call shape."""

from __future__ import annotations

import gc
import json

import httpx2 as _httpx  # noqa: F401  (openai's transport; imported to fail loudly if missing)
import openai
import pydantic
import pytest
from sdk_helpers import assert_ttft, one_span

import evalforge


@pytest.fixture
def client(sdk, llm):
    return evalforge.wrap(openai.OpenAI(api_key="sk-test", base_url=llm.url + "/v1", max_retries=0))


@pytest.fixture
def aclient(sdk, llm):
    return evalforge.wrap(openai.AsyncOpenAI(api_key="sk-test", base_url=llm.url + "/v1", max_retries=0))


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_chat_create_span(client, sdk):
    resp = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.2, max_tokens=50)
    assert resp.choices[0].message.content == "Hello there!"
    span = one_span(sdk)
    a = span["attributes"]
    assert span["name"] == "chat gpt-4o"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o" and a["gen_ai.response.model"] == "gpt-4o-resp"
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.response.id"] == "chatcmpl-1" and a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.input_tokens"] == 11 and a["gen_ai.usage.output_tokens"] == 7
    assert a["gen_ai.usage.cache_read.input_tokens"] == 3 and a["gen_ai.usage.reasoning.output_tokens"] == 2
    assert json.loads(a["gen_ai.input.messages"])[1] == {"role": "user", "parts": [{"type": "text", "content": "Say hello"}]}
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"] == [{"type": "text", "content": "Hello there!"}]
    assert span["authorization"] == "Bearer ef-test-key"
    assert span["resource"]["service.name"] == "sdk-tests"


def test_chat_stream_keeps_type_and_records_ttft(client, sdk):
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    assert type(stream) is openai.Stream
    with stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello stream!"
    a = one_span(sdk)["attributes"]
    assert a["gen_ai.request.stream"] is True
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"][0]["content"] == "Hello stream!"
    assert a["gen_ai.usage.input_tokens"] == 11 and a["gen_ai.usage.output_tokens"] == 7
    assert_ttft(a)


def test_stream_closed_early_or_collected_ends_span_once(client, sdk):
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    stream.close()
    one_span(sdk)
    sdk.reset()
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    next(iter(stream))
    del stream
    gc.collect()
    span = one_span(sdk)
    assert span["attributes"]["gen_ai.response.id"] == "chatcmpl-2"


def test_tool_calls_streamed_and_not(client, sdk):
    resp = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS)
    assert resp.choices[0].message.tool_calls[0].function.name == "get_weather"
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS, stream=True)
    list(stream)
    assert evalforge.flush(5)
    assert len(sdk.spans) == 2
    for span in sdk.spans:
        out = json.loads(span["attributes"]["gen_ai.output.messages"])[0]
        assert out["parts"] == [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]
        assert out["finish_reason"] == "tool_calls"
        assert json.loads(span["attributes"]["gen_ai.tool.definitions"])[0]["function"]["name"] == "get_weather"


def test_tool_result_message_in_input(client, sdk):
    msgs = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    client.chat.completions.create(model="gpt-4o", messages=msgs)
    parts = [m["parts"] for m in json.loads(one_span(sdk)["attributes"]["gen_ai.input.messages"])]
    assert parts[2] == [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]
    assert parts[3] == [{"type": "tool_call_response", "id": "call_1", "response": "sunny"}]


class Answer(pydantic.BaseModel):
    answer: str


def test_parse(client, sdk):
    resp = client.chat.completions.parse(model="gpt-4o", messages=MESSAGES, response_format=Answer)
    assert resp.choices[0].message.parsed == Answer(answer="42")
    a = one_span(sdk)["attributes"]
    assert a["gen_ai.output.type"] == "json" and a["gen_ai.usage.output_tokens"] == 7


def test_with_raw_response(client, sdk):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content == "Hello there!"
    assert one_span(sdk)["attributes"]["gen_ai.usage.input_tokens"] == 11


def test_responses_create_and_stream(client, sdk):
    resp = client.responses.create(model="gpt-5", input="hi", instructions="Be nice")
    assert resp.output_text == "Hi from responses"
    a = one_span(sdk)["attributes"]
    assert a["gen_ai.response.id"] == "resp_1" and a["gen_ai.usage.input_tokens"] == 9
    assert a["gen_ai.usage.cache_read.input_tokens"] == 4 and a["gen_ai.usage.reasoning.output_tokens"] == 1
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be nice"}]
    sdk.reset()
    stream = client.responses.create(model="gpt-5", input="hi", stream=True)
    assert type(stream) is openai.Stream
    deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hi from responses"
    a = one_span(sdk)["attributes"]
    assert a["gen_ai.usage.output_tokens"] == 5
    assert_ttft(a)
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"] == [{"type": "text", "content": "Hi from responses"}]


def test_responses_tool_call(client, sdk):
    resp = client.responses.create(model="gpt-5", input="weather?", tools=[{"type": "function", "name": "get_weather", "parameters": {}}])
    assert resp.output[0].name == "get_weather"
    out = json.loads(one_span(sdk)["attributes"]["gen_ai.output.messages"])[0]
    assert out["parts"][0] == {"type": "tool_call", "id": "call_9", "name": "get_weather", "arguments": {"city": "Paris"}}


def test_embeddings(client, sdk):
    resp = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert len(resp.data) == 2
    span = one_span(sdk)
    a = span["attributes"]
    assert span["name"] == "embeddings text-embedding-3-small"
    assert a["gen_ai.operation.name"] == "embeddings" and a["evalforge.span.kind"] == "embedding"
    assert a["gen_ai.usage.input_tokens"] == 5 and a["gen_ai.embeddings.dimension.count"] == 4


@pytest.mark.asyncio
async def test_async_create_and_stream(aclient, sdk):
    resp = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert resp.choices[0].message.content == "Hello there!"
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert type(stream) is openai.AsyncStream
    async with stream:
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "Hello stream!"
    assert evalforge.flush(5)
    assert len(sdk.spans) == 2
    streamed = [s for s in sdk.spans if s["attributes"].get("gen_ai.request.stream")][0]
    assert_ttft(streamed["attributes"])


@pytest.mark.asyncio
async def test_async_stream_closed_early(aclient, sdk):
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    async for _ in stream:
        break
    await stream.close()
    one_span(sdk)


def test_azure_provider_name(sdk, llm):
    client = evalforge.wrap(openai.AzureOpenAI(api_key="k", api_version="2024-06-01", base_url=llm.url + "/v1", max_retries=0))
    assert isinstance(client, openai.AzureOpenAI)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert one_span(sdk)["attributes"]["gen_ai.provider.name"] == "azure.ai.openai"


@pytest.mark.parametrize(
    "model,exc_type,status",
    [("error-429", openai.RateLimitError, 429), ("error-500", openai.InternalServerError, 500)],
)
def test_provider_errors_recorded_and_reraised(client, sdk, model, exc_type, status):
    with pytest.raises(exc_type) as info:
        client.chat.completions.create(model=model, messages=MESSAGES)
    assert type(info.value) is exc_type  # unchanged type, not wrapped
    span = one_span(sdk)
    assert span["status_code"] == 2  # ERROR
    assert span["attributes"]["error.type"].endswith(exc_type.__name__)
    assert span["attributes"]["http.response.status_code"] == status
    assert "exception" in span["events"]


def test_timeout_recorded_and_reraised(sdk, llm):
    client = evalforge.wrap(openai.OpenAI(api_key="k", base_url=llm.url + "/v1", max_retries=0, timeout=0.3))
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="slow", messages=MESSAGES)
    assert one_span(sdk)["attributes"]["error.type"].endswith("APITimeoutError")


def test_same_exception_object_propagates(client, sdk):
    seen = []
    try:
        client.chat.completions.create(model="error-500", messages=MESSAGES)
    except openai.InternalServerError as exc:
        seen.append(exc)
    try:
        raise seen[0]
    except openai.InternalServerError as again:
        assert again is seen[0]


def test_wrap_twice_and_instrument_trace_once(client, sdk):
    assert evalforge.wrap(client) is client
    evalforge.instrument()
    evalforge.instrument()
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    one_span(sdk)
    sdk.reset()
    other = openai.OpenAI(api_key="k", base_url=client.base_url, max_retries=0)  # never wrapped
    other.with_options(timeout=5).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    one_span(sdk)


def test_noop_before_init(receiver, llm):
    evalforge.shutdown()
    receiver.reset()
    client = evalforge.wrap(openai.OpenAI(api_key="k", base_url=llm.url + "/v1", max_retries=0))
    assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content == "Hello there!"
    assert evalforge.flush(1)
    assert receiver.spans == []


def test_with_raw_response_stream(client, sdk):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES, stream=True)
    stream = raw.parse()
    assert type(stream) is openai.Stream
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello stream!"
    assert_ttft(one_span(sdk)["attributes"])


def test_generator_messages_are_not_consumed_by_the_sdk(client, sdk):
    """Iterable params are legal; the SDK must leave them for the request, not eat them."""
    resp = client.chat.completions.create(model="gpt-4o", messages=(m for m in MESSAGES))
    assert resp.choices[0].message.content == "Hello there!"
    one_span(sdk)


def test_stream_helpers_chat_and_responses(client, sdk):
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Hello stream!"
    with client.responses.stream(model="gpt-5", input="hi") as rstream:
        assert rstream.get_final_response().output_text == "Hi from responses"
    assert evalforge.flush(5)
    assert len(sdk.spans) == 2
    chat, responses = sorted(sdk.spans, key=lambda s: s["attributes"]["gen_ai.request.model"])
    assert json.loads(chat["attributes"]["gen_ai.output.messages"])[0]["parts"][0]["content"] == "Hello stream!"
    assert responses["attributes"]["gen_ai.usage.output_tokens"] == 5
    for span in sdk.spans:
        assert_ttft(span["attributes"])


def test_responses_parse(client, sdk):
    resp = client.responses.parse(model="gpt-5", input="hi")
    assert resp.output_text == "Hi from responses"
    assert one_span(sdk)["attributes"]["gen_ai.response.id"] == "resp_1"
