"""The eval worker on real parts: jobs from the bus, the judge against a fake OpenAI server, the
per-project budget kept in the real Redis, scores / judge spans / failures back on the bus."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
import redis

from core.bus import TOPIC_EVAL_JOBS, TOPIC_SCORES, TOPIC_SPANS
from core.bus.redis_streams import STREAM_PREFIX
from core.pricing import Usage, compute_cost
from core.ratelimit import SyncRateLimiter
from core.span import decode, encode
from evaluators.guard import redis_judge_guard
from evaluators.worker import TOPIC_EVAL_DLQ, EvalWorker
from tests.processors.conftest import make_span

from .fake_llm import Reply
from tests.loopback import LOOPBACK_EGRESS

GOOD = '{"reasoning": "Accurate.", "score": 5}'


async def _stream(bus, topic: str) -> list[bytes]:
    return [fields[b"v"] for _, fields in await bus._r.xrange(STREAM_PREFIX + topic)]


async def _run_until_jobs(worker: EvalWorker, jobs: int, polls: int) -> None:
    """Run ``worker`` until it has handled ``jobs`` jobs (at most ``polls`` polls, 0.1 s apart)."""
    task = asyncio.create_task(worker.run())
    for _ in range(polls):
        if worker.stats["jobs"] >= jobs:
            break
        await asyncio.sleep(0.1)
    worker.stop()
    await task


@pytest.mark.asyncio
async def test_judge_jobs_are_scored_costed_and_stopped_by_the_budget(private_bus, redis_url, fake_llm):
    project = f"p-{uuid.uuid4().hex[:8]}"
    fake_llm.script = [Reply(GOOD, input_tokens=1000, output_tokens=100) for _ in range(3)]
    config = {"provider": "openai", "model": "gpt-4o-mini", "base_url": fake_llm.openai_base_url, "max_retries": 0}
    spans = [make_span(project, i, input="What is 2+2?", output="4") for i in range(3)]
    jobs = [orjson.dumps({"rule_id": "r1", "rule_name": "judge", "evaluator": "llm_judge", "config": config,
                          "project_id": project, "span": orjson.loads(encode(s))}) for s in spans]
    sync_redis = redis.Redis.from_url(redis_url)
    # A budget smaller than one call: the first call runs (the cap is checked before a call), the rest cannot.
    guard = redis_judge_guard(sync_redis, calls_per_minute=0, daily_budget_usd=1e-6)
    worker = EvalWorker(private_bus, None, judge_api_key="test-key", judge_guard=guard, max_attempts=1,
                        egress=LOOPBACK_EGRESS)
    for job in jobs:  # one at a time, so the spend of the first is booked before the next is judged
        await private_bus.publish(TOPIC_EVAL_JOBS, [(b"k", job)])
    await _run_until_jobs(worker, 3, polls=200)

    scores = [orjson.loads(v) for v in await _stream(private_bus, TOPIC_SCORES)]
    assert [(s["name"], s["value"], s["project_id"]) for s in scores] == [("llm_judge", 5.0, project)]
    failures = [orjson.loads(v) for v in await _stream(private_bus, TOPIC_EVAL_DLQ)]
    assert len(failures) == 2 and all("budget" in f["error"] for f in failures)
    judge_spans = [decode(v) for v in await _stream(private_bus, TOPIC_SPANS)]
    assert len(judge_spans) == 1 and judge_spans[0]["kind"] == "evaluator"
    assert judge_spans[0]["attributes"]["evalforge.evaluated.trace_id"] == scores[0]["trace_id"]
    one_call = compute_cost("openai", "gpt-4o-mini", Usage(input_tokens=1000, output_tokens=100)).cost
    assert guard.ledger.spent(project) == pytest.approx(one_call)  # booked in Redis, shared by replicas
    pending = await private_bus._r.xpending(STREAM_PREFIX + TOPIC_EVAL_JOBS, worker.group)
    assert pending["pending"] == 0  # every job committed: scored or recorded as failed


@pytest.mark.asyncio
async def test_judge_base_url_outside_the_allowed_hosts_is_never_called(private_bus, fake_llm):
    """A rule is project users' text: its base_url may not send the server's requests anywhere."""
    project = f"p-{uuid.uuid4().hex[:8]}"
    config = {"provider": "openai", "model": "gpt-4o-mini", "base_url": fake_llm.openai_base_url, "max_retries": 0}
    job = orjson.dumps({"rule_id": "r2", "rule_name": "judge", "evaluator": "llm_judge", "config": config,
                        "project_id": project, "span": orjson.loads(encode(make_span(project, 0)))})
    worker = EvalWorker(private_bus, None, judge_api_key="test-key", max_attempts=1)  # no host allowed
    await private_bus.publish(TOPIC_EVAL_JOBS, [(b"k", job)])
    await _run_until_jobs(worker, 1, polls=100)
    [failure] = [orjson.loads(v) for v in await _stream(private_bus, TOPIC_EVAL_DLQ)]
    assert "base_url" in failure["error"] and "EVALFORGE_EGRESS_ALLOWED_HOSTS" in failure["error"]
    assert fake_llm.requests == []
    assert await _stream(private_bus, TOPIC_SCORES) == []


def test_judge_rate_limit_is_shared_through_redis(redis_url):
    key = f"p-{uuid.uuid4().hex[:8]}"
    first = SyncRateLimiter(redis.Redis.from_url(redis_url), rate_per_second=1.0, burst=2)
    second = SyncRateLimiter(redis.Redis.from_url(redis_url), rate_per_second=1.0, burst=2)  # another replica
    assert first.allow(key)[0] and second.allow(key)[0]
    allowed, retry_after = first.allow(key)
    assert not allowed and 0 < retry_after <= 1.0
