"""The experiment worker: ``experiments.jobs`` -> ``ExperimentRun`` (part of ``evalforge evaluate``).

A job record is committed only when its run has finished (completed, cancelled or failed): a worker
killed mid-run leaves it uncommitted, the bus delivers it again, and the new run skips every result
already written. The worker keeps polling while runs are in progress (a Kafka member that stops
polling is dropped from its group), runs up to ``max_runs`` experiments at once, and commits per
partition only the finished prefix of what it was given (committing an offset commits all before it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import orjson
import psycopg

from core.bus import TOPIC_EXPERIMENT_JOBS, Bus, BusUnavailable, Record
from evaluators.experiments import store
from evaluators.experiments.runner import ExperimentRun

log = logging.getLogger(__name__)


def job_message(experiment_id: str) -> tuple[bytes, bytes]:
    return experiment_id.encode(), orjson.dumps({"experiment_id": experiment_id})


class ExperimentWorker:
    def __init__(self, bus: Bus, pg, settings, *, group: str = "evalforge-experiments", name: str = "worker",
                 max_runs: int = 4, max_attempts: int = 5, judge_deps: dict[str, Any] | None = None, flush_ms: float = 200) -> None:
        self.bus = bus
        self.pg = pg
        self.settings = settings
        self.group = group
        self.name = name
        self.max_runs = max_runs
        self.max_attempts = max_attempts
        self.judge_deps = judge_deps
        self.flush_ms = flush_ms
        self._stop = asyncio.Event()
        self.stats = {"runs": 0, "failed": 0}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        consumer = self.bus.consumer([TOPIC_EXPERIMENT_JOBS], self.group, self.name)
        await consumer.start()
        waiting: deque[Record] = deque()
        running: dict[Record, asyncio.Task] = {}
        # per partition, the records given to this worker, in offset order, until committed
        given: dict[tuple[str, int], deque[Record]] = {}
        finished: set[Record] = set()
        try:
            while not self._stop.is_set():
                records = await consumer.poll(max_records=10, timeout_ms=200 if running else 500)
                for r in records:
                    given.setdefault((r.topic, r.partition), deque()).append(r)
                    waiting.append(r)
                while waiting and len(running) < self.max_runs:
                    r = waiting.popleft()
                    running[r] = asyncio.create_task(self._handle(r.value))
                for r, task in list(running.items()):
                    if task.done():
                        del running[r]
                        finished.add(r)
                commit = []
                for queue in given.values():
                    while queue and queue[0] in finished:
                        finished.discard(queue[0])
                        commit.append(queue.popleft())
                if commit:
                    await consumer.commit(commit)
        finally:
            # Stopping: unfinished runs are abandoned uncommitted; their results so far are written,
            # and the job is delivered again to resume them.
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
            await consumer.stop()

    async def _handle(self, value: bytes) -> None:
        try:
            experiment_id = orjson.loads(value)["experiment_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("experiment job dropped: %s: %s", type(exc).__name__, exc)
            return
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.pg.connection() as conn:
                    exp = await store.get(conn, experiment_id)
                if exp["status"] in store.FINISHED:
                    return
                run = ExperimentRun(self.pg, self.bus, self.settings, exp, judge_deps=self.judge_deps,
                                    flush_ms=self.flush_ms)
                status = await run.run()
                self.stats["runs"] += 1
                log.info("experiment %s: %s", experiment_id, status)
                return
            except asyncio.CancelledError:
                raise
            except store.NotFound:
                log.warning("experiment job dropped: experiment %s no longer exists", experiment_id)
                return
            except (BusUnavailable, psycopg.OperationalError) as exc:
                # PostgreSQL or the bus went away mid-run: what was written stays written, the rerun
                # resumes after it. Only after several failures is the run given up.
                log.warning("experiment %s: %s (attempt %d)", experiment_id, exc, attempt)
                if attempt == self.max_attempts:
                    await self._fail(experiment_id, exc)
                    return
                await asyncio.sleep(min(2 ** attempt, 30))
            except Exception as exc:  # a bad target or evaluator config, a broken benchmark: the run fails, visibly
                log.exception("experiment %s failed", experiment_id)
                await self._fail(experiment_id, exc)
                return

    async def _fail(self, experiment_id: str, exc: BaseException) -> None:
        self.stats["failed"] += 1
        try:
            async with self.pg.connection() as conn:
                await store.set_status(conn, experiment_id, "failed", expect=("queued", "running"),
                                       error=f"{type(exc).__name__}: {exc}")
        except psycopg.Error:
            log.exception("experiment %s: cannot record the failure", experiment_id)
