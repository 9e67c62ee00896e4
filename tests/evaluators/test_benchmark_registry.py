"""The benchmark registry contract the experiment runner reads (and later benchmarks extend)."""

from __future__ import annotations

import pytest

from evaluators import benchmarks


def test_draws_are_reproducible_by_seed_and_subset():
    a = benchmarks.load("arithmetic", limit=20, seed=5)
    assert [i["input"] for i in a.items] == [i["input"] for i in benchmarks.load("arithmetic", limit=20, seed=5).items]
    assert [i["input"] for i in a.items] != [i["input"] for i in benchmarks.load("arithmetic", limit=20, seed=6).items]
    assert len(benchmarks.load("arithmetic").items) == 300
    subset = benchmarks.load("arithmetic", subset="multiplication").items
    assert len(subset) == 100 and all(" * " in i["input"]["question"] for i in subset)
    item = a.items[0]
    assert a.messages(item)[-1] == {"role": "user", "content": item["input"]["question"]}


@pytest.mark.parametrize("answer, passed", [("42", True), ("The answer is 42.", True), ("41", False), ("", False),
                                            ("6 * 7 = 42", True), ("42 or maybe 43", False)])
def test_the_final_number_is_scored(answer, passed):
    bench = benchmarks.load("arithmetic", limit=1)
    item = {**bench.items[0], "expected_output": "42"}
    score = bench.score(item, answer)
    assert (score["name"], score["passed"], score["value"]) == ("accuracy", passed, 1.0 if passed else 0.0)
    assert score["reason"]


def test_bad_names_are_errors_naming_the_field():
    with pytest.raises(benchmarks.UnknownBenchmark, match="^benchmark: unknown benchmark 'nope'; known: .*arithmetic"):
        benchmarks.load("nope")
    with pytest.raises(benchmarks.UnknownBenchmark, match="^subset: arithmetic has subsets"):
        benchmarks.load("arithmetic", subset="division")
    with pytest.raises(benchmarks.UnknownBenchmark, match="^limit:"):
        benchmarks.load("arithmetic", limit=0)
    assert {"name", "description", "items", "metric", "source", "license"} <= set(benchmarks.list_benchmarks()[0])
