"""``run_experiment``: run your own function (or agent) over a dataset, score it with plain Python
evaluators, and record the results in EvalForge.

    result = evalforge.run_experiment("ds_123", task=answer, evaluators=[exact], repetitions=3)
    print(result.summary["scores"])

Every item run is a trace: a root span carrying ``evalforge.experiment_id`` and
``evalforge.dataset_item_id``, with whatever the task does (wrapped clients, ``@observe``) nested
under it. Tasks and evaluators may be sync or async; their arguments are bound by name from
``input``, ``expected``, ``metadata``, ``output`` and ``item``. A task that raises records an error
for that item; it never stops the run. Unlike the tracing side of the SDK, this is a tool you call
on purpose: API errors (bad key, unknown dataset) raise ``ExperimentError``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._client import DEFAULT_ENDPOINT, get_state
from ._context import attributes as span_attributes
from ._tracing import span, to_json

_BIND_NAMES = ("input", "expected", "metadata", "output", "item")
_UPLOAD_EVERY = 50


class ExperimentError(Exception):
    """The EvalForge API refused a request of the experiment (the message is the server's)."""


@dataclass
class ExperimentResult:
    id: str
    summary: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    status: str = "completed"


class _Api:
    def __init__(self, api_key: str | None, endpoint: str | None) -> None:
        state = get_state()
        self.api_key = api_key or (state.api_key if state else None) or os.environ.get("EVALFORGE_API_KEY", "")
        self.endpoint = (endpoint or (state.endpoint if state else None) or os.environ.get("EVALFORGE_ENDPOINT")
                         or DEFAULT_ENDPOINT).rstrip("/")
        if not self.api_key:
            raise ExperimentError("api_key: pass api_key=, call evalforge.init() or set EVALFORGE_API_KEY")

    def call(self, method: str, path: str, body: Any = None, retries: int = 3) -> Any:
        import urllib.error  # here, not at import: ``import evalforge`` stays light for apps that only trace
        import urllib.request

        data = json.dumps(body, default=str).encode() if body is not None else None
        for attempt in range(retries + 1):
            req = urllib.request.Request(self.endpoint + path, data=data, method=method, headers={
                "Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")
                if exc.code in (429, 502, 503, 504) and attempt < retries:
                    time.sleep(float(exc.headers.get("Retry-After") or 0.5 * 2 ** attempt))
                    continue
                try:
                    detail = json.loads(detail).get("error", detail)
                except (ValueError, AttributeError):
                    pass
                raise ExperimentError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
            except OSError as exc:
                if attempt < retries:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                raise ExperimentError(f"{method} {path}: {exc}") from None
        raise AssertionError("unreachable")


def _bind(fn: Callable[..., Any], values: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Arguments for ``fn`` by parameter name; a single parameter of another name gets the input
    (task) or the output (evaluator)."""
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if any(p.name in _BIND_NAMES for p in params):
        return [], {p.name: values[p.name] for p in params if p.name in _BIND_NAMES}
    if params:
        return [values["output"] if "output" in values else values["input"]], {}
    return [], {}


async def _call(fn: Callable[..., Any], values: dict[str, Any], pool: concurrent.futures.Executor) -> Any:
    args, kwargs = _bind(fn, values)
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    loop = asyncio.get_running_loop()
    import contextvars

    ctx = contextvars.copy_context()  # the item's span is current in the thread too
    result = await loop.run_in_executor(pool, lambda: ctx.run(fn, *args, **kwargs))
    return await result if inspect.isawaitable(result) else result


def _scores(fn: Callable[..., Any], value: Any) -> list[dict[str, Any]]:
    """An evaluator's return value as scores: bool (pass / fail), number, dict, or a list of those."""
    name = getattr(fn, "__name__", "score")
    if isinstance(value, list):
        return [s for v in value for s in _scores(fn, v)]
    if isinstance(value, bool):
        return [{"name": name, "value": 1.0 if value else 0.0, "passed": value, "reason": ""}]
    if isinstance(value, (int, float)):
        return [{"name": name, "value": float(value), "passed": None, "reason": ""}]
    if isinstance(value, dict):
        raw = value.get("value", value.get("score"))
        passed = value.get("passed")
        if isinstance(raw, bool):
            passed, raw = raw if passed is None else passed, float(raw)
        return [{"name": value.get("name", name), "value": None if raw is None else float(raw),
                 "passed": passed, "reason": str(value.get("reason") or value.get("explanation") or "")}]
    raise TypeError(f"evaluator {name} returned {type(value).__name__}; return a bool, a number or a dict")


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(to_json(value))


async def arun_experiment(dataset: str | Sequence[dict[str, Any]], task: Callable[..., Any],
                          evaluators: Sequence[Callable[..., Any]] = (), *, name: str | None = None,
                          repetitions: int = 1, max_concurrency: int = 16, dataset_version: int | None = None,
                          metadata: dict[str, Any] | None = None, api_key: str | None = None,
                          endpoint: str | None = None) -> ExperimentResult:
    """Async form of :func:`run_experiment`."""
    api = _Api(api_key, endpoint)
    name = name or getattr(task, "__name__", "experiment")
    if isinstance(dataset, str):
        dataset_id = dataset
    else:
        created = await asyncio.to_thread(api.call, "POST", "/api/v1/datasets", {
            "name": f"{name}-{int(time.time() * 1000)}", "items": list(dataset)})
        dataset_id = created["id"]
    exp = await asyncio.to_thread(api.call, "POST", "/api/v1/experiments", {
        "name": name, "dataset_id": dataset_id, "dataset_version": dataset_version, "repetitions": repetitions,
        "max_concurrency": max_concurrency, "metadata": metadata or {}})
    experiment_id = exp["id"]
    work = [(item, rep) for item in exp["items"] for rep in range(repetitions)]
    pending: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    upload_lock = asyncio.Lock()

    async def upload(force: bool = False) -> None:
        async with upload_lock:
            if pending and (force or len(pending) >= _UPLOAD_EVERY):
                batch = pending[:]
                del pending[:]
                await asyncio.to_thread(api.call, "POST", f"/api/v1/experiments/{experiment_id}/results",
                                        {"results": batch})

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, max_concurrency), thread_name_prefix="evalforge-exp")
    queue = iter(work)

    async def lane() -> None:
        for item, rep in queue:
            results.append(await _run_item(experiment_id, name, item, rep, task, evaluators, pool))
            pending.append(results[-1])
            await upload()

    try:
        await asyncio.gather(*(lane() for _ in range(max(1, min(max_concurrency, len(work) or 1)))))
        await upload(force=True)
    finally:
        pool.shutdown(wait=False)
    await asyncio.to_thread(api.call, "POST", f"/api/v1/experiments/{experiment_id}/finish", {"status": "completed"})
    from ._client import flush

    await asyncio.to_thread(flush, 5.0)  # the traces reach the server with the results
    final = await asyncio.to_thread(api.call, "GET", f"/api/v1/experiments/{experiment_id}")
    return ExperimentResult(experiment_id, final["summary"], results, final["status"])


async def _run_item(experiment_id: str, name: str, item: dict[str, Any], rep: int, task: Callable[..., Any],
                    evaluators: Sequence[Callable[..., Any]], pool: concurrent.futures.Executor) -> dict[str, Any]:
    values = {"input": item["input"], "expected": item.get("expected_output"), "metadata": item.get("metadata") or {},
              "item": item}
    row: dict[str, Any] = {"item_id": item["id"], "repetition": rep, "scores": []}
    attributes = {"evalforge.experiment_id": experiment_id, "evalforge.dataset_item_id": item["id"],
                  "evalforge.experiment.repetition": rep}
    # every span of the item run carries the experiment and item ids, the task's own spans too
    with span_attributes(attributes), span(f"experiment {name}", kind="chain") as root:
        ctx = root.get_span_context()
        row["trace_id"] = format(ctx.trace_id, "032x") if ctx.is_valid else None
        t0 = time.perf_counter()
        try:
            output = await _call(task, values, pool)
            row["output"] = _jsonable(output)
        except Exception as exc:  # noqa: BLE001 - the user's task failed on this item: recorded, the run goes on
            output = None
            row["error"] = f"{type(exc).__name__}: {exc}"[:10_000]
        row["latency_ms"] = (time.perf_counter() - t0) * 1000
        if root.is_recording():
            root.set_attribute("input.value", to_json(item["input"]))
            root.set_attribute("output.value", to_json(row.get("output")))
    if "error" not in row:
        for ev in evaluators:
            try:
                row["scores"] += _scores(ev, await _call(ev, {**values, "output": output}, pool))
            except Exception as exc:  # noqa: BLE001 - an evaluator's failure is that score's reason
                row["scores"].append({"name": getattr(ev, "__name__", "score"), "value": None, "passed": None,
                                      "reason": f"evaluator failed: {type(exc).__name__}: {exc}"[:500]})
    return row


def run_experiment(dataset: str | Sequence[dict[str, Any]], task: Callable[..., Any],
                   evaluators: Sequence[Callable[..., Any]] = (), *, name: str | None = None, repetitions: int = 1,
                   max_concurrency: int = 16, dataset_version: int | None = None,
                   metadata: dict[str, Any] | None = None, api_key: str | None = None,
                   endpoint: str | None = None) -> ExperimentResult:
    """Run ``task`` on every item of ``dataset`` (an id, or a list of ``{input, expected_output,
    metadata}`` to upload as a new dataset) ``repetitions`` times, ``max_concurrency`` at once, score
    each output with ``evaluators`` and record everything in EvalForge. Returns the id, the server's
    summary (means with 95 % CIs, pass rates, latency, errors) and the per-item results.

    Works from plain scripts and from code already inside an event loop (notebooks): then it runs on
    a helper thread; ``await arun_experiment(...)`` is the async form."""
    kwargs = {"name": name, "repetitions": repetitions, "max_concurrency": max_concurrency,
              "dataset_version": dataset_version, "metadata": metadata, "api_key": api_key, "endpoint": endpoint}
    coro = arun_experiment(dataset, task, evaluators, **kwargs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="evalforge-experiment")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
