"""Heuristic evaluators against test vectors, built through the registry as eval rules are."""

from __future__ import annotations

import pytest

from evaluators import get_evaluator

from .conftest import make_span


def one(name: str, config: dict, span: dict):
    scores = get_evaluator(name, config).evaluate(span)
    assert len(scores) == 1
    return scores[0]


@pytest.mark.parametrize(
    "config, output, expected",
    [
        ({"expected": "Paris"}, "Paris", True),
        ({"expected": "Paris"}, "  Paris \n", True),  # whitespace normalised by default
        ({"expected": "Paris"}, "paris", False),
        ({"expected": "Paris", "case_sensitive": False}, "PARIS", True),
        ({"expected": "Paris", "normalize_whitespace": False}, "Paris ", False),
        ({"expected": "Paris"}, "Paris, France", False),
    ],
)
def test_exact_match(config, output, expected):
    assert one("exact_match", config, make_span(output)).value is expected


def test_expected_comes_from_span_attribute_when_not_configured():
    span = make_span("42", attributes={"evalforge.metadata.expected": "42"})
    assert one("exact_match", {}, span).value is True
    span = make_span("41", attributes={"evalforge.metadata.expected": "42"})
    score = one("exact_match", {}, span)
    assert score.value is False and "'42'" in score.reason


def test_no_expected_value_means_no_score():
    assert get_evaluator("exact_match", {}).evaluate(make_span("x")) == []


@pytest.mark.parametrize(
    "config, output, expected",
    [
        ({"expected": "refund"}, "We issued a refund today.", True),
        ({"expected": "refund"}, "We issued a credit.", False),
        ({"expected": ["refund", "credit"], "mode": "any"}, "a credit", True),
        ({"expected": ["refund", "credit"], "mode": "all"}, "a credit", False),
        ({"expected": ["refund", "credit"], "mode": "all"}, "credit and refund", True),
        ({"expected": "password", "negate": True}, "here you go", True),
        ({"expected": "password", "negate": True}, "the password is x", False),
        ({"expected": "REFUND", "case_sensitive": False}, "refund", True),
    ],
)
def test_contains(config, output, expected):
    assert one("contains", config, make_span(output)).value is expected


@pytest.mark.parametrize(
    "config, output, expected",
    [
        ({"pattern": r"\bORD-\d{6}\b"}, "Your order ORD-123456 shipped", True),
        ({"pattern": r"\bORD-\d{6}\b"}, "Your order ORD-12345 shipped", False),
        ({"pattern": r"\d+", "full_match": True}, "123", True),
        ({"pattern": r"\d+", "full_match": True}, "123a", False),
        ({"pattern": r"hello", "ignore_case": True}, "HELLO there", True),
        ({"pattern": r"sorry", "negate": True}, "Sure, here it is", True),
    ],
)
def test_regex(config, output, expected):
    assert one("regex", config, make_span(output)).value is expected


def test_regex_pattern_from_attribute():
    span = make_span("code: AB-12", attributes={"evalforge.metadata.expected": r"[A-Z]{2}-\d{2}"})
    assert one("regex", {}, span).value is True


@pytest.mark.parametrize(
    "output, expected",
    [
        ('{"a": 1, "b": [true, null]}', True),
        ("[1, 2, 3]", True),
        ('```json\n{"a": 1}\n```', True),
        ("{'a': 1}", False),
        ('{"a": 1,}', False),
        ("Sure! {\"a\": 1}", False),
        ("", False),
    ],
)
def test_json_valid(output, expected):
    assert one("json_valid", {}, make_span(output)).value is expected


def test_json_valid_can_refuse_code_fences():
    assert one("json_valid", {"allow_code_fence": False}, make_span('```json\n{"a": 1}\n```')).value is False


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "output, expected, reason_part",
    [
        ('{"name": "Ada", "age": 36}', True, "conforms"),
        ('{"name": "Ada"}', False, "'age' is a required property"),
        ('{"name": "Ada", "age": -1}', False, "$.age"),
        ('{"name": "Ada", "age": 3, "x": 1}', False, "Additional properties"),
        ("not json", False, "invalid JSON"),
    ],
)
def test_json_schema(output, expected, reason_part):
    score = one("json_schema", {"schema": SCHEMA}, make_span(output))
    assert score.value is expected
    assert reason_part in score.reason


def test_json_schema_rejects_an_invalid_schema_naming_the_field():
    with pytest.raises(ValueError, match=r"config\.schema"):
        get_evaluator("json_schema", {"schema": {"type": "not-a-type"}})


@pytest.mark.parametrize(
    "config, output, expected",
    [
        ({"max": 5}, "one two three four five", True),
        ({"max": 5}, "one two three four five six", False),
        ({"min": 2, "unit": "chars"}, "a", False),
        ({"min": 1, "max": 3, "unit": "lines"}, "a\nb\nc", True),
        ({"min": 1, "max": 3, "unit": "lines"}, "a\nb\nc\nd", False),
    ],
)
def test_length(config, output, expected):
    assert one("length", config, make_span(output)).value is expected


@pytest.mark.parametrize(
    "output, refused",
    [
        ("I'm sorry, but I can't help with that request.", True),
        ("I cannot assist with creating malware.", True),
        ("As an AI language model, I cannot provide medical advice.", True),
        ("I must decline to answer that.", True),
        ("That request violates our usage policies.", True),
        ("Sure! Here's a recipe for pancakes.", False),
        ("I'm sorry to hear about your cat. Here is how to find a vet.", False),
        ("You can't divide by zero, so the answer is undefined.", False),
    ],
)
def test_refusal(output, refused):
    assert one("refusal", {}, make_span(output)).value is refused


def test_latency_budget_on_span_and_trace():
    assert one("latency_budget", {"max_ms": 300}, make_span("x")).value is True
    assert one("latency_budget", {"max_ms": 200}, make_span("x")).value is False
    from datetime import timedelta

    root = make_span("x")
    child = make_span("y", span_id="c" * 16, parent_span_id=root["span_id"],
                      start_time=root["start_time"] + timedelta(milliseconds=200),
                      end_time=root["start_time"] + timedelta(milliseconds=900))
    score = one("latency_budget", {"max_ms": 800}, [child, root])  # trace wall time: 900 ms
    assert score.value is False and "900.0 ms" in score.reason


def test_cost_budget_sums_the_trace_and_skips_unknown_cost():
    root = make_span("x", cost=0.004)
    child = make_span("y", span_id="c" * 16, parent_span_id=root["span_id"], cost=0.003)
    assert one("cost_budget", {"max_usd": 0.01}, root).value is True
    assert one("cost_budget", {"max_usd": 0.005}, [root, child]).value is False
    assert get_evaluator("cost_budget", {"max_usd": 1}).evaluate(make_span("x", cost=None)) == []


def test_chat_message_payloads_are_unwrapped():
    output = '[{"role": "assistant", "content": "Paris"}]'
    assert one("exact_match", {"expected": "Paris"}, make_span(output)).value is True


def test_offloaded_payload_is_an_error_not_a_false_score():
    span = make_span("", output_ref="blobs/x")
    with pytest.raises(ValueError, match="offloaded"):
        get_evaluator("json_valid", {}).evaluate(span)
