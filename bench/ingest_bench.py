"""Ingest benchmark: sustained spans/s through ``POST /v1/traces`` into a real Kafka broker.

Starts a real broker (C2 JIT on, ``spans.raw`` with 8 partitions), embedded PostgreSQL + Redis, and
``evalforge ingest`` as its own process (one uvicorn worker). Load comes from separate client
processes (``--procs`` x ``--conns`` keep-alive ``http.client`` connections) posting prebuilt OTLP
protobuf bodies of ``--spans`` GenAI spans (~1.2 KiB each). Phases, each ``--seconds`` long:

1. max load (closed loop, every connection back-to-back): spans/s acknowledged, latency, CPU, RSS;
2. half load (each connection paced, total = half the measured max): latency p50 / p95 / p99;
3. optionally the same max load with gzip bodies (``--gzip``);
   and (unless ``--no-grpc``) right after phase 1, the same max load over OTLP/gRPC: one channel per
   connection, the same prebuilt request bytes, blocking ``TraceService/Export`` calls;
4. raw ceilings, producing the very records ingest would produce for those bodies (core.span.encode),
   keyed by trace id, with as many batches in flight as there were HTTP connections: aiokafka
   ``send()`` per record (acks=all, idempotent, lz4: the issue's baseline), then KafkaBus.publish
   itself (librdkafka, what ingest uses) — the second shows what is left above the producer.

    .venv/bin/python bench/ingest_bench.py [--seconds 20] [--spans 512] [--procs 2] [--conns 4] [--gzip] [--no-grpc]

Prints its figures; no pass/fail. Targets: >= 50,000 spans/s, >= 0.6x raw, p95 <= 50 ms at half load,
ingest RSS <= 300 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PROTOBUF, ROOT, MetaParts, PeakRss, broker_pid, build_request, canonical_records, cpu_seconds, free_port,
    http_call, loadavg, percentiles, print_table, py_spy_start, rss_mib, start_kafka, summarize_collapsed, wait_http,
)

BODIES_PER_PROC = 8


# --- load generator (runs in child processes) --------------------------------------------------

_GRPC_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _grpc_caller(port: int, key: str):
    """A blocking TraceService/Export on its own channel (its own HTTP/2 connection), sending the
    prebuilt ExportTraceServiceRequest bytes as they are; returns (call, close)."""
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1),
                                                                  ("grpc.max_send_message_length", 64 << 20)])
    export = channel.unary_unary(_GRPC_EXPORT)  # no serializers: bytes in, bytes out
    metadata = (("authorization", f"Bearer {key}"),)

    def call(body: bytes) -> int:
        try:
            export(body, metadata=metadata, timeout=30)
            return 200
        except grpc.RpcError as exc:
            return 1000 + exc.code().value[0]  # reported beside the HTTP statuses, e.g. 1014 = UNAVAILABLE

    return call, channel.close


def _client_proc(port: int, key: str, bodies: list[bytes], conns: int, start_at: float, seconds: float,
                 rate_per_conn: float, use_gzip: bool, out: mp.Queue, transport: str = "http") -> None:
    """``conns`` threads, each on its own keep-alive connection (HTTP/1.1, or a gRPC channel);
    results: (t_done, latency s, status)."""
    headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {key}"}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    results: list[list[tuple[float, float, int]]] = [[] for _ in range(conns)]
    late = [0] * conns
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)

    def run(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30) if transport == "http" else None
        grpc_call, grpc_close = _grpc_caller(port, key) if transport == "grpc" else (None, None)
        interval = 1.0 / rate_per_conn if rate_per_conn else 0.0
        # spread the paced connections over one interval so requests do not arrive in bursts
        next_at = start_at + (interval * i / conns if interval else 0.0)
        end = start_at + seconds
        n = i
        while True:
            now = time.monotonic()
            if interval:
                if next_at > now:
                    time.sleep(next_at - now)
                elif now - next_at > interval:
                    late[i] += 1
                next_at += interval
            elif now < start_at:
                time.sleep(start_at - now)
            sent = time.monotonic()
            if sent >= end:
                break
            body = bodies[n % len(bodies)]
            n += 1
            if grpc_call is not None:
                status = grpc_call(body)
            else:
                conn, status = http_call(conn, port, "POST", "/v1/traces", headers, body)
            done = time.monotonic()
            results[i].append((done, done - sent, status))
        if grpc_close is not None:
            grpc_close()
        else:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out.put(([r for rs in results for r in rs], cpu, sum(late)))


def run_load(port: int, key: str, bodies: list[list[bytes]], conns: int, seconds: float, rate: float,
             use_gzip: bool, watch: dict[str, list[int]], transport: str = "http") -> dict:
    """One phase: start the client processes, wait, gather. ``rate`` = total requests/s (0 = max)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs_n = len(bodies)
    rate_per_conn = rate / (procs_n * conns) if rate else 0.0
    start_at = time.monotonic() + 3.0  # time for the spawned interpreters to import
    procs = [ctx.Process(target=_client_proc, args=(port, key, bodies[p], conns, start_at, seconds, rate_per_conn,
                                                     use_gzip, out, transport)) for p in range(procs_n)]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu0 = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in watch.items()}
    with PeakRss([pid for pids in watch.values() for pid in pids]) as rss:
        time.sleep(seconds)
        cpu1 = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in watch.items()}
        gathered = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    results = [r for g in gathered for r in g[0]]
    ok = [r for r in results if 200 <= r[2] < 300 and r[0] <= start_at + seconds]
    statuses: dict[int, int] = {}
    for r in results:
        statuses[r[2]] = statuses.get(r[2], 0) + 1
    return {
        "requests_ok": len(ok),
        "statuses": statuses,
        "latencies_ms": [r[1] * 1000 for r in ok],
        "client_cpu_s": sum(g[1] for g in gathered),
        "late": sum(g[2] for g in gathered),
        "cpu": {name: (cpu1[name] - cpu0[name]) for name in watch},
        "peak_rss": {name: max(rss.peak[pid] for pid in pids) for name, pids in watch.items()},  # per process
        "seconds": seconds,
    }


