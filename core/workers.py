"""Running a long-lived worker (``run()`` / ``stop()``) as a service's background task."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Protocol


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
