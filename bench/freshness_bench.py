"""Freshness benchmark: ingest 2xx -> span visible through the query path, at a steady span rate.

Starts ``evalforge up`` (everything embedded: Redis Streams bus, chDB, PostgreSQL, Redis) as a
subprocess on a fresh temp data dir and takes the API key it writes to ``<data dir>/credentials``.
A separate sender process posts OTLP protobuf batches (``--batch`` spans, fresh ids each) to
``POST /v1/traces`` paced at ``--rate`` spans/s. Every ``--probe-every``-th request, the first trace
of the batch is a probe: from its 2xx, pollers call ``GET /api/v1/traces/{trace_id}`` every
``--poll-ms`` (backing off to ``--backoff`` x the probe's age, default a tenth) until it answers 200. Freshness = arrival of that 200 - arrival of the ingest 2xx (an
upper bound: it includes one query and up to one poll interval).

    .venv/bin/python bench/freshness_bench.py [--seconds 30] [--rate 5000] [--batch 100] [--batch-ms N]
                                              [--layout embedded|kafka]

``--layout kafka`` runs a real broker, sends the load to a separate ``evalforge ingest`` and reads
through ``evalforge up`` on Kafka (processor + query API in the one process chDB allows).

``--batch-ms`` sets EVALFORGE_SINK_BATCH_MS for the run (default: the service default). Prints its
figures; no pass/fail. Target: p95 <= 1 s at 5,000 spans/s.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import queue
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PROTOBUF, ROOT, PeakRss, build_request, cpu_seconds, free_port, http_call, loadavg, percentiles, print_table,
    py_spy_start, renew_ids, start_kafka, summarize_collapsed, wait_http,
)


def _sender(port: int, key: str, batch: int, rate: float, seconds: float, start_at: float, probe_every: int,
            threads: int, probes: mp.Queue, out: mp.Queue) -> None:
    """Post batches paced at ``rate`` spans/s from ``threads`` connections; probes go to ``probes``."""
    headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {key}"}
    interval = batch * threads / rate
    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    counter = [0]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)

    def run(i: int) -> None:
        rng = random.Random(i)
        req = build_request(batch, seed=1000 + i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        next_at = start_at + interval * i / threads
        while True:
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
            if time.monotonic() >= start_at + seconds:
                break
            traces = renew_ids(req, rng)
            body = req.SerializeToString()
            with lock:
                counter[0] += 1
                probe = counter[0] % probe_every == 0
            sent = time.monotonic()
            conn, status = http_call(conn, port, "POST", "/v1/traces", headers, body)
            acked = time.monotonic()
            results.append((acked - sent, status))
            if probe and 200 <= status < 300:
                probes.put((traces[0], acked))
        conn.close()

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    probes.put(None)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    out.put((results, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)))


def _poll_until_visible(port: int, key: str, jobs: queue.Queue, poll_s: float, backoff: float, timeout: float,
                        found: list, missing: list, query_ms: list, statuses: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}"}
    while (job := jobs.get()) is not None:
        trace_id, acked = job
        while True:
            sent = time.monotonic()
            conn, status = http_call(conn, port, "GET", f"/api/v1/traces/{trace_id}", headers)
            now = time.monotonic()
            query_ms.append((now - sent) * 1000)
            statuses[status] = statuses.get(status, 0) + 1  # a 5xx here is a query-path bug, not staleness
            if status == 200:
                found.append(now - acked)
                break
            if now - acked > timeout:
                missing.append(trace_id)
                break
            # back off to a fraction of the age so a lagging pipeline is not also buried under polls
            wait = max(poll_s, backoff * (now - acked))
            time.sleep(max(0.0, wait - (time.monotonic() - sent)))
    conn.close()


def _processor_histograms(port: int) -> dict[str, dict[str, float]]:
    """The processor's own histograms from ``/metrics``: {name: {le or "sum"/"count": value}}."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("evalforge_processor_freshness_seconds", "evalforge_processor_insert_seconds"):
            for sample in family.samples:
                key = sample.labels.get("le") or sample.name.rpartition("_")[2]
                out.setdefault(family.name, {})[key] = sample.value
    return out


