"""A real ``evalforge evaluate`` process killed with SIGKILL mid-optimisation: the job is not left
"running" -- the next worker's sweep finds its advisory lock free, queues it again, and the resumed run
finishes it without scoring again what the first run had saved. On a database of its own, so no
other test's worker claims the job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from core import prompts
from core.auth import ensure_project
from core.embedded import EmbeddedRedis
from core.migrate import migrate_postgres
from evaluators import datasets
from evaluators.optimizer import store
from evaluators.routers.optimize import OptimizeIn, job_spec
from tests.waiting import wait_until

from .fake_llm import FakeLLMServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_database(migrated_postgres):
    name = f"optkill_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = migrated_postgres.replace("/postgres?", f"/{name}?", 1)
    assert url != migrated_postgres
    with psycopg.connect(url, autocommit=True) as conn:
        migrate_postgres(conn)
    yield url
    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def stub():
    server = FakeLLMServer().start()
    server.delay_s = 0.1
    server.responders["target"] = lambda body: "42"
    server.responders["optimizer"] = lambda body: json.dumps({"candidates": [{"prompt": "Q: {{a}}"}, {"prompt": "{{a}}?"}]})
    yield server
    server.stop()


async def _queue_job(pg_url: str, project_id: str, base_url: str) -> str:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        items, _ = datasets.check_items([{"input": {"a": i}, "expected_output": "42"} for i in range(20)])
        dataset_id, version, _ = await datasets.create_dataset(conn, project_id, "killed", items)
        await prompts.create_version(conn, project_id, "p", prompt="What is {{a}}?", labels=("production",))
        body = OptimizeIn.model_validate({
            "dataset_id": dataset_id, "evaluators": [{"evaluator": "exact_match"}], "max_concurrency": 1,
            "target": {"model": "target", "base_url": base_url}, "rounds": 2, "candidates_per_round": 2,
            "optimizer_model": {"model": "optimizer", "base_url": base_url}, "budget": {"max_calls": 1000, "max_usd": 1}})
        return await store.create(conn, project_id, "p", 1, dataset_id, version, job_spec(body, 1))


def _evaluate(data_dir: Path, pg_url: str, redis_url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVALFORGE_")}
    env.update(EVALFORGE_POSTGRES_URL=pg_url, EVALFORGE_REDIS_URL=redis_url, EVALFORGE_DATA_DIR=str(data_dir),
               EVALFORGE_EGRESS_ALLOWED_HOSTS="127.0.0.1", EVALFORGE_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "launcher.cli", "evaluate"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _job(pg_url: str, job_id: str) -> dict:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT status, progress, decision, attempts FROM prompt_optimizations WHERE id = %s",
                           (job_id,)).fetchone()
    return dict(zip(("status", "progress", "decision", "attempts"), row))


def test_a_job_whose_worker_was_killed_is_resumed_by_the_next_worker(own_database, tmp_path, stub):
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    procs: list[subprocess.Popen] = []
    try:
        with psycopg.connect(own_database, autocommit=True) as conn:
            project = ensure_project(conn, "killed")
        job_id = asyncio.run(_queue_job(own_database, project.id, stub.openai_base_url))

        # killed once the baseline's 8 dev items are saved, while round 1 is under way
        procs.append(_evaluate(tmp_path / "w1", own_database, redis.url))
        wait_until(lambda: (_job(own_database, job_id)["progress"].get("calls") or 0) > 8
                   or procs[0].poll() is not None, timeout=60, interval=0.02)
        assert procs[0].poll() is None, procs[0].stdout.read()
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        assert _job(own_database, job_id)["status"] == "running"

        procs.append(_evaluate(tmp_path / "w2", own_database, redis.url))
        job = wait_until(lambda: (j := _job(own_database, job_id))["status"] in store.FINISHED and j, timeout=90)
        assert job["status"] == "completed" and job["attempts"] == 2, job
        assert job["decision"]["reason"] == "no candidate beat the baseline on dev"  # every prompt scores 1.0
        sent = [r.body["messages"][-1]["content"] for r in stub.requests if r.body["model"] == "target"]
        base_runs = [q for q in sent if q.startswith("What is")]
        assert len(base_runs) == len(set(base_runs)) == 8  # the baseline's dev items: scored once, by the first run
        # round 1's proposal was saved with the call count the kill waited for: it is not asked for again;
        # round 2's repeats it, is refused as already tried, and asked once more (then given up)
        assert sum(1 for r in stub.requests if r.body["model"] == "optimizer") == 3
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        redis.stop()
