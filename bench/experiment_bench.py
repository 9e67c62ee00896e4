"""Experiment runner overhead: 1,000 items against a stub model answering in 50 ms, concurrency 32.

Reports the runner's wall time against the ideal (items / concurrency x 50 ms) and against a bare
asyncio loop (httpx, 32 lanes, the same requests) calling the same stub in the same run. The runner
is the real one (``ExperimentRun``): it renders templates, scores every output with a registry
evaluator, builds two spans per item and publishes them to the bus (Redis Streams), writes results
to PostgreSQL in batches and checks for cancellation. The stub is a separate process (uvicorn, raw
ASGI) so it does not share the runner's interpreter. Budget: runner <= 1.15x the bare loop.

    .venv/bin/python bench/experiment_bench.py [--items 1000] [--concurrency 32] [--latency-ms 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import MetaParts, free_port, loadavg, print_table, wait_http  # noqa: E402

TEMPLATE = [{"role": "user", "content": "What is {{input.a}} plus {{input.b}}?"}]


def stub_app(latency_s: float):
    """A raw ASGI OpenAI chat-completions stub: sleeps ``latency_s``, answers the sum."""
    import re

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if scope["path"] == "/health":
            payload = b"{}"
        else:
            await asyncio.sleep(latency_s)
            req = json.loads(body)
            a, b = map(int, re.findall(r"\d+", req["messages"][-1]["content"]))
            payload = json.dumps({"id": "x", "object": "chat.completion", "model": req["model"], "choices": [
                {"index": 0, "message": {"role": "assistant", "content": str(a + b)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return app


def serve_stub(port: int, latency_ms: float) -> None:
    import uvicorn

    uvicorn.run(stub_app(latency_ms / 1000), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools", backlog=1024)


async def bare_loop(url: str, items: list[dict], concurrency: int) -> float:
    """The floor: 32 lanes posting the same rendered requests and parsing the replies, nothing else."""
    import httpx
    import orjson

    from evaluators.experiments.targets import render

    queue = iter(items)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        async def lane():
            for item in queue:
                body = orjson.dumps({"model": "gpt-4o-mini", "messages": render(TEMPLATE, item)})
                r = await client.post(f"{url}/v1/chat/completions", content=body,
                                      headers={"content-type": "application/json", "authorization": "Bearer x"})
                orjson.loads(r.content)["choices"][0]["message"]["content"]

        t0 = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        return time.perf_counter() - t0


async def runner(parts: MetaParts, url: str, dataset_id: str, version: int, n: int, concurrency: int) -> tuple[float, dict]:
    from psycopg_pool import AsyncConnectionPool

    from core.bus.redis_streams import RedisStreamsBus
    from core.settings import Settings
    from evaluators.experiments import store
    from evaluators.experiments.runner import ExperimentRun

    settings = Settings(egress_allowed_hosts="127.0.0.1", postgres_url=parts.postgres_url, redis_url=parts.redis_url)
    bus = RedisStreamsBus(parts.redis_url)
    await bus.start()
    async with AsyncConnectionPool(parts.postgres_url, min_size=2, max_size=4, kwargs={"autocommit": True}) as pool:
        async with pool.connection() as conn:
            experiment_id = await store.create(conn, parts.project_id, {
                "name": "bench", "kind": "server", "dataset_id": dataset_id, "dataset_version": version,
                "target": {"model": "gpt-4o-mini", "base_url": f"{url}/v1", "messages": TEMPLATE},
                "evaluators": [{"evaluator": "exact_match"}], "repetitions": 1, "max_concurrency": concurrency,
                "status": "queued", "total": n})
            exp = await store.get(conn, experiment_id)
        t0 = time.perf_counter()
        status = await ExperimentRun(pool, bus, settings, exp).run()
        wall = time.perf_counter() - t0
        async with pool.connection() as conn:
            results = await store.results(conn, experiment_id)
    await bus.close()
    assert status == "completed" and len(results) == n, (status, len(results))
    correct = sum(1 for r in results if r["scores"] and r["scores"][0]["passed"])
    return wall, {"results": len(results), "correct": correct}


def start_stub(latency_ms: float) -> tuple[subprocess.Popen, int]:
    port = free_port()
    return subprocess.Popen([sys.executable, __file__, "--stub", str(port), "--latency-ms", str(latency_ms)]), port


async def main_async(args, stub: subprocess.Popen, port: int) -> None:
    import psycopg

    from evaluators import datasets

    parts = MetaParts().start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", proc=stub)
        raw = [{"input": {"a": i, "b": 2 * i}, "expected_output": str(3 * i)} for i in range(args.items)]
        items, _ = datasets.check_items(raw)
        async with await psycopg.AsyncConnection.connect(parts.postgres_url, autocommit=True) as conn:
            dataset_id, version, created = await datasets.create_dataset(conn, parts.project_id, "bench", items)
        await bare_loop(url, created[:64], args.concurrency)  # warm-up: connections, imports
        bare, run, checks, cpu_bare, cpu_run = [], [], {}, [], []
        for _ in range(args.rounds):  # alternate, so drift of the machine hits both alike
            c0 = time.process_time()
            bare.append(await bare_loop(url, created, args.concurrency))
            c1 = time.process_time()
            wall, checks = await runner(parts, url, dataset_id, version, args.items, args.concurrency)
            cpu_bare.append(c1 - c0)
            cpu_run.append(time.process_time() - c1)
            run.append(wall)
        ideal = args.items / args.concurrency * args.latency_ms / 1000
        best_bare, best_run = min(bare), min(run)
        print_table(f"experiment runner, {args.items} items, concurrency {args.concurrency}, stub {args.latency_ms:g} ms", [
            ("ideal (items / concurrency x latency)", f"{ideal:.3f} s"),
            ("bare asyncio loop, each round", ", ".join(f"{b:.3f} s" for b in bare)),
            ("runner, each round", ", ".join(f"{r:.3f} s" for r in run)),
            ("runner / bare loop (best of each)", f"{best_run / best_bare:.3f}x (budget 1.15x)"),
            ("runner / bare loop (median of each)", f"{sorted(run)[len(run) // 2] / sorted(bare)[len(bare) // 2]:.3f}x"),
            ("runner / ideal (best)", f"{best_run / ideal:.3f}x"),
            ("CPU of this process per item: bare / runner (median)",
             f"{sorted(cpu_bare)[len(cpu_bare) // 2] / args.items * 1000:.2f} ms / "
             f"{sorted(cpu_run)[len(cpu_run) // 2] / args.items * 1000:.2f} ms (PostgreSQL and Redis not counted)"),
            ("results written / correct", f"{checks['results']} / {checks['correct']}"),
            ("load average (1, 5, 15 min) at the end", loadavg()),
        ])
    finally:
        stub.terminate()
        stub.wait(10)
        parts.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--latency-ms", type=float, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--stub", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.stub:
        serve_stub(a.stub, a.latency_ms)
    else:
        import uvloop

        uvloop.run(main_async(a, *start_stub(a.latency_ms)))
