"""OTLP/gRPC: the OTel gRPC exporter and Phoenix's ``register()`` against the gRPC port, the error
codes a client acts on, metrics / logs answered, and the same durability promise as OTLP/HTTP."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import REGISTRY

from tests.dropin.conftest import grpc_on_a_free_port, wait_for_port

_SPAN_SQL = ("SELECT name, parent_span_id != '', model, provider, input_tokens, output_tokens, session_id, user_id, "
             "input, output, service_name FROM spans WHERE project_id = {p:String} AND trace_id = {t:String} "
             "ORDER BY start_time")


def _record(name_of_llm: str = "chat gpt-4o", *, empty_name: bool = False):
    """An agent span with one GenAI child span, as finished OTel SDK spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("agent"):
        with tracer.start_as_current_span("" if empty_name else name_of_llm) as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.provider.name", "openai")
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.usage.input_tokens", 300)
            span.set_attribute("gen_ai.usage.output_tokens", 40)
            span.set_attribute("gen_ai.input.messages", '[{"role": "user", "parts": [{"type": "text", "content": "2+2?"}]}]')
            span.set_attribute("gen_ai.output.messages", '[{"role": "assistant", "parts": [{"type": "text", "content": "4"}]}]')
            span.set_attribute("gen_ai.conversation.id", "conv-1")
            span.set_attribute("user.id", "u-9")
    provider.shutdown()
    spans = memory.get_finished_spans()
    return spans, format(spans[0].context.trace_id, "032x")


def _auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_otel_grpc_exporter_lands_in_the_keys_project(live_stack, compression):
    project_id, _, key = live_stack.create_key()
    spans, trace_id = _record()
    exporter = OTLPSpanExporter(endpoint=f"http://{live_stack.grpc_target}", insecure=True,
                                headers={"authorization": f"Bearer {key}"}, compression=compression)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    rows = live_stack.wait_rows(_SPAN_SQL, {"p": project_id, "t": trace_id}, 2)
    assert [r[:2] for r in rows] == [("agent", False), ("chat gpt-4o", True)]
    llm = rows[1]
    assert llm[2:8] == ("gpt-4o", "openai", 300, 40, "conv-1", "u-9")
    assert "2+2?" in llm[8] and '"4"' in llm[9] and llm[10] == "grpc-app"


def test_phoenix_register_over_grpc_and_http(live_stack):
    from phoenix.otel import register

    project_id, _, key = live_stack.create_key()
    trace_ids = []
    for endpoint, protocol in ((f"http://{live_stack.grpc_target}", "grpc"), (f"{live_stack.url}/v1/traces", None)):
        provider = register(endpoint=endpoint, protocol=protocol, api_key=key, project_name="phoenix-project",
                            set_global_tracer_provider=False, verbose=False)
        with provider.get_tracer("phoenix-app").start_as_current_span("llm") as span:
            span.set_attribute("openinference.span.kind", "LLM")
            span.set_attribute("llm.model_name", "claude-sonnet-4-5")
            span.set_attribute("llm.provider", "anthropic")
            span.set_attribute("llm.token_count.prompt", 11)
            span.set_attribute("llm.token_count.completion", 5)
            span.set_attribute("input.value", "ping")
            span.set_attribute("output.value", "pong")
            span.set_attribute("session.id", "ph-s")
            span.set_attribute("user.id", "ph-u")
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
        provider.shutdown()
    for trace_id in trace_ids:
        rows = live_stack.wait_rows(_SPAN_SQL, {"p": project_id, "t": trace_id}, 1)
        assert [r[2:10] for r in rows] == [("claude-sonnet-4-5", "anthropic", 11, 5, "ph-s", "ph-u", "ping", "pong")]


