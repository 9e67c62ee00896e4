"""Conventions only the Python path maps go there: the native path declines them (and says so by
returning None), so what lands is the Python reference, byte for byte. This holds the list of
first-token events in native/src/lib.rs to ingest.conventions.FIRST_TOKEN_EVENTS."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ingest import conventions, native
from tests.ingest.test_native import genai_request, kv, native_messages, python_messages

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="native extension not built")


def _with(extra_attributes=(), event: str | None = None) -> bytes:
    req = ExportTraceServiceRequest.FromString(genai_request(2))
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.extend(kv(k, v) for k, v in extra_attributes)
    if event is not None:  # the event is then the only source of the time to first token
        kept = [a for a in span.attributes if a.key not in ("evalforge.ttft_ms", "gen_ai.response.time_to_first_chunk")]
        del span.attributes[:]
        span.attributes.extend(kept)
        span.events.add(name=event, time_unix_nano=span.start_time_unix_nano + 300_000_000)
    return req.SerializeToString()


def test_plain_genai_request_stays_native():
    assert native_messages(genai_request(2)) is not None


@pytest.mark.parametrize("event", sorted(conventions.FIRST_TOKEN_EVENTS))
def test_first_token_events_go_to_python(event):
    body = _with(event=event)
    assert native_messages(body) is None
    messages, _ = python_messages(body)
    assert orjson.loads(messages[0][1])["ttft_ms"] == pytest.approx(300.0, abs=0.001)


@pytest.mark.parametrize("key,value", [
    ("ai.prompt.messages", '[{"role": "user", "content": "hi"}]'), ("ai.prompt", '{"prompt": "hi"}'),
    ("ai.response.text", "hello"), ("ai.response.toolCalls", "[]"), ("ai.toolCall.args", "{}"),
    ("ai.model.provider", "openai.chat"), ("request_data", '{"messages": []}'), ("response_data", "{}"),
    ("llm.invocation_parameters", '{"model": "gpt-4o"}'),
])
def test_python_only_attributes_go_to_python(key, value):
    body = _with([(key, value)])
    assert native_messages(body) is None
    assert python_messages(body)[1] == 0


def test_vercel_slots_the_extension_can_map_stay_native_and_equal():
    body = _with([("ai.usage.promptTokens", 7), ("ai.response.msToFirstChunk", 412.5),
                  ("ai.operationId", "ai.streamText.doStream")])
    got = native_messages(body)
    assert got is not None and got == python_messages(body)[0]
