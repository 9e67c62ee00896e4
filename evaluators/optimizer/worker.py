"""The optimisation worker (part of ``evalforge evaluate`` and ``up``): claims queued jobs from
PostgreSQL and runs up to ``max_runs`` at once.

A job's advisory lock is held on its own connection for the whole run. A job this worker stops (a
shutdown) is queued again at once, to resume from its saved state; a job whose worker was killed is
found by the sweep (running, lock free) of any worker and queued again the same way (failed after
``store.MAX_ATTEMPTS`` runs); a job that raises is marked failed: none stays "running" without a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg

from evaluators.optimizer import store
from evaluators.optimizer.job import OptimizationRun

log = logging.getLogger(__name__)


class OptimizationWorker:
    def __init__(self, pg, bus, settings, *, judge_deps: dict[str, Any] | None = None, max_runs: int = 2,
                 poll_s: float = 1.0, sweep_s: float = 30.0) -> None:
        self.pg, self.bus, self.settings = pg, bus, settings
        self.judge_deps = judge_deps
        self.max_runs = max_runs
        self.poll_s = poll_s
        self.sweep_s = sweep_s
        self._stop = asyncio.Event()
        self.stats = {"runs": 0, "failed": 0, "orphans": 0}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        running: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if loop.time() >= next_sweep:
                        async with self.pg.connection() as conn:
                            self.stats["orphans"] += len(await store.release_orphans(conn))
                        next_sweep = loop.time() + self.sweep_s
                    while len(running) < self.max_runs:
                        claimed = await self._claim()
                        if claimed is None:  # nothing queued
                            break
                        task = asyncio.create_task(self._run_job(*claimed))
                        running.add(task)
                        task.add_done_callback(running.discard)
                except psycopg.Error as exc:  # PostgreSQL away (or not migrated yet): try again on the next poll
                    log.warning("optimisation worker: %s", exc)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.poll_s)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _claim(self) -> tuple[contextlib.AsyncExitStack, Any, dict[str, Any]] | None:
        """The oldest queued job, locked on a connection kept for its run (closed by ``_run_job``)."""
        held = contextlib.AsyncExitStack()
        try:
            lock_conn = await held.enter_async_context(self.pg.connection())
            job = await store.claim(lock_conn)
        except BaseException:
            await held.aclose()
            raise
        if job is None:
            await held.aclose()
            return None
        return held, lock_conn, job

    async def _run_job(self, held: contextlib.AsyncExitStack, lock_conn, job: dict[str, Any]) -> None:
        async with held:
            try:
                status = await OptimizationRun(self.pg, self.bus, self.settings, job, judge_deps=self.judge_deps).run()
                self.stats["runs"] += 1
                log.info("prompt optimisation %s: %s", job["id"], status)
            except asyncio.CancelledError:  # shutdown: another worker (or this one, restarted) resumes it
                with contextlib.suppress(psycopg.Error):
                    async with self.pg.connection() as conn:
                        await store.requeue(conn, job["id"])
                raise
            except Exception as exc:  # a bad config, a vanished prompt, PostgreSQL gone: failed, visibly
                log.exception("prompt optimisation %s failed", job["id"])
                await self._fail(job["id"], f"{type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(psycopg.Error):
                    await store.unlock(lock_conn, job["id"])

    async def _fail(self, job_id: str, error: str) -> None:
        self.stats["failed"] += 1
        try:
            async with self.pg.connection() as conn:
                await store.finish(conn, job_id, "failed", error=error)
        except psycopg.Error:
            log.exception("prompt optimisation %s: cannot record the failure", job_id)
