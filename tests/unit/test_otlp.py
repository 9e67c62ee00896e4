"""ingest.otlp: real OTel SDK spans in, canonical records out; bad input never crashes ingest."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ingest.normalize import _SLOTS, _TAG_KEYS
from ingest.otlp import (
    JSON,
    PROTOBUF,
    OTLPDecodeError,
    UnsupportedContentType,
    decode_otlp,
    encode_error,
    encode_response,
)

TRACE = "5b8efff798038103d269b633813fc60c"


@pytest.fixture(scope="module")
def sdk_spans():
    """A small agent trace recorded by the real OpenTelemetry SDK."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot",
                                                        "deployment.environment.name": "prod"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("evalforge.test", "0.1")
    with tracer.start_as_current_span("agent run", attributes={"evalforge.span.kind": "agent",
                                                               "evalforge.session_id": "s-1"}):
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20, "gen_ai.request.stop_sequences": ["\n"],
            "gen_ai.input.messages": json.dumps([{"role": "user", "content": "hi"}]),
        }) as llm:
            llm.add_event("gen_ai.choice", {"index": 0})
        try:
            with tracer.start_as_current_span("lookup_order",
                                              attributes={"gen_ai.operation.name": "execute_tool"}):
                raise TimeoutError("db timed out")
        except TimeoutError:
            pass
    provider.shutdown()
    return exporter.get_finished_spans()


def _hex_ids(request_dict: dict) -> dict:
    """protobuf's JSON printer writes ids as base64; the OTLP JSON mapping wants hex."""
    for resource_spans in request_dict.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return request_dict


def test_protobuf_from_the_real_sdk(sdk_spans):
    body = encode_spans(sdk_spans).SerializeToString()
    result = decode_otlp(body, "application/x-protobuf", "proj-1")
    assert result.rejected == [] and len(result.records) == 3
    by_name = {r["name"]: r for r in result.records}
    root, llm, tool = by_name["agent run"], by_name["chat gpt-4o"], by_name["lookup_order"]
    sdk = {s.name: s for s in sdk_spans}
    assert llm["trace_id"] == format(sdk["chat gpt-4o"].context.trace_id, "032x")
    assert llm["span_id"] == format(sdk["chat gpt-4o"].context.span_id, "016x")
    assert llm["parent_span_id"] == root["span_id"] and root["parent_span_id"] == ""
    # stored to the microsecond, truncated, exactly (no float on the way)
    start_ns = sdk["chat gpt-4o"].start_time
    assert llm["start_time"] == datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=start_ns // 1000)
    assert (llm["kind"], llm["model"], llm["input_tokens"], llm["total_tokens"]) == ("llm", "gpt-4o", 100, 120)
    assert llm["attributes"]["gen_ai.request.stop_sequences"] == '["\\n"]'
    assert llm["attributes"]["otel.span_kind"] == "client"
    assert json.loads(llm["events"])[0]["name"] == "gen_ai.choice"
    assert (root["kind"], root["session_id"]) == ("agent", "s-1")
    assert (tool["kind"], tool["status"], tool["error_type"]) == ("tool", "error", "TimeoutError")
    assert tool["status_message"].endswith("db timed out")
    for rec in result.records:
        assert (rec["project_id"], rec["service_name"], rec["environment"]) == ("proj-1", "support-bot", "prod")
        assert rec["attributes"]["otel.scope.name"] == "evalforge.test"