def report(title: str, phase: dict, spans_per_request: int, load: str) -> float:
    s = phase["seconds"]
    spans_s = phase["requests_ok"] * spans_per_request / s
    p = percentiles(phase["latencies_ms"])
    rows = [
        ("offered load", load),
        ("spans/s acknowledged (2xx)", f"{spans_s:,.0f}"),
        ("requests/s", f"{phase['requests_ok'] / s:,.1f}"),
        ("latency p50 / p95 / p99 ms", f"{p[50]:.1f} / {p[95]:.1f} / {p[99]:.1f}"),
        ("responses by status", ", ".join(f"{k}: {v}" for k, v in sorted(phase["statuses"].items()))),
        ("late paced sends", phase["late"]),
    ]
    for name, cpu in phase["cpu"].items():
        rows.append((f"{name} CPU (cores)", f"{cpu / s:.2f}"))
    if phase["requests_ok"] and "ingest" in phase["cpu"]:
        # CPU per span is what the machine's other load cannot distort much
        per_span = phase["cpu"]["ingest"] / (phase["requests_ok"] * spans_per_request)
        rows.append(("ingest CPU per span us", f"{per_span * 1e6:.0f}  -> {1 / per_span:,.0f} spans per CPU-second"))
    rows.append(("load generator CPU (cores)", f"{phase['client_cpu_s'] / s:.2f}"))
    for name, peak in phase["peak_rss"].items():
        rows.append((f"{name} peak RSS MiB", f"{peak:.0f}"))
    rows.append(("load average", loadavg()))
    print_table(title, rows)
    return spans_s


# --- raw ceiling ---------------------------------------------------------------------------------

async def _raw_ceiling(bootstrap: str, batches: list[list[tuple[bytes, bytes]]], inflight: int,
                       seconds: float, client: str) -> tuple[int, list[float]]:
    """Produce ``batches`` round-robin from ``inflight`` tasks, each awaiting every ack of its batch
    (what one ingest request does); returns (records acknowledged in the window, batch latencies).

    client "aiokafka": AIOKafkaProducer.send() per record, acks=all, idempotent, lz4 (the issue's
    baseline); "bus": KafkaBus.publish, the librdkafka producer ingest itself uses."""
    from aiokafka import AIOKafkaProducer

    from core.bus import TOPIC_SPANS
    from core.bus.kafka import KafkaBus

    if client == "aiokafka":
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                    compression_type="lz4", linger_ms=5, max_batch_size=1024 * 1024,
                                    max_request_size=16 * 1024 * 1024)
        await producer.start()

        async def publish(batch):
            await asyncio.gather(*[await producer.send(TOPIC_SPANS, value, key=key) for key, value in batch])
        close = producer.stop
    else:
        bus = KafkaBus(bootstrap)
        await bus.start()

        async def publish(batch):
            await bus.publish(TOPIC_SPANS, batch)
        close = bus.close
    done, latencies = 0, []
    end = time.monotonic() + 2 + seconds
    window_start = time.monotonic() + 2  # 2 s warm-up, not counted

    async def worker(i: int) -> None:
        nonlocal done
        n = i
        while time.monotonic() < end:
            batch = batches[n % len(batches)]
            n += 1
            sent = time.monotonic()
            await publish(batch)
            now = time.monotonic()
            if window_start <= sent and now <= end:
                done += len(batch)
                latencies.append((now - sent) * 1000)

    try:
        await asyncio.gather(*(worker(i) for i in range(inflight)))
    finally:
        await close()
    return done, latencies


