"""``evalforge.ab.variant`` from the in-process cache: per-call latency on the caller's thread.

The configuration is the server's own ``query_api.ab_store.sdk_config`` output for a running 3-variant
test, served once by a loopback HTTP server and fetched by the SDK as usual; then every call is a cache
hit. Each call is timed alone with ``perf_counter_ns`` (its ~0.1 µs cost is included). Three cases:
a different unit per call with no active span; the same request's unit again inside its recording span
(tagged once, then only checked); the first call in a new span (pays OTel's ``set_attributes``: each
span is tagged once); the ``with`` form in one span, which also tags every span started in the block.

    PYTHONPATH=.:sdk .venv/bin/python bench/ab_bench.py [--calls 200000] [--rounds 3]

Prints its figures; not a timed test. Target: p99 <= 5 µs from cache.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import evalforge
from query_api import ab_allocation
from query_api.ab_store import sdk_config


def serve_config() -> ThreadingHTTPServer:
    row = {"id": "t1", "name": "checkout", "status": "running", "salt": "5eed5eed5eed5eed", "winner": None,
           "allocation": ab_allocation.initial_allocation([0.5, 0.3, 0.2]),
           "variants": [{"name": n, "weight": w, "model": m, "config": {"temperature": 0.2}}
                        for n, w, m in (("control", 0.5, "gpt-4o"), ("mini", 0.3, "gpt-4o-mini"), ("haiku", 0.2, "claude"))]}
    body = json.dumps(sdk_config([row])).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def percentiles(samples: list[int]) -> tuple[float, float, float]:
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] / 1000  # noqa: E731
    return pick(0.5), pick(0.99), pick(0.999)


def measure(calls: int, case: str) -> list[int]:
    variant, clock = evalforge.ab.variant, time.perf_counter_ns
    units = [f"user-{i}" for i in range(calls)]
    out = [0] * calls
    gc.disable()
    try:
        if case == "no span":
            for i, unit in enumerate(units):
                t0 = clock()
                variant("checkout", unit_id=unit)
                out[i] = clock() - t0
        elif case == "again in the same span":
            with evalforge.span("request"):
                for i in range(calls):
                    t0 = clock()
                    variant("checkout", unit_id="user-7")
                    out[i] = clock() - t0
        elif case == "first call in a new span":
            for i, unit in enumerate(units[: calls // 10]):  # a span per call: fewer calls
                with evalforge.span("request"):
                    t0 = clock()
                    variant("checkout", unit_id=unit)
                    out[i] = clock() - t0
            del out[calls // 10:]
        else:
            with evalforge.span("request"):
                for i in range(calls):
                    t0 = clock()
                    with variant("checkout", unit_id="user-7"):
                        pass
                    out[i] = clock() - t0
    finally:
        gc.enable()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = serve_config()
    # spans go nowhere useful (port 9): only the caller's thread is measured
    evalforge.init(api_key="bench", endpoint=f"http://127.0.0.1:{server.server_address[1]}", max_queue_size=16)
    assert evalforge.ab.refresh(), evalforge.stats()["ab"]
    print(f"evalforge.ab.variant from cache, {args.calls:,} calls x {args.rounds} rounds (µs per call)")
    print(f"{'case':<24}{'p50':>8}{'p99':>8}{'p99.9':>8}   target p99 <= 5 µs")
    for case in ("no span", "again in the same span", "first call in a new span", "with-block"):
        rounds = [percentiles(measure(args.calls, case)) for _ in range(args.rounds)]
        p50, p99, p999 = (statistics.median(r[k] for r in rounds) for k in range(3))
        print(f"{case:<24}{p50:>8.2f}{p99:>8.2f}{p999:>8.2f}")
    print("fallbacks:", evalforge.stats()["ab"]["fallbacks"])
    evalforge.shutdown(0.5)
    server.shutdown()


if __name__ == "__main__":
    main()
