"""``evalforge datasets`` and ``evalforge experiments`` against a real server: import / export, a run
with progress, CI gates (exit codes), the JUnit file, compare."""

from __future__ import annotations

import json
import re
from xml.etree import ElementTree as ET

import pytest

from launcher.cli import main
from tests.evaluators.fake_llm import FakeLLMServer
from tests.harness.live_server import LiveServer

PAIRS = [(2 + i, 10 + (i * 7) % 13) for i in range(30)]


def weak_is_right(a: int) -> bool:
    return a % 3 != 0


@pytest.fixture(scope="module")
def server(stack):
    """The datasets / experiments API on a real port; the stack's background worker runs the jobs."""
    from core.http import build_app
    from evaluators.routers.datasets import router as datasets_router
    from evaluators.routers.experiments import router as experiments_router

    app = build_app(stack.settings, parts=frozenset({"bus", "postgres", "redis"}), routers=[datasets_router, experiments_router])
    with LiveServer(app) as live:
        yield live.url


@pytest.fixture
def stub():
    s = FakeLLMServer().start()

    def answer(body):
        a, b = map(int, re.findall(r"\d+", body["messages"][-1]["content"]))
        return str(a + b if body["model"] == "good-model" or weak_is_right(a) else a + b + 1)

    s.responder = answer
    yield s
    s.stop()


def test_datasets_and_experiments_from_the_command_line(stack, server, stub, tmp_path, capsys):
    _, key = stack.create_key()
    api = ["--endpoint", server, "--api-key", key]
    src = tmp_path / "sums.jsonl"
    src.write_text("".join(json.dumps({"input": {"a": a, "b": b}, "expected_output": str(a + b)}) + "\n" for a, b in PAIRS))
    assert main(["datasets", "import", str(src), "--dataset", "sums", *api]) == 0
    assert "imported 30 items into sums" in capsys.readouterr().out
    assert main(["datasets", "list", *api]) == 0
    assert re.search(r"sums\s+v2\s+30 items", capsys.readouterr().out)
    out = tmp_path / "out.jsonl"
    assert main(["datasets", "export", "--dataset", "sums", "--output", str(out), *api]) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["input"], e["expected_output"]) for e in exported] == [({"a": a, "b": b}, str(a + b)) for a, b in PAIRS]

    prompt = tmp_path / "prompt.txt"
    prompt.write_text("What is {{input.a}} plus {{input.b}}? Answer with the number only.")
    run = ["experiments", "run", "--dataset", "sums", "--base-url", stub.openai_base_url, "--prompt", str(prompt),
           "--evaluator", "exact_match", *api]

    good_junit = tmp_path / "good.xml"
    assert main([*run, "--model", "good-model", "--fail-if", "exact_match < 0.9", "--junit", str(good_junit)]) == 0
    err = capsys.readouterr().err
    good_id = re.search(r"experiment ([0-9a-f]{32})", err).group(1)
    assert "30/30" in err  # the progress bar reached the end
    suite = ET.parse(good_junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("31", "0", "0")

    weak_junit = tmp_path / "weak.xml"
    code = main([*run, "--model", "weak-model", "--fail-if", "exact_match < 0.9", "--junit", str(weak_junit),
                 "--baseline", good_id, "--fail-on-regression", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    wrong = sum(1 for a, _ in PAIRS if not weak_is_right(a))
    assert f"FAILED exact_match < 0.9: exact_match = {(30 - wrong) / 30}" in captured.err
    assert "FAILED no regression in exact_match" in captured.err
    suite = ET.parse(weak_junit).getroot()
    assert suite.get("failures") == str(wrong + 2)  # the wrong items, the threshold gate, the regression gate
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert "exact_match < 0.9" in failed and "no regression in exact_match" in failed
    weak_id = re.search(r"experiment ([0-9a-f]{32})", captured.err).group(1)

    assert main(["experiments", "compare", good_id, weak_id, *api]) == 0
    assert re.search(rf"exact_match\s+delta {-wrong / 30:+.4f}.*p = .*mcnemar_exact.*regressed {wrong}", capsys.readouterr().out)

    assert main([*run, "--model", "good-model", "--fail-if", "accuracy <<< 1", "--no-progress"]) == 2
    assert "--fail-if" in capsys.readouterr().err
    assert main(["experiments", "run", "--dataset", "nope", "--model", "m", *api]) == 2
    assert main(["datasets", "list", "--endpoint", server, "--api-key", "ef_bad"]) == 2
    assert "HTTP 401" in capsys.readouterr().err
