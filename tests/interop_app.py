"""The app of tests/test_interop.py, run in a child process: real instrumentations (OpenInference or
OpenLLMetry) around the real openai / anthropic SDKs talking to the fake provider; prints the OTLP
request body of every span it recorded (base64), the trace id and the span count as JSON.

Usage: python -m tests.interop_app openinference|openllmetry <fake provider URL>
"""

from __future__ import annotations

import base64
import json
import sys

import anthropic
import openai
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "input_schema": {"type": "object"}}]


def _instrumentors(which: str):
    if which == "openinference":
        from openinference.instrumentation.anthropic import AnthropicInstrumentor
        from openinference.instrumentation.openai import OpenAIInstrumentor
    else:
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    return OpenAIInstrumentor(), AnthropicInstrumentor()


def record_calls(which: str, llm_url: str) -> list:
    """Four calls (OpenAI tools, OpenAI stream, Anthropic tools, Anthropic stream) under one parent span
    carrying session and user; returns the finished spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"interop-{which}"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentors = _instrumentors(which)
    for inst in instrumentors:
        inst.instrument(tracer_provider=provider)
    try:
        oai = openai.OpenAI(base_url=llm_url + "/v1", api_key="x")
        # the anthropic SDK's own spans, on the same provider (as with a global tracer provider)
        ant = anthropic.Anthropic(base_url=llm_url, api_key="x", open_telemetry={"tracer_provider": provider})
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span("handle_request") as root:
            root.set_attribute("session.id", f"sess-{which}")
            root.set_attribute("user.id", f"user-{which}")
            root.set_attribute("app.version", "9.10")
            root.set_attribute("app.order_id", "12345678901234567890123")
            root.set_attribute("app.flag", "false")
            oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "weather?"}],
                                        tools=OPENAI_TOOLS)
            for _ in oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}):
                pass
            ant.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                messages=[{"role": "user", "content": [{"type": "text", "text": "weather?"}]}])
            for _ in ant.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=64, stream=True,
                                         messages=[{"role": "user", "content": "hi"}]):
                pass
    finally:
        for inst in instrumentors:
            inst.uninstrument()
    provider.shutdown()
    return list(memory.get_finished_spans())


if __name__ == "__main__":
    spans = record_calls(sys.argv[1], sys.argv[2])
    root = next(s for s in spans if s.name == "handle_request")
    print(json.dumps({"body": base64.b64encode(encode_spans(spans).SerializeToString()).decode(),
                      "trace_id": format(root.context.trace_id, "032x"), "spans": len(spans)}))
