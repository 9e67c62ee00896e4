"""A HumanEval run end to end: the server calls a model (fake, real wire protocol), the sandbox runs
its code, the leaderboard ranks the models by pass@1."""

from __future__ import annotations

import pytest

from evaluators import benchmarks

from .fake_llm import FakeLLMServer
from .test_experiments_api import wait_for

ITEMS = benchmarks.load("humaneval", limit=6, seed=1).items
WRONG_FOR = {ITEMS[0]["metadata"]["task_id"], ITEMS[3]["metadata"]["task_id"]}


def answer(body: dict) -> str:
    """'good' answers every prompt with the canonical solution; 'sloppy' returns None on two tasks."""
    prompt = body["messages"][-1]["content"]
    item = next(i for i in ITEMS if i["input"]["prompt"] == prompt)
    if body["model"] == "sloppy" and item["metadata"]["task_id"] in WRONG_FOR:
        return "```python\n    return None\n```"
    return f"```python\n{item['expected_output']}\n```"


@pytest.fixture
def stub():
    server = FakeLLMServer().start()
    server.responder = answer
    yield server
    server.stop()


def test_humaneval_through_the_runner_and_the_leaderboard(stack, stub):
    _, key = stack.create_key()
    h = stack.headers(key)
    ids = []
    for model in ("good", "sloppy"):
        r = stack.client.post("/api/v1/experiments", headers=h, json={
            "name": model, "benchmark": "humaneval", "limit": 6, "seed": 1,
            "target": {"model": model, "base_url": stub.openai_base_url}, "max_concurrency": 2})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    good, sloppy = (wait_for(stack, key, i, timeout=180) for i in ids)
    assert good["summary"]["scores"]["pass@1"]["mean"] == 1.0
    assert sloppy["summary"]["scores"]["pass@1"]["mean"] == pytest.approx(4 / 6)
    items = stack.client.get(f"/api/v1/experiments/{ids[1]}/items", headers=h).json()
    rows = items.get("items") or items.get("results")
    failed = [row for row in rows if not row["scores"][0]["passed"]]
    assert len(failed) == 2 and all(s["scores"][0]["reason"].startswith("tests failed") for s in failed)

    board = stack.client.get("/api/v1/leaderboards", headers=h, params={"benchmark": "humaneval"}).json()
    assert board["score"] == "pass@1"
    assert [(e["entry"], e["mean"], e["n"]) for e in board["entries"]] == [("openai/good", 1.0, 6),
                                                                          ("openai/sloppy", pytest.approx(4 / 6), 6)]
    assert board["bradley_terry"][0]["entry"] == "openai/good" and board["bradley_terry"][0]["wins"] == 2 + 0.5 * 4  # 2 wins, 4 ties
