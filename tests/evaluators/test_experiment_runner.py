"""The experiment runner on real PostgreSQL and a real bus: a pinned dataset version, one run at a time
per experiment, and the worker on Kafka committing a job only once its run has finished."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from core.auth import ensure_project
from core.settings import Settings
from evaluators import datasets
from evaluators.experiments import store
from evaluators.experiments.runner import ExperimentRun

from .fake_llm import FakeLLMServer

TEMPLATE = [{"role": "user", "content": "Echo {{input.n}}"}]


@pytest.fixture
def echo():
    server = FakeLLMServer().start()
    server.responder = lambda body: body["messages"][-1]["content"].removeprefix("Echo ")
    yield server
    server.stop()


@pytest_asyncio.fixture
async def pool(migrated_postgres):
    async with AsyncConnectionPool(migrated_postgres, min_size=1, max_size=6, kwargs={"autocommit": True}) as p:
        yield p


def _project(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return ensure_project(conn, f"runner-{uuid.uuid4().hex[:8]}").id


async def _experiment(pool, project_id: str, base_url: str, n: int, concurrency: int = 4) -> tuple[dict, str]:
    async with pool.connection() as conn:
        items, _ = datasets.check_items([{"input": {"n": i}, "expected_output": str(i)} for i in range(n)])
        dataset_id, version, _ = await datasets.create_dataset(conn, project_id, f"d-{uuid.uuid4().hex}", items)
        experiment_id = await store.create(conn, project_id, {
            "name": "runner", "kind": "server", "dataset_id": dataset_id, "dataset_version": version,
            "target": {"model": "gpt-4o-mini", "base_url": base_url, "messages": TEMPLATE},
            "evaluators": [{"evaluator": "exact_match"}], "repetitions": 1, "max_concurrency": concurrency,
            "status": "queued", "total": n})
        return await store.get(conn, experiment_id), dataset_id


SETTINGS = Settings(egress_allowed_hosts="127.0.0.1")


@pytest.mark.asyncio
async def test_the_run_uses_the_pinned_version_not_items_added_later(pool, private_bus, echo, migrated_postgres):
    exp, dataset_id = await _experiment(pool, _project(migrated_postgres), echo.openai_base_url, 10)
    async with pool.connection() as conn:
        more, _ = datasets.check_items([{"input": {"n": 100 + i}} for i in range(5)])
        assert (await datasets.add_items(conn, exp["project_id"], dataset_id, more))[0] == 2
    assert await ExperimentRun(pool, private_bus, SETTINGS, exp, flush_ms=20).run() == "completed"
    async with pool.connection() as conn:
        results = await store.results(conn, exp["id"])
    assert sorted(r["input"]["n"] for r in results) == list(range(10))
    assert sorted(int(r.body["messages"][-1]["content"].split()[-1]) for r in echo.requests) == list(range(10))
    assert all(r["scores"][0]["passed"] for r in results)


@pytest.mark.asyncio
async def test_two_workers_given_the_same_job_call_the_model_once_per_item(pool, private_bus, echo, migrated_postgres):
    echo.delay_s = 0.05
    exp, _ = await _experiment(pool, _project(migrated_postgres), echo.openai_base_url, 16, concurrency=2)
    first = asyncio.create_task(ExperimentRun(pool, private_bus, SETTINGS, exp, flush_ms=20).run())
    await asyncio.sleep(0.1)
    second = ExperimentRun(pool, private_bus, SETTINGS, exp, flush_ms=20).run(lock_wait_s=0.05)
    assert await asyncio.gather(first, second) == ["completed", "completed"]
    assert len(echo.requests) == 16


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_the_worker_on_kafka_commits_a_job_only_after_its_run(kafka_broker, pool, echo, migrated_postgres):
    from core.bus import TOPIC_EXPERIMENT_JOBS
    from core.bus.kafka import KafkaBus
    from evaluators.experiments.worker import ExperimentWorker, job_message

    bus = KafkaBus(kafka_broker.bootstrap, partitions=2)
    await bus.start()
    try:
        await bus.ensure_topics([TOPIC_EXPERIMENT_JOBS])
        project_id = _project(migrated_postgres)
        exps = [(await _experiment(pool, project_id, echo.openai_base_url, 6))[0] for _ in range(3)]
        await bus.publish(TOPIC_EXPERIMENT_JOBS, [job_message(e["id"]) for e in exps])
        group = f"exp-{uuid.uuid4().hex[:8]}"
        worker = ExperimentWorker(bus, pool, SETTINGS, group=group, name="w1", flush_ms=20)
        task = asyncio.create_task(worker.run())
        async with pool.connection() as conn:
            for _ in range(600):
                if all([await store.status(conn, e["id"]) == "completed" for e in exps]):
                    break
                await asyncio.sleep(0.05)
            assert [await store.status(conn, e["id"]) for e in exps] == ["completed"] * 3
        await asyncio.sleep(0.5)  # the next poll commits
        worker.stop()
        await task
        # a new member of the group gets nothing again: every job was committed
        again = ExperimentWorker(bus, pool, SETTINGS, group=group, name="w2")
        consumer = bus.consumer([TOPIC_EXPERIMENT_JOBS], again.group, again.name)
        await consumer.start()
        seen = []
        for _ in range(10):
            seen += await consumer.poll(timeout_ms=300)
        await consumer.stop()
        assert seen == []
        assert len(echo.requests) == 18
    finally:
        await bus.close()


class FlakyBus:
    """The real bus, except that its first ``failures`` publishes of spans fail as an outage would."""

    def __init__(self, bus, failures: int) -> None:
        self._bus, self.failures = bus, failures

    def __getattr__(self, name):
        return getattr(self._bus, name)

    async def publish(self, topic, records):
        from core.bus import TOPIC_SPANS, BusUnavailable

        if topic == TOPIC_SPANS and self.failures > 0:
            self.failures -= 1
            raise BusUnavailable("injected outage")
        await self._bus.publish(topic, records)


@pytest.mark.asyncio
async def test_a_bus_outage_mid_run_is_retried_and_the_run_completes(pool, private_bus, echo, migrated_postgres):
    from core.bus import TOPIC_EXPERIMENT_JOBS
    from evaluators.experiments.worker import ExperimentWorker, job_message

    exp, _ = await _experiment(pool, _project(migrated_postgres), echo.openai_base_url, 12, concurrency=3)
    await private_bus.publish(TOPIC_EXPERIMENT_JOBS, [job_message(exp["id"])])
    flaky = FlakyBus(private_bus, failures=2)
    worker = ExperimentWorker(flaky, pool, SETTINGS, name="flaky", flush_ms=20)
    task = asyncio.create_task(worker.run())
    try:
        async with pool.connection() as conn:
            for _ in range(400):
                if await store.status(conn, exp["id"]) in store.FINISHED:
                    break
                await asyncio.sleep(0.05)
            assert await store.status(conn, exp["id"]) == "completed"
            assert await store.done_count(conn, exp["id"]) == 12
    finally:
        worker.stop()
        await task
    assert flaky.failures == 0 and worker.stats == {"runs": 1, "failed": 0}
