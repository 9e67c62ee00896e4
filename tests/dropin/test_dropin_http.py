"""Drop-in HTTP endpoints: Opik's OTLP path and auth, Langfuse's batch endpoints, the 401 that names
every accepted scheme, OTLP metrics / logs acknowledged and counted."""

from __future__ import annotations

import base64
import uuid

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

_SPAN_SQL = ("SELECT name, model, input_tokens, output_tokens, session_id, user_id, input, output FROM spans "
             "WHERE project_id = {p:String} AND trace_id = {t:String}")


def _llm_spans(service: str = "opik-app"):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("app").start_as_current_span("chat gpt-4o") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute("gen_ai.usage.input_tokens", 42)
        span.set_attribute("gen_ai.usage.output_tokens", 7)
        span.set_attribute("input.value", "hello")
        span.set_attribute("output.value", "hi there")
        span.set_attribute("session.id", "s-1")
        span.set_attribute("user.id", "u-1")
    provider.shutdown()
    spans = memory.get_finished_spans()
    return spans, format(spans[0].context.trace_id, "032x")


def _basic(public: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{public}:{secret}".encode()).decode()


def test_opik_exporter_headers_send_to_the_keys_project(live_stack):
    project_id, _, key = live_stack.create_key()
    spans, trace_id = _llm_spans()
    exporter = OTLPSpanExporter(endpoint=f"{live_stack.url}/api/v1/private/otel/v1/traces/",  # slash: no redirect
                                headers={"Authorization": key, "projectName": "some-other-project",
                                         "Comet-Workspace": "default"})
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    rows = live_stack.wait_rows(_SPAN_SQL, {"p": project_id, "t": trace_id}, 1)
    assert rows == [("chat gpt-4o", "gpt-4o", 42, 7, "s-1", "u-1", "hello", "hi there")]


def test_basic_auth_takes_the_key_from_either_half(live_stack):
    project_id, name, key = live_stack.create_key()
    for header in (_basic("pk-lf-anything", key), _basic(key, "sk-lf-anything")):
        r = httpx.get(f"{live_stack.url}/api/public/projects", headers={"Authorization": header})
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["id"] == project_id and r.json()["data"][0]["name"] == name


def test_wrong_key_is_401_naming_every_accepted_scheme(live_stack):
    spans, _ = _llm_spans()
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    body = encode_spans(spans).SerializeToString()
    wrong = "ef_" + uuid.uuid4().hex
    for path, header in (("/v1/traces", f"Bearer {wrong}"), ("/api/public/otel/v1/traces", _basic("pk", wrong)),
                         ("/api/v1/private/otel/v1/traces", wrong), ("/v1/traces", None)):
        headers = {"Content-Type": "application/x-protobuf"} | ({"Authorization": header} if header else {})
        r = httpx.post(f"{live_stack.url}{path}", content=body, headers=headers)
        assert r.status_code == 401, (path, r.text)
        message = r.json()["error"]
        for scheme in ("Bearer <api key>", "Basic base64(<public key>:<api key>)", "Authorization: <api key> (Opik)"):
            assert scheme in message
        assert "Basic" in r.headers["www-authenticate"] and "Bearer" in r.headers["www-authenticate"]


def test_langfuse_ingestion_answers_each_event(live_stack):
    project_id, _, key = live_stack.create_key()
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    batch = [
        {"id": "e1", "type": "score-create", "timestamp": "2026-01-01T00:00:00Z",
         "body": {"id": "score-a", "traceId": trace_id, "observationId": span_id, "name": "accuracy",
                  "value": 0.5, "dataType": "NUMERIC", "comment": "half"}},
        {"id": "e2", "type": "score-create", "timestamp": "2026-01-01T00:00:00Z",
         "body": {"traceId": "not-hex", "name": "accuracy", "value": 1}},
        {"id": "e3", "type": "trace-create", "timestamp": "2026-01-01T00:00:00Z", "body": {"id": trace_id}},
        {"id": "e4", "type": "sdk-log", "timestamp": "2026-01-01T00:00:00Z", "body": {"log": "hello"}},
        {"id": "e6", "type": "score-create", "timestamp": "2026-01-01T00:00:00Z"},
        {"id": "e5", "type": "score-create", "timestamp": "2026-01-01T00:00:00Z",
         "body": {"traceId": trace_id, "name": "thumbs", "value": 1, "dataType": "BOOLEAN"}},
    ]
    r = httpx.post(f"{live_stack.url}/api/public/ingestion/", json={"batch": batch},
                   headers={"Authorization": _basic("pk-lf-x", key)})
    assert r.status_code == 207, r.text
    result = r.json()
    assert sorted((s["id"], s["status"]) for s in result["successes"]) == [("e1", 201), ("e4", 201), ("e5", 201)]
    errors = {e["id"]: e for e in result["errors"]}
    assert set(errors) == {"e2", "e3", "e6"} and {e["status"] for e in errors.values()} == {400}
    assert errors["e2"]["message"].startswith("body.traceId: ") and "trace-create" in errors["e3"]["message"]
    assert errors["e6"]["message"] == "body: must be a JSON object"
    rows = live_stack.wait_rows("SELECT score_id, name, span_id, value, data_type, comment FROM scores FINAL "
                                "WHERE project_id = {p:String} AND trace_id = {t:String} ORDER BY name",
                                {"p": project_id, "t": trace_id}, 2)
    assert rows[0] == ("score-a", "accuracy", span_id, 0.5, "numeric", "half")
    assert rows[1][1:5] == ("thumbs", "", 1.0, "boolean")


def test_langfuse_scores_endpoint_keeps_the_good_part_of_a_batch(live_stack):
    _, _, key = live_stack.create_key()
    auth = {"Authorization": _basic("pk-lf-x", key)}
    trace_id = uuid.uuid4().hex
    good = {"traceId": trace_id, "name": "quality", "value": 0.9}
    r = httpx.post(f"{live_stack.url}/api/public/scores", json=[good], headers=auth)
    assert (r.status_code, r.json()) == (202, {"message": "Accepted"})
    r = httpx.post(f"{live_stack.url}/api/public/scores", headers=auth,
                   json=[good, {"traceId": trace_id, "name": "x", "value": 1, "dataType": "CORRECTION"}])
    assert r.status_code == 207 and (r.json()["accepted"], r.json()["rejected"]) == (1, 1)
    assert "dataType" in r.json()["errors"][0]["message"]
    r = httpx.post(f"{live_stack.url}/api/public/scores", headers=auth, json=[{"name": "x", "value": 1}])
    assert r.status_code == 400 and "traceId" in r.json()["error"]


def _discarded(signal: str) -> float:
    return REGISTRY.get_sample_value("evalforge_ingest_discarded_total", {"signal": signal}) or 0.0


def test_otlp_metrics_and_logs_are_acknowledged_and_counted(live_stack):
    _, _, key = live_stack.create_key()
    auth = {"Authorization": f"Bearer {key}"}
    metrics = ExportMetricsServiceRequest()
    metric = metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="requests")
    metric.sum.data_points.add(as_int=3)
    metric.sum.data_points.add(as_int=4)
    logs = ExportLogsServiceRequest()
    logs.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "hello"
    before = _discarded("metrics"), _discarded("logs")
    r = httpx.post(f"{live_stack.url}/v1/metrics", content=metrics.SerializeToString(),
                   headers=auth | {"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    r = httpx.post(f"{live_stack.url}/api/v1/private/otel/v1/logs", headers=auth, json={"resourceLogs": [{"scopeLogs": [
        {"logRecords": [{"body": {"stringValue": "a"}}, {"body": {"stringValue": "b"}}]}]}]})
    assert (r.status_code, r.json()) == (200, {})
    assert (_discarded("metrics") - before[0], _discarded("logs") - before[1]) == (2, 2)
    r = httpx.post(f"{live_stack.url}/v1/logs", content=logs.SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 401
    r = httpx.post(f"{live_stack.url}/v1/metrics", content=b"\xff\xff", headers=auth | {"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400
