"""Runs the eval worker as a background task (``evalforge evaluate`` / ``up``)."""

from __future__ import annotations

import asyncio

from core.services import Services
from core.workers import member_name, run_until_stopped
from evaluators.worker import EvalWorker


async def eval_worker_task(services: Services, stopping: asyncio.Event) -> None:
    s = services.settings
    worker = EvalWorker(services.bus, services.blobs,
                        name=member_name(s.bus_url),
                        judge_api_key=s.judge_api_key or None)
    services.extras["eval_worker"] = worker
    await run_until_stopped(worker, stopping)
