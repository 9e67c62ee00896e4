"""ingest.normalize: every supported convention lands in the canonical columns."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import orjson
import pytest

from core.span import COLUMNS, decode, encode
from ingest.normalize import Limits, RawSpan, SpanRejected, make_resource, to_record

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"
PARENT = "eee19b7ec3c1b173"
START = 1_700_000_000_000_000_000
END = START + 1_500_000_000  # 1.5 s later


def span(attributes: dict | None = None, **overrides) -> RawSpan:
    fields = dict(trace_id=TRACE, span_id=SPAN, parent_span_id=PARENT, name="chat gpt-4o",
                  start_ns=START, end_ns=END, attributes=attributes or {})
    fields.update(overrides)
    return RawSpan(**fields)


def record(attributes: dict | None = None, resource: dict | None = None, **overrides) -> dict:
    return to_record("proj", resource or {}, ("scope", "1.0"), span(attributes, **overrides))


def test_record_has_exactly_the_canonical_columns_and_survives_the_bus():
    rec = record({"gen_ai.request.model": "gpt-4o"})
    assert list(rec) == list(COLUMNS)
    back = decode(encode(rec))
    assert back["start_time"] == rec["start_time"] == datetime.fromtimestamp(1_700_000_000, timezone.utc)
    assert back["trace_id"] == TRACE and back["parent_span_id"] == PARENT
    assert rec["duration_ms"] == 1500.0
    assert rec["attributes"]["otel.scope.name"] == "scope"


def test_otel_genai_current_convention():
    rec = record({
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.cache_creation.input_tokens": 100,
        "gen_ai.usage.reasoning.output_tokens": 200,
        "gen_ai.response.time_to_first_chunk": 0.25,
        "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]',
        "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"hello"}]}]',
        "gen_ai.request.temperature": 0.5,
    })
    assert (rec["kind"], rec["operation"], rec["provider"]) == ("llm", "chat", "openai")
    assert (rec["request_model"], rec["model"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    # already inclusive: kept as sent
    assert (rec["input_tokens"], rec["output_tokens"], rec["total_tokens"]) == (1200, 300, 1500)
    assert (rec["cache_read_tokens"], rec["cache_creation_tokens"], rec["reasoning_tokens"]) == (1000, 100, 200)
    assert rec["ttft_ms"] == 250.0
    assert json.loads(rec["input"])[0]["role"] == "user"
    assert rec["output_preview"] == rec["output"][:200]
    assert rec["attributes"]["gen_ai.request.temperature"] == "0.5"
    assert "gen_ai.usage.input_tokens" not in rec["attributes"]
    assert rec["cost"] is None and rec["cost_source"] == ""


def test_deprecated_genai_and_error_type():
    rec = record({
        "gen_ai.system": "OpenAI",
        "gen_ai.request.model": "gpt-3.5-turbo",
        "gen_ai.usage.prompt_tokens": "10",  # numeric strings are accepted
        "gen_ai.usage.completion_tokens": 5,
        "gen_ai.prompt": "Say hi",
        "gen_ai.completion": "hi",
        "error.type": "RateLimitError",
    })
    assert rec["provider"] == "openai"
    assert (rec["input_tokens"], rec["output_tokens"], rec["total_tokens"]) == (10, 5, 15)
    assert (rec["input"], rec["output"]) == ("Say hi", "hi")
    assert (rec["status"], rec["error_type"]) == ("error", "RateLimitError")
    assert rec["model"] == "gpt-3.5-turbo"  # no response model: falls back to the request model


def test_openllmetry_indexed_prompts_and_traceloop_properties():
    rec = record({
        "gen_ai.system": "Anthropic",
        "gen_ai.request.model": "claude-3-5-sonnet",
        "llm.request.type": "chat",
        "traceloop.span.kind": "task",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "Be brief.",
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "Hi",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Hello",
        "gen_ai.completion.0.finish_reason": "stop",
        # OpenLLMetry's Anthropic instrumentation already adds cache tokens into the prompt count
        "gen_ai.usage.prompt_tokens": 1110,
        "gen_ai.usage.completion_tokens": 20,
        "gen_ai.usage.cache_read_input_tokens": 1000,
        "gen_ai.usage.cache_creation_input_tokens": 100,
        "llm.usage.total_tokens": 1130,
        "traceloop.association.properties.session_id": "s-42",
        "traceloop.association.properties.user_id": "u-7",
        "traceloop.association.properties.tenant": "acme",
    })
    assert rec["kind"] == "chain"  # an explicit span kind beats what the operation implies
    assert rec["operation"] == "chat" and rec["provider"] == "anthropic"
    assert json.loads(rec["input"]) == [{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                                        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]
    assert json.loads(rec["output"]) == [{"role": "assistant", "parts": [{"type": "text", "content": "Hello"}],
                                          "finish_reason": "stop"}]
    assert (rec["input_tokens"], rec["cache_read_tokens"], rec["cache_creation_tokens"]) == (1110, 1000, 100)
    assert rec["total_tokens"] == 1130
    assert (rec["session_id"], rec["user_id"]) == ("s-42", "u-7")
    assert rec["attributes"]["metadata.tenant"] == "acme"
    assert not any(k.startswith("gen_ai.prompt.") for k in rec["attributes"])


def test_openinference_convention():
    rec = record({
        "openinference.span.kind": "LLM",
        "llm.model_name": "claude-3-5-haiku-20241022",
        "llm.provider": "anthropic",
        "llm.system": "anthropic",
        "llm.token_count.prompt": 1500,  # inclusive, as openinference-instrumentation-anthropic reports
        "llm.token_count.completion": 80,
        "llm.token_count.total": 1580,
        "llm.token_count.prompt_details.cache_read": 1200,
        "llm.token_count.prompt_details.cache_write": 200,
        "input.value": '{"messages": [{"role": "user", "content": "raw request"}]}',
        "input.mime_type": "application/json",
        "output.value": "The answer",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "What is 2+2?",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "4",
        "session.id": "sess-1",
        "user.id": "user-1",
        "tag.tags": ["prod", "beta"],
        "metadata": '{"experiment": "A", "n": 3}',
    })
    assert rec["kind"] == "llm" and rec["model"] == "claude-3-5-haiku-20241022"
    assert rec["provider"] == "anthropic" and rec["request_model"] == ""
    assert (rec["input_tokens"], rec["output_tokens"], rec["total_tokens"]) == (1500, 80, 1580)
    assert (rec["cache_read_tokens"], rec["cache_creation_tokens"]) == (1200, 200)
    # structured messages win over the raw input.value; the loser stays in attributes
    assert json.loads(rec["input"]) == [{"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]}]
    assert json.loads(rec["output"]) == [{"role": "assistant", "parts": [{"type": "text", "content": "4"}]}]
    assert rec["attributes"]["input.value"].startswith('{"messages"')
    assert rec["attributes"]["llm.system"] == "anthropic"
    assert (rec["session_id"], rec["user_id"], rec["tags"]) == ("sess-1", "user-1", ["prod", "beta"])
    assert rec["attributes"]["metadata.experiment"] == "A" and rec["attributes"]["metadata.n"] == "3"


@pytest.mark.parametrize("kind, expected", [("CHAIN", "chain"), ("TOOL", "tool"), ("RETRIEVER", "retriever"),
                                            ("EMBEDDING", "embedding"), ("AGENT", "agent"),
                                            ("RERANKER", "retriever"), ("GUARDRAIL", "span"),
                                            ("EVALUATOR", "evaluator")])
def test_openinference_span_kinds(kind, expected):
    assert record({"openinference.span.kind": kind})["kind"] == expected


def test_langfuse_convention():
    rec = record({
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "claude-sonnet-4",
        "langfuse.observation.input": '[{"role":"user","content":"hi"}]',
        "langfuse.observation.output": '{"role":"assistant","content":"hello"}',
        # Langfuse usage keys are disjoint: input excludes the cached tokens
        "langfuse.observation.usage_details": '{"input": 50, "output": 20, "cache_read_input_tokens": 1000,'
                                              ' "cache_creation_input_tokens": 10}',
        "langfuse.observation.cost_details": '{"input": 0.001, "output": 0.002, "total": 0.003}',
        "langfuse.session.id": "lf-session",
        "langfuse.user.id": "lf-user",
        "langfuse.trace.tags": ["t1", "t2"],
        "langfuse.environment": "staging",
        "langfuse.release": "v1.2.3",
        "langfuse.observation.prompt.name": "qa-prompt",
        "langfuse.observation.prompt.version": 4,
        "langfuse.trace.metadata.customer": "acme",
        "langfuse.observation.level": "ERROR",
        "langfuse.observation.status_message": "upstream failed",
    })
    assert rec["kind"] == "llm" and rec["model"] == "claude-sonnet-4"
    assert (rec["input_tokens"], rec["output_tokens"], rec["total_tokens"]) == (1060, 20, 1080)
    assert (rec["cache_read_tokens"], rec["cache_creation_tokens"]) == (1000, 10)
    assert (rec["cost"], rec["cost_source"]) == (0.003, "user")
    assert (rec["session_id"], rec["user_id"], rec["tags"]) == ("lf-session", "lf-user", ["t1", "t2"])
    assert (rec["environment"], rec["release"]) == ("staging", "v1.2.3")
    assert (rec["prompt_name"], rec["prompt_version"]) == ("qa-prompt", "4")
    assert rec["attributes"]["metadata.customer"] == "acme"
    assert (rec["status"], rec["status_message"]) == ("error", "upstream failed")
    assert json.loads(rec["output"])["content"] == "hello"


def test_tool_and_retrieval_spans_get_input_and_output():
    tool = record({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                   "gen_ai.tool.call.arguments": '{"city": "Paris"}', "gen_ai.tool.call.result": "sunny"})
    assert (tool["kind"], tool["input"], tool["output"]) == ("tool", '{"city": "Paris"}', "sunny")
    assert tool["attributes"]["gen_ai.tool.name"] == "get_weather"
    retrieval = record({"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.query.text": "refund policy",
                        "gen_ai.retrieval.documents": '[{"id": "doc-1", "score": 0.9}]'})
    assert (retrieval["kind"], retrieval["input"]) == ("retriever", "refund policy")
    assert json.loads(retrieval["output"])[0]["id"] == "doc-1"


def test_langfuse_completion_start_time_gives_ttft():
    rec = record({"langfuse.observation.completion_start_time": '"2023-11-14T22:13:20.400000Z"'})
    assert rec["ttft_ms"] == pytest.approx(400.0)


def test_evalforge_own_attributes_and_resource():
    rec = record(
        {
            "evalforge.session_id": "s1", "session.id": "other", "evalforge.user_id": "u1",
            "evalforge.tags": ["a", "b"], "tag.tags": ["b", "c"],
            "evalforge.metadata.team": "search", "evalforge.metadata.flags": {"x": 1},
            "evalforge.environment": "prod", "evalforge.release": "2025.1",
            "evalforge.prompt.name": "summarise", "evalforge.prompt.version": "7",
            "evalforge.span.kind": "agent", "evalforge.cost": 0.25,
        },
        resource={"service.name": "checkout", "deployment.environment.name": "dev",
                  "service.version": "9.9", "host.name": "box-1"},
    )
    assert (rec["session_id"], rec["user_id"]) == ("s1", "u1")
    assert rec["attributes"]["session.id"] == "other"  # the lower-precedence value is not lost
    assert rec["tags"] == ["a", "b", "c"]
    assert rec["attributes"]["metadata.team"] == "search"
    assert json.loads(rec["attributes"]["metadata.flags"]) == {"x": 1}
    assert (rec["environment"], rec["release"]) == ("prod", "2025.1")  # span beats resource
    assert (rec["prompt_name"], rec["prompt_version"], rec["kind"]) == ("summarise", "7", "agent")
    assert (rec["cost"], rec["cost_source"]) == (0.25, "user")
    assert rec["service_name"] == "checkout"
    assert rec["attributes"]["resource.host.name"] == "box-1"


def test_resource_environment_and_release_fill_in():
    rec = record({}, resource={"service.name": "api", "deployment.environment": "qa", "service.version": "1.0"})
    assert (rec["service_name"], rec["environment"], rec["release"]) == ("api", "qa", "1.0")


def test_anthropic_raw_input_count_is_made_inclusive():
    # an older instrumentation copied Anthropic's usage.input_tokens (cache excluded)
    rec = record({"gen_ai.system": "anthropic", "gen_ai.usage.input_tokens": 12,
                  "gen_ai.usage.output_tokens": 30, "gen_ai.usage.cache_read.input_tokens": 2000,
                  "gen_ai.usage.cache_creation.input_tokens": 300})
    assert rec["input_tokens"] == 2312
    assert rec["total_tokens"] == 2342


def test_reasoning_larger_than_output_is_added():
    rec = record({"gen_ai.usage.output_tokens": 10, "gen_ai.usage.reasoning.output_tokens": 500})
    assert rec["output_tokens"] == 510


def test_status_exception_events_and_event_json():
    rec = record({}, status_code=2, events=[
        {"name": "exception", "time_unix_nano": START + 10,
         "attributes": {"exception.type": "openai.APITimeoutError", "exception.message": "timed out"}}])
    assert rec["status"] == "error"
    assert rec["error_type"] == "openai.APITimeoutError" and rec["status_message"] == "timed out"
    events = json.loads(rec["events"])
    assert events[0]["name"] == "exception" and events[0]["time"].startswith("2023-11-14T22:13:20")
    assert record({}, status_code=1)["status"] == "ok"
    assert record({})["status"] == "unset" and record({})["events"] == "[]"


def test_old_genai_content_events_fill_input_and_output():
    rec = record({}, events=[
        {"name": "gen_ai.content.prompt", "time_unix_nano": START, "attributes": {"gen_ai.prompt": "q?"}},
        {"name": "gen_ai.content.completion", "time_unix_nano": END, "attributes": {"gen_ai.completion": "a"}},
    ])
    assert (rec["input"], rec["output"]) == ("q?", "a")


def test_unmapped_attributes_kept_json_encoded():
    rec = record({"custom.str": "x", "custom.int": 3, "custom.bool": True, "custom.list": [1, "a"],
                  "custom.map": {"k": [1.5]}})
    attrs = rec["attributes"]
    assert attrs["custom.str"] == "x" and attrs["custom.int"] == "3" and attrs["custom.bool"] == "true"
    assert json.loads(attrs["custom.list"]) == [1, "a"] and json.loads(attrs["custom.map"]) == {"k": [1.5]}


def test_non_string_input_is_json_encoded_and_preview_is_200_chars():
    rec = record({"evalforge.input": {"question": "x" * 500}})
    assert json.loads(rec["input"]) == {"question": "x" * 500}
    assert len(rec["input_preview"]) == 200


def test_long_values_are_truncated_and_counted():
    limits = Limits(max_attribute_bytes=1000, max_payload_bytes=2000)
    rec = to_record("p", {}, None, span({"big": "é" * 1000, "small": "ok", "gen_ai.prompt": "y" * 5000}),
                    limits=limits)
    big = rec["attributes"]["big"]
    assert big.startswith("é" * 500) and "truncated 1000 bytes" in big
    assert len(rec["input"].encode()) < 2100 and "truncated 3000 bytes" in rec["input"]
    assert rec["attributes"]["evalforge.truncated"] == "2"
    assert "evalforge.truncated" not in record({"small": "ok"})["attributes"]


def test_unusable_token_values_are_kept_not_counted():
    rec = record({"gen_ai.usage.input_tokens": "lots", "gen_ai.usage.output_tokens": -5})
    assert rec["input_tokens"] == 0 and rec["attributes"]["gen_ai.usage.input_tokens"] == "lots"
    assert rec["output_tokens"] == 0


@pytest.mark.parametrize("overrides, field", [
    ({"trace_id": "0" * 32}, "trace_id"),
    ({"trace_id": "abc"}, "trace_id"),
    ({"trace_id": "g" * 32}, "trace_id"),
    ({"span_id": "0" * 16}, "span_id"),
    ({"span_id": "12345"}, "span_id"),
    ({"parent_span_id": "xyz"}, "parent_span_id"),
    ({"name": ""}, "name"),
    ({"end_ns": START - 1}, "end_time"),
    ({"start_ns": 0}, "start_time"),
    ({"end_ns": 2**64 - 1}, "end_time"),
])
def test_invalid_spans_are_rejected_naming_the_field(overrides, field):
    with pytest.raises(SpanRejected) as info:
        to_record("p", {}, None, span({}, **overrides))
    assert info.value.field == field


def test_root_span_has_empty_parent():
    assert record({}, parent_span_id="")["parent_span_id"] == ""


def test_resource_built_once_is_reused():
    resource = make_resource({"service.name": "svc", "k": "v"}, "lib", "2")
    a = to_record("p", resource, None, span({"x": 1}))
    b = to_record("p", resource, None, span({"y": 2}))
    assert a["attributes"]["resource.k"] == "v" and "x" not in b["attributes"]
    assert "y" not in resource.attributes  # the shared resource is not mutated
    assert orjson.loads(encode(a))["service_name"] == "svc"


def test_integers_beyond_64_bits_are_kept_as_text():
    rec = record({"big": 2**70, "evalforge.input": {"n": -(2**70)}})
    assert rec["attributes"]["big"] == str(2**70)
    assert json.loads(rec["input"]) == {"n": -(2**70)}
    encode(rec)  # and the record still goes on the bus
