"""Ingest against real Kafka, PostgreSQL, Redis and an S3 endpoint."""

from __future__ import annotations

import gzip
import threading
import time
import uuid

import httpx
import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.auth import revoke_key
from core.ratelimit import RateLimiter
from tests.ingest.conftest import read_topic


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _json_span(i: int = 0, trace_id: str | None = None, **extra) -> dict:
    now = time.time_ns()
    span = {
        "trace_id": trace_id or uuid.uuid4().hex,
        "span_id": uuid.uuid4().hex[:16],
        "name": f"call-{i}",
        "kind": "llm",
        "start_time": now - 1_000_000_000,
        "end_time": now,
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input": f"question {i}",
        "output": f"answer {i}",
        "usage": {"input_tokens": 10 + i, "output_tokens": 5},
    }
    span.update(extra)
    return span


def test_official_otlp_exporter_spans_arrive_keyed_and_normalised(ingest_server, project_key, kafka_broker):
    project_id, key = project_key
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "deployment.environment.name": "prod"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("agent run") as root:
        root.set_attribute("evalforge.session_id", "sess-1")
        root.set_attribute("evalforge.user_id", "user-7")
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attribute("gen_ai.operation.name", "chat")
            llm.set_attribute("gen_ai.provider.name", "openai")
            llm.set_attribute("gen_ai.request.model", "gpt-4o")
            llm.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
            llm.set_attribute("gen_ai.usage.input_tokens", 1200)
            llm.set_attribute("gen_ai.usage.output_tokens", 300)
            llm.set_attribute("gen_ai.usage.cache_read.input_tokens", 200)
            llm.set_attribute("custom.flag", "kept")
    provider.shutdown()
    spans = memory.get_finished_spans()

    exporter = OTLPSpanExporter(endpoint=f"{ingest_server.url}/v1/traces", headers=_auth(key), compression=Compression.Gzip)
    assert exporter.export(spans) == SpanExportResult.SUCCESS

    found = read_topic(kafka_broker.bootstrap, project_id, expect=2)
    assert len(found) == 2
    trace_hex = format(spans[0].context.trace_id, "032x")
    for kafka_key, rec in found:
        assert kafka_key == trace_hex.encode()
        assert rec["trace_id"] == trace_hex
        assert rec["service_name"] == "checkout"
        assert rec["environment"] == "prod"
    llm_rec = next(rec for _, rec in found if rec["name"] == "chat gpt-4o")
    assert llm_rec["model"] == "gpt-4o-2024-08-06"
    assert llm_rec["request_model"] == "gpt-4o"
    assert llm_rec["provider"] == "openai"
    assert (llm_rec["input_tokens"], llm_rec["output_tokens"], llm_rec["cache_read_tokens"]) == (1200, 300, 200)
    assert llm_rec["attributes"]["custom.flag"] == "kept"
    root_rec = next(rec for _, rec in found if rec["name"] == "agent run")
    assert (root_rec["session_id"], root_rec["user_id"]) == ("sess-1", "user-7")
    assert llm_rec["parent_span_id"] == root_rec["span_id"]