def _window(before: dict, after: dict, name: str) -> dict[str, float]:
    return {k: v - before.get(name, {}).get(k, 0.0) for k, v in after.get(name, {}).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to send")
    ap.add_argument("--rate", type=float, default=5000.0, help="spans/s sent")
    ap.add_argument("--spans", "--batch", dest="batch", type=int, default=100, help="spans per request")
    ap.add_argument("--senders", type=int, default=8, help="sender connections")
    ap.add_argument("--probe-every", type=int, default=25, help="every N-th request carries a probe trace")
    ap.add_argument("--poll-ms", type=float, default=100.0, help="query poll interval per probe")
    ap.add_argument("--backoff", type=float, default=0.1,
                    help="a probe polls every max(--poll-ms, this fraction of its age)")
    ap.add_argument("--pollers", type=int, default=8, help="concurrent probe pollers")
    ap.add_argument("--timeout", type=float, default=30.0, help="give up on a probe after this many seconds")
    ap.add_argument("--batch-ms", type=int, default=0, help="EVALFORGE_SINK_BATCH_MS for the run (0: default)")
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    ap.add_argument("--profile", action="store_true", help="py-spy the evalforge up process during the run")
    ap.add_argument("--layout", choices=("embedded", "kafka"), default="embedded",
                    help="embedded: everything in `evalforge up`; kafka: a real broker, a separate "
                         "`evalforge ingest` taking the load, and `evalforge up` on Kafka as processor + query API")
    args = ap.parse_args(argv)

    print(f"load average at start: {loadavg()}  (2 cores shared with other work)")
    data = Path(tempfile.mkdtemp(prefix="evalforge-freshbench-"))
    port = free_port()
    env = {**os.environ, "EVALFORGE_LOG_LEVEL": "WARNING"}
    for name in ("BUS_URL", "CLICKHOUSE_URL", "POSTGRES_URL", "REDIS_URL", "BLOB_URL"):
        env.pop(f"EVALFORGE_{name}", None)  # everything embedded
    if args.batch_ms:
        env["EVALFORGE_SINK_BATCH_MS"] = str(args.batch_ms)
    log_path = data.parent / f"{data.name}.log"
    server = ingest_proc = broker = None
    if args.layout == "kafka":
        broker = start_kafka()
        env["EVALFORGE_BUS_URL"] = f"kafka://{broker.bootstrap}"
    try:
        started = time.monotonic()
        with open(log_path, "w") as log:
            server = subprocess.Popen([str(ROOT / ".venv/bin/evalforge"), "up", "--port", str(port), "--data-dir", str(data)],
                                      env=env, stdout=log, stderr=log, start_new_session=True)
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120, proc=server)
        startup = time.monotonic() - started
        key = dict(line.split("=", 1) for line in (data / "credentials").read_text().splitlines()
                   if "=" in line)["EVALFORGE_API_KEY"]
        print(f"evalforge up pid {server.pid} on :{port}, ready in {startup:.1f} s; data dir {data}")
        send_port = port
        if args.layout == "kafka":
            # A second service replica: ingest alone, on the same PostgreSQL / Redis / blobs as `up`.
            send_port = free_port()
            ingest_env = {**env, "EVALFORGE_POSTGRES_URL": f"postgresql://postgres:@/postgres?host={data / 'postgres'}",
                          "EVALFORGE_REDIS_URL": f"unix://{data / 'redis' / 'redis.sock'}",
                          "EVALFORGE_BLOB_URL": f"file://{data / 'blobs'}"}
            with open(log_path, "a") as log:
                ingest_proc = subprocess.Popen([str(ROOT / ".venv/bin/evalforge"), "ingest", "--port", str(send_port),
                                           "--data-dir", str(data)], env=ingest_env, stdout=log, stderr=log,
                                          start_new_session=True)
            wait_http(f"http://127.0.0.1:{send_port}/healthz", timeout=120, proc=ingest_proc)
            print(f"evalforge ingest pid {ingest_proc.pid} on :{send_port}; broker {broker.bootstrap}")

        ctx = mp.get_context("spawn")
        probes_q, out_q = ctx.Queue(), ctx.Queue()
        start_at = time.monotonic() + 3.0
        sender = ctx.Process(target=_sender, args=(send_port, key, args.batch, args.rate, args.seconds, start_at,
                                                    args.probe_every, args.senders, probes_q, out_q))
        sender.start()
        jobs: queue.Queue = queue.Queue()
        found: list[float] = []
        missing: list[str] = []
        query_ms: list[float] = []
        poll_statuses: dict[int, int] = {}
        pollers = [threading.Thread(target=_poll_until_visible, args=(port, key, jobs, args.poll_ms / 1000, args.backoff,
                                                                      args.timeout, found, missing, query_ms, poll_statuses))
                   for _ in range(args.pollers)]
        for t in pollers:
            t.start()
        time.sleep(max(0.0, start_at - time.monotonic()))
        cpu0 = cpu_seconds(server.pid)
        ingest_cpu0 = cpu_seconds(ingest_proc.pid) if ingest_proc else 0.0
        spy_out = data.parent / f"{data.name}.pyspy.txt"
        spy = py_spy_start(server.pid, args.seconds, spy_out) if args.profile else None
        with PeakRss([server.pid]) as peak:
            warm_until = start_at + 3.0  # the first seconds (first batches, caches) are not sampled
            hist0 = None
            while (item := probes_q.get(timeout=args.seconds + 60)) is not None:
                if item[1] >= warm_until:
                    hist0 = hist0 or _processor_histograms(port)
                    jobs.put(item)
            cpu = cpu_seconds(server.pid) - cpu0
            ingest_cpu = cpu_seconds(ingest_proc.pid) - ingest_cpu0 if ingest_proc else 0.0
            results, sender_cpu = out_q.get(timeout=60)
            for _ in pollers:
                jobs.put(None)
            for t in pollers:
                t.join()
            hist1 = _processor_histograms(port)
        sender.join()
        ok = [r for r in results if 200 <= r[1] < 300]
        statuses: dict[int, int] = {}
        for r in results:
            statuses[r[1]] = statuses.get(r[1], 0) + 1
        ingest = percentiles([r[0] * 1000 for r in ok])
        fresh = percentiles([f * 1000 for f in found], (50, 95, 99, 100))
        qp = percentiles(query_ms)
        fresh_hist = _window(hist0 or {}, hist1, "evalforge_processor_freshness_seconds")
        inserts = _window(hist0 or {}, hist1, "evalforge_processor_insert_seconds")
        committed = fresh_hist.get("count", 0) or 1
        within = ", ".join(f"{float(le) * 1000:.0f} ms {fresh_hist[le] / committed:.0%}"
                           for le in ("0.25", "0.5", "0.75", "1.0", "2.0") if le in fresh_hist)
        layout = "evalforge up (embedded)" if args.layout == "embedded" else "Kafka: evalforge ingest -> evalforge up"
        print_table(f"freshness: {layout}, {args.rate:,.0f} spans/s offered", [
            ("spans/s acknowledged", f"{len(ok) * args.batch / args.seconds:,.0f}"),
            ("ingest latency p50 / p95 ms", f"{ingest[50]:.1f} / {ingest[95]:.1f}"),
            ("responses by status", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
            ("probes visible / not within timeout", f"{len(found)} / {len(missing)}"),
            ("freshness p50 / p95 / p99 / max ms", f"{fresh[50]:.0f} / {fresh[95]:.0f} / {fresh[99]:.0f} / {fresh[100]:.0f}"
                                                   "  (target p95 <= 1000)"),
            ("trace query responses by status", ", ".join(f"{k}: {v}" for k, v in sorted(poll_statuses.items()))),
            ("poll interval ms (back-off) / trace query p50, p95 ms",
             f"{args.poll_ms:.0f} (x{args.backoff:g} of age) / {qp[50]:.0f}, {qp[95]:.0f}"),
            ("sink batch ms", env.get("EVALFORGE_SINK_BATCH_MS", "service default")),
            ("processor: ingest -> committed, spans within", within),
            ("processor: inserts / mean insert ms", f"{inserts.get('count', 0):.0f} / "
                                                     f"{inserts.get('sum', 0) / (inserts.get('count') or 1) * 1000:.0f}"),
            ("evalforge up CPU (cores)", f"{cpu / args.seconds:.2f}"),
            ("evalforge up peak RSS MiB (main process)", f"{peak.peak[server.pid]:.0f}"),
            *([("evalforge ingest CPU (cores)", f"{ingest_cpu / args.seconds:.2f}")] if ingest_proc else []),
            ("sender CPU (cores)", f"{sender_cpu / args.seconds:.2f}"),
            ("startup s (fresh data dir)", f"{startup:.1f}"),
            ("load average", loadavg()),
        ])
        if spy is not None:
            spy.wait(60)
            print_table(f"py-spy of evalforge up during the run ({spy_out})", summarize_collapsed(spy_out, 20))
    finally:
        if ingest_proc is not None and ingest_proc.poll() is None:
            ingest_proc.send_signal(signal.SIGTERM)
            ingest_proc.wait(60)
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        if broker is not None:
            broker.close()
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    print(f"(server log: {log_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
