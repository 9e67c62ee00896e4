"""Hostile input on ``evalforge up``'s app (real chDB, PostgreSQL, Redis, S3 endpoint): each bad input is
a 4xx naming the field (or a partial success keeping the good spans), never a 5xx, and the server stays
up and keeps storing what it is sent."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from typing import Self

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

NUL = "a\x00b"


def _span(**overrides) -> dict:
    now = time.time_ns()
    span = {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "name": "chat",
            "start_time": now - 10**9, "end_time": now}
    span.update(overrides)
    return span


def _stored(stack, project_id: str, trace_ids: list[str], timeout: float = 20.0) -> set[str]:
    """The trace ids of ``trace_ids`` found in ``spans`` once all are there (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = stack.clickhouse.query("SELECT DISTINCT trace_id FROM spans WHERE project_id = {p:String} "
                                      "AND trace_id IN {t:Array(String)}",
                                      parameters={"p": project_id, "t": trace_ids}).result_rows
        found = {r[0] for r in rows}
        if found == set(trace_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.parametrize("method,path,body,field", [
    ("POST", "/api/v1/eval-rules", {"name": NUL, "evaluator": "contains", "config": {"expected": "x"}}, "name"),
    ("POST", "/api/v1/eval-rules", {"name": "ok", "evaluator": "contains", "config": {"expected": NUL}}, "config.expected"),
    ("POST", "/api/v1/alert-rules", {"name": NUL, "metric": "latency", "aggregation": "p95", "threshold": 1}, "name"),
    ("PUT", "/api/v1/model-prices", {"model": NUL, "prices": {"input": 1.0}}, "model"),
    ("DELETE", "/api/v1/model-prices?model=a%00b", None, "model"),
    ("DELETE", "/api/v1/api-keys/a%00b", None, "path"),
    ("POST", "/api/v1/datasets", {"name": NUL, "user_template": "Q: {q}"}, "name"),
    ("POST", "/api/v1/api-keys", {"scope": NUL}, "scope"),
])
def test_a_nul_byte_headed_for_postgresql_is_a_400_naming_the_field(stack, method, path, body, field):
    _, key = stack.create_key()
    r = stack.client.request(method, path, headers=stack.headers(key), json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(f"{field}:"), r.text


def test_nested_json_huge_integers_and_huge_message_indexes_are_rejected_per_span(stack):
    project_id, key = stack.create_key()
    deep = "__DEEP__"  # written out below: no JSON encoder of ours writes 1,000 levels
    good = _span()
    batch = [
        _span(attributes={"deep": deep}),
        _span(metadata={"deep": deep}),
        _span(input=deep),
        _span(start_time="1" * 5000),
        _span(end_time="9" * 4301),
        _span(attributes={"gen_ai.prompt." + "1" * 5000 + ".content": "hi"}),
        _span(tags=[str(i) for i in range(65_536)]),
        _span(attributes={str(i): i for i in range(20_000)}),
        good,
    ]
    text = orjson.dumps({"spans": batch}).replace(b'"__DEEP__"', b"[" * 1000 + b"]" * 1000)
    r = stack.client.post("/api/v1/spans", headers={**stack.headers(key), "Content-Type": "application/json"},
                          content=text)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1
    fields = {x["index"]: x["field"] for x in body["rejected"]}
    assert fields == {0: "attributes.deep", 1: "attributes.evalforge.metadata.deep", 2: "input",
                      3: "start_time", 4: "end_time", 5: "attributes.gen_ai.prompt." + "1" * 86,
                      6: "tags", 7: "attributes"}
    assert _stored(stack, project_id, [good["trace_id"]]) == {good["trace_id"]}


def test_otlp_json_with_a_huge_integer_time_keeps_the_rest_of_the_request(stack):
    project_id, key = stack.create_key()
    good_trace = uuid.uuid4().hex

    def span(trace: str, start: str) -> dict:
        return {"traceId": trace, "spanId": uuid.uuid4().hex[:16], "name": "s",
                "startTimeUnixNano": start, "endTimeUnixNano": str(time.time_ns())}

    body = {"resourceSpans": [{"scopeSpans": [{"spans": [
        span(uuid.uuid4().hex, "7" * 5000), span(good_trace, str(time.time_ns() - 10**9))]}]}]}
    r = stack.client.post("/v1/traces", headers={**stack.headers(key), "Content-Type": "application/json"},
                          content=orjson.dumps(body))
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "start_time" in partial["errorMessage"]
    assert _stored(stack, project_id, [good_trace]) == {good_trace}


@pytest.mark.parametrize("params,field", [
    ({"cursor": base64.urlsafe_b64encode(orjson.dumps([2**61, "f" * 32])).decode()}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(orjson.dumps([-(2**61), "f" * 32])).decode()}, "cursor"),
    ({"cursor": "!!not base64!!"}, "cursor"),
    ({"from": "0001-01-01T00:00:00+01:00"}, "from"),
    ({"to": "9999-12-31T23:59:59-01:00"}, "to"),
    ({"from": "99999999999999999999"}, "from"),
    ({"to": "1e400"}, "to"),
])
def test_forged_cursor_and_far_out_times_on_traces_are_400(stack, params, field):
    _, key = stack.create_key()
    r = stack.client.get("/api/v1/traces", headers=stack.headers(key), params=params)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]


def test_scores_have_a_per_request_cap_and_idempotent_ids_under_one_idempotency_key(stack):
    project_id, key = stack.create_key()
    trace = uuid.uuid4().hex
    too_many = {"scores": [{"name": "n", "value": 1, "trace_id": trace}] * (stack.settings.max_scores_per_request + 1)}
    r = stack.client.post("/api/v1/scores", headers=stack.headers(key), json=too_many)
    assert r.status_code == 413 and r.json()["error"].startswith("scores:")
    batch = {"scores": [{"name": "thumbs", "value": True, "trace_id": trace},
                        {"name": "stars", "value": 4, "trace_id": trace}]}
    headers = {**stack.headers(key), "Idempotency-Key": "retry-1"}
    first = stack.client.post("/api/v1/scores", headers=headers, json=batch)
    again = stack.client.post("/api/v1/scores", headers=headers, json=batch)  # the client's retry after a timeout
    assert first.status_code == again.status_code == 202
    assert first.json()["ids"] == again.json()["ids"] and len(set(first.json()["ids"])) == 2
    other = stack.client.post("/api/v1/scores", headers={**stack.headers(key), "Idempotency-Key": "retry-2"}, json=batch)
    assert set(other.json()["ids"]).isdisjoint(first.json()["ids"])
    deadline = time.monotonic() + 20
    while True:
        [(rows, distinct)] = stack.clickhouse.query(
            "SELECT count(), uniqExact(score_id) FROM scores FINAL WHERE project_id = {p:String}",
            parameters={"p": project_id}).result_rows
        if distinct == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (rows, distinct) == (4, 4)  # two requests' worth, not three


def _otlp_protobuf(spans: list[tuple[str, list[KeyValue]]]) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for trace_id, attributes in spans:
        span = scope.spans.add(trace_id=bytes.fromhex(trace_id), span_id=uuid.uuid4().bytes[:8], name="s",
                               start_time_unix_nano=now - 10**9, end_time_unix_nano=now)
        span.attributes.extend(attributes)
    return request.SerializeToString()


class _ReadyzProbe:
    """Polls /readyz from another thread while the test's requests run; keeps every latency."""

    def __init__(self, client) -> None:
        self.client, self.latencies, self.codes = client, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.codes.append(self.client.get("/readyz").status_code)
            self.latencies.append(time.perf_counter() - started)
            time.sleep(0.02)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_huge_tag_and_attribute_spans_are_refused_quickly_and_a_canary_follows(stack):
    project_id, key = stack.create_key()
    headers = {**stack.headers(key), "Content-Type": "application/x-protobuf"}
    tags = KeyValue(key="evalforge.tags", value=AnyValue(array_value=ArrayValue(
        values=[AnyValue(string_value=f"t{i}") for i in range(65_536)])))
    attributes = [KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(100_000)]
    with _ReadyzProbe(stack.client) as probe:
        time.sleep(0.2)
        for attrs, field in (([tags], "tags"), (attributes, "attributes")):
            r = stack.client.post("/v1/traces", headers=headers, content=_otlp_protobuf([(uuid.uuid4().hex, attrs)]))
            assert r.status_code == 200
            response = __import__("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                                  fromlist=["x"]).ExportTraceServiceResponse.FromString(r.content)
            assert response.partial_success.rejected_spans == 1
            assert f"span 0: {field}:" in response.partial_success.error_message
        canary = uuid.uuid4().hex
        sent = time.monotonic()
        assert stack.client.post("/v1/traces", headers=headers, content=_otlp_protobuf(
            [(canary, [KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="gpt-4o"))])])).status_code == 200
        assert _stored(stack, project_id, [canary], timeout=10) == {canary}
        stored_after = time.monotonic() - sent
    assert stored_after < 10
    assert probe.latencies and set(probe.codes) == {200}, probe.codes
    assert max(probe.latencies) < 0.5, sorted(probe.latencies)[-5:]
