"""Ingest under pressure, on a real port over real PostgreSQL, Redis (Streams bus) and an S3 endpoint:
a cap on request-body bytes in flight (503 + Retry-After beyond it), /readyz and small requests
served while a 16 MiB body decodes, a client hanging up mid-upload, a stalled Redis."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from core.embedded import EmbeddedRedis

INFLIGHT_CAP = 1024 * 1024


def _app(settings_overrides: dict, postgres_url: str, redis_url: str, blob_url: str, data_dir):
    from launcher.cli import INGEST_PARTS
    from core.http import build_app
    from core.settings import Settings
    from ingest.routers.ingest import router

    settings = Settings(data_dir=data_dir, postgres_url=postgres_url, redis_url=redis_url, blob_url=blob_url,
                        **settings_overrides)
    return build_app(settings, parts=INGEST_PARTS, routers=[router], migrate=True)


@pytest.fixture(scope="module")
def server(migrated_postgres, redis_url, s3_blob_url, service_root):
    from tests.harness.live_server import LiveServer

    app = _app({"ingest_max_inflight_bytes": INFLIGHT_CAP}, migrated_postgres, redis_url, s3_blob_url,
               service_root / "pressure")
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def key(migrated_postgres) -> str:
    import psycopg

    from core.auth import create_key, ensure_project

    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        return create_key(conn, ensure_project(conn, f"pressure-{uuid.uuid4().hex[:8]}"))


def _protobuf(spans: int, value_bytes: int = 0) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for _ in range(spans):
        span = scope.spans.add(trace_id=uuid.uuid4().bytes, span_id=uuid.uuid4().bytes[:8], name="s",
                               start_time_unix_nano=now - 10**9, end_time_unix_nano=now)
        if value_bytes:
            span.attributes.append(KeyValue(key="note", value=AnyValue(string_value="x" * value_bytes)))
    return request.SerializeToString()


def _inflight(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("evalforge_ingest_inflight_bytes "):
            return float(line.split()[-1])
    return 0.0


def _start_upload(url: str, key: str, length: int, first: bytes) -> socket.socket:
    """A request whose body is only partly sent: the server holds it in flight."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall((f"POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: application/x-protobuf\r\nContent-Length: {length}\r\n\r\n").encode() + first)
    return sock


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_bytes_in_flight_beyond_the_cap_are_503_with_retry_after(server, key):
    held_body = _protobuf(1, value_bytes=900 * 1024)
    sock = _start_upload(server.url, key, len(held_body), held_body[:1000])
    try:
        _wait_for(lambda: _inflight(server.url) >= len(held_body))
        second = _protobuf(1, value_bytes=200 * 1024)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
        refused = httpx.post(f"{server.url}/v1/traces", content=second, headers=headers)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        small = httpx.post(f"{server.url}/v1/traces", content=_protobuf(1), headers=headers)
        assert small.status_code == 200  # a small request still fits beside the held one
        sock.sendall(held_body[1000:])
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    _wait_for(lambda: _inflight(server.url) == 0)
    assert httpx.post(f"{server.url}/v1/traces", content=second, headers=headers).status_code == 200


def test_a_client_that_hangs_up_mid_upload_is_one_log_line(server, key, caplog):
    body = _protobuf(1, value_bytes=100 * 1024)
    with caplog.at_level(logging.INFO):
        sock = _start_upload(server.url, key, len(body), body[:5000])
        _wait_for(lambda: _inflight(server.url) >= len(body))
        sock.close()
        _wait_for(lambda: _inflight(server.url) == 0)
        time.sleep(0.2)
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 1, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


def _json_batch(spans: int, value_bytes: int) -> bytes:
    now = time.time_ns()
    return orjson.dumps({"spans": [{"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "name": "s",
                                    "start_time": now - 10**9, "end_time": now, "attributes": {"note": "x" * value_bytes}}
                                   for _ in range(spans)]})


