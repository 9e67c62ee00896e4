"""A real OTLP/HTTP receiver for tests: a threaded HTTP server on 127.0.0.1.

Gunzips and decodes ``ExportTraceServiceRequest`` with opentelemetry-proto, records spans, scores and
request headers, and answers according to ``mode``: "ok" (200), "error" (500), "throttle" (429 +
Retry-After), "bad" (400), "slow" (sleeps 10 s, then 200 without storing).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse


def any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


class Receiver:
    def __init__(self) -> None:
        self.mode = "ok"
        self.retry_after = "1"
        self.lock = threading.Lock()
        self.spans: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []  # every request: path, status answered, headers
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = receiver.mode
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "mode": mode, "headers": dict(self.headers), "time": time.monotonic()})
                if mode == "slow":
                    # Clients give up long before; storing now would leak spans into a later test.
                    time.sleep(10)
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode in ("error", "throttle", "bad"):
                    status = {"error": 500, "throttle": 429, "bad": 400}[mode]
                    self.send_response(status)
                    if mode == "throttle":
                        self.send_header("Retry-After", receiver.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.endswith("/v1/traces"):
                    receiver._store_spans(body, dict(self.headers))
                    out = ExportTraceServiceResponse().SerializeToString()
                    ctype = "application/x-protobuf"
                else:
                    with receiver.lock:
                        receiver.scores.append({"body": json.loads(body), "headers": dict(self.headers)})
                    out = b'{"ok":true}'
                    ctype = "application/json"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None  # exporters that give up mid-"slow" close early
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _store_spans(self, body: bytes, headers: dict[str, str]) -> None:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        out = []
        for rs in req.resource_spans:
            resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        {
                            "name": s.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "attributes": {kv.key: any_value(kv.value) for kv in s.attributes},
                            "status_code": s.status.code,
                            "events": [e.name for e in s.events],
                            "resource": resource,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "authorization": headers.get("Authorization"),
                        }
                    )
        with self.lock:
            self.spans.extend(out)

    def reset(self, mode: str = "ok") -> None:
        with self.lock:
            self.mode = mode
            self.spans.clear()
            self.scores.clear()
            self.requests.clear()

    def wait_spans(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.spans) >= n:
                    return list(self.spans)
            time.sleep(0.01)
        with self.lock:
            return list(self.spans)

    def wait_scores(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.scores) < n:
            time.sleep(0.01)
        return [s["body"] for s in self.scores]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":  # used by the fork / exit-at-once subprocess tests
    import sys

    r = Receiver()
    print(r.url, flush=True)
    sys.stdin.read()
