"""Running a long-lived worker (``run()`` / ``stop()``) as a service's background task, supervised."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


class Worker(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


async def run_until_stopped(worker: Worker, stopping: asyncio.Event) -> None:
    """Run ``worker`` until ``stopping`` is set, then ask it to finish (flush, commit) and wait.

    A worker that crashes re-raises here: a crashed worker is a crashed service.
    """
    run = asyncio.create_task(worker.run())
    stop_wait = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait({run, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if run in done:
        stop_wait.cancel()
        run.result()
        return
    worker.stop()
    await run


def member_name(bus_url: str) -> str:
    """Consumer-group member name: unique per process on Kafka; fixed for the embedded bus, so a
    restarted ``up`` picks up the entries it had read but not acknowledged."""
    return f"{socket.gethostname()}-{os.getpid()}" if bus_url.startswith("kafka") else "embedded"


@dataclass
class WorkerState:
    """How a supervised background worker is doing; ``/readyz`` fails while one is not running."""

    name: str
    status: str = "starting"  # running | restarting | stopped
    restarts: int = 0
    last_error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status, "restarts": self.restarts, "last_error": self.last_error}


FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
_HEALTHY_AFTER_S = 60.0  # a worker that ran this long before dying starts again from the first backoff


async def supervise(job: Callable[..., Awaitable[None]], services: object, stopping: asyncio.Event,
                    state: WorkerState) -> None:
    """Run ``job(services, stopping)`` until ``stopping`` is set, restarting it with exponential
    backoff whenever it dies (or returns early). Every death is logged with its traceback and shown
    in ``state``; nothing is retried silently."""
    loop = asyncio.get_running_loop()
    backoff = FIRST_BACKOFF_S
    while not stopping.is_set():
        state.status = "running"
        started = loop.time()
        try:
            await job(services, stopping)
            if stopping.is_set():
                break
            error = "returned before shutdown"
            log.error("background worker %s %s; restarting in %.0f s", state.name, error, backoff)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():  # the supervisor itself is being cancelled: shutdown
                state.status = "stopped"
                raise
            error = "cancelled from inside"  # e.g. an inner task the worker awaited was cancelled
            log.exception("background worker %s was cancelled; restarting in %.0f s", state.name, backoff)
        except Exception as exc:  # any death of a worker is restarted, whatever its cause
            error = f"{type(exc).__name__}: {exc}"[:300]
            log.exception("background worker %s died; restarting in %.0f s", state.name, backoff)
        state.status, state.last_error = "restarting", error
        state.restarts += 1
        if loop.time() - started > _HEALTHY_AFTER_S:
            backoff = FIRST_BACKOFF_S
        try:
            await asyncio.wait_for(stopping.wait(), backoff)
        except TimeoutError:
            pass
        backoff = min(backoff * 2, MAX_BACKOFF_S)
    state.status = "stopped"
