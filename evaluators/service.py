"""Runs the eval worker as a background task (``evalforge evaluate`` / ``up``)."""

from __future__ import annotations

import asyncio

import redis

from core.services import Services
from core.workers import member_name, run_until_stopped
from evaluators.guard import redis_judge_guard
from evaluators.worker import EvalWorker


async def eval_worker_task(services: Services, stopping: asyncio.Event) -> None:
    s = services.settings
    guard = redis_judge_guard(redis.Redis.from_url(services.urls["redis"]), s.judge_calls_per_minute,
                              s.judge_daily_budget_usd)
    worker = EvalWorker(services.require_bus(), services.blobs, name=member_name(s.bus_url),
                        judge_api_key=s.judge_api_key or None, judge_guard=guard, egress=s)
    services.extras["eval_worker"] = worker
    await run_until_stopped(worker, stopping)


async def experiment_worker_task(services: Services, stopping: asyncio.Event) -> None:
    """Runs server-side experiments from ``experiments.jobs`` (needs the bus and PostgreSQL)."""
    from evaluators.experiments.worker import ExperimentWorker

    s = services.settings
    guard = redis_judge_guard(redis.Redis.from_url(services.urls["redis"]), s.judge_calls_per_minute,
                              s.judge_daily_budget_usd)
    judge_deps = {"guard": guard, "egress": s, **({"api_key": s.judge_api_key} if s.judge_api_key else {})}
    worker = ExperimentWorker(services.require_bus(), services.pg, s, name=member_name(s.bus_url), judge_deps=judge_deps)
    services.extras["experiment_worker"] = worker
    await run_until_stopped(worker, stopping)


async def optimization_worker_task(services: Services, stopping: asyncio.Event) -> None:
    """Runs prompt optimisations queued in PostgreSQL (their judges and optimiser model calls go
    through the same per-project judge rate limit and budget)."""
    from evaluators.optimizer.worker import OptimizationWorker

    s = services.settings
    guard = redis_judge_guard(redis.Redis.from_url(services.urls["redis"]), s.judge_calls_per_minute,
                              s.judge_daily_budget_usd)
    judge_deps = {"guard": guard, "egress": s, **({"api_key": s.judge_api_key} if s.judge_api_key else {})}
    worker = OptimizationWorker(services.require_pg(), services.require_bus(), s, judge_deps=judge_deps)
    services.extras["optimization_worker"] = worker
    await run_until_stopped(worker, stopping)


async def evaluate_task(services: Services, stopping: asyncio.Event) -> None:
    """``evalforge evaluate``: the eval, experiment and prompt-optimisation workers side by side."""
    await asyncio.gather(eval_worker_task(services, stopping), experiment_worker_task(services, stopping),
                         optimization_worker_task(services, stopping))