def test_json_encoded_otlp_with_hex_ids_and_string_ints(ingest_server, project_key, kafka_broker):
    project_id, key = project_key
    trace_id = uuid.uuid4().hex
    now = time.time_ns()
    body = {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
            "scopeSpans": [{"scope": {"name": "x"}, "spans": [{
                "traceId": trace_id, "spanId": "00f067aa0ba902b7", "name": "llm",
                "startTimeUnixNano": str(now - 5_000_000), "endTimeUnixNano": str(now),
                "kind": 3, "someFutureField": {"ignored": True},
                "attributes": [
                    {"key": "gen_ai.request.model", "value": {"stringValue": "claude-sonnet-4-5"}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
                ],
            }]}],
        }]
    }
    r = httpx.post(f"{ingest_server.url}/v1/traces", content=orjson.dumps(body),
                   headers={**_auth(key), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    [(kafka_key, rec)] = read_topic(kafka_broker.bootstrap, project_id, expect=1)
    assert kafka_key == trace_id.encode()
    assert rec["span_id"] == "00f067aa0ba902b7"
    assert rec["input_tokens"] == 42
    assert rec["model"] == "claude-sonnet-4-5"
    assert abs(rec["duration_ms"] - 5.0) < 1e-6


def test_mixed_batch_keeps_good_spans_and_names_bad_field(ingest_server, project_key, kafka_broker):
    project_id, key = project_key
    good = [_json_span(i) for i in range(3)]
    bad = _json_span(9, trace_id="not-hex")
    r = httpx.post(f"{ingest_server.url}/api/v1/spans", json={"spans": [good[0], bad, good[1], good[2]]}, headers=_auth(key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 3
    assert [x["index"] for x in body["rejected"]] == [1]
    assert "trace_id" in body["rejected"][0]["field"]
    found = read_topic(kafka_broker.bootstrap, project_id, expect=3)
    assert sorted(rec["span_id"] for _, rec in found) == sorted(s["span_id"] for s in good)


def test_empty_request_is_ok_and_bad_bodies_are_4xx(ingest_server, project_key):
    _, key = project_key
    url = f"{ingest_server.url}/v1/traces"
    proto = {**_auth(key), "Content-Type": "application/x-protobuf"}
    assert httpx.post(url, content=b"", headers=proto).status_code == 200
    assert httpx.post(url, content=b"\xff\xff\xff garbage", headers=proto).status_code == 400
    r = httpx.post(url, content=b"{not json", headers={**_auth(key), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["message"]
    assert httpx.post(url, content=b"x", headers={**_auth(key), "Content-Type": "text/plain"}).status_code == 415
    assert httpx.post(url, content=b"\x1f\x8bnot-gzip", headers={**proto, "Content-Encoding": "gzip"}).status_code == 400


def test_too_large_is_413(ingest_server, project_key):
    _, key = project_key
    limit = ingest_server.settings.max_body_bytes
    bomb = gzip.compress(b"\0" * (limit + 10))  # small on the wire, too big once decompressed
    r = httpx.post(f"{ingest_server.url}/v1/traces", content=bomb,
                   headers={**_auth(key), "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_unknown_and_revoked_keys_get_401(ingest_server, project_key, migrated_postgres):
    _, key = project_key
    url = f"{ingest_server.url}/api/v1/spans"
    assert httpx.post(url, json={"spans": [_json_span()]}, headers=_auth("ef_unknown")).status_code == 401
    assert httpx.post(url, json={"spans": [_json_span()]}).status_code == 401
    assert httpx.post(url, json={"spans": [_json_span()]}, headers=_auth(key)).status_code == 200
    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        assert revoke_key(conn, key)
    time.sleep(ingest_server.settings.auth_cache_seconds + 0.5)  # caches expire; no shared-state shortcut
    r = httpx.post(url, json={"spans": [_json_span()]}, headers=_auth(key))
    assert r.status_code == 401
    assert key not in r.text


def test_rate_limit_is_per_project_with_retry_after(ingest_server, project_key, migrated_postgres, kafka_broker):
    services = ingest_server.app.state.services
    previous = services.extras.get("rate_limiter")
    services.extras["rate_limiter"] = RateLimiter(services.redis, rate_per_second=5, burst=10)
    try:
        limited_id, limited_key = project_key
        with psycopg.connect(migrated_postgres, autocommit=True) as conn:
            from core.auth import create_key, ensure_project

            other = ensure_project(conn, f"other-{uuid.uuid4().hex[:6]}")
            other_key = create_key(conn, other)
        url = f"{ingest_server.url}/api/v1/spans"
        assert httpx.post(url, json={"spans": [_json_span(i) for i in range(8)]}, headers=_auth(limited_key)).status_code == 200
        r = httpx.post(url, json={"spans": [_json_span(i) for i in range(8)]}, headers=_auth(limited_key))
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        # The other project still has its own full budget.
        assert httpx.post(url, json={"spans": [_json_span(i) for i in range(8)]}, headers=_auth(other_key)).status_code == 200
        assert len(read_topic(kafka_broker.bootstrap, limited_id, expect=8)) == 8
        assert len(read_topic(kafka_broker.bootstrap, other.id, expect=8)) == 8
    finally:
        services.extras["rate_limiter"] = previous


def test_large_payload_lands_in_s3_and_record_points_to_it(ingest_server, project_key, kafka_broker):
    project_id, key = project_key
    big = "x" * 50_000 + " the end"
    span = _json_span(1, input=big)
    r = httpx.post(f"{ingest_server.url}/api/v1/spans", json={"spans": [span]}, headers=_auth(key))
    assert r.status_code == 200
    [(_, rec)] = read_topic(kafka_broker.bootstrap, project_id, expect=1)
    assert rec["input"] == ""
    assert rec["input_ref"]
    assert rec["input_preview"] == big[:200]
    blobs = ingest_server.app.state.services.blobs
    assert blobs.get(rec["input_ref"]).decode() == big


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(st.binary(max_size=400), st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20).map(orjson.dumps)),
    path=st.sampled_from(["/v1/traces", "/api/v1/spans", "/api/v1/scores"]),
    content_type=st.sampled_from(["application/json", "application/x-protobuf"]))
def test_fuzzed_bodies_never_get_a_5xx(ingest_server, fuzz_key, body, path, content_type):
    r = httpx.post(f"{ingest_server.url}{path}", content=body, headers={**_auth(fuzz_key), "Content-Type": content_type})
    assert r.status_code < 500, (r.status_code, r.text)


@pytest.fixture(scope="module")
def fuzz_key(migrated_postgres):
    from core.auth import create_key, ensure_project

    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        return create_key(conn, ensure_project(conn, f"fuzz-{uuid.uuid4().hex[:6]}"))


def test_broker_down_means_503_and_every_2xx_span_is_on_the_topic(ingest_server, project_key, kafka_broker):
    """Stop the broker mid-run: no 2xx for a span that is not on the topic; after restart all are there."""
    project_id, key = project_key
    acknowledged: dict[str, dict] = {}
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set():
                batch = [_json_span(i + j) for j in range(5)]
                i += 5
                try:
                    r = http.post(f"{ingest_server.url}/api/v1/spans", json={"spans": batch}, headers=_auth(key))
                except httpx.HTTPError:
                    continue
                statuses.append(r.status_code)
                if r.status_code == 200:
                    for s in batch:
                        acknowledged[s["span_id"]] = s
                elif r.status_code == 503:
                    assert int(r.headers["Retry-After"]) >= 1
                time.sleep(0.02)

    worker = threading.Thread(target=client)
    worker.start()
    try:
        time.sleep(1.5)
        kafka_broker.stop()
        started = time.monotonic()
        ready = httpx.get(f"{ingest_server.url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["parts"]["bus"]["status"] == "error"
        time.sleep(max(0.0, 8 - (time.monotonic() - started)))
        kafka_broker.restart()
        restarted = len(statuses)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and 200 not in statuses[restarted:]:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        worker.join(60)
        if not kafka_broker.running:
            kafka_broker.restart()
    assert 503 in statuses, statuses
    assert statuses[-1] == 200, statuses[-20:]
    found = read_topic(kafka_broker.bootstrap, project_id, expect=len(acknowledged), timeout=60)
    on_topic = {rec["span_id"]: rec for _, rec in found}
    missing = set(acknowledged) - set(on_topic)
    assert not missing, f"{len(missing)} acknowledged spans are not on the topic"
    for span_id, sent in acknowledged.items():
        rec = on_topic[span_id]
        assert (rec["trace_id"], rec["name"], rec["input"], rec["output"]) == (
            sent["trace_id"], sent["name"], sent["input"], sent["output"])
