"""A real ``evalforge evaluate`` process killed with SIGKILL mid-experiment: the next one resumes from
the uncommitted job, runs only what was not written, and every item counts exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from core.auth import ensure_project
from core.embedded import EmbeddedRedis

from .fake_llm import FakeLLMServer

REPO = Path(__file__).resolve().parents[2]
ITEMS = 40


def _question(a: int, b: int) -> str:
    return f"What is {a} plus {b}?"


@pytest.fixture
def stub():
    server = FakeLLMServer().start()
    server.delay_s = 0.1

    def answer(body):
        return "42"

    server.responder = answer
    yield server
    server.stop()


async def _create(pg_url: str, project_id: str, bus_url: str, base_url: str) -> tuple[str, list[tuple[str, str]]]:
    from psycopg_pool import AsyncConnectionPool

    from core.bus import TOPIC_EXPERIMENT_JOBS
    from core.bus.redis_streams import RedisStreamsBus
    from evaluators import datasets
    from evaluators.experiments import store
    from evaluators.experiments.worker import job_message

    pairs = [(3 + (i * 7) % 41, 5 + i) for i in range(ITEMS)]
    async with AsyncConnectionPool(pg_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool, \
            pool.connection() as conn:
        items, _ = datasets.check_items([{"input": {"a": a, "b": b}, "expected_output": "42"} for a, b in pairs])
        dataset_id, version, created = await datasets.create_dataset(conn, project_id, f"kill-{uuid.uuid4().hex}", items)
        return_id = await store.create(conn, project_id, {
            "name": "killed", "kind": "server", "dataset_id": dataset_id, "dataset_version": version,
            "target": {"provider": "openai", "model": "gpt-4o-mini", "base_url": base_url,
                       "messages": [{"role": "user", "content": "What is {{input.a}} plus {{input.b}}?"}]},
            "evaluators": [{"evaluator": "exact_match"}], "repetitions": 1, "max_concurrency": 2,
            "status": "queued", "total": ITEMS})
    bus = RedisStreamsBus(bus_url)
    await bus.start()
    await bus.publish(TOPIC_EXPERIMENT_JOBS, [job_message(return_id)])
    await bus.close()
    return return_id, [(c["id"], _question(c["input"]["a"], c["input"]["b"])) for c in created]



def _evaluate(data_dir: Path, pg_url: str, redis_url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVALFORGE_")}
    env.update(EVALFORGE_POSTGRES_URL=pg_url, EVALFORGE_REDIS_URL=redis_url, EVALFORGE_DATA_DIR=str(data_dir),
               EVALFORGE_EGRESS_ALLOWED_HOSTS="127.0.0.1", EVALFORGE_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "launcher.cli", "evaluate"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _results(pg_url: str, experiment_id: str) -> list[tuple[str, int]]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return conn.execute("SELECT item_id, repetition FROM experiment_results WHERE experiment_id = %s",
                            (experiment_id,)).fetchall()


def _status(pg_url: str, experiment_id: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return conn.execute("SELECT status FROM experiments WHERE id = %s", (experiment_id,)).fetchone()[0]


def test_a_killed_worker_resumes_and_every_item_counts_once(migrated_postgres, tmp_path, stub):
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    procs: list[subprocess.Popen] = []
    try:
        with psycopg.connect(migrated_postgres, autocommit=True) as conn:
            project = ensure_project(conn, f"kill-{uuid.uuid4().hex[:8]}")
        experiment_id, questions = asyncio.run(_create(migrated_postgres, project.id, redis.url,
                                                           stub.openai_base_url))

        procs.append(_evaluate(tmp_path / "w1", migrated_postgres, redis.url))
        deadline = time.monotonic() + 60
        while len(_results(migrated_postgres, experiment_id)) < 8:
            assert procs[0].poll() is None, procs[0].stdout.read()
            assert time.monotonic() < deadline, "the first worker wrote nothing"
            time.sleep(0.02)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        written_before_kill = {item for item, _ in _results(migrated_postgres, experiment_id)}
        assert 8 <= len(written_before_kill) < ITEMS
        assert _status(migrated_postgres, experiment_id) == "running"

        procs.append(_evaluate(tmp_path / "w2", migrated_postgres, redis.url))
        deadline = time.monotonic() + 90
        while _status(migrated_postgres, experiment_id) != "completed":
            assert procs[1].poll() is None, procs[1].stdout.read()
            assert time.monotonic() < deadline, "the second worker did not finish the experiment"
            time.sleep(0.1)

        results = _results(migrated_postgres, experiment_id)
        assert len(results) == ITEMS and {i for i, _ in results} == {i for i, _ in questions}
        sent = [r.body["messages"][-1]["content"] for r in stub.requests]
        for item_id, question in questions:
            if item_id in written_before_kill:
                assert sent.count(question) == 1, f"{question!r} was run again after it was written"
        assert len(set(sent)) == ITEMS
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        redis.stop()
