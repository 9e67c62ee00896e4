"""Messages, tool calls, time to first token and duplicate calls from every convention.

Attribute sets are those the libraries emit: OpenInference and OpenLLMetry as captured from the real
instrumentations (tests/test_interop.py runs them end to end); Vercel AI SDK (TypeScript), LiteLLM and
Logfire written from their documented / source attribute names, since they cannot run here.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import orjson

from core.span import encode
from core.span import DUPLICATE_OF
from ingest.duplicates import mark_duplicate_calls, mark_duplicate_messages
from ingest.normalize import RawSpan, to_record

TRACE = "5b8efff798038103d269b633813fc60c"
START = 1_700_000_000_000_000_000
END = START + 2_000_000_000


def record(attributes, span_id="eee19b7ec3c1b174", parent="", events=(), start=START, end=END, trace=TRACE):
    raw = RawSpan(trace_id=trace, span_id=span_id, parent_span_id=parent, name="call", start_ns=start,
                  end_ns=end, attributes=dict(attributes), events=list(events))
    return to_record("proj", {}, ("scope", "1"), raw, ingested_at=datetime(2026, 1, 1, tzinfo=timezone.utc))


def parts(payload: str, kind: str) -> list[dict]:
    return [p for m in json.loads(payload) for p in m["parts"] if p["type"] == kind]


WEATHER_CALL = {"type": "tool_call", "id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}}


def test_openinference_tool_calls_and_content_parts_are_structures():
    rec = record({
        "openinference.span.kind": "LLM", "llm.model_name": "claude-3-5-sonnet", "llm.provider": "anthropic",
        "llm.invocation_parameters": '{"model": "claude-3-5-sonnet-latest", "max_tokens": 64}',
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.contents.0.message_content.type": "text",
        "llm.input_messages.0.message.contents.0.message_content.text": "weather?",
        "llm.input_messages.1.message.role": "tool",
        "llm.input_messages.1.message.tool_call_id": "toolu_0",
        "llm.input_messages.1.message.content": "sunny",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.contents.0.message_content.type": "text",
        "llm.output_messages.0.message.contents.0.message_content.text": "Let me check.",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "toolu_1",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
        # the Anthropic instrumentation lists a tool_use block among the contents too: one call, not two
        "llm.output_messages.0.message.contents.1.message_content.type": "tool_use",
        "llm.output_messages.0.message.contents.1.tool_call.id": "toolu_1",
        "llm.output_messages.0.message.contents.1.tool_call.function.name": "get_weather",
        "llm.output_messages.0.message.contents.1.tool_call.function.arguments": '{"city": "Paris"}',
    })
    assert json.loads(rec["input"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "weather?"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "toolu_0", "response": "sunny"}]}]
    assert json.loads(rec["output"]) == [{"role": "assistant", "parts": [
        {"type": "text", "content": "Let me check."}, WEATHER_CALL]}]
    assert not any(k.startswith("llm.output_messages") for k in rec["attributes"])
    assert rec["request_model"] == "claude-3-5-sonnet-latest"  # from the invocation parameters


def test_openllmetry_and_litellm_indexed_function_and_tool_calls():
    rec = record({
        "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o", "llm.request.type": "chat",
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "weather?",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "call_1", "gen_ai.completion.0.tool_calls.0.name": "get_weather",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Paris"}',
        "gen_ai.completion.1.role": "assistant",
        "gen_ai.completion.1.function_call.name": "lookup", "gen_ai.completion.1.function_call.arguments": '{"q": 1}',
    })
    out = json.loads(rec["output"])
    assert out[0] == {"role": "assistant", "finish_reason": "tool_calls", "parts": [
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]}
    assert out[1]["parts"] == [{"type": "tool_call", "id": None, "name": "lookup", "arguments": {"q": 1}}]
    assert json.loads(rec["input"]) == [{"role": "user", "parts": [{"type": "text", "content": "weather?"}]}]


def test_traceloop_entity_input_and_output_fill_workflow_spans():
    rec = record({"traceloop.span.kind": "workflow", "traceloop.entity.name": "answer",
                  "traceloop.entity.input": '{"args": ["What is 2+2?"], "kwargs": {}}',
                  "traceloop.entity.output": '"4"'})
    assert rec["kind"] == "chain"
    assert json.loads(rec["input"]) == {"args": ["What is 2+2?"], "kwargs": {}}
    assert rec["output"] == '"4"'


def test_vercel_ai_sdk_do_generate_span():
    rec = record({
        "ai.operationId": "ai.generateText.doGenerate", "operation.name": "ai.generateText.doGenerate",
        "ai.model.provider": "openai.chat", "ai.model.id": "gpt-4o-mini", "ai.response.model": "gpt-4o-mini-2024-07-18",
        "ai.prompt.messages": json.dumps([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
            {"role": "assistant", "content": [{"type": "tool-call", "toolCallId": "call_0", "toolName": "get_weather",
                                               "args": {"city": "Paris"}}]},
            {"role": "tool", "content": [{"type": "tool-result", "toolCallId": "call_0", "toolName": "get_weather",
                                          "result": {"temp": 21}}]}]),
        "ai.response.text": "It is 21 degrees.", "ai.response.finishReason": "stop",
        "ai.response.toolCalls": json.dumps([{"toolCallType": "function", "toolCallId": "call_2",
                                              "toolName": "get_weather", "args": '{"city":"Lyon"}'}]),
        "ai.usage.promptTokens": 120, "ai.usage.completionTokens": 12, "ai.response.msToFirstChunk": 412.5,
        "ai.response.id": "chatcmpl-9", "ai.telemetry.functionId": "weather-bot",
        "ai.telemetry.metadata.sessionId": "s-1", "ai.telemetry.metadata.userId": "u-1",
        "ai.telemetry.metadata.plan": "pro",
    })
    assert (rec["session_id"], rec["user_id"], rec["attributes"]["metadata.plan"]) == ("s-1", "u-1", "pro")
    assert (rec["kind"], rec["provider"], rec["request_model"], rec["model"]) == (
        "llm", "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert (rec["input_tokens"], rec["output_tokens"], rec["ttft_ms"]) == (120, 12, 412.5)
    messages = json.loads(rec["input"])
    assert messages[0] == {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]}
    assert messages[2]["parts"] == [{"type": "tool_call", "id": "call_0", "name": "get_weather",
                                     "arguments": {"city": "Paris"}}]
    assert messages[3]["parts"] == [{"type": "tool_call_response", "id": "call_0", "response": {"temp": 21}}]
    assert json.loads(rec["output"]) == [{"role": "assistant", "finish_reason": "stop", "parts": [
        {"type": "text", "content": "It is 21 degrees."},
        {"type": "tool_call", "id": "call_2", "name": "get_weather", "arguments": {"city": "Lyon"}}]}]


def test_vercel_outer_function_is_a_chain_and_tool_call_span_a_tool():
    outer = record({"ai.operationId": "ai.generateText", "ai.model.id": "gpt-4o-mini", "ai.model.provider": "openai.chat",
                    "ai.prompt": json.dumps({"system": "Be brief.", "prompt": "hi"}), "ai.response.text": "hello",
                    "ai.usage.promptTokens": 5, "ai.usage.completionTokens": 1})
    assert outer["kind"] == "chain"  # its do* child is the model call: usage is not counted twice as llm
    assert json.loads(outer["input"]) == [{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                                          {"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    tool = record({"ai.operationId": "ai.toolCall", "ai.toolCall.name": "get_weather", "ai.toolCall.id": "call_0",
                   "ai.toolCall.args": '{"city":"Paris"}', "ai.toolCall.result": '{"temp":21}'})
    assert tool["kind"] == "tool"
    assert json.loads(tool["input"]) == {"city": "Paris"} and json.loads(tool["output"]) == {"temp": 21}


def test_logfire_request_and_response_data():
    rec = record({
        "logfire.span_type": "span", "logfire.msg": "Message with 'claude-3-5-sonnet'",
        "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet",
        "request_data": json.dumps({"model": "claude-3-5-sonnet", "max_tokens": 100,
                                    "messages": [{"role": "user", "content": "weather?"}]}),
        "response_data": json.dumps({"message": {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "toolu_1", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            "usage": {"input_tokens": 30, "output_tokens": 9}}),
        "gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 9,
    })
    assert json.loads(rec["input"]) == [{"role": "user", "parts": [{"type": "text", "content": "weather?"}]}]
    assert json.loads(rec["output"]) == [{"role": "assistant", "parts": [
        {"type": "text", "content": "Let me check."}, WEATHER_CALL]}]
    assert (rec["input_tokens"], rec["output_tokens"]) == (30, 9)


def test_time_to_first_token_from_events():
    ms = 1_000_000
    oi = record({"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o"},
                events=[{"name": "First Token Stream Event", "time_unix_nano": START + 350 * ms, "attributes": {}}])
    assert oi["ttft_ms"] == 350.0
    chunks = [{"name": "gen_ai.content.completion.chunk", "time_unix_nano": START + t * ms, "attributes": {}}
              for t in (420, 380, 500)]
    assert record({"gen_ai.request.model": "gpt-4o"}, events=chunks)["ttft_ms"] == 380.0
    # an explicit attribute wins over events
    assert record({"gen_ai.request.model": "gpt-4o", "gen_ai.response.time_to_first_chunk": 0.3},
                  events=chunks)["ttft_ms"] == 300.0
    assert record({"gen_ai.request.model": "gpt-4o"})["ttft_ms"] is None


SDK = {"gen_ai.provider.name": "anthropic", "gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-x",
       "gen_ai.response.id": "msg_1", "gen_ai.usage.input_tokens": 130, "gen_ai.usage.output_tokens": 6}
INSTRUMENTOR = {"gen_ai.provider.name": "anthropic", "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "claude-x", "gen_ai.response.id": "msg_1",
                "gen_ai.usage.input_tokens": 130, "gen_ai.usage.output_tokens": 6,
                "gen_ai.output.messages": '[{"role": "assistant", "parts": []}]'}


def test_duplicate_by_response_id_across_traces_counts_the_record_with_messages():
    sdk = record(SDK, span_id="a" * 16, trace="1" * 32)
    inst = record(INSTRUMENTOR, span_id="b" * 16, trace="2" * 32)
    later = record(SDK, span_id="c" * 16, start=END + 10**7, end=END + 10**9)  # same (fake) id, another call
    other = record({**SDK, "gen_ai.response.id": "msg_2"}, span_id="d" * 16)
    for order in ([sdk, inst, later, other], [other, later, inst, sdk]):
        for r in order:
            r["attributes"].pop(DUPLICATE_OF, None)
        assert mark_duplicate_calls(order) == [sdk]
        assert sdk["attributes"][DUPLICATE_OF] == "b" * 16
        assert DUPLICATE_OF not in inst["attributes"] and DUPLICATE_OF not in later["attributes"]


def test_duplicate_nested_spans_without_response_id():
    outer = record({"openinference.span.kind": "LLM", "llm.model_name": "claude-x", "llm.provider": "anthropic",
                    "llm.token_count.prompt": 130, "llm.token_count.completion": 6,
                    "llm.output_messages.0.message.role": "assistant"}, span_id="b" * 16)
    inner = record({**SDK, "gen_ai.response.time_to_first_chunk": 0.55}, span_id="a" * 16, parent="b" * 16)
    sibling = record({"openinference.span.kind": "LLM", "llm.model_name": "claude-x", "llm.provider": "anthropic",
                      "llm.token_count.prompt": 5}, span_id="c" * 16)
    # the streamed call's SDK record carries the time to first token, so it is the one that counts
    assert mark_duplicate_calls([outer, inner, sibling]) == [outer]
    assert outer["attributes"][DUPLICATE_OF] == "a" * 16 and DUPLICATE_OF not in sibling["attributes"]


def test_native_messages_are_marked_like_records():
    records = [record(SDK, span_id="a" * 16), record(INSTRUMENTOR, span_id="b" * 16),
               record({"name": "plain"}, span_id="c" * 16)]
    messages = [(r["trace_id"].encode(), encode(r)) for r in records]
    marked = mark_duplicate_messages(messages)
    mark_duplicate_calls(records)
    assert marked == [(r["trace_id"].encode(), encode(r)) for r in records]
    assert orjson.loads(marked[0][1])["attributes"][DUPLICATE_OF] == "b" * 16
    assert marked[2] is messages[2]


def test_litellm_otel_callback_shape():
    """litellm/integrations/opentelemetry.py: traceloop keys, tool calls numbered as completions."""
    rec = record({
        "metadata.user_api_key_alias": "team-a", "gen_ai.request.model": "gpt-4o", "llm.request.type": "acompletion",
        "gen_ai.system": "openai", "llm.is_streaming": "False", "llm.user": "end-user-9",
        "gen_ai.response.id": "chatcmpl-7", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "llm.usage.total_tokens": 40, "gen_ai.usage.completion_tokens": 15, "gen_ai.usage.prompt_tokens": 25,
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "weather in Paris and Lyon?",
        "gen_ai.completion.0.finish_reason": "tool_calls", "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.function_call.name": "get_weather",
        "gen_ai.completion.0.function_call.arguments": '{"city": "Paris"}',
        "gen_ai.completion.1.function_call.name": "get_weather",
        "gen_ai.completion.1.function_call.arguments": '{"city": "Lyon"}',
    })
    assert (rec["provider"], rec["model"], rec["kind"], rec["user_id"]) == ("openai", "gpt-4o-2024-08-06", "llm",
                                                                           "end-user-9")
    assert (rec["input_tokens"], rec["output_tokens"], rec["total_tokens"]) == (25, 15, 40)
    assert rec["attributes"]["llm.is_streaming"] == "False"  # a string stays a string
    [reply] = json.loads(rec["output"])
    assert reply["role"] == "assistant" and reply["finish_reason"] == "tool_calls"
    assert [p["arguments"] for p in reply["parts"]] == [{"city": "Paris"}, {"city": "Lyon"}]


def test_native_messages_decode_only_possible_duplicates_and_agree_with_records():
    root = record({"name": "plain"}, span_id="f" * 16)
    # OpenLLMetry's Anthropic span is a sibling of the SDK's (both under the app's root), same response id
    inst = record(INSTRUMENTOR, span_id="b" * 16, parent="f" * 16)
    sdk = record(SDK, span_id="a" * 16, parent="f" * 16)
    independent = [record({**SDK, "gen_ai.response.id": f"msg_{i}"}, span_id=f"{i:016x}", parent="f" * 16)
                   for i in range(10, 20)]
    records = [root, *independent]
    messages = [(r["trace_id"].encode(), encode(r)) for r in records]
    assert mark_duplicate_messages(messages) is messages  # nothing to decode, nothing changed
    records = [root, sdk, *independent, inst]
    messages = [(r["trace_id"].encode(), encode(r)) for r in records]
    marked = mark_duplicate_messages(messages)
    assert mark_duplicate_calls(records) == [sdk]
    assert marked == [(r["trace_id"].encode(), encode(r)) for r in records]


def test_anthropic_sdk_span_one_hour_cache_writes_are_priced_as_such():
    from core.pricing import Usage, compute_call_cost
    from stream_processors.enrich import enrich
    rec = enrich(record({**SDK, "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 130,
                         "gen_ai.usage.cache_read.input_tokens": 100, "gen_ai.usage.cache_write.input_tokens": 20,
                         "anthropic.usage.cache_creation.ephemeral_5m_input_tokens": 12,
                         "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 8}))
    expected = compute_call_cost("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5", Usage(
        input_tokens=130, output_tokens=6, cache_read_tokens=100, cache_creation_tokens=20,
        cache_creation_1h_tokens=8)).cost
    assert (rec["cache_read_tokens"], rec["cache_creation_tokens"]) == (100, 20)
    assert rec["cost"] == expected and expected != compute_call_cost(
        "anthropic", "claude-sonnet-4-5", None, Usage(input_tokens=130, output_tokens=6, cache_read_tokens=100,
                                                      cache_creation_tokens=20)).cost


def test_native_messages_of_unexpected_layout_are_decided_by_decoding():
    sdk, inst = record(SDK, span_id="a" * 16), record(INSTRUMENTOR, span_id="b" * 16)
    sdk["project_id"] = "a-longer-project-id"  # ids no longer at the first record's offsets
    records = [inst, sdk]
    messages = [(r["trace_id"].encode(), encode(r)) for r in records]
    marked = mark_duplicate_messages(messages)
    assert mark_duplicate_calls(records) == [sdk]
    assert marked == [(r["trace_id"].encode(), encode(r)) for r in records]


def test_nested_model_calls_with_their_own_response_ids_are_not_decoded_and_loops_end():
    """An agent's LLM step whose children are model calls with response ids of their own is not one
    call: nothing is decoded or changed (this was 18 us a span of ingest). Parent links that loop, as
    a hostile request may send, end the ancestor walk."""
    root = record({**SDK, "gen_ai.response.id": "msg_root"}, span_id="f" * 16)
    children = [record({**SDK, "gen_ai.response.id": f"msg_{i}"}, span_id=f"{i:016x}", parent="f" * 16)
                for i in range(10, 13)]
    messages = [(r["trace_id"].encode(), encode(r)) for r in [root, *children]]
    assert mark_duplicate_messages(messages) is messages
    assert mark_duplicate_calls([root, *children]) == []

    a = record(SDK, span_id="a" * 16, parent="b" * 16)
    b = record(INSTRUMENTOR, span_id="b" * 16, parent="a" * 16)
    messages = [(r["trace_id"].encode(), encode(r)) for r in (a, b)]
    marked = mark_duplicate_messages(messages)
    mark_duplicate_calls([a, b])
    assert marked == [(r["trace_id"].encode(), encode(r)) for r in (a, b)]
