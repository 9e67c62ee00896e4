"""The server's model key (EVALFORGE_JUDGE_API_KEY) goes only to the provider's own endpoint, never to a
base_url a project member chose: the egress guard lets public hosts through, so such a URL could be a
host the member controls. The fake LLM servers record every request's headers."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from core.auth import ensure_project
from core.bus import TOPIC_EVAL_JOBS
from core.settings import Settings
from core.span import encode
from evaluators import datasets
from evaluators.experiments import store
from evaluators.experiments.runner import ExperimentRun
from evaluators.llm import server_key_for
from evaluators.worker import EvalWorker
from tests.processors.conftest import make_span

from .fake_llm import FakeLLMServer
from .test_optimize_api import body as optimize_body
from .test_optimize_api import proposing, run_job, setup, stub  # noqa: F401 (stub: a fixture)

SERVER_KEY = "sk-server-secret-0123456789"
SETTINGS = Settings(egress_allowed_hosts="127.0.0.1", judge_api_key=SERVER_KEY)
VERDICT = '{"reasoning": "Fine.", "score": 5}'


def _carries_server_key(server: FakeLLMServer) -> list[dict[str, str]]:
    return [r.headers for r in server.requests if any(SERVER_KEY in v for v in r.headers.values())]


@pytest.fixture
def servers():
    target, judge = FakeLLMServer().start(), FakeLLMServer().start()
    target.responder = lambda body: "an answer"
    judge.responder = lambda body: VERDICT
    yield target, judge
    target.stop()
    judge.stop()


@pytest_asyncio.fixture
async def pool(migrated_postgres):
    async with AsyncConnectionPool(migrated_postgres, min_size=1, max_size=4, kwargs={"autocommit": True}) as p:
        yield p


def test_the_key_is_given_only_when_no_base_url_is_named():
    assert server_key_for(None, SERVER_KEY) == SERVER_KEY
    assert server_key_for("", SERVER_KEY) == SERVER_KEY
    assert server_key_for("https://attacker.example/v1", SERVER_KEY) is None
    assert server_key_for(None, "") is None


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_experiment_with_custom_base_urls_never_sends_the_server_key(pool, private_bus, servers,
                                                                               migrated_postgres, provider):
    target, judge = servers
    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        project_id = ensure_project(conn, f"key-{uuid.uuid4().hex[:8]}").id
    base = target.openai_base_url if provider == "openai" else target.anthropic_base_url
    async with pool.connection() as conn:
        items, _ = datasets.check_items([{"input": {"q": i}} for i in range(3)])
        dataset_id, version, _ = await datasets.create_dataset(conn, project_id, f"d-{uuid.uuid4().hex}", items)
        experiment_id = await store.create(conn, project_id, {
            "name": "key", "kind": "server", "dataset_id": dataset_id, "dataset_version": version,
            "target": {"provider": provider, "model": "m", "base_url": base, "max_retries": 0},
            "evaluators": [{"evaluator": "llm_judge", "config": {
                "provider": provider, "model": "j", "base_url": judge.openai_base_url if provider == "openai"
                else judge.anthropic_base_url, "max_retries": 0}}],
            "repetitions": 1, "max_concurrency": 2, "status": "queued", "total": 3})
        exp = await store.get(conn, experiment_id)
    judge_deps = {"api_key": SERVER_KEY, "egress": SETTINGS}  # as evaluators/service.py builds them
    assert await ExperimentRun(pool, private_bus, SETTINGS, exp, judge_deps=judge_deps, flush_ms=20).run() == "completed"
    async with pool.connection() as conn:
        results = await store.results(conn, exp["id"])
    assert [r["scores"][0]["value"] for r in results] == [5.0] * 3  # the judge did run, keyless
    assert len(target.requests) == 3 and len(judge.requests) == 3
    assert _carries_server_key(target) == [] and _carries_server_key(judge) == []


@pytest.mark.asyncio
async def test_the_eval_worker_sends_the_key_to_the_default_endpoint_only(private_bus, servers, monkeypatch):
    _, judge = servers
    project = f"p-{uuid.uuid4().hex[:8]}"
    # The provider's own endpoint, as the operator configures it for the SDK (the rule names no base_url).
    monkeypatch.setenv("OPENAI_BASE_URL", judge.openai_base_url)
    default = {"provider": "openai", "model": "default-endpoint", "max_retries": 0}
    custom = {"provider": "openai", "model": "named-endpoint", "max_retries": 0, "base_url": judge.openai_base_url}
    for i, config in enumerate((default, custom)):
        job = orjson.dumps({"rule_id": f"r{i}", "rule_name": "judge", "evaluator": "llm_judge", "config": config,
                            "project_id": project, "span": orjson.loads(encode(make_span(project, i)))})
        await private_bus.publish(TOPIC_EVAL_JOBS, [(b"k", job)])
    worker = EvalWorker(private_bus, None, judge_api_key=SERVER_KEY, max_attempts=1, egress=SETTINGS)
    task = asyncio.create_task(worker.run())
    for _ in range(200):
        if worker.stats["jobs"] >= 2:
            break
        await asyncio.sleep(0.05)
    worker.stop()
    await task
    sent = {r.body["model"]: r.headers["authorization"] for r in judge.requests}
    assert sent == {"default-endpoint": f"Bearer {SERVER_KEY}", "named-endpoint": "Bearer EMPTY"}


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/experiments/plan", {"goal": "How much does it know?"}),
    ("/api/v1/criteria", {"system_prompt": "You answer questions about our product."}),
])
def test_assisting_routes_send_the_key_to_the_default_endpoint_only(stack, servers, monkeypatch, path, body):
    _, model = servers
    monkeypatch.setattr(stack.settings, "judge_api_key", SERVER_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", model.openai_base_url)  # the provider's own endpoint, as configured
    _, key = stack.create_key()
    for llm in ({"model": "named-endpoint", "base_url": model.openai_base_url, "max_retries": 0},
                {"model": "default-endpoint", "max_retries": 0}):
        r = stack.client.post(path, headers=stack.headers(key), json={**body, "llm": llm})
        assert r.status_code == 200, r.text
    sent = {r.body["model"]: r.headers["authorization"] for r in model.requests}
    assert sent == {"named-endpoint": "Bearer EMPTY", "default-endpoint": f"Bearer {SERVER_KEY}"}


def test_an_optimisation_with_custom_base_urls_never_sends_the_server_key(stack, stub, monkeypatch):  # noqa: F811
    """The target's calls (scoring.py) and the optimiser model's (job.py) go to the member's base_url."""
    monkeypatch.setattr(stack.settings, "judge_api_key", SERVER_KEY)
    _, key, dataset_id = setup(stack)
    stub.responders["optimizer-model"] = proposing("Be kind.", "Use words.")
    run_job(stack, key, optimize_body(stub, dataset_id, candidates_per_round=2))
    called = {r.body["model"] for r in stub.requests}
    assert called == {"target-model", "optimizer-model"}
    assert _carries_server_key(stub) == []