def raw_ceiling(bootstrap: str, batches, inflight: int, seconds: float, bpid: int | None, client: str) -> float:
    try:
        import uvloop

        runner = uvloop.run  # ingest runs on uvloop (uvicorn picks it when installed)
    except (ImportError, AttributeError):
        runner = asyncio.run
    me = os.getpid()
    c0 = cpu_seconds(me), (cpu_seconds(bpid) if bpid else 0.0)
    started = time.monotonic()
    done, lat = runner(_raw_ceiling(bootstrap, batches, inflight, seconds, client))
    elapsed = time.monotonic() - started
    c1 = cpu_seconds(me), (cpu_seconds(bpid) if bpid else 0.0)
    spans_s = done / seconds
    p = percentiles(lat)
    title = ("raw ceiling: aiokafka send() per record, same records (acks=all, idempotent, lz4)" if client == "aiokafka"
             else "raw bus ceiling: KafkaBus.publish (librdkafka, as ingest), same records and settings")
    print_table(title, [
        ("batches in flight", inflight),
        ("records/s acknowledged", f"{spans_s:,.0f}"),
        ("batch ack latency p50 / p95 / p99 ms", f"{p[50]:.1f} / {p[95]:.1f} / {p[99]:.1f}"),
        ("producer process CPU (cores)", f"{(c1[0] - c0[0]) / elapsed:.2f}"),
        ("producer CPU per record us (incl. 2 s warm-up)", f"{(c1[0] - c0[0]) / max(done * (seconds + 2) / seconds, 1) * 1e6:.0f}"),
        ("broker CPU (cores)", f"{(c1[1] - c0[1]) / elapsed:.2f}"),
        ("load average", loadavg()),
    ])
    return spans_s


def _serving_children(parent: int, count: int, timeout: float = 60.0) -> list[int]:
    """The ``count`` ingest copies of ``evalforge ingest --workers`` (not multiprocessing's tracker)."""
    from tests.harness.procs import child_processes

    deadline = time.monotonic() + timeout
    while True:
        found = [pid for pid, cmdline in child_processes(parent) if "resource_tracker" not in cmdline]
        if len(found) >= count or time.monotonic() > deadline:
            time.sleep(2)  # every copy listening
            return found
        time.sleep(0.2)