def test_wrong_or_missing_key_is_unauthenticated_naming_the_schemes(live_stack):
    spans, _ = _record()
    request = encode_spans(spans)
    with grpc.insecure_channel(live_stack.grpc_target) as channel:
        stub = TraceServiceStub(channel)
        for metadata in (_auth("ef_" + uuid.uuid4().hex), [("authorization", "Basic !!")], []):
            with pytest.raises(grpc.RpcError) as err:
                stub.Export(request, metadata=metadata, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "Bearer <api key>" in err.value.details() and "Basic" in err.value.details()


def test_bad_spans_are_a_partial_success_and_garbage_is_invalid_argument(live_stack):
    project_id, _, key = live_stack.create_key()
    good, good_trace = _record()
    bad, _ = _record(empty_name=True)
    with grpc.insecure_channel(live_stack.grpc_target) as channel:
        response = TraceServiceStub(channel).Export(encode_spans([*good, *bad]), metadata=_auth(key), timeout=10)
        assert response.partial_success.rejected_spans == 1
        assert "name" in response.partial_success.error_message
        raw_export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as err:
            raw_export(b"\xff\xff\xff", metadata=_auth(key), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(live_stack.wait_rows(_SPAN_SQL, {"p": project_id, "t": good_trace}, 2)) == 2


def _discarded(signal: str) -> float:
    return REGISTRY.get_sample_value("evalforge_ingest_discarded_total", {"signal": signal}) or 0.0


def test_grpc_metrics_and_logs_are_acknowledged_and_counted(live_stack):
    _, _, key = live_stack.create_key()
    metrics = ExportMetricsServiceRequest()
    metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="m").gauge.data_points.add(as_double=1.5)
    logs = ExportLogsServiceRequest()
    scope = logs.resource_logs.add().scope_logs.add()
    for _ in range(3):
        scope.log_records.add().body.string_value = "line"
    before = _discarded("metrics"), _discarded("logs")
    with grpc.insecure_channel(live_stack.grpc_target) as channel:
        assert not MetricsServiceStub(channel).Export(metrics, metadata=_auth(key), timeout=10).HasField("partial_success")
        assert not LogsServiceStub(channel).Export(logs, metadata=_auth(key), timeout=10).HasField("partial_success")
        with pytest.raises(grpc.RpcError) as err:
            LogsServiceStub(channel).Export(logs, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (_discarded("metrics") - before[0], _discarded("logs") - before[1]) == (1, 3)


@pytest.fixture
def private_ingest(migrated_postgres, tmp_path):
    """Start ingest alone (HTTP + gRPC) with settings overrides, its bus and auth cache on a Redis this
    test can stop; returns (gRPC target, that Redis, HTTP URL)."""
    from contextlib import ExitStack

    from launcher.cli import INGEST_PARTS, _routers
    from core.embedded import EmbeddedRedis
    from core.http import build_app
    from core.settings import Settings
    from tests.harness.live_server import LiveServer

    with ExitStack() as stack:
        def start(**overrides):
            redis = EmbeddedRedis(tmp_path / "redis")
            redis.start()
            stack.callback(redis.stop)
            settings = Settings(data_dir=tmp_path, postgres_url=migrated_postgres, redis_url=redis.url,
                                blob_url=f"file://{tmp_path / 'blobs'}", bus_timeout_seconds=2,
                                auth_cache_seconds=300, **overrides)
            holder: dict = {}
            app = build_app(settings, parts=INGEST_PARTS, routers=_routers("ingest"), migrate=True,
                            background=[grpc_on_a_free_port(holder)])
            server = stack.enter_context(LiveServer(app))
            wait_for_port(holder)
            return f"127.0.0.1:{holder['port']}", redis, server.url

        yield start


def _retry_seconds(error: grpc.RpcError) -> int:
    """The RetryInfo delay, checked to be the same in both places clients read it from."""
    trailing = dict(error.trailing_metadata())
    retry = error_details_pb2.RetryInfo.FromString(trailing["google.rpc.retryinfo-bin"])
    status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
    assert status.code == error.code().value[0] and status.details[0].Is(retry.DESCRIPTOR)
    unpacked = error_details_pb2.RetryInfo()
    status.details[0].Unpack(unpacked)
    assert unpacked == retry
    return retry.retry_delay.seconds


def test_rate_limit_is_resource_exhausted_with_retry_info_and_too_many_spans_is_invalid(private_ingest, live_stack):
    target, _, _ = private_ingest(rate_limit_spans_per_second=0.01, rate_limit_burst=2, max_spans_per_request=3,
                                  max_body_bytes=32 * 1024)
    _, _, key = live_stack.create_key()
    spans, _ = _record()  # two spans: exactly the burst
    with grpc.insecure_channel(target) as channel:
        stub = TraceServiceStub(channel)
        stub.Export(encode_spans(spans), metadata=_auth(key), timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(encode_spans(spans), metadata=_auth(key), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _retry_seconds(err.value) >= 1
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(encode_spans([*spans, *spans]), metadata=_auth(key), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit is 3" in err.value.details()
        oversized = encode_spans(spans)
        oversized.resource_spans[0].resource.attributes.add(key="blob").value.string_value = "x" * 40_000
        with pytest.raises(grpc.RpcError) as err:  # EVALFORGE_MAX_BODY_BYTES holds for gRPC messages too
            stub.Export(oversized, metadata=_auth(key), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "32768" in err.value.details()


def test_bus_down_is_unavailable_with_retry_info(private_ingest, live_stack):
    target, redis, http_url = private_ingest()
    _, _, key = live_stack.create_key()
    _, _, unchecked_key = live_stack.create_key()
    spans, _ = _record()
    body = encode_spans(spans)
    with grpc.insecure_channel(target) as channel:
        stub = TraceServiceStub(channel)
        assert isinstance(stub.Export(body, metadata=_auth(key), timeout=10), ExportTraceServiceResponse)
        redis.stop()  # the bus is gone; the key stays cached in the ingest process
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(body, metadata=_auth(key), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
        assert _retry_seconds(err.value) >= 1
        # a key never seen cannot be checked without the cache: retry later, not "unauthenticated"
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(body, metadata=_auth(unchecked_key), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
        assert _retry_seconds(err.value) >= 1
    for auth_key in (key, unchecked_key):
        r = httpx.post(f"{http_url}/v1/traces", content=body.SerializeToString(), timeout=30,
                       headers={"Authorization": f"Bearer {auth_key}", "Content-Type": "application/x-protobuf"})
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.text
