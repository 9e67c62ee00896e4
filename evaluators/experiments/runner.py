"""Runs one server-side experiment: every (item, repetition) not yet stored, ``max_concurrency`` at a time.

Each item run is a trace: a root span (``evalforge.experiment_id`` / ``evalforge.dataset_item_id``
attributes) with the model call as its child, published to ``spans.raw``; its scores go to ``scores``
against the root span. Results are written in small batches (every ``flush_ms`` or ``flush_rows``),
keyed (experiment, item, repetition): a worker killed mid-run loses at most its unwritten batch, and
the run that resumes skips everything written. Cancellation is read back at each flush.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from core.bus import TOPIC_SCORES, TOPIC_SPANS
from core.pricing import Usage, compute_call_cost
from core.project_prices import project_overrides
from core.span import empty_record, encode
from evaluators import benchmarks
from evaluators.base import EXPECTED_ATTRIBUTE, Score
from evaluators.experiments import store
from evaluators.experiments.targets import (
    DEFAULT_MESSAGES,
    ModelTarget,
    TargetError,
    call_model,
    http_client,
    render,
)
from evaluators.llm import judge_deps_for, server_key_for
from evaluators.registry import get_evaluator

log = logging.getLogger(__name__)
_JSON = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def score_dict(score: Score) -> dict[str, Any]:
    """A registry evaluator's Score as a result's score: booleans pass / fail, numbers as they are."""
    if isinstance(score.value, bool):
        return {"name": score.name, "value": 1.0 if score.value else 0.0, "passed": score.value, "reason": score.reason}
    if isinstance(score.value, (int, float)):
        return {"name": score.name, "value": float(score.value), "passed": None, "reason": score.reason}
    return {"name": score.name, "value": None, "label": score.value, "passed": None, "reason": score.reason}


def build_evaluators(specs: list[dict[str, Any]], deps: dict[str, Any] | None = None) -> list[Any]:
    """Registry evaluators from ``[{"evaluator": name, "config": {...}}]`` (ValueError names the field)."""
    out = []
    for i, spec in enumerate(specs):
        try:
            config = spec.get("config") or {}
            kwargs = judge_deps_for(config, dict(deps or {})) if spec["evaluator"] == "llm_judge" else {}
            out.append(get_evaluator(spec["evaluator"], config, **kwargs))
        except ValueError as exc:
            raise ValueError(f"evaluators[{i}].{exc}") from None
    return out


class ExperimentRun:
    def __init__(self, pg, bus, settings, exp: dict[str, Any], *, judge_deps: dict[str, Any] | None = None,
                 flush_ms: float = 200, flush_rows: int = 64,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.pg = pg
        self.bus = bus
        self.settings = settings
        self.exp = exp
        self.project_id = exp["project_id"]
        self.target = ModelTarget.model_validate(exp["target"])
        self.evaluators = build_evaluators(exp.get("evaluators") or [], judge_deps)
        self.flush_ms = flush_ms
        self.flush_rows = flush_rows
        self.on_result = on_result
        self._results: list[dict[str, Any]] = []
        self._spans: list[tuple[bytes, bytes]] = []
        self._scores: list[tuple[bytes, bytes]] = []
        self._cancelled = False
        self._prices: list[dict[str, Any]] = []  # the project's price overrides, read when the run starts
        self.bench: benchmarks.Benchmark | None = None  # set from the experiment when the run starts
        self._blocking_evaluators = any(e.name in ("llm_judge", "semantic_similarity") for e in self.evaluators)

    async def run(self, lock_wait_s: float = 2.0) -> str:
        """Run what is left; returns the experiment's final status.

        One worker at a time runs an experiment: a session advisory lock in PostgreSQL, held for the
        run. A job delivered to a second worker while the first is alive (a Redis Streams take-over
        of a long-pending entry, a Kafka rebalance) waits here instead of calling the model again;
        when the first worker dies its session ends, the lock goes with it and the waiter resumes."""
        async with self.pg.connection() as lock_conn:
            while not await store.try_lock(lock_conn, self.exp["id"]):
                status = await store.status(lock_conn, self.exp["id"])
                if status != "running" and status != "queued":
                    return status or "gone"
                await asyncio.sleep(lock_wait_s)
            try:
                return await self._run_locked()
            finally:
                await store.unlock(lock_conn, self.exp["id"])

    async def _run_locked(self) -> str:
        async with self.pg.connection() as conn:
            if not await store.set_status(conn, self.exp["id"], "running", expect=("queued", "running")):
                return await store.status(conn, self.exp["id"]) or "gone"
            items, self.bench = await store.experiment_items(conn, self.exp)
            self._prices = await project_overrides(conn, self.project_id)
        for _ in range(3):  # a pass leaves items undone only when a write of its results failed
            async with self.pg.connection() as conn:
                done = await store.done_keys(conn, self.exp["id"])
            todo = [(pos, item, rep) for pos, item in enumerate(items) for rep in range(self.exp["repetitions"])
                    if (item["id"], rep) not in done]
            if not todo or self._cancelled:
                break
            await self._run_pass(todo)
        async with self.pg.connection() as conn:
            if self._cancelled or await store.status(conn, self.exp["id"]) != "running":
                return await store.status(conn, self.exp["id"]) or "gone"
            if await store.done_count(conn, self.exp["id"]) >= self.exp["total"]:
                await store.set_status(conn, self.exp["id"], "completed", expect=("running",))
                return "completed"
            await store.set_status(conn, self.exp["id"], "failed", expect=("running",),
                                   error="some results could not be written")
        return "failed"

    async def _run_pass(self, todo: list[tuple[int, dict[str, Any], int]]) -> None:
        concurrency = max(1, min(self.exp["max_concurrency"], len(todo)))
        api_key = server_key_for(self.target.base_url, self.settings.judge_api_key)
        queue = iter(todo)
        lanes_done = asyncio.Event()
        async with http_client(self.settings, concurrency) as client:
            async def lane() -> None:
                for pos, item, rep in queue:  # a shared iterator: each lane takes the next pair
                    if self._cancelled:
                        return
                    self._add(await self._run_one(client, api_key, pos, item, rep))

            flusher = asyncio.create_task(self._flush_loop(lanes_done))
            try:
                await asyncio.gather(*(lane() for _ in range(concurrency)))
            finally:
                lanes_done.set()
            await flusher  # its last flush writes what the lanes left

    def _add(self, result: tuple[dict, list, list]) -> None:
        row, spans, scores = result
        self._results.append(row)
        self._spans += spans
        self._scores += scores
        if self.on_result is not None:
            self.on_result(row)

    async def _flush_loop(self, lanes_done: asyncio.Event) -> None:
        """Write results every ``flush_ms``, and once more after the lanes are done. Never cancelled
        mid-write: results taken from the buffer are always written."""
        while not lanes_done.is_set():
            try:
                await asyncio.wait_for(lanes_done.wait(), self.flush_ms / 1000)
            except asyncio.TimeoutError:
                pass
            await self._flush()
        await self._flush()  # results added while the last one was writing

    async def _flush(self) -> None:
        results, spans, scores = self._results, self._spans, self._scores
        self._results, self._spans, self._scores = [], [], []
        # Spans first: a result row is only visible once its trace is on the bus.
        if spans:
            await self.bus.publish(TOPIC_SPANS, spans)
        if scores:
            await self.bus.publish(TOPIC_SCORES, scores)
        async with self.pg.connection() as conn:
            if results:
                await store.insert_results(conn, self.exp["id"], results)
            if await store.status(conn, self.exp["id"]) == "cancelled":
                self._cancelled = True

    def _messages(self, item: dict[str, Any]) -> list[dict[str, str]]:
        if self.target.messages is None and self.bench is not None:
            return self.bench.messages(item)
        template = [m.model_dump() for m in self.target.messages] if self.target.messages else DEFAULT_MESSAGES
        return render(template, item)

    async def _run_one(self, client, api_key: str | None, pos: int, item: dict[str, Any], rep: int):
        trace_id, root_id = secrets.token_hex(16), secrets.token_hex(8)
        start = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        row: dict[str, Any] = {"item_id": item["id"], "repetition": rep, "position": pos, "input": item.get("input"),
                               "expected_output": item.get("expected_output"), "trace_id": trace_id, "scores": []}
        reply, messages, error = None, None, None
        try:
            messages = self._messages(item)
            reply = await call_model(client, self.target, messages, api_key)
            row["attempts"] = reply.attempts  # requests the target was sent, retries included (a call budget's count)
        except (KeyError, TargetError) as exc:
            error = str(exc.args[0]) if isinstance(exc, KeyError) else str(exc)
            row["attempts"] = exc.attempts if isinstance(exc, TargetError) else 0
        latency = (time.perf_counter() - t0) * 1000
        end = start + timedelta(milliseconds=latency)
        attrs = {"evalforge.experiment_id": self.exp["id"], "evalforge.dataset_item_id": item["id"],
                 "evalforge.experiment.repetition": rep}
        root = self._span(trace_id, root_id, "", f"experiment {self.exp['name']}", "chain", start, end, attrs)
        root["input"] = orjson.dumps(item.get("input")).decode()
        spans = [root]
        if reply is not None:
            usage = Usage(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                          cache_read_tokens=reply.cache_read_tokens)
            cost = compute_call_cost(self.target.provider, reply.model, self.target.model, usage,
                                     overrides=self._prices).cost
            row.update(output=reply.text, latency_ms=reply.latency_ms, input_tokens=reply.input_tokens,
                       output_tokens=reply.output_tokens, cost=cost)
            llm = self._span(trace_id, secrets.token_hex(8), root_id, f"chat {self.target.model}", "llm", start, end, attrs)
            llm.update(operation="chat", provider=self.target.provider, request_model=self.target.model, model=reply.model,
                       input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                       cache_read_tokens=reply.cache_read_tokens, input=orjson.dumps(messages).decode(), output=reply.text)
            root["output"] = reply.text
            spans.append(llm)
            row["scores"] = await self._score(item, reply.text, root, spans)
        else:
            row.update(output=None, latency_ms=latency, error=error)
            for s in spans:
                s.update(status="error", status_message=error or "")
        score_rows = [self._score_row(s, trace_id, root_id) for s in row["scores"] if s.get("value") is not None]
        key = trace_id.encode()
        return row, [(s["trace_id"].encode(), encode(s)) for s in spans], [(key, r) for r in score_rows]

    async def _score(self, item: dict[str, Any], output: str, root: dict[str, Any],
                     spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Benchmark scorer and registry evaluators on the output; an LLM judge's own calls join
        ``spans`` (in their own traces, linked to the item's, so judge spend never inflates it)."""
        scores = []
        if self.bench is not None:
            bench = self.bench
            scores.append(await asyncio.to_thread(bench.score, item, output) if bench.blocking else bench.score(item, output))
        if self.evaluators:
            subject = dict(root)
            subject["attributes"] = {**root["attributes"]}
            if item.get("expected_output") is not None:
                subject["attributes"][EXPECTED_ATTRIBUTE] = orjson.dumps(item["expected_output"]).decode()

            def evaluate() -> list[dict[str, Any]]:
                out = []
                for ev in self.evaluators:
                    try:
                        for score in ev.evaluate(subject):
                            out.append(score_dict(score))
                            spans.extend(call.to_span_record(self.project_id, attributes={
                                "evalforge.evaluated.trace_id": root["trace_id"],
                                "evalforge.evaluated.span_id": root["span_id"]}) for call in score.judge_calls)
                    except Exception as exc:  # noqa: BLE001 - one evaluator's failure is that score's reason
                        out.append({"name": ev.config.score_name or ev.name, "value": None, "passed": None,
                                    "reason": f"evaluator failed: {type(exc).__name__}: {exc}"[:500]})
                return out

            scores += await asyncio.to_thread(evaluate) if self._blocking_evaluators else evaluate()
        return scores

    def _span(self, trace_id: str, span_id: str, parent: str, name: str, kind: str, start: datetime, end: datetime,
              attrs: dict[str, Any]) -> dict[str, Any]:
        rec = empty_record()
        rec.update(project_id=self.project_id, trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                   kind=kind, start_time=start, end_time=end, duration_ms=(end - start).total_seconds() * 1000,
                   status="ok", service_name="evalforge-experiments", ingested_at=datetime.now(timezone.utc),
                   # stored like ingest stores them: strings as they are, anything else JSON-encoded
                   attributes={k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in attrs.items()})
        return rec

    def _score_row(self, s: dict[str, Any], trace_id: str, span_id: str) -> bytes:
        value = s["passed"] if s.get("passed") is not None else s["value"]
        row = Score(name=s["name"], value=value, reason=s.get("reason", ""), evaluator="experiment").to_row(
            self.project_id, trace_id, span_id)
        return orjson.dumps(row, option=_JSON)