# --- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--spans", type=int, default=512, help="spans per request")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--conns", type=int, default=4, help="connections per load-generator process")
    ap.add_argument("--gzip", action="store_true", help="also run the max-load phase with gzip bodies")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw producer ceilings")
    ap.add_argument("--no-grpc", action="store_true", help="skip the OTLP/gRPC max-load phase")
    ap.add_argument("--workers", type=int, default=1, help="evalforge ingest --workers (processes on the port)")
    ap.add_argument("--profile", action="store_true", help="py-spy the ingest process in an extra max-load phase")
    args = ap.parse_args(argv)

    print(f"load average at start: {loadavg()}  (2 cores shared with other work)")
    bodies = [[build_request(args.spans, seed=p * 100 + i).SerializeToString() for i in range(BODIES_PER_PROC)]
              for p in range(args.procs)]
    size = len(bodies[0][0])
    gz_bodies = [[gzip.compress(b, 6) for b in proc] for proc in bodies] if args.gzip else None
    print(f"request body: {args.spans} spans, {size / 1024:.0f} KiB protobuf ({size / args.spans:.0f} B/span)"
          + (f", {len(gz_bodies[0][0]) / 1024:.0f} KiB gzip" if gz_bodies else ""))

    broker = meta = server = None
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"evalforge-ingest-bench-{os.getpid()}.log"
    try:
        broker = start_kafka(partitions=8)
        meta = MetaParts().start()
        port, grpc_port = free_port(), free_port()
        env = {**os.environ, "EVALFORGE_BUS_URL": f"kafka://{broker.bootstrap}", "EVALFORGE_GRPC_PORT": str(grpc_port),
               "EVALFORGE_POSTGRES_URL": meta.postgres_url, "EVALFORGE_REDIS_URL": meta.redis_url,
               "EVALFORGE_BLOB_URL": f"file://{meta.root / 'blobs'}", "EVALFORGE_LOG_LEVEL": "WARNING"}
        with open(log_path, "w") as log:
            server = subprocess.Popen([str(ROOT / ".venv/bin/evalforge"), "ingest", "--port", str(port),
                                       "--workers", str(args.workers), "--data-dir", str(meta.root / "data")],
                                      env=env, stdout=log, stderr=log)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=server)
        ingest_pids = [server.pid] if args.workers == 1 else _serving_children(server.pid, args.workers)
        watch = {"ingest": ingest_pids}
        bpid = broker_pid(broker)
        if bpid:
            watch["broker"] = [bpid]
        print(f"ingest pid(s) {ingest_pids} on :{port}, idle RSS {rss_mib(ingest_pids[0]):.0f} MiB each; "
              f"broker {broker.bootstrap}")

        run_load(port, meta.api_key, bodies, args.conns, 3.0, 0, False, watch)  # warm-up, not reported
        conns_total = args.procs * args.conns
        full = run_load(port, meta.api_key, bodies, args.conns, args.seconds, 0, False, watch)
        max_spans = report(f"max load: {conns_total} connections back-to-back, protobuf", full, args.spans,
                           f"closed loop, {conns_total} connections")
        grpc_max = 0.0
        if not args.no_grpc:  # the same bodies, connections and server, over OTLP/gRPC
            run_load(grpc_port, meta.api_key, bodies, args.conns, 3.0, 0, False, watch, "grpc")  # warm-up
            over_grpc = run_load(grpc_port, meta.api_key, bodies, args.conns, args.seconds, 0, False, watch, "grpc")
            grpc_max = report(f"max load over OTLP/gRPC: {conns_total} channels back-to-back", over_grpc, args.spans,
                              f"closed loop, {conns_total} gRPC channels")
        half_rps = max_spans / 2 / args.spans
        half = run_load(port, meta.api_key, bodies, args.conns, args.seconds, half_rps, False, watch)
        report("half load: paced at half the measured max", half, args.spans,
               f"{half_rps * args.spans:,.0f} spans/s ({half_rps:.1f} req/s)")
        if gz_bodies:
            gz = run_load(port, meta.api_key, gz_bodies, args.conns, args.seconds, 0, True, watch)
            report("max load, gzip bodies", gz, args.spans, f"closed loop, {conns_total} connections")
        if args.profile:
            prof_out = log_path.with_suffix(".pyspy.txt")
            spy = py_spy_start(server.pid, args.seconds, prof_out)
            run_load(port, meta.api_key, bodies, args.conns, args.seconds, 0, False, watch)
            if spy is not None:
                spy.wait(60)
                print_table(f"py-spy of the ingest process under max load ({prof_out})",
                            summarize_collapsed(prof_out, 20))
        raw = bus_raw = 0.0
        if not args.no_raw:
            batches = [canonical_records(b, meta.project_id) for b in bodies[0]]
            raw = raw_ceiling(broker.bootstrap, batches, conns_total, args.seconds, bpid, "aiokafka")
            bus_raw = raw_ceiling(broker.bootstrap, batches, conns_total, args.seconds, bpid, "bus")
        rows = [("max spans/s (protobuf)", f"{max_spans:,.0f}  (target >= 50,000)")]
        if grpc_max:
            rows.append(("max spans/s over OTLP/gRPC", f"{grpc_max:,.0f}  (gRPC / HTTP {grpc_max / max_spans:.2f}, "
                                                        "target >= 1)"))
        if raw:
            rows.append(("raw aiokafka ceiling spans/s", f"{raw:,.0f}"))
            rows.append(("ingest / raw aiokafka", f"{max_spans / raw:.2f}  (target >= 0.6)"))
            rows.append(("raw bus (librdkafka) ceiling spans/s", f"{bus_raw:,.0f}"))
            rows.append(("ingest / raw bus", f"{max_spans / bus_raw:.2f}"))
        p95 = percentiles(half["latencies_ms"])[95]
        rows.append(("p95 at half load ms", f"{p95:.1f}  (target <= 50)"))
        rows.append(("ingest peak RSS MiB", f"{max(full['peak_rss']['ingest'], half['peak_rss']['ingest']):.0f}"
                     "  (budget <= 300)"))
        print_table("summary", rows)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        if meta is not None:
            meta.stop()
        if broker is not None:
            broker.close()
    print(f"(ingest log: {log_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
