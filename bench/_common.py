"""Shared pieces of the throughput / freshness benchmarks: realistic GenAI spans, the real parts
(Kafka broker, PostgreSQL, Redis), process CPU / RSS probes and the result table.

Nothing here is a fake: spans are real OTLP protobuf, the broker is the test harness's Apache
Kafka, PostgreSQL and Redis are the embedded servers ``evalforge up`` uses.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `.venv/bin/python bench/X.py` from anywhere
    sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status  # noqa: E402

PROTOBUF = "application/x-protobuf"
SPANS_PER_TRACE = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --- spans ------------------------------------------------------------------------------------

_MODELS = (("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"), ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
           ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20241022"))
_QUESTIONS = ("Where is my order #{n}? It was supposed to arrive on Monday and the tracking page is empty.",
              "Can you summarise the refund policy for annual plans bought through the app store, order {n}?",
              "Write a short, friendly reply to a customer asking to change the delivery address of {n}.")


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _llm_attributes(rng: random.Random, n: int) -> list[KeyValue]:
    provider, model, response_model = _MODELS[n % len(_MODELS)]
    question = _QUESTIONS[n % len(_QUESTIONS)].format(n=n)
    answer = ("I checked order {n}: it left our warehouse yesterday and the carrier expects to deliver it "
              "within two business days. You will get an e-mail with the tracking link.").format(n=n)
    return [_kv(k, v) for k, v in (
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", provider),
        ("gen_ai.request.model", model),
        ("gen_ai.response.model", response_model),
        ("gen_ai.request.temperature", 0.2),
        ("gen_ai.request.max_tokens", 512),
        ("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(64):016x}"),
        ("gen_ai.response.finish_reasons", "stop"),
        ("gen_ai.usage.input_tokens", 180 + rng.randrange(400)),
        ("gen_ai.usage.output_tokens", 40 + rng.randrange(200)),
        ("gen_ai.input.messages",
         '[{"role":"system","parts":[{"type":"text","content":"You are a support assistant for an online '
         'shop. Answer briefly and politely."}]},{"role":"user","parts":[{"type":"text","content":"'
         + question + '"}]}]'),
        ("gen_ai.output.messages",
         '[{"role":"assistant","parts":[{"type":"text","content":"' + answer + '"}],"finish_reason":"stop"}]'),
        ("evalforge.session_id", f"sess-{n // 32:08d}"),
        ("evalforge.user_id", f"user-{n % 5000:05d}"),
        ("server.address", "api.openai.com" if provider == "openai" else "api.anthropic.com"),
    )]


def build_request(n_spans: int, seed: int = 0) -> ExportTraceServiceRequest:
    """An OTLP export of ``n_spans`` GenAI chat spans (~1 KiB each), 4 spans per trace."""
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "support-bot"), _kv("service.version", "1.4.2"),
                                   _kv("deployment.environment.name", "production"),
                                   _kv("telemetry.sdk.language", "python"), _kv("telemetry.sdk.version", "1.27.0")])
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "evalforge", "0.1.0"
    now = time.time_ns()
    trace_id = root_id = b""
    for i in range(n_spans):
        if i % SPANS_PER_TRACE == 0:
            trace_id, root_id = rng.randbytes(16), rng.randbytes(8)
        span = ss.spans.add()
        span.trace_id = trace_id
        span.span_id = root_id if i % SPANS_PER_TRACE == 0 else rng.randbytes(8)
        if i % SPANS_PER_TRACE:
            span.parent_span_id = root_id
        span.name = "chat " + _MODELS[i % len(_MODELS)][1]
        span.kind = Span.SPAN_KIND_CLIENT
        span.start_time_unix_nano = now - 2_000_000_000 + i * 1000
        span.end_time_unix_nano = span.start_time_unix_nano + 300_000_000 + rng.randrange(1_500_000_000)
        span.attributes.extend(_llm_attributes(rng, seed * 100_000 + i))
        span.status.code = Status.STATUS_CODE_OK
    return req


def renew_ids(req: ExportTraceServiceRequest, rng: random.Random) -> list[str]:
    """Give every trace of ``req`` fresh ids (in place); returns the new trace ids (hex)."""
    traces: dict[bytes, tuple[bytes, bytes]] = {}
    for span in req.resource_spans[0].scope_spans[0].spans:
        new = traces.get(span.trace_id)
        if new is None:
            new = traces[span.trace_id] = (rng.randbytes(16), rng.randbytes(8))
        if not span.parent_span_id:
            span.span_id = new[1]
        else:
            span.parent_span_id = new[1]
            span.span_id = rng.randbytes(8)
        span.trace_id = new[0]
    return [t.hex() for t, _ in traces.values()]


def canonical_records(body: bytes, project_id: str) -> list[tuple[bytes, bytes]]:
    """(key, value) bus messages exactly as ingest would produce them for ``body``."""
    from core.span import encode
    from ingest.otlp import decode_otlp

    result = decode_otlp(body, PROTOBUF, project_id)
    return [(r["trace_id"].encode(), encode(r)) for r in result.records]


# --- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class PeakRss:
    """Samples the RSS of some processes every ``interval`` s in a thread; ``peak[pid]`` in MiB."""

    def __init__(self, pids: list[int], interval: float = 0.2):
        self.pids, self.interval = pids, interval
        self.peak = {p: 0.0 for p in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.pids:
                try:
                    self.peak[p] = max(self.peak[p], rss_mib(p))
                except OSError:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_http(url: str, timeout: float = 60.0, proc=None) -> None:
    """Block until ``url`` answers 2xx (raises if ``proc`` died or time ran out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 300:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def percentiles(values: list[float], qs: tuple[float, ...] = (50, 95, 99)) -> dict[float, float]:
    import numpy as np

    if not values:
        return {q: float("nan") for q in qs}
    arr = np.asarray(values)
    return {q: float(np.percentile(arr, q)) for q in qs}


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    """A two-column table: what, figure."""
    width = max(len(r[0]) for r in rows)
    print(f"\n== {title}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    sys.stdout.flush()


# --- real parts ----------------------------------------------------------------------------------

THROUGHPUT_JVM_OPTS = ("-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-Djava.awt.headless=true")


def start_kafka(partitions: int = 8):
    """The harness's real broker with the C2 JIT on (peak throughput), topics created with
    ``partitions`` partitions."""
    from core.bus import ALL_TOPICS
    from tests.harness.kafka_broker import KafkaBroker

    broker = KafkaBroker(partitions=partitions, jvm_opts=THROUGHPUT_JVM_OPTS)
    broker.start()
    broker.create_topics(list(ALL_TOPICS), partitions=partitions)
    return broker


def broker_pid(broker) -> int | None:
    proc = getattr(broker, "_proc", None)  # harness internal; only used to report the broker's CPU
    return proc.pid if proc is not None else None


@dataclass
class MetaParts:
    """Embedded PostgreSQL (migrated) + Redis in a temp dir, and one project with an API key."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="evalforge-bench-")))
    postgres_url: str = ""
    redis_url: str = ""
    project_id: str = ""
    api_key: str = ""

    def start(self) -> MetaParts:
        import psycopg

        from core.auth import create_key, ensure_project
        from core.embedded import EmbeddedPostgres, EmbeddedRedis
        from core.migrate import migrate_postgres

        self._redis = EmbeddedRedis(self.root / "redis")
        self._redis.start()
        self.redis_url = self._redis.url
        self._pg = EmbeddedPostgres(self.root / "postgres")
        self.postgres_url = self._pg.start()
        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            migrate_postgres(conn)
            project = ensure_project(conn, "bench")
            self.api_key = create_key(conn, project)
            self.project_id = project.id
        return self

    def stop(self) -> None:
        for part in ("_pg", "_redis"):
            server = getattr(self, part, None)
            if server is not None:
                server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --- profiling -----------------------------------------------------------------------------------

def py_spy_start(pid: int, seconds: float, out: Path, rate: int = 200) -> Any:
    """Start ``py-spy record`` (collapsed stacks) on ``pid`` for ``seconds``; returns the Popen, or None
    when py-spy is not installed in the venv."""
    import subprocess

    exe = ROOT / ".venv/bin/py-spy"
    if not exe.exists():
        print("(py-spy not installed: .venv/bin/pip install py-spy)")
        return None
    return subprocess.Popen([str(exe), "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                             "--rate", str(rate), "--format", "raw", "--nonblocking", "--threads", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def summarize_collapsed(path: Path, top: int = 15) -> list[tuple[str, str]]:
    """Top functions of a py-spy collapsed-stack file by self and by inclusive share of samples."""
    self_n: dict[str, int] = {}
    incl_n: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame_name(f) for f in stack.split(";")[1:]]  # drop the thread frame
        if frames:
            self_n[frames[-1]] = self_n.get(frames[-1], 0) + n
        for f in set(frames):
            incl_n[f] = incl_n.get(f, 0) + n
    if not total:
        return [("(no samples)", "")]
    rows = [("self %  (leaf function)", f"{total} samples")]
    rows += [(f"  {k}", f"{v * 100 / total:5.1f}") for k, v in sorted(self_n.items(), key=lambda kv: -kv[1])[:top]]
    rows.append(("inclusive %", ""))
    # framework plumbing (event loop, ASGI layers, thread pool) is on every stack; leave it out
    plumbing = ("(asyncio/", "(starlette/", "(fastapi/", "(uvicorn/", "(threading.py", "(concurrent/", "<module>",
                "launcher/cli.py)", "(evalforge)")
    ranked = [(k, v) for k, v in sorted(incl_n.items(), key=lambda kv: -kv[1]) if not any(p in k for p in plumbing)]
    rows += [(f"  {k}", f"{v * 100 / total:5.1f}") for k, v in ranked[:top]]
    return rows


def _frame_name(frame: str) -> str:
    """``func (pkg/mod.py:12)`` -> ``func (pkg/mod.py)``: one entry per function, whatever the line."""
    func, sep, where = frame.partition(" (")
    if not sep:
        return frame
    return f"{func} ({where.rsplit(':', 1)[0].rstrip(')')})"


def http_call(conn, port: int, method: str, path: str, headers: dict, body: bytes | None = None):
    """One request on a keep-alive connection; on a broken connection, a fresh one and status 0.

    Returns (connection to use next, HTTP status or 0)."""
    import http.client

    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return conn, resp.status
    except (OSError, http.client.HTTPException):
        conn.close()
        return http.client.HTTPConnection("127.0.0.1", port, timeout=30), 0
