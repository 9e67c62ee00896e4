"""A span end to end on the embedded stack: HTTP ingest -> Redis Streams -> processor -> chDB -> query,
and an eval rule turning a matching span into a score."""

from __future__ import annotations

import time
import uuid

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.waiting import wait_until


def _wait(predicate, timeout: float = 30.0):
    return wait_until(predicate, timeout)


def _otlp_body(output: str) -> tuple[bytes, str]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("e2e").start_as_current_span("answer") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute("gen_ai.usage.input_tokens", 1000)
        span.set_attribute("gen_ai.usage.output_tokens", 500)
        span.set_attribute("gen_ai.output.messages", f'[{{"role": "assistant", "parts": [{{"type": "text", "content": "{output}"}}]}}]')
    provider.shutdown()
    [finished] = memory.get_finished_spans()
    return encode_spans([finished]).SerializeToString(), format(finished.context.trace_id, "032x")


def test_span_goes_from_ingest_to_clickhouse_with_cost(stack):
    project_id, key = stack.create_key()
    body, trace_id = _otlp_body("Paris is the capital of France.")
    r = stack.client.post("/v1/traces", content=body,
                          headers={**stack.headers(key), "Content-Type": "application/x-protobuf"})
    assert r.status_code == 200
    row = _wait(lambda: stack.clickhouse.query(
        "SELECT model, input_tokens, output_tokens, cost, cost_source, service_name FROM spans "
        "WHERE project_id = {p:String} AND trace_id = {t:String}", parameters={"p": project_id, "t": trace_id}).result_rows)
    model, tokens_in, tokens_out, cost, source, service = row[0]
    assert (model, tokens_in, tokens_out, source, service) == ("gpt-4o", 1000, 500, "computed", "e2e")
    assert cost > 0
    health = stack.client.get("/healthz").json()
    assert {name: p["status"] for name, p in health["parts"].items()} == {
        "bus": "ok", "clickhouse": "ok", "postgres": "ok", "redis": "ok", "blobs": "ok"}


def test_eval_rule_scores_matching_spans(stack):
    project_id, key = stack.create_key()
    rule = stack.client.post("/api/v1/eval-rules", headers=stack.headers(key), json={
        "name": "mentions paris", "evaluator": "contains", "config": {"expected": "Paris", "score_name": "mentions_paris"},
        "filter": {"model": "gpt-4o"}, "sampling_rate": 1.0})
    assert rule.status_code == 201, rule.text
    bad = stack.client.post("/api/v1/eval-rules", headers=stack.headers(key), json={
        "name": "x", "evaluator": "contains", "config": {"no_such_field": 1}})
    assert bad.status_code == 400 and "config.no_such_field" in bad.json()["error"]
    time.sleep(5.5)  # the trigger refreshes its rules every 5 s
    good_body, good_trace = _otlp_body("Paris is the capital of France.")
    bad_body, bad_trace = _otlp_body("I do not know.")
    for body in (good_body, bad_body):
        assert stack.client.post("/v1/traces", content=body, headers={
            **stack.headers(key), "Content-Type": "application/x-protobuf"}).status_code == 200
    scores = _wait(lambda: dict(stack.clickhouse.query(
        "SELECT trace_id, value FROM scores FINAL WHERE project_id = {p:String} AND name = 'mentions_paris'",
        parameters={"p": project_id}).result_rows) if len(stack.clickhouse.query(
        "SELECT trace_id FROM scores FINAL WHERE project_id = {p:String}", parameters={"p": project_id}).result_rows) >= 2 else None,
        timeout=40)
    assert scores == {good_trace: 1.0, bad_trace: 0.0}
    summary = stack.client.get("/api/v1/scores/summary", params={"score_name": "mentions_paris"},
                               headers=stack.headers(key)).json()
    [entry] = summary["data"]
    assert (entry["name"], entry["count"], entry["mean"]) == ("mentions_paris", 2, 0.5)
    detail = stack.client.get(f"/api/v1/traces/{good_trace}", headers=stack.headers(key)).json()
    assert [(sc["name"], sc["value"], sc["source"]) for sc in detail["scores"]] == [("mentions_paris", 1.0, "evaluator")]


def test_feedback_score_via_api_lands_in_clickhouse(stack):
    project_id, key = stack.create_key()
    trace_id = uuid.uuid4().hex
    r = stack.client.post("/api/v1/scores", headers=stack.headers(key),
                          json={"name": "thumbs", "value": True, "trace_id": trace_id, "comment": "great"})
    assert r.status_code == 202, r.text
    rows = _wait(lambda: stack.clickhouse.query(
        "SELECT name, data_type, value, comment, source FROM scores WHERE project_id = {p:String}",
        parameters={"p": project_id}).result_rows)
    assert rows == [("thumbs", "boolean", 1.0, "great", "api")]