def test_real_otlp_http_exporter_with_gzip(sdk_spans):
    """The SDK's own OTLP/HTTP exporter posts to a real HTTP server that answers with our encoders."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            content_type = self.headers["Content-Type"]
            result = decode_otlp(body, content_type, "proj")
            received.extend(result.records)
            reply = encode_response(len(result.rejected), result.error_message(), content_type)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces",
                                    compression=Compression.Gzip, timeout=10)
        assert exporter.export(sdk_spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(r["name"] for r in received) == ["agent run", "chat gpt-4o", "lookup_order"]
    assert {r["service_name"] for r in received} == {"support-bot"}


def test_json_with_hex_ids_and_string_int64_matches_protobuf(sdk_spans):
    request = encode_spans(sdk_spans)
    as_json = _hex_ids(MessageToDict(request))
    span = as_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert isinstance(span["startTimeUnixNano"], str)  # int64 printed as a string
    pb = decode_otlp(request.SerializeToString(), PROTOBUF, "p")
    js = decode_otlp(json.dumps(as_json).encode(), "application/json; charset=utf-8", "p")
    assert js.rejected == []
    strip = [{k: v for k, v in r.items() if k != "ingested_at"} for r in pb.records]
    assert [{k: v for k, v in r.items() if k != "ingested_at"} for r in js.records] == strip


def test_json_base64_ids_from_protobuf_printer_are_accepted(sdk_spans):
    request = encode_spans(sdk_spans)
    body = json.dumps(MessageToDict(request)).encode()  # ids left as base64
    result = decode_otlp(body, JSON, "p")
    assert result.rejected == [] and len(result.records) == 3
    assert result.records[0]["trace_id"] == format(sdk_spans[0].context.trace_id, "032x")


def test_json_snake_case_enum_names_and_numbers():
    body = {
        "resource_spans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"string_value": "svc"}}]},
            "scope_spans": [{
                "scope": {"name": "lib", "version": "1"},
                "spans": [{
                    "trace_id": TRACE.upper(), "span_id": "EEE19B7EC3C1B174", "parent_span_id": "",
                    "name": "embed", "kind": "SPAN_KIND_CLIENT",
                    "start_time_unix_nano": 1_700_000_000_000_000_000,
                    "end_time_unix_nano": "1700000000500000000",
                    "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                    "attributes": [
                        {"key": "gen_ai.operation.name", "value": {"stringValue": "embeddings"}},
                        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
                        {"key": "score", "value": {"doubleValue": "NaN"}},
                        {"key": "flag", "value": {"boolValue": True}},
                        {"key": "list", "value": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "a"}]}}},
                        {"key": "map", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": "2"}}]}}},
                        {"key": "raw", "value": {"bytesValue": "AQI="}},
                        {"key": "empty", "value": {}},
                    ],
                    "droppedAttributesCount": 0, "someFutureField": {"x": 1},
                }],
            }],
        }],
        "unknownTopLevel": True,
    }
    result = decode_otlp(orjson.dumps(body), JSON, "p")
    assert result.rejected == []
    rec = result.records[0]
    assert (rec["trace_id"], rec["span_id"]) == (TRACE, "eee19b7ec3c1b174")
    assert (rec["kind"], rec["operation"], rec["input_tokens"]) == ("embedding", "embeddings", 42)
    assert (rec["status"], rec["status_message"], rec["duration_ms"]) == ("error", "boom", 500.0)
    attrs = rec["attributes"]
    assert attrs["flag"] == "true" and attrs["list"] == '[1,"a"]' and attrs["map"] == '{"k":2}'
    assert attrs["raw"] == "AQI=" and attrs["score"] == "null" and "empty" not in attrs
    assert attrs["otel.span_kind"] == "client" and rec["service_name"] == "svc"


def _pb_span(trace_id: bytes, span_id: bytes, name: str, start: int, end: int) -> Span:
    return Span(trace_id=trace_id, span_id=span_id, name=name, start_time_unix_nano=start,
                end_time_unix_nano=end,
                attributes=[KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="m"))])


def test_mixed_protobuf_batch_keeps_good_spans_and_names_bad_fields():
    good_trace, start = bytes.fromhex(TRACE), 1_700_000_000_000_000_000
    spans = [
        _pb_span(good_trace, b"\x01" * 8, "ok-1", start, start + 1),
        _pb_span(b"\x00" * 16, b"\x02" * 8, "zero trace", start, start + 1),
        _pb_span(good_trace[:8], b"\x03" * 8, "short trace", start, start + 1),
        _pb_span(good_trace, b"\x04" * 8, "", start, start + 1),
        _pb_span(good_trace, b"\x05" * 8, "backwards", start, start - 1),
        _pb_span(good_trace, b"\x06" * 4, "short span id", start, start + 1),
        _pb_span(good_trace, b"\x07" * 8, "ok-2", start, start),
    ]
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    result = decode_otlp(request.SerializeToString(), PROTOBUF, "p")
    assert [r["name"] for r in result.records] == ["ok-1", "ok-2"]
    assert [(r.index, r.field) for r in result.rejected] == [
        (1, "trace_id"), (2, "trace_id"), (3, "name"), (4, "end_time"), (5, "span_id")]
    message = result.error_message()
    assert "span 1: trace_id" in message and "span 4: end_time" in message


def test_mixed_json_batch_rejects_malformed_spans_alone():
    good = {"traceId": TRACE, "spanId": "eee19b7ec3c1b174", "name": "good",
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000000001"}
    spans = [
        good,
        dict(good, traceId="not-hex-at-all"),
        dict(good, name=None),
        dict(good, startTimeUnixNano="soon"),
        dict(good, kind="SPAN_KIND_SIDEWAYS"),
        dict(good, attributes=[{"value": {"stringValue": "no key"}}]),
        dict(good, endTimeUnixNano="1"),
        "not a span",
        dict(good, spanId="eee19b7ec3c1b175"),
    ]
    body = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
    result = decode_otlp(body, JSON, "p")
    assert len(result.records) == 2
    assert [(r.index, r.field) for r in result.rejected] == [
        (1, "trace_id"), (2, "name"), (3, "start_time_unix_nano"), (4, "kind"),
        (5, "attributes[0]"), (6, "end_time"), (7, "span")]


@pytest.mark.parametrize("body, content_type", [
    (b"\xff\xff\xff", PROTOBUF),
    (b"\x0a\x05abc", PROTOBUF),  # truncated length-delimited field
    (b"{not json", JSON),
    (b"[1, 2]", JSON),
    (b'{"resourceSpans": {"a": 1}}', JSON),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": 5}]}]}', JSON),
    (b'{"resourceSpans": [{"resource": {"attributes": [1]}}]}', JSON),
])
def test_undecodable_bodies_raise_decode_error(body, content_type):
    with pytest.raises(OTLPDecodeError):
        decode_otlp(body, content_type, "p")


def test_unsupported_content_type():
    with pytest.raises(UnsupportedContentType):
        decode_otlp(b"", "text/plain", "p")


def test_empty_bodies_are_empty_requests():
    assert decode_otlp(b"", PROTOBUF, "p").records == []
    assert decode_otlp(b"{}", JSON, "p").records == []


def test_encode_response_protobuf_and_json():
    full = ExportTraceServiceResponse.FromString(encode_response(0, "", PROTOBUF))
    assert not full.HasField("partial_success")
    partial = ExportTraceServiceResponse.FromString(encode_response(2, "span 1: trace_id", PROTOBUF))
    assert (partial.partial_success.rejected_spans, partial.partial_success.error_message) == (2, "span 1: trace_id")
    assert orjson.loads(encode_response(0, "", JSON)) == {}
    assert orjson.loads(encode_response(3, "bad", JSON)) == {
        "partialSuccess": {"rejectedSpans": "3", "errorMessage": "bad"}}


def test_encode_error_is_a_google_rpc_status():
    status = Status.FromString(encode_error("resourceSpans: must be an array", PROTOBUF))
    assert (status.code, status.message) == (3, "resourceSpans: must be an array")
    long = Status.FromString(encode_error("é" * 300, PROTOBUF, code=8))
    assert (long.code, long.message) == (8, "é" * 300)
    assert orjson.loads(encode_error("bad", "text/plain")) == {"code": 3, "message": "bad"}


# --- fuzzing: nothing but OTLPDecodeError may escape, whatever arrives ----------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats()
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=30,
)
KEYS = ["traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano", "endTimeUnixNano",
        "attributes", "events", "links", "status", "key", "value", "stringValue", "intValue", "doubleValue",
        "boolValue", "arrayValue", "kvlistValue", "bytesValue", "values", "code", "message", "timeUnixNano",
        "resource", "scope", "spans", "scopeSpans", "resourceSpans"]
otlp_like = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(alphabet="0123456789abcdefSPAN_KIND", max_size=34),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    max_leaves=40,
)


def _decode_or_decode_error(body: bytes, content_type: str) -> None:
    try:
        result = decode_otlp(body, content_type, "p")
    except OTLPDecodeError:
        return
    for rec in result.records:
        orjson.dumps(rec)  # every record must be encodable for the bus


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(body):
    _decode_or_decode_error(body, PROTOBUF)
    _decode_or_decode_error(body, JSON)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_arbitrary_json(value):
    _decode_or_decode_error(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS), JSON)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(otlp_like, max_size=3), otlp_like)
def test_fuzz_otlp_shaped_json(spans, resource):
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}
    _decode_or_decode_error(orjson.dumps(body), JSON)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_mutated_protobuf(noise):
    span = _pb_span(bytes.fromhex(TRACE), b"\x01" * 8, "x", 1, 2)
    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]).SerializeToString()
    cut = len(noise) % (len(body) + 1)
    _decode_or_decode_error(body[:cut] + noise, PROTOBUF)


MAPPED_KEYS = sorted(_SLOTS) + sorted(_TAG_KEYS) + [
    "metadata", "evalforge.metadata.x", "llm.input_messages.0.message.role", "gen_ai.prompt.0.content",
    "gen_ai.completion.1.role"]
any_value = st.recursive(
    st.fixed_dictionaries({"stringValue": st.text(max_size=30)})
    | st.fixed_dictionaries({"stringValue": st.sampled_from(['{"a": 1}', "[1, 2]", "ERROR", "12", "-3", "1e400",
                                                            '"2023-11-14T22:13:20Z"', "[", "NaN"])})
    | st.fixed_dictionaries({"intValue": st.integers(min_value=-(2**63), max_value=2**63 - 1)})
    | st.fixed_dictionaries({"doubleValue": st.floats() | st.sampled_from(["NaN", "Infinity", "-Infinity"])})
    | st.fixed_dictionaries({"boolValue": st.booleans()}),
    lambda children: st.fixed_dictionaries(
        {"arrayValue": st.fixed_dictionaries({"values": st.lists(children, max_size=3)})})
    | st.fixed_dictionaries({"kvlistValue": st.fixed_dictionaries({"values": st.lists(
        st.fixed_dictionaries({"key": st.text(max_size=5), "value": children}), max_size=3)})}),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MAPPED_KEYS), any_value), max_size=8))
def test_fuzz_mapped_attributes_with_any_value_type(pairs):
    span = {"traceId": TRACE, "spanId": "eee19b7ec3c1b174", "name": "s",
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000000001",
            "attributes": [{"key": k, "value": v} for k, v in pairs]}
    body = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    result = decode_otlp(body, JSON, "p")
    assert len(result.records) == 1
    rec = result.records[0]
    orjson.dumps(rec)
    assert all(isinstance(v, str) for v in rec["attributes"].values())
    assert all(isinstance(t, str) for t in rec["tags"])
    for column in ("input_tokens", "output_tokens", "total_tokens", "cache_read_tokens"):
        assert 0 <= rec[column] < 2**32
    assert rec["cost"] is None or rec["cost"] >= 0


def test_protobuf_decode_speed_is_measured():
    """decode + normalise of a typical GenAI LLM span (16 attributes, ~1 KB of messages)."""
    messages = json.dumps([{"role": "user", "content": "Hello there, how are you doing today? " * 5}])
    attributes = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in (
        ("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"), ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.response.model", "gpt-4o-2024-08-06"), ("gen_ai.response.id", "chatcmpl-1"),
        ("gen_ai.input.messages", messages), ("gen_ai.output.messages", messages),
        ("evalforge.session_id", "s"), ("evalforge.user_id", "u"))]
    attributes += [KeyValue(key=k, value=AnyValue(int_value=v)) for k, v in (
        ("gen_ai.usage.input_tokens", 120), ("gen_ai.usage.output_tokens", 40),
        ("gen_ai.usage.cache_read.input_tokens", 100), ("gen_ai.request.max_tokens", 500))]
    attributes += [KeyValue(key=k, value=AnyValue(double_value=v)) for k, v in (
        ("gen_ai.request.temperature", 0.2), ("gen_ai.response.time_to_first_chunk", 0.25), ("x.score", 1.0))]
    start = 1_700_000_000_000_000_000
    spans = [Span(trace_id=bytes.fromhex(TRACE), span_id=(i + 1).to_bytes(8, "big"), name="chat",
                  start_time_unix_nano=start, end_time_unix_nano=start + 10**9, attributes=attributes)
             for i in range(1000)]
    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString()
    best = min(_cpu_seconds(lambda: decode_otlp(body, PROTOBUF, "p")) for _ in range(5))
    print(f"protobuf decode+normalise: {best / len(spans) * 1e6:.1f} us/span")
    assert best / len(spans) < 1e-3  # generous: catches a pathological slowdown, not machine noise


def _cpu_seconds(fn) -> float:
    started = time.process_time()
    result = fn()
    elapsed = time.process_time() - started
    assert len(result.records) == 1000
    return elapsed
