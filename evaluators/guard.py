"""The judge's per-project rate limit and daily budget, shared by every eval worker through Redis."""

from __future__ import annotations

from datetime import datetime, timezone

from core.pricing import Usage, compute_call_cost
from core.ratelimit import SyncRateLimiter
from evaluators.llm import JudgeGuard, LLMCall


class RedisSpendLedger:
    """USD spent on judge calls per project and UTC day (keys expire after two days)."""

    def __init__(self, redis, prefix: str = "evalforge:judge:spend:"):
        self._redis = redis
        self._prefix = prefix

    def _key(self, project_id: str) -> str:
        return f"{self._prefix}{project_id}:{datetime.now(timezone.utc):%Y%m%d}"

    def spent(self, project_id: str) -> float:
        return float(self._redis.get(self._key(project_id)) or 0.0)

    def add(self, project_id: str, usd: float) -> None:
        key = self._key(project_id)
        pipe = self._redis.pipeline()
        pipe.incrbyfloat(key, usd)
        pipe.expire(key, 2 * 86400)
        pipe.execute()


def judge_call_cost(call: LLMCall) -> float | None:
    """A judge call priced like any other span (same table, same token convention)."""
    usage = Usage(input_tokens=call.input_tokens, output_tokens=call.output_tokens, cache_read_tokens=call.cache_read_tokens,
                  cache_creation_tokens=call.cache_creation_tokens, reasoning_tokens=call.reasoning_tokens)
    return compute_call_cost(call.provider, call.model, call.request_model, usage).cost


def redis_judge_guard(redis, calls_per_minute: float, daily_budget_usd: float | None) -> JudgeGuard:
    """A JudgeGuard whose limit and spend are shared by every worker of every replica."""
    limiter = SyncRateLimiter(redis, calls_per_minute / 60.0, burst=max(calls_per_minute / 6.0, 1.0),
                              prefix="evalforge:judge:rate:")
    return JudgeGuard(
        limiter=(lambda project_id: limiter.allow(project_id)) if calls_per_minute > 0 else None,
        max_spend_usd=daily_budget_usd or None,
        cost_fn=judge_call_cost,
        ledger=RedisSpendLedger(redis),
    )
