"""The eval worker: ``eval.jobs`` -> evaluator -> ``scores`` (and the judge's own calls -> ``spans.raw``).

At-least-once like the span processor: a job's offset is committed only after its scores (or its
failure record on ``eval.dlq``) are on the bus. Score ids are deterministic, so a re-run replaces.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from core.blobs import BlobStore
from core.bus import TOPIC_EVAL_DLQ, TOPIC_EVAL_JOBS, TOPIC_SCORES, TOPIC_SPANS, Bus
from core.span import decode, encode
from evaluators.llm import JudgeError, JudgeGuard, judge_deps_for
from evaluators.registry import get_evaluator

log = logging.getLogger(__name__)

_JSON = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


class EvalWorker:
    def __init__(self, bus: Bus, blobs: BlobStore | None, *, group: str = "evalforge-evaluators",
                 name: str = "worker", max_attempts: int = 4, judge_api_key: str | None = None,
                 judge_guard: JudgeGuard | None = None, egress: Any = None):
        self.bus = bus
        self.blobs = blobs
        self.group = group
        self.name = name
        self.max_attempts = max_attempts
        self.judge_api_key = judge_api_key
        self.judge_guard = judge_guard
        self.egress = egress  # settings of the egress guard the judges' calls go through
        self._evaluators: dict[tuple[str, str, bytes], Any] = {}
        self._stop = asyncio.Event()
        self.stats = {"jobs": 0, "scores": 0, "failed": 0, "retries": 0}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        consumer = self.bus.consumer([TOPIC_EVAL_JOBS], self.group, self.name)
        await consumer.start()
        try:
            while not self._stop.is_set():
                records = await consumer.poll(max_records=50, timeout_ms=500)
                if not records:
                    continue
                scores, judge_spans, failures = [], [], []
                for r in records:
                    s, j, f = await self._handle(r.value)
                    scores += s
                    judge_spans += j
                    failures += f
                if scores:
                    await self.bus.publish(TOPIC_SCORES, scores)
                if judge_spans:
                    await self.bus.publish(TOPIC_SPANS, judge_spans)
                if failures:
                    await self.bus.publish(TOPIC_EVAL_DLQ, failures)
                await consumer.commit(records)
                self.stats["jobs"] += len(records)
                self.stats["scores"] += len(scores)
                self.stats["failed"] += len(failures)
        finally:
            await consumer.stop()

    def _evaluator(self, job: dict[str, Any]):
        config = job.get("config") or {}
        # An edited rule keeps its id: what it runs (evaluator and config) must be part of the key.
        key = (job["rule_id"], job["evaluator"], orjson.dumps(config, option=orjson.OPT_SORT_KEYS))
        if key not in self._evaluators:
            deps: dict[str, Any] = {}
            if job["evaluator"] == "llm_judge":
                deps["egress"] = self.egress
                if self.judge_api_key:
                    deps["api_key"] = self.judge_api_key
                if self.judge_guard is not None:
                    deps["guard"] = self.judge_guard
                deps = judge_deps_for(config, deps)
            self._evaluators[key] = get_evaluator(job["evaluator"], config, **deps)
        return self._evaluators[key]

    async def _handle(self, value: bytes) -> tuple[list, list, list]:
        """One job -> (score messages, judge-span messages, failure messages)."""
        try:
            job = orjson.loads(value)
            span = decode(orjson.dumps(job["span"]))
            evaluator = self._evaluator(job)
            await asyncio.to_thread(self._load_payloads, span)
        except Exception as exc:  # a malformed job or rule is recorded, never retried forever
            return [], [], [self._failure(value, exc)]
        key = span["trace_id"].encode()
        for attempt in range(1, self.max_attempts + 1):
            try:
                results = await asyncio.to_thread(evaluator.evaluate, span)
                break
            except JudgeError as exc:
                judge = self._judge_spans(span, exc.calls)
                if exc.retryable and attempt < self.max_attempts:
                    self.stats["retries"] += 1
                    await asyncio.sleep(min(exc.retry_after or 0.5 * 2 ** attempt, 30))
                    continue
                return [], judge, [self._failure(value, exc)]
            except Exception as exc:  # evaluator bug or bad input: record it with the job
                return [], [], [self._failure(value, exc)]
        scores, judge = [], []
        for score in results:
            row = score.to_row(span["project_id"], span["trace_id"], span["span_id"])
            scores.append((key, orjson.dumps(row, option=_JSON)))
            judge += self._judge_spans(span, score.judge_calls)
        return scores, judge, []

    def _load_payloads(self, span: dict[str, Any]) -> None:
        for field in ("input", "output"):
            ref = span.get(f"{field}_ref")
            if ref and not span.get(field) and self.blobs is not None:
                span[field] = self.blobs.get(ref).decode()
                span[f"{field}_ref"] = ""

    @staticmethod
    def _judge_spans(span: dict[str, Any], calls: list) -> list[tuple[bytes, bytes]]:
        out = []
        for call in calls or ():
            rec = call.to_span_record(span["project_id"], attributes={
                "evalforge.evaluated.trace_id": span["trace_id"], "evalforge.evaluated.span_id": span["span_id"]})
            out.append((rec["trace_id"].encode(), encode(rec)))
        return out

    @staticmethod
    def _failure(value: bytes, exc: BaseException) -> tuple[bytes | None, bytes]:
        log.warning("eval job failed: %s: %s", type(exc).__name__, exc)
        return None, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000], "job": value.decode(errors="replace")})
