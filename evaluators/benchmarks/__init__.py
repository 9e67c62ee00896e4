"""Standard benchmarks: a registry the experiment runner reads.

A benchmark is items + a prompt format + a scorer. ``load(name, limit=, seed=, subset=)`` returns a
``Benchmark``; ``messages(item)`` is the chat prompt sent to the target, ``score(item, output_text)``
grades the answer (``{"name", "value", "passed", "reason"}``). Subsets by ``subset`` and size by
``limit`` are drawn with ``seed``, so two runs with the same arguments see the same items.

This module ships one tiny generated benchmark (``arithmetic``) for tests; the standard ones (MMLU,
GSM8K, HumanEval, ...) register themselves here with ``register``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Item = dict[str, Any]  # {"input": dict, "expected_output": Any, "metadata": dict}
ScoreDict = dict[str, Any]  # {"name", "value": float, "passed": bool | None, "reason": str}


class UnknownBenchmark(ValueError):
    """The message names the ``benchmark`` field (answered as a 400)."""


@dataclass
class Benchmark:
    name: str
    items: list[Item]
    prompt: Callable[[Item], list[dict[str, str]]]
    scorer: Callable[[Item, str], ScoreDict]
    metric: str = "accuracy"
    # True when ``score`` blocks (HumanEval / MBPP run each sample in a sandbox subprocess): the
    # runner then scores in a thread instead of on its event loop.
    blocking: bool = False

    def messages(self, item: Item) -> list[dict[str, str]]:
        return self.prompt(item)

    def score(self, item: Item, output_text: str) -> ScoreDict:
        return self.scorer(item, output_text)


@dataclass
class BenchmarkSpec:
    """What ``list_benchmarks`` shows, and how to build the benchmark."""

    name: str
    description: str
    items: int
    metric: str
    source: str
    license: str
    loader: Callable[..., Benchmark] = field(repr=False)
    subsets: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "items": self.items, "metric": self.metric,
                "source": self.source, "license": self.license, "subsets": self.subsets}


_REGISTRY: dict[str, BenchmarkSpec] = {}


def register(spec: BenchmarkSpec) -> BenchmarkSpec:
    _REGISTRY[spec.name] = spec
    return spec


def list_benchmarks() -> list[dict[str, Any]]:
    return [_REGISTRY[n].info() for n in sorted(_REGISTRY)]


def load(name: str, *, limit: int | None = None, seed: int = 0, subset: str | None = None) -> Benchmark:
    spec = _REGISTRY.get(name)
    if spec is None:
        raise UnknownBenchmark(f"benchmark: unknown benchmark {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    if subset is not None and spec.subsets and subset not in spec.subsets:
        raise UnknownBenchmark(f"subset: {name} has subsets {', '.join(spec.subsets)}")
    if limit is not None and limit < 1:
        raise UnknownBenchmark("limit: must be at least 1")
    return spec.loader(limit=limit, seed=seed, subset=subset)


def sample(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """``limit`` items drawn with ``seed`` (in their original order), or all of them."""
    if limit is None or limit >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


# --- arithmetic: a generated benchmark with exactly known answers ---------------------------------

_OPS = {"addition": ("+", lambda a, b: a + b), "subtraction": ("-", lambda a, b: a - b),
        "multiplication": ("*", lambda a, b: a * b)}
_ARITHMETIC_SIZE = 300
_LAST_INT = re.compile(r"-?\d+")


def arithmetic_items() -> list[Item]:
    rng = random.Random(20261207)  # fixed: the benchmark's content never changes
    items = []
    for i in range(_ARITHMETIC_SIZE):
        op = list(_OPS)[i % len(_OPS)]
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        symbol, fn = _OPS[op]
        items.append({"input": {"question": f"What is {a} {symbol} {b}?"}, "expected_output": str(fn(a, b)),
                      "metadata": {"subset": op, "index": i}})
    return items


def _arithmetic_prompt(item: Item) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer with the number only."},
            {"role": "user", "content": item["input"]["question"]}]


def _arithmetic_score(item: Item, output_text: str) -> ScoreDict:
    numbers = _LAST_INT.findall(output_text or "")
    got = numbers[-1] if numbers else None
    ok = got == item["expected_output"]
    reason = f"answer {got} {'equals' if ok else 'differs from'} {item['expected_output']}" if got else "no number in the answer"
    return {"name": "accuracy", "value": 1.0 if ok else 0.0, "passed": ok, "reason": reason}


def _load_arithmetic(*, limit: int | None, seed: int, subset: str | None) -> Benchmark:
    items = [i for i in arithmetic_items() if subset is None or i["metadata"]["subset"] == subset]
    return Benchmark("arithmetic", sample(items, limit, seed), _arithmetic_prompt, _arithmetic_score)


register(BenchmarkSpec(
    name="arithmetic", description="Two-number +, -, * questions generated with a fixed seed; final-number exact match.",
    items=_ARITHMETIC_SIZE, metric="accuracy", source="generated by EvalForge", license="Apache-2.0",
    loader=_load_arithmetic, subsets=list(_OPS)))


# The standard benchmarks register themselves on import (they need the names defined above).
from evaluators.benchmarks import code as _code  # noqa: E402,F401
from evaluators.benchmarks import standard as _standard  # noqa: E402,F401
