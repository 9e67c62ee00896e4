"""The pairwise judge's pure parts: reading a verdict, combining the two orders, choosing the items."""

from __future__ import annotations

import pytest

from evaluators.pairwise import combine, parse_pick, pending_items, planned_calls, render, shared_items


def test_a_verdict_is_read_from_the_reply_and_anything_else_is_an_error_naming_winner():
    assert parse_pick('{"winner": "b", "reasoning": "B is right"}') == ("B", "B is right")
    assert parse_pick('Sure:\n```json\n{"winner": "Tie"}\n```') == ("tie", "")
    for bad in ('{"winner": "C"}', '{"reasoning": "no pick"}', "A"):
        with pytest.raises(ValueError):
            parse_pick(bad)


def test_a_run_wins_only_when_both_orders_pick_it():
    assert combine("a", "a") == "a" and combine("b", "b") == "b"
    assert combine("a", "b") == combine("b", "a") == "tie"  # position bias: each order picked its first answer
    assert combine("a", "tie") == combine("tie", "tie") == "tie"


def test_items_are_the_first_answered_repetitions_both_runs_share_in_dataset_order():
    def res(item, rep, pos, error=None, output="x"):
        return {"item_id": item, "repetition": rep, "position": pos, "error": error, "output": output}

    a = [res("i2", 0, 2), res("i1", 1, 1, output="late"), res("i1", 0, 1, error="boom"), res("i0", 0, 0)]
    b = [res("i0", 0, 0), res("i1", 0, 1), res("i2", 0, 2, error="boom")]
    pairs = shared_items(a, b, limit=10)
    assert [(x["item_id"], x["output"]) for x, _ in pairs] == [("i0", "x"), ("i1", "late")]
    assert [x["item_id"] for x, _ in shared_items(a, b, limit=1)] == ["i0"]
    runs = {"A": a, "B": b, "C": b}
    assert planned_calls(pending_items(runs, 10, set())) == 2 * (2 + 2 + 2)


def test_only_items_not_judged_yet_are_pending_and_count_as_calls():
    def res(item, pos):
        return {"item_id": item, "repetition": 0, "position": pos, "output": item}

    runs = {"B": [res("i0", 0), res("i1", 1)], "A": [res("i0", 0), res("i1", 1)], "C": [res("i1", 1)]}
    pending = pending_items(runs, 10, {("A", "B", "i0"), ("A", "C", "i1"), ("B", "A", "i1")})  # (B, A) is no stored key
    assert {pair: [ra["item_id"] for ra, _ in items] for pair, items in pending.items()} == {
        ("A", "B"): ["i1"], ("A", "C"): [], ("B", "C"): ["i1"]}
    assert planned_calls(pending) == 2 * 2


def test_the_prompt_shows_the_reference_only_when_there_is_one():
    assert "Reference answer" not in render({"q": 1}, None, "x", "y")
    text = render({"q": 1}, "ref", "x", {"a": 1})
    assert text.index("Reference answer:\nref") < text.index("Answer A:\nx") < text.index('Answer B:\n{"a":1}')
