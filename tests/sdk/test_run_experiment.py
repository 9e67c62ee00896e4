"""``evalforge.run_experiment`` against the real service: a sync and an async user function, plain
evaluators, results recorded through the API, and each item's trace holding the task's own spans."""

from __future__ import annotations

import asyncio
import time

import evalforge
import pytest

from tests.harness.live_server import LiveServer

ITEMS = [{"input": {"a": a, "b": b}, "expected_output": a + b} for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 9), (2, 2)]]


@pytest.fixture(scope="module")
def service_url(stack):
    """Ingest (for the traces) and the datasets / experiments API on a real port, on the stack's parts."""
    from launcher.cli import INGEST_PARTS
    from core.http import build_app
    from evaluators.routers.datasets import router as datasets_router
    from evaluators.routers.experiments import router as experiments_router
    from ingest.routers.ingest import router as ingest_router

    app = build_app(stack.settings, parts=INGEST_PARTS, routers=[ingest_router, datasets_router, experiments_router])
    with LiveServer(app) as server:
        yield server.url


def correct(output, expected):
    return output == expected


def close_enough(output, expected) -> dict:
    return {"name": "abs_error", "value": abs(output - expected), "reason": f"{output} vs {expected}"}


def _spans(stack, project_id: str, trace_id: str, n: int) -> list[tuple]:
    deadline = time.monotonic() + 30
    while True:
        rows = stack.clickhouse.query(
            "SELECT name, span_id, parent_span_id, attributes['evalforge.experiment_id'], "
            "attributes['evalforge.dataset_item_id'] FROM spans FINAL WHERE project_id = {p:String} AND trace_id = {t:String}",
            parameters={"p": project_id, "t": trace_id}).result_rows
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _check_traces(stack, project_id: str, result, inner_name: str) -> None:
    for row in result.results[:3]:
        spans = {name: (sid, parent, exp, item) for name, sid, parent, exp, item in _spans(stack, project_id, row["trace_id"], 2)}
        root = next(v for k, v in spans.items() if k.startswith("experiment "))
        assert root[1] == "" and root[2] == result.id and root[3] == row["item_id"]
        assert spans[inner_name][1] == root[0], "the task's span nests under the item's root span"
        assert spans[inner_name][2:] == (result.id, row["item_id"]), "the task's spans carry the ids too"


def test_sync_task_with_repetitions(stack, service_url, llm, monkeypatch):
    import openai

    monkeypatch.setattr(llm, "distinct_ids", True)  # 12 concurrent calls are 12 calls, as with a real provider

    from core.pricing import Usage, compute_call_cost

    project_id, key = stack.create_key()
    evalforge.init(api_key=key, endpoint=service_url, schedule_delay=0.05)
    try:
        client = evalforge.wrap(openai.OpenAI(api_key="sk-test", base_url=llm.url + "/v1", max_retries=0))

        def add(input):  # a single parameter of any name gets the input
            with evalforge.span("sync add", kind="tool"):
                total = input["a"] + input["b"]
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"{total}?"}])
            return total if total != 18 else 17  # wrong on one item

        result = evalforge.run_experiment(ITEMS, add, [correct, close_enough], repetitions=2, max_concurrency=4)
    finally:
        evalforge.shutdown(2)
    assert result.status == "completed"
    assert len(result.results) == 12 and {(r["item_id"], r["repetition"]) for r in result.results}.__len__() == 12
    s = result.summary
    assert s["scores"]["correct"]["mean"] == pytest.approx(5 / 6) and s["scores"]["correct"]["n"] == 12
    assert s["scores"]["correct"]["pass_rate"] == pytest.approx(5 / 6)
    assert s["scores"]["abs_error"]["mean"] == pytest.approx(1 / 6)
    assert s["consistency"]["identical_outputs"] == 1.0
    exp = stack.client.get(f"/api/v1/experiments/{result.id}", headers=stack.headers(key)).json()
    assert exp["kind"] == "client" and exp["progress"] == {"done": 12, "total": 12}
    _check_traces(stack, project_id, result, "sync add")
    # tokens and cost come from the wrapped model calls in each item's trace, priced by the processor
    per_call = compute_call_cost("openai", "gpt-4o-mini-resp", "gpt-4o-mini", Usage(11, 7, 3, 0, 0, 2)).cost
    deadline = time.monotonic() + 30
    while (s := stack.client.get(f"/api/v1/experiments/{result.id}", headers=stack.headers(key)).json()["summary"])[
            "tokens"]["total"] < 12 * 18 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert s["tokens"] == {"input": 12 * 11, "output": 12 * 7, "total": 12 * 18, "per_item": 18.0}
    assert s["cost"]["total"] == pytest.approx(12 * per_call, rel=1e-9)


def test_async_task_errors_are_recorded_per_item(stack, service_url):
    project_id, key = stack.create_key()
    h = stack.headers(key)
    dataset_id = stack.client.post("/api/v1/datasets", headers=h, json={"name": "sums", "items": ITEMS}).json()["id"]
    evalforge.init(api_key=key, endpoint=service_url, schedule_delay=0.05)
    try:
        @evalforge.observe(name="async add")
        async def add(input, metadata):
            await asyncio.sleep(0.01)
            if input["a"] == 9:
                raise RuntimeError("cannot add nines")
            return input["a"] + input["b"]

        async def is_even(output) -> bool:
            return output % 2 == 0

        result = evalforge.run_experiment(dataset_id, add, [correct, is_even], name="async-run")
    finally:
        evalforge.shutdown(2)
    errors = [r for r in result.results if r.get("error")]
    assert len(errors) == 1 and errors[0]["error"] == "RuntimeError: cannot add nines"
    assert result.summary["error_rate"] == pytest.approx(1 / 6)
    assert result.summary["scores"]["correct"] == {**result.summary["scores"]["correct"], "mean": 1.0, "n": 5}
    assert result.summary["scores"]["is_even"]["mean"] == pytest.approx(1 / 5)  # 3, 7, 11, 15, 4
    _check_traces(stack, project_id, result, "async add")


def test_api_errors_raise_for_the_caller(stack, service_url):
    _, key = stack.create_key()
    with pytest.raises(evalforge.ExperimentError, match="dataset_id: no such dataset"):
        evalforge.run_experiment("nope", lambda input: input, api_key=key, endpoint=service_url)
    with pytest.raises(evalforge.ExperimentError, match="HTTP 401"):
        evalforge.run_experiment("nope", lambda input: input, api_key="ef_wrong", endpoint=service_url)
