"""The compiled OTLP path (``native/``, ``ingest.native``) against the Python reference.

Whatever the native path answers must be byte for byte what ``decode_otlp`` + ``core.span.encode``
make; where it cannot be exact it must answer ``None`` (the Python path then does the request).
"""

from __future__ import annotations

import string
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from core.span import encode
from ingest import conventions, native
from ingest.normalize import DEFAULT_LIMITS, Limits
from ingest.otlp import PROTOBUF, decode_otlp
from tests.conftest import report

NOW = datetime(2026, 11, 23, 2, 12, 18, 34004, tzinfo=timezone.utc)
OFFLOAD = 32 * 1024


def python_messages(body: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[list[tuple[bytes, bytes]], int]:
    result = decode_otlp(body, PROTOBUF, "proj-1", limits=limits, ingested_at=NOW)
    return [(r["trace_id"].encode(), encode(r)) for r in result.records], len(result.rejected)


def native_messages(body: bytes, limits: Limits = DEFAULT_LIMITS) -> list[tuple[bytes, bytes]] | None:
    return native.encode_otlp(body, "proj-1", limits, OFFLOAD, NOW)


def kv(key: str, value: object) -> KeyValue:
    out = KeyValue(key=key)
    _set(out.value, value)
    return out


def _set(target: AnyValue, value: object) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _set(target.kvlist_value.values.add(key=k).value, v)
    elif isinstance(value, list):
        target.array_value.SetInParent()
        for item in value:
            _set(target.array_value.values.add(), item)


def genai_request(n: int = 8) -> bytes:
    """What the SDK and OTel GenAI instrumentations send: the path that must be native."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "bot"), kv("service.version", "2.0"),
                                   kv("deployment.environment.name", "prod"), kv("host.cpus", 8)])
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "evalforge", "0.1.0"
    for i in range(n):
        span = ss.spans.add(trace_id=bytes([i + 1]) * 16, span_id=bytes([i + 7]) * 8, name=f"chat gpt-4o {i}",
                            kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=1_763_800_000_123_456_789 + i,
                            end_time_unix_nano=1_763_800_001_000_000_000 + i * 1000)
        if i % 2:
            span.parent_span_id = bytes([9]) * 8
        span.attributes.extend([
            kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", "OpenAI"),
            kv("gen_ai.request.model", "gpt-4o"), kv("gen_ai.response.model", "gpt-4o-2024-08-06"),
            kv("gen_ai.request.temperature", 0.7), kv("gen_ai.response.finish_reasons", ["stop"]),
            kv("gen_ai.usage.input_tokens", 1200), kv("gen_ai.usage.output_tokens", 80 + i),
            kv("gen_ai.usage.cache_read.input_tokens", 1024), kv("gen_ai.usage.reasoning.output_tokens", 12),
            kv("gen_ai.input.messages", '[{"role":"user","parts":[{"type":"text","content":"héllo\\n\\"q\\""}]}]'),
            kv("gen_ai.output.messages", "x" * 300), kv("evalforge.session_id", "s1"),
            kv("evalforge.user_id", "u\u00e9"), kv("evalforge.ttft_ms", 123), kv("evalforge.cost", 0.0012),
            kv("evalforge.environment", "staging"), kv("llm.model_name", "loser-model"),
            kv("error.type", "RateLimitError" if i == 3 else ""), kv("server.port", 443),
            kv("evalforge.tags", ["beta", "", "beta", 7]), kv("langfuse.trace.tags", "vip"),
            kv("evalforge.metadata.tenant", "acme"), kv("langfuse.observation.metadata.n", 3),
        ])
        if i == 5:
            span.status.code, span.status.message = 2, "boom\tcontrol\x01"
        if i in (5, 6):  # what the OTel SDK's record_exception adds
            event = span.events.add(name="exception", time_unix_nano=1_763_800_000_500_000_000)
            event.attributes.extend([kv("exception.type", "openai.RateLimitError"), kv("exception.message", "429 é"),
                                     kv("exception.stacktrace", "Traceback...\n  line 1"), kv("exception.escaped", True)])
            span.events.add(name="retry", time_unix_nano=0).attributes.extend([kv("n", [1, 2.5, "x"])])
    return req.SerializeToString()


def test_native_extension_is_built_and_enabled() -> None:
    # scripts/bootstrap builds it; ingest would still work without it, but slowly
    assert native.AVAILABLE


def test_genai_request_goes_native_and_matches_python_byte_for_byte() -> None:
    body = genai_request()
    expected, rejected = python_messages(body)
    assert rejected == 0
    got = native_messages(body)
    assert got is not None
    assert got == expected
    rec = orjson.loads(got[3][1])
    assert (rec["provider"], rec["model"], rec["status"], rec["cost"]) == ("openai", "gpt-4o-2024-08-06", "error", 0.0012)
    assert rec["attributes"]["llm.model_name"] == "loser-model"
    assert rec["tags"] == ["beta", "7", "vip"]
    crashed = orjson.loads(got[6][1])  # an exception event fills what the span itself lacks
    assert (crashed["error_type"], crashed["status_message"]) == ("openai.RateLimitError", "429 é")
    assert [e["name"] for e in orjson.loads(crashed["events"])] == ["exception", "retry"]
    assert (rec["attributes"]["metadata.tenant"], rec["attributes"]["metadata.n"]) == ("acme", "3")


@pytest.mark.parametrize("change, why", [
    (lambda s: s.events.add(name="gen_ai.content.prompt"), "prompt sent as an event"),
    (lambda s: s.events.add(name="e").attributes.extend([kv("a", 1), kv("a", 2)]), "duplicate event attribute"),
    (lambda s: s.events.add(name="e").attributes.append(kv("a", {"b": 1})), "kvlist event attribute"),
    (lambda s: s.links.add(trace_id=b"\1" * 16, span_id=b"\2" * 8), "links"),
    (lambda s: s.attributes.append(kv("gen_ai.prompt.0.content", "hi")), "indexed message key"),
    (lambda s: s.attributes.append(kv("evalforge.tags", '["a"]')), "tags as a JSON string"),
    (lambda s: s.attributes.append(kv("metadata", '{"a": 1}')), "metadata JSON object"),
    (lambda s: s.attributes.extend([kv("evalforge.metadata.x", "1"), kv("langfuse.metadata.x", "2")]),
     "two metadata keys for one attribute"),
    (lambda s: s.attributes.append(kv("big", "é" * 40_000)), "attribute over the limit"),
    (lambda s: s.attributes.append(kv("gen_ai.input.messages", "a" * (OFFLOAD + 1))), "payload to offload"),
    (lambda s: s.attributes.append(kv("nested", {"a": 1})), "kvlist value"),
    (lambda s: s.attributes.append(kv("raw", b"\0\1")), "bytes value"),
    (lambda s: s.attributes.append(kv("server.port", 1)), "duplicate key"),
    (lambda s: s.attributes.append(kv("gen_ai.usage.input_tokens", "12")), "count as string"),
    (lambda s: s.attributes.append(kv("langfuse.observation.level", "ERROR")), "langfuse level"),
    (lambda s: setattr(s, "span_id", b"\0" * 8), "span rejected"),
    (lambda s: setattr(s, "end_time_unix_nano", 1), "end before start"),
    (lambda s: s.attributes.append(kv("gen_ai.provider.name", "Ωpen")), "non-ASCII lower()"),
])
def test_what_only_python_does_falls_back(change, why) -> None:  # type: ignore[no-untyped-def]
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\1" * 16, span_id=b"\2" * 8, name="s", start_time_unix_nano=10, end_time_unix_nano=20)
    span.attributes.append(kv("server.port", 443))
    assert native_messages(req.SerializeToString()) is not None
    change(span)
    assert native_messages(req.SerializeToString()) is None, why


def test_unreadable_protobuf_falls_back_so_python_names_the_error() -> None:
    good = genai_request(2)
    for body in (good[:-3], b"\x0a\xff\xff\xff\xff\x0f", good + b"\x07", b"\x0a\x02\x0a\x80"):
        assert native_messages(body) is None


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_is_orjsons(value: float) -> None:
    assert native._native.format_float_for_tests(value) == orjson.dumps(value).decode()


@pytest.mark.parametrize("value", [562949953421312.25, 1e-5, 1e-6, 1e15, 1e16, 9999999999999998.0, 0.1 + 0.2, 5e-324,
                                   1.7976931348623157e308, -0.0, 123456789.0, 2.5e-7, 1e21])
def test_float_text_at_the_notation_edges(value: float) -> None:
    assert native._native.format_float_for_tests(value) == orjson.dumps(value).decode()


# --- random requests: native is either byte-identical or declines ----------------------------------

_KEYS = sorted(conventions._SLOTS) + ["server.port", "resource.x", "otel.span_kind", "metadata", "evalforge.tags",
                                      "gen_ai.prompt.0.role", "langfuse.observation.usage_details", "", "k\u00e9y"]
_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40) | \
    st.sampled_from(["chat", "Chat", "LLM", "embeddings", "completion", "gpt-4o", "OpenAI", "tool", "ERROR", ""])
_number = st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 5_000_000_000) | st.floats(0, 1e6)
_scalar = _text | _number | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
_plain = _text | _number | st.booleans() | st.lists(_text | _number | st.booleans(), max_size=3)
_wild = _scalar | st.lists(_scalar, max_size=4) | st.just({"a": 1}) | st.just(b"\x01")
_id16 = st.sampled_from([b"\x00" * 16, b"\x01" * 15]) | st.binary(min_size=16, max_size=16)
_id8 = st.sampled_from([b"\x00" * 8, b"", b"\x05"]) | st.binary(min_size=8, max_size=8)


_COUNTS = {k for k, (slot, _) in conventions._SLOTS.items() if slot in conventions._COUNT_SLOTS}
_NUMBERS = {k for k, (slot, _) in conventions._SLOTS.items() if slot in ("cost", "ttft_ms", "ttft_s")}
_PAYLOADS = {k for k, (slot, _) in conventions._SLOTS.items() if slot in ("input", "output")}
_PYTHON_ONLY = ("cost_details", "usage_details", "level", "level_message", "completion_start")
_PLAIN_KEYS = [k for k, (slot, _) in sorted(conventions._SLOTS.items()) if slot not in _PYTHON_ONLY] + \
    sorted(conventions._TAG_KEYS) + [f"{p}k{i}" for i, p in enumerate(conventions._METADATA_PREFIXES)] + \
    ["metadata.x", "server.port", "http.url", "x", "k\u00e9y", ""]


# Slots whose values ingest lower-cases: real clients send ASCII names there ("LLM", "chat", "openai");
# Unicode case folding is left to Python.
_ASCII_NAMES = {k for k, (slot, _) in conventions._SLOTS.items() if slot in ("kind", "operation", "provider")}


def _plain_value(key: str) -> st.SearchStrategy[object]:
    if key in _ASCII_NAMES:
        return st.text(string.ascii_letters + string.digits + "._-", max_size=20) | \
            st.sampled_from(["LLM", "CHAIN", "TOOL", "chat", "embeddings", "OpenAI", "anthropic", "generation"])
    if key in _COUNTS:
        return st.integers(-5, 5_000_000_000) | st.floats(0, 1e10)
    if key in _NUMBERS:
        return st.integers(0, 10**6) | st.floats(0, 1e6)
    if key in _PAYLOADS:
        return _text
    if key in conventions._SLOTS:  # a text column
        return _text | st.integers(-(2**63), 2**63 - 1) | st.booleans()
    return _plain


@st.composite
def requests(draw: st.DrawFn, wild: bool | None = None) -> bytes:
    """Half the requests are "plain" (valid spans, unique keys, scalar values: the native path must
    take most of them), half are wild (anything goes: the native path must decline or be exact)."""
    wild = draw(st.booleans()) if wild is None else wild
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rs = req.resource_spans.add()
        resource_keys = ["service.name", "service.version", "deployment.environment", "langfuse.release",
                         "evalforge.environment", "host"]
        rs.resource.attributes.extend(kv(k, v) for k, v in draw(
            st.lists(st.tuples(st.sampled_from(resource_keys), _scalar if wild else _text), max_size=4,
                     unique_by=None if wild else (lambda t: t[0]))))
        for _ in range(draw(st.integers(1, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = draw(_text), draw(_text)
            for _ in range(draw(st.integers(1, 3))):
                if wild:
                    start = draw(st.integers(0, 2**63 - 1) | st.integers(1_700_000_000 * 10**9, 1_800_000_000 * 10**9))
                    end = max(0, min(start + draw(st.integers(-5, 10**12)), 2**64 - 1))
                    ids = draw(_id16), draw(_id8), draw(_id8)
                    name = draw(_text)
                else:
                    start = draw(st.integers(1_700_000_000 * 10**9, 1_800_000_000 * 10**9))
                    end = start + draw(st.integers(0, 10**12))
                    ids = (draw(st.binary(min_size=16, max_size=16).filter(any)),
                           draw(st.binary(min_size=8, max_size=8).filter(any)),
                           draw(st.just(b"") | st.binary(min_size=8, max_size=8)))
                    name = draw(st.text(min_size=1, max_size=20))
                span = ss.spans.add(trace_id=ids[0], span_id=ids[1], parent_span_id=ids[2], name=name,
                                    kind=draw(st.integers(0, 7)), start_time_unix_nano=start, end_time_unix_nano=end)
                if wild:
                    pairs = st.tuples(st.sampled_from(_KEYS) | st.text(string.ascii_lowercase + ".", max_size=12), _wild)
                else:
                    pairs = st.sampled_from(_PLAIN_KEYS).flatmap(lambda k: st.tuples(st.just(k), _plain_value(k)))
                span.attributes.extend(kv(k, v) for k, v in draw(st.lists(
                    pairs, max_size=12, unique_by=None if wild else (lambda t: t[0]))))
                for _ in range(draw(st.integers(0, 2))):
                    event = span.events.add(name=draw(st.sampled_from(["exception", "retry", ""]) | _text),
                                            time_unix_nano=draw(st.integers(0, 2**64 - 1)))
                    event.attributes.extend(kv(k, v) for k, v in draw(st.lists(
                        st.tuples(st.sampled_from(["exception.type", "exception.message", "x"]), _plain if not wild else _wild),
                        max_size=3, unique_by=None if wild else (lambda t: t[0]))))
                # Plain traffic errs now and then (an error with no detail is classified by Python only).
                span.status.code = draw(st.integers(0, 3) if wild else st.sampled_from([0] * 10 + [1] * 9 + [2]))
                span.status.message = draw(_text)
    return req.SerializeToString()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.sampled_from([DEFAULT_LIMITS, Limits(max_attribute_bytes=24, max_payload_bytes=30)]))
def test_random_requests_native_is_exact_or_declines(body: bytes, limits: Limits) -> None:
    got = native_messages(body, limits)
    if got is None:
        return
    expected, rejected = python_messages(body, limits)
    assert rejected == 0
    assert got == expected


def test_native_path_takes_most_plain_requests_exactly() -> None:
    """The differential test above passes trivially if the native path declines everything: on plain
    requests (valid spans, unique keys, the attributes real clients send) it must take at least 80 %,
    each byte for byte equal to the Python path."""
    seen = {"requests": 0, "native": 0}

    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(requests(wild=False))
    def run(body: bytes) -> None:
        seen["requests"] += 1
        got = native_messages(body)
        if got is not None:
            seen["native"] += 1
            assert got == python_messages(body)[0]

    run()
    rate = seen["native"] / seen["requests"]
    report(f"native ingest path took {seen['native']} of {seen['requests']} plain OTLP requests ({rate:.0%})")
    assert rate >= 0.8, f"native ingest path took only {rate:.0%} of plain requests"
