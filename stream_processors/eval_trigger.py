"""Eval trigger: after spans are durably written, publish an ``eval.jobs`` record per matching rule."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from core.bus import TOPIC_EVAL_JOBS
from core.span import DUPLICATE_OF, encode
from evaluators.rules import EvalRule, rule_matches

log = logging.getLogger(__name__)


class EvalTrigger:
    """Holds the enabled rules (refreshed from PostgreSQL every few seconds) and publishes jobs."""

    def __init__(self, bus, pg_pool, refresh_seconds: float = 5.0):
        self._bus = bus
        self._pg = pg_pool
        self._refresh = refresh_seconds
        self._rules: dict[str, list[EvalRule]] = {}
        self._loaded_at = float("-inf")
        self.published = 0

    async def rules(self) -> dict[str, list[EvalRule]]:
        if time.monotonic() - self._loaded_at > self._refresh:
            async with self._pg.connection() as conn:
                cur = await conn.execute(
                    "SELECT id, project_id, name, evaluator, config, filter, sampling_rate FROM eval_rules WHERE enabled")
                rows = await cur.fetchall()
            rules: dict[str, list[EvalRule]] = {}
            for r in rows:
                rules.setdefault(r[1], []).append(EvalRule(r[0], r[1], r[2], r[3], r[4] or {}, r[5] or {}, float(r[6])))
            self._rules, self._loaded_at = rules, time.monotonic()
        return self._rules

    async def projects(self) -> set[str]:
        """The projects with enabled rules: the processor hands their spans over as dicts."""
        return set(await self.rules())

    async def __call__(self, spans: list[dict[str, Any]]) -> None:
        """Publish jobs for ``spans``; raises BusUnavailable so the caller retries before committing."""
        rules = await self.rules()
        if not rules:
            return
        jobs = []
        for span in spans:
            for rule in rules.get(span["project_id"], ()):
                if span.get("kind") == "evaluator":
                    continue  # never evaluate the judge's own calls
                if DUPLICATE_OF in (span.get("attributes") or {}):
                    continue  # a second record of one model call: the counted record is evaluated
                if rule_matches(rule, span):
                    job = {"rule_id": rule.id, "rule_name": rule.name, "evaluator": rule.evaluator,
                           "config": rule.config, "project_id": rule.project_id, "span": orjson.loads(encode(span))}
                    jobs.append((span["trace_id"].encode(), orjson.dumps(job)))
        if jobs:
            await self._bus.publish(TOPIC_EVAL_JOBS, jobs)
            self.published += len(jobs)
