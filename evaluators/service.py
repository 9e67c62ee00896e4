"""Runs the eval worker as a background task (``evalforge evaluate`` / ``up``)."""

from __future__ import annotations

import asyncio
import os
import socket

from core.services import Services
from evaluators.worker import EvalWorker


async def eval_worker_task(services: Services, stopping: asyncio.Event) -> None:
    s = services.settings
    worker = EvalWorker(services.bus, services.blobs,
                        name=f"{socket.gethostname()}-{os.getpid()}" if s.bus_url.startswith("kafka") else "embedded",
                        judge_api_key=s.judge_api_key or None)
    services.extras["eval_worker"] = worker
    run = asyncio.create_task(worker.run())
    stop_wait = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait({run, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if run in done:
        stop_wait.cancel()
        run.result()
        return
    worker.stop()
    await run
