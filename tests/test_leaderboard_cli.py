"""``evalforge leaderboard`` against a real server with two finished runs on one dataset."""

from __future__ import annotations

import json
import re

import pytest

from launcher.cli import main
from tests.evaluators.fake_llm import FakeLLMServer
from tests.evaluators.test_experiments_api import PAIRS, make_dataset, run, stub_answer, wait_for, weak_is_right
from tests.harness.live_server import LiveServer


@pytest.fixture(scope="module")
def server(stack):
    from core.http import build_app
    from evaluators.routers.datasets import router as datasets_router
    from evaluators.routers.leaderboards import router as leaderboards_router

    app = build_app(stack.settings, parts=frozenset({"bus", "postgres", "redis"}), routers=[datasets_router, leaderboards_router])
    with LiveServer(app) as live:
        yield live.url


@pytest.fixture
def stub():
    s = FakeLLMServer().start()
    s.responder = stub_answer
    yield s
    s.stop()


def test_leaderboard_from_the_command_line(stack, server, stub, capsys):
    _, key = stack.create_key()
    dataset_id = make_dataset(stack, key)
    for exp in (run(stack, key, dataset_id, "openai", "gpt-4o-mini", stub.openai_base_url),
                run(stack, key, dataset_id, "anthropic", "claude-3-5-haiku", stub.anthropic_base_url)):
        wait_for(stack, key, exp)
    api = ["--endpoint", server, "--api-key", key]
    assert main(["leaderboard", "--dataset", f"sums-{len(PAIRS)}", *api]) == 0
    out = capsys.readouterr().out
    weak = sum(weak_is_right(a, b) for a, b in PAIRS) / len(PAIRS)
    lines = [ln for ln in out.splitlines() if re.match(r"\s+\d+\s", ln)]
    assert re.match(r"\s+1\s+openai/gpt-4o-mini\s+1\.000\s+\[1\.000, 1\.000\]\s+50\s", lines[0])
    assert re.match(rf"\s+2\s+anthropic/claude-3-5-haiku\s+{weak:.3f}\s", lines[1])
    assert "Bradley-Terry" in out

    assert main(["leaderboard", "--dataset", dataset_id, "--json", *api]) == 0
    board = json.loads(capsys.readouterr().out)
    assert [e["entry"] for e in board["entries"]] == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"]

    assert main(["leaderboard", "--dataset", "nope", *api]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert main(["leaderboard", "--benchmark", "nope", *api]) == 2
    assert "benchmark" in capsys.readouterr().err