def test_alert_rule_api_validates_and_never_echoes_the_webhook(stack, fake_dns):
    fake_dns["hooks.slack.com"] = ["52.88.1.1"]  # a public address; nothing is sent to it
    _, key = stack.create_key()
    secret_url = "https://hooks.slack.com/services/T000/B000/very-secret-token-1234"
    r = stack.client.post("/api/v1/alert-rules", headers=stack.headers(key), json={
        "name": "slow", "metric": "latency", "aggregation": "p95", "threshold": 2000, "window_seconds": 300,
        "slack_webhook_url": secret_url})
    assert r.status_code == 201, r.text
    assert "very-secret-token" not in r.text
    listed = stack.client.get("/api/v1/alert-rules", headers=stack.headers(key))
    assert listed.status_code == 200 and len(listed.json()["rules"]) == 1
    assert "very-secret-token" not in listed.text
    bad = stack.client.post("/api/v1/alert-rules", headers=stack.headers(key), json={
        "name": "x", "metric": "no_such_metric", "threshold": 1})
    assert bad.status_code == 400 and "metric" in bad.json()["error"]
    _, other_key = stack.create_key()
    assert stack.client.get("/api/v1/alert-rules", headers=stack.headers(other_key)).json()["rules"] == []


def test_alert_message_link_opens_the_metric_in_the_query_api(stack):
    from datetime import datetime, timedelta, timezone

    from stream_processors.alerts.messages import metrics_link
    from stream_processors.alerts.rules import AlertRule

    project_id, key = stack.create_key()
    end = datetime.now(timezone.utc).replace(microsecond=0)
    payload = {"query_start": (end - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
               "window_end": end.isoformat().replace("+00:00", "Z")}
    rules = [
        AlertRule(id="r1", project_id=project_id, name="slow", metric="latency", aggregation="p95", threshold=1000,
                  group_by="model", filter={"environment": "prod"}),
        AlertRule(id="r2", project_id=project_id, name="errors", metric="error_rate", threshold=0.1),
        AlertRule(id="r3", project_id=project_id, name="quality", metric="score_avg", threshold=0.5, comparator="<",
                  filter={"name": "helpfulness"}),
    ]
    for rule in rules:
        for group in (None, "gpt-4o") if rule.group_by else (None,):
            url = metrics_link(rule, group, payload, "http://evalforge.example")
            path = url.removeprefix("http://evalforge.example")
            r = stack.client.get(path, headers=stack.headers(key))
            assert r.status_code == 200, (url, r.text)


def test_prometheus_metrics_and_readiness(stack):
    _, key = stack.create_key()
    body, trace_id = _otlp_body("metrics please")
    assert stack.client.post("/v1/traces", content=body, headers={
        **stack.headers(key), "Content-Type": "application/x-protobuf"}).status_code == 200
    bad = stack.client.post("/api/v1/spans", headers=stack.headers(key), json={"spans": [{"trace_id": "zz"}]})
    assert bad.status_code == 200 and bad.json()["accepted"] == 0

    def persisted() -> float:
        text = stack.client.get("/metrics").text
        line = next((ln for ln in text.splitlines() if ln.startswith('evalforge_processor_records_total{outcome="span_persisted"}')), None)
        return float(line.split()[-1]) if line else 0.0

    before = persisted()
    body2, _ = _otlp_body("and once more")
    stack.client.post("/v1/traces", content=body2, headers={**stack.headers(key), "Content-Type": "application/x-protobuf"})
    _wait(lambda: persisted() > before)
    text = stack.client.get("/metrics").text
    for name in ("evalforge_ingest_spans_accepted_total", 'evalforge_ingest_spans_rejected_total{reason="invalid"}',
                 "evalforge_ingest_produce_seconds_bucket", "evalforge_processor_freshness_seconds_bucket",
                 "evalforge_processor_insert_seconds_bucket"):
        assert name in text, name
    ready = stack.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"


def test_api_keys_admin_shows_secrets_once_and_revokes_at_once(stack):
    _, key = stack.create_key()
    made = stack.client.post("/api/v1/api-keys", headers=stack.headers(key))
    assert made.status_code == 201
    second = made.json()["key"]
    assert stack.client.get("/api/v1/projects/current", headers=stack.headers(second)).status_code == 200
    listed = stack.client.get("/api/v1/api-keys", headers=stack.headers(key))
    assert second not in listed.text and key not in listed.text  # hashes at rest, prefixes on display
    [entry] = [k for k in listed.json()["keys"] if second.startswith(k["prefix"].rstrip("…"))]
    _, stranger = stack.create_key()
    assert stack.client.delete(f"/api/v1/api-keys/{entry['id']}", headers=stack.headers(stranger)).status_code == 404
    assert stack.client.delete(f"/api/v1/api-keys/{entry['id']}", headers=stack.headers(key)).status_code == 200
    assert stack.client.get("/api/v1/projects/current", headers=stack.headers(second)).status_code == 401


def test_ingest_scoped_key_sends_but_cannot_read_or_administer(stack):
    """The key an application embeds: if it leaks, nobody can read the project or mint keys with it."""
    project_id, key = stack.create_key()
    made = stack.client.post("/api/v1/api-keys", headers=stack.headers(key), json={"scope": "ingest"})
    assert made.status_code == 201 and made.json()["scope"] == "ingest"
    ingest_key = made.json()["key"]
    now = time.time_ns()
    span = {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "name": "from-app",
            "start_time": now - 10**9, "end_time": now}
    assert stack.client.post("/api/v1/spans", headers=stack.headers(ingest_key), json={"spans": [span]}).status_code == 200
    assert stack.client.post("/api/v1/scores", headers=stack.headers(ingest_key), json={
        "name": "thumbs", "value": True, "trace_id": span["trace_id"]}).status_code == 202
    for method, path in (("GET", "/api/v1/traces"), ("GET", f"/api/v1/traces/{span['trace_id']}"),
                         ("GET", "/api/v1/metrics?metric=requests"), ("GET", "/api/v1/export?format=jsonl"),
                         ("GET", "/api/v1/api-keys"), ("POST", "/api/v1/api-keys"), ("GET", "/api/v1/eval-rules"),
                         ("GET", "/api/v1/alert-rules"), ("GET", "/api/v1/projects/current")):
        r = stack.client.request(method, path, headers=stack.headers(ingest_key))
        assert r.status_code == 403, (method, path, r.status_code)
        assert "scope 'ingest'" in r.json()["error"]
    # the full key sees what the ingest key sent, and the keys with their scopes
    _wait(lambda: stack.client.get(f"/api/v1/traces/{span['trace_id']}", headers=stack.headers(key)).status_code == 200)
    scopes = sorted(k["scope"] for k in stack.client.get("/api/v1/api-keys", headers=stack.headers(key)).json()["keys"])
    assert scopes == ["full", "ingest"]
    bad = stack.client.post("/api/v1/api-keys", headers=stack.headers(key), json={"scope": "root"})
    assert bad.status_code == 400 and "scope" in bad.json()["error"]


def test_one_hour_cache_writes_are_priced_at_their_own_rate(stack):
    """Anthropic's 1-hour cache writes (usage.cache_creation_1h_tokens, or the SDK's attribute) cost more
    than 5-minute ones; both kinds in one call, priced exactly."""
    project_id, key = stack.create_key()
    now = time.time_ns()
    span = {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "name": "chat", "kind": "llm",
            "provider": "anthropic", "model": "claude-sonnet-4-20250514", "start_time": now - 10**9, "end_time": now,
            "usage": {"input_tokens": 100_000, "cache_read_tokens": 30_000, "cache_creation_tokens": 50_000,
                      "cache_creation_1h_tokens": 20_000, "output_tokens": 1_000}}
    assert stack.client.post("/api/v1/spans", headers=stack.headers(key), json={"spans": [span]}).status_code == 200
    [(cost, source)] = _wait(lambda: stack.clickhouse.query(
        "SELECT cost, cost_source FROM spans WHERE project_id = {p:String}", parameters={"p": project_id}).result_rows)
    # Sonnet 4 per 1M: input 3, cache read 0.30, 5-minute write 3.75, 1-hour write 6, output 15:
    # 20,000*3 + 30,000*0.3 + 30,000*3.75 + 20,000*6 + 1,000*15 = 316,500 per 1M
    assert source == "computed" and abs(cost - 0.3165) < 1e-9


def test_model_calls_without_usage_are_counted_with_the_real_tokenizer_offloaded_or_not(stack):
    """No usage reported: tiktoken counts the prompt and the answer (exact, not flagged as estimated),
    also for a prompt big enough to be offloaded to S3 at ingest, whose text the processor never sees."""
    from core.tokens import get_encoding

    project_id, key = stack.create_key()
    now = time.time_ns()
    small = "What is the capital of France? Answer in one word."
    big = "Summarise this report. " + " ".join(f"Section {i}: revenue grew by {i % 17} percent." for i in range(2_000))
    assert len(big) > stack.settings.payload_offload_bytes
    spans = [{"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "name": "chat", "kind": "llm",
              "provider": "openai", "model": "gpt-4o", "start_time": now - 10**9, "end_time": now,
              "input": text, "output": "Paris."} for text in (small, big)]
    assert stack.client.post("/api/v1/spans", headers=stack.headers(key), json={"spans": spans}).status_code == 200
    rows = _wait(lambda: (r := stack.clickhouse.query(
        "SELECT span_id, input_tokens, output_tokens, tokens_estimated, input_ref != '', cost_source FROM spans "
        "WHERE project_id = {p:String}", parameters={"p": project_id}).result_rows) and len(r) == 2 and r)
    by_id = {r[0]: r[1:] for r in rows}
    encoding = get_encoding("o200k_base")
    for span, offloaded in zip(spans, (False, True)):
        expected = (len(encoding.encode_ordinary(span["input"])), len(encoding.encode_ordinary("Paris.")), 0, offloaded,
                    "computed")
        assert by_id[span["span_id"]] == expected
