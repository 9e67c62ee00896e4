"""SDK ``get_prompt`` benchmark against a real ``evalforge up`` on loopback (everything embedded).

Two figures (ARCHITECTURE budgets from issue 19):
- from cache: one ``evalforge.get_prompt(name)`` call when the prompt is fresh in the in-process
  cache, timed one call at a time (``perf_counter_ns``; the timer's own cost is measured and shown);
  target p99 <= 10 us.
- cold fetch: the cache cleared before each call, so each call is one HTTP GET to the server (new
  loopback connection, auth, PostgreSQL read) and the parse; target p95 <= 5 ms.

    .venv/bin/python bench/prompt_bench.py [--cached 200000] [--cold 500]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import ROOT, free_port, loadavg, percentiles, print_table, wait_http

sys.path.insert(0, str(ROOT / "sdk"))  # this checkout's SDK, not an installed one

import evalforge  # noqa: E402
from evalforge import _prompts  # noqa: E402

CHAT = [{"role": "system", "content": "You are a support agent for {{company}}. Answer briefly."},
        {"role": "user", "content": "{{question}}"}]


def _post(port: int, key: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cached", type=int, default=200_000, help="timed calls served from the cache")
    ap.add_argument("--cold", type=int, default=500, help="timed cold fetches")
    args = ap.parse_args(argv)

    data = Path(tempfile.mkdtemp(prefix="evalforge-prompt-bench-"))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EVALFORGE_DATA_DIR": str(data)}
    for name in ("BUS_URL", "CLICKHOUSE_URL", "POSTGRES_URL", "REDIS_URL", "BLOB_URL"):
        env.pop(f"EVALFORGE_{name}", None)  # everything embedded
    log = open(data.parent / f"{data.name}.log", "w")
    server = subprocess.Popen([sys.executable, "-c", "import sys; from launcher.cli import main; sys.exit(main())",
                               "up", "--port", str(port), "--data-dir", str(data)],
                              env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120, proc=server)
        key = dict(line.split("=", 1) for line in (data / "credentials").read_text().splitlines()
                   if "=" in line)["EVALFORGE_API_KEY"]
        endpoint = f"http://127.0.0.1:{port}"
        _post(port, key, "/api/v1/prompts", {"name": "support", "prompt": CHAT, "labels": ["production"],
                                             "config": {"model": "gpt-4o-mini", "temperature": 0}})

        # cold: every call fetches (warm the server's key cache and code paths first)
        for _ in range(20):
            _prompts.clear_cache()
            assert not evalforge.get_prompt("support", api_key=key, endpoint=endpoint).is_fallback
        cold = []
        for _ in range(args.cold):
            _prompts.clear_cache()
            t0 = time.perf_counter_ns()
            prompt = evalforge.get_prompt("support", api_key=key, endpoint=endpoint)
            cold.append((time.perf_counter_ns() - t0) / 1e6)
            assert prompt.version == 1 and not prompt.is_fallback

        # cached: one fetch, then every call is a cache hit
        evalforge.get_prompt("support", api_key=key, endpoint=endpoint, cache_ttl=3600)
        clock = time.perf_counter_ns
        get = evalforge.get_prompt
        timer_only, cached = [], []
        for _ in range(args.cached):
            t0 = clock()
            timer_only.append(clock() - t0)
        for _ in range(args.cached):
            t0 = clock()
            get("support", api_key=key, endpoint=endpoint, cache_ttl=3600)
            cached.append(clock() - t0)
        t0 = time.perf_counter()
        for _ in range(args.cached):
            get("support", api_key=key, endpoint=endpoint, cache_ttl=3600)
        mean_us = (time.perf_counter() - t0) / args.cached * 1e6

        c = percentiles([v / 1000 for v in cached], (50, 99, 99.9))
        t = percentiles([v / 1000 for v in timer_only], (50, 99))
        k = percentiles(cold, (50, 95, 99))
        print_table(f"evalforge.get_prompt on evalforge up (loopback); load average {loadavg()}", [
            ("from cache p50 / p99 / p99.9 (us)", f"{c[50]:.2f} / {c[99]:.2f} / {c[99.9]:.2f}   (target p99 <= 10)"),
            ("from cache, mean of a tight loop (us)", f"{mean_us:.2f}"),
            ("timer alone p50 / p99 (us)", f"{t[50]:.2f} / {t[99]:.2f}"),
            (f"cold fetch p50 / p95 / p99 (ms, n={args.cold})", f"{k[50]:.2f} / {k[95]:.2f} / {k[99]:.2f}   (target p95 <= 5)"),
        ])
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