@pytest.mark.parametrize("kind", ["protobuf", "json"])
def test_readyz_and_small_requests_stay_fast_while_a_16_mib_body_decodes(server, key, kind):
    """The compiled protobuf path releases the GIL; the JSON one is Python, sharing it with the loop."""
    path = "/v1/traces" if kind == "protobuf" else "/api/v1/spans"
    headers = {"Authorization": f"Bearer {key}",
               "Content-Type": "application/x-protobuf" if kind == "protobuf" else "application/json"}
    big = _protobuf(8_000, value_bytes=2_000) if kind == "protobuf" else _json_batch(7_300, 2_000)
    assert 15 * 2**20 < len(big) <= 16 * 2**20
    result: dict[str, object] = {}

    def send_big() -> None:
        started = time.perf_counter()
        # the server's cap is 1 MiB: a body alone is always admitted (only concurrent ones are refused)
        result["status"] = httpx.post(f"{server.url}{path}", content=big, headers=headers, timeout=120).status_code
        result["seconds"] = time.perf_counter() - started

    sender = threading.Thread(target=send_big)
    ready, small = [], []
    with httpx.Client(base_url=server.url) as client:
        client.get("/readyz")  # connection open before the measurement
        sender.start()
        _wait_for(lambda: _inflight(server.url) > 0 or "status" in result)
        while sender.is_alive():
            started = time.perf_counter()
            assert client.get("/readyz").status_code == 200
            ready.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.post("/v1/traces", content=_protobuf(1), headers={**headers, "Content-Type": "application/x-protobuf"})
            small.append(time.perf_counter() - started)
        sender.join()
    assert result["status"] == 200
    print(f"{kind}: 16 MiB body in {result['seconds']:.2f} s; /readyz max {max(ready) * 1e3:.0f} ms over {len(ready)}, "
          f"small request max {max(small) * 1e3:.0f} ms")
    # Decoding on the loop stalled it for the whole decode, most of the big request's time (JSON: ~0.9 s
    # of ~1.1 s on an idle core). Off the loop, an idle machine answers /readyz within ~100 ms (the JSON
    # path keeps orjson.loads' GIL hold, ~8 ms per MiB); the test machine also runs many suites on
    # 2 cores (load 15 seen, the 16 MiB request then took 9 s), so the bound is also relative to the
    # big request's own time: /readyz never waits for the decode.
    bound = max(0.5 if kind == "protobuf" else 1.0, result["seconds"] / 4)
    assert max(ready) < bound and max(small) < bound, (bound, sorted(ready)[-3:], sorted(small)[-3:])


def test_a_stalled_redis_is_503_with_retry_after_not_500(migrated_postgres, s3_blob_url, tmp_path, key):
    from starlette.testclient import TestClient

    redis_server = EmbeddedRedis(tmp_path / "redis")
    redis_server.start()
    try:
        app = _app({"redis_timeout_seconds": 0.3, "bus_timeout_seconds": 0.3}, migrated_postgres, redis_server.url,
                   s3_blob_url, tmp_path / "data")
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
            import redis

            admin = redis.Redis(unix_socket_path=str(redis_server.socket_path))
            admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
            r = client.post("/v1/traces", content=_protobuf(1), headers=headers)
            assert r.status_code == 503 and r.headers["Retry-After"], r.text
            admin.execute_command("CLIENT", "UNPAUSE")
            assert client.post("/v1/traces", content=_protobuf(1), headers=headers).status_code == 200
    finally:
        redis_server.stop()


def test_scores_share_the_spans_admission_rate_limit_and_metrics(migrated_postgres, redis_url, s3_blob_url,
                                                                 service_root, key):
    from starlette.testclient import TestClient

    app = _app({"rate_limit_spans_per_second": 0.5, "rate_limit_burst": 3}, migrated_postgres, redis_url,
               s3_blob_url, service_root / "scores-admission")
    trace = uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(app) as client:

        def rejected_rate_limited() -> float:
            for line in client.get("/metrics").text.splitlines():
                if line.startswith('evalforge_ingest_scores_rejected_total{reason="rate_limited"}'):
                    return float(line.split()[-1])
            return 0.0

        before = rejected_rate_limited()
        ok = client.post("/api/v1/scores", headers=headers, json={"scores": [
            {"name": "thumbs", "value": True, "trace_id": trace}] * 3})
        assert ok.status_code == 202
        limited = client.post("/api/v1/scores", headers=headers, json={"name": "thumbs", "value": True, "trace_id": trace})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert rejected_rate_limited() == before + 1
        # the same bucket as spans: the project's spans wait too
        spans = client.post("/v1/traces", content=_protobuf(1), headers={**headers, "Content-Type": "application/x-protobuf"})
        assert spans.status_code == 429
