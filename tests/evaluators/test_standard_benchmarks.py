"""MMLU / GSM8K / ARC / HellaSwag / BoolQ / TruthfulQA: counts, subsets, prompts and answer extraction."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from evaluators import benchmarks
from evaluators.benchmarks.extract import choice_letter, final_number, yes_no

COUNTS = {"mmlu": 14042, "mmlu-5shot": 14042, "gsm8k": 1319, "gsm8k-8shot": 1319, "arc_easy": 2376,
          "arc_challenge": 1172, "hellaswag": 10042, "boolq": 3270, "truthfulqa_mc1": 100}
LICENCES = {"mmlu": "MIT", "gsm8k": "MIT", "hellaswag": "MIT", "arc_easy": "CC-BY-SA-4.0",
            "arc_challenge": "CC-BY-SA-4.0", "boolq": "CC-BY-SA-3.0", "truthfulqa_mc1": "Apache-2.0"}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_counts_match_the_published_splits_and_the_listing(name):
    info = {b["name"]: b for b in benchmarks.list_benchmarks()}[name]
    items = benchmarks.load(name).items
    assert len(items) == info["items"] == COUNTS[name]
    if name in LICENCES:
        assert info["license"] == LICENCES[name]
    assert info["source"].startswith("PyPI ")
    assert len({str(i["input"]) for i in items}) >= 0.99 * len(items)  # real, distinct questions


def test_mmlu_has_57_subjects_and_subsets_by_subject():
    spec = {b["name"]: b for b in benchmarks.list_benchmarks()}["mmlu"]
    assert len(spec["subsets"]) == 57
    per_subject = Counter(i["metadata"]["subset"] for i in benchmarks.load("mmlu").items)
    assert len(per_subject) == 57 and per_subject["abstract_algebra"] == 100 and per_subject["professional_law"] == 1534
    algebra = benchmarks.load("mmlu", subset="abstract_algebra", limit=10, seed=1)
    assert len(algebra.items) == 10 and {i["metadata"]["subset"] for i in algebra.items} == {"abstract_algebra"}
    assert [i["input"] for i in algebra.items] == [i["input"] for i in benchmarks.load("mmlu", subset="abstract_algebra", limit=10, seed=1).items]
    with pytest.raises(benchmarks.UnknownBenchmark, match="^subset:"):
        benchmarks.load("mmlu", subset="astrology")


def test_mmlu_5shot_prompt_has_five_dev_examples_of_the_subject():
    bench = benchmarks.load("mmlu-5shot", subset="anatomy", limit=1)
    messages = bench.messages(bench.items[0])
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 5 + ["user"]
    assert all(m["content"] in "ABCD" for m in messages if m["role"] == "assistant")
    assert messages[-1]["content"].endswith("Answer:") and "A. " in messages[-1]["content"]


def test_gsm8k_answers_and_prompts():
    bench = benchmarks.load("gsm8k")
    first = bench.items[0]
    assert first["input"]["question"].startswith("Janet") and first["expected_output"] == "18"
    assert bench.score(first, "She sells 9 eggs for $2 each.\nThe answer is 18.")["passed"] is True
    assert bench.score(first, "The answer is 18.5")["passed"] is False
    assert bench.score(first, "I don't know")["reason"] == "no number in the answer"
    eight = benchmarks.load("gsm8k-8shot", limit=1).items[0]
    prompt = benchmarks.load("gsm8k-8shot").messages(eight)[-1]["content"]
    assert prompt.count("Question:") == 9 and prompt.rstrip().endswith(eight["input"]["question"] + "\nAnswer:")


def test_multiple_choice_items_are_well_formed():
    for name in ("arc_easy", "arc_challenge", "hellaswag", "truthfulqa_mc1", "mmlu"):
        for item in benchmarks.load(name).items:
            choices = item["input"]["choices"]
            assert 2 <= len(choices) <= 10 and all(c.strip() for c in choices), (name, item)
            assert item["expected_output"] in "ABCDEFGHIJ"[:len(choices)]
    arc = benchmarks.load("arc_challenge").items
    assert Counter(len(i["input"]["choices"]) for i in arc) == Counter({4: 1165, 3: 4, 5: 3})


def test_truthfulqa_options_are_shuffled_so_always_a_does_not_win():
    items = benchmarks.load("truthfulqa_mc1").items
    positions = Counter(i["expected_output"] for i in items)
    assert positions["A"] < 50 and len(positions) >= 4


def test_boolq_scoring():
    bench = benchmarks.load("boolq")
    item = bench.items[0]
    assert item["expected_output"] == "no"
    assert bench.score(item, "No, it does not.")["passed"] is True
    assert bench.score(item, "Yes.")["passed"] is False


@pytest.mark.parametrize("text, n, letter", [
    ("B", 4, "B"), ("(C)", 4, "C"), ("D.", 4, "D"), ("B) Paris", 4, "B"), ("**C**", 4, "C"),
    ("The answer is (B).", 4, "B"), ("Answer: D", 4, "D"), ("answer: C", 4, "C"),
    ("Let me think. A is wrong because... so the answer is C", 4, "C"),
    ("I think it's B, since the others are wrong.", 4, "B"), ("A", 4, "A"),
    ("The correct option is E", 5, "E"), ("The answer is E", 4, None),  # E is not an option of 4
    ("B or C", 4, None), ("I am not sure.", 4, None), ("", 4, None),
    ("A cat is an animal, so C.", 4, "C"),  # the article "A" is not a choice
    ("B) Paris, not C) Lyon", 4, "B"),
])
def test_choice_letter_extraction(text, n, letter):
    assert choice_letter(text, n) == letter


@pytest.mark.parametrize("text, number", [
    ("#### 18", "18"), ("The answer is 1,234.", "1234"), ("so the answer is $70.", "70"),
    ("5 + 3 = 8 apples, then 8 * 2 = 16", "16"), ("The answer is -3", "-3"), ("Answer: 0.5", "0.5"),
    ("It costs $18.00 in total", "18"), ("First 12, then 7. The answer is 19. (Checked with 3 steps.)", "19"),
    ("no numbers here", None),
])
def test_final_number_extraction(text, number):
    got = final_number(text)
    assert (got == Decimal(number)) if number is not None else got is None


@pytest.mark.parametrize("text, answer", [("Yes.", True), ("no", False), ("True", True), ("It is false.", False),
                                          ("The passage says yes", True), ("Maybe", None)])
def test_yes_no_extraction(text, answer):
    assert yes_no(text) is answer
