"""Synthetic test generation: heuristic rows and edge cases, and model-written rows over the Anthropic protocol."""

from __future__ import annotations

import json

import pytest

from evaluators import LLMClient, LLMSettings, generate_tests, template_variables
from evaluators.synthetic import EDGE_CASES

from .fake_llm import Reply
from tests.loopback import LOOPBACK_EGRESS

TEMPLATE = "Answer the customer's question using the context.\nQuestion: {{question}}\nContext: {{context}}"


@pytest.mark.parametrize(
    "template, variables",
    [
        (TEMPLATE, ["question", "context"]),
        ("Translate {text} into {language}. Output JSON like {\"t\": 1}.", ["text", "language"]),
        ("{{ name }} and {{name}} again", ["name"]),
        ("No variables here", []),
    ],
)
def test_template_variables(template, variables):
    assert template_variables(template) == variables


def test_heuristic_rows_and_edge_cases():
    rows, calls = generate_tests(TEMPLATE, n=3)
    assert calls == []
    typical = [r for r in rows if "typical" in r.tags]
    edges = [r for r in rows if "edge_case" in r.tags]
    assert len(typical) == 3 and len({r.input["question"] for r in typical}) == 3
    assert all(set(r.input) == {"question", "context"} for r in rows)
    assert {t for r in edges for t in r.tags if t.startswith("edge:")} == {f"edge:{tag}" for tag, _ in EDGE_CASES}
    by_tag = {next(t for t in r.tags if t.startswith("edge:")): r.input["question"] for r in edges}
    assert by_tag["edge:empty"] == ""
    assert len(by_tag["edge:very_long"]) > 10_000
    assert "Ignore all previous instructions" in by_tag["edge:injection"]
    assert any(ord(ch) > 0x4E00 for ch in by_tag["edge:unicode"])
    assert rows[0].to_dict() == {"input": rows[0].input, "expected": None, "tags": ["typical", "heuristic"]}


def test_template_without_variables_uses_a_single_input():
    rows, _ = generate_tests("Tell me a joke.", n=1, include_edge_cases=False)
    assert [set(r.input) for r in rows] == [{"input"}]


def anthropic_llm(fake_llm) -> LLMClient:
    return LLMClient(LLMSettings(provider="anthropic", model="claude-test", base_url=fake_llm.anthropic_base_url,
                                 max_retries=0), api_key="k", egress=LOOPBACK_EGRESS)


def test_model_written_rows_are_validated(fake_llm):
    fake_llm.script = [Reply(json.dumps({"rows": [
        {"input": {"question": "Do you ship to Canada?", "context": "We ship to the US and Canada."},
         "expected": "Yes, we ship to Canada.", "tags": ["shipping"]},
        {"input": {"question": "Missing context"}, "expected": None},  # lacks a variable: dropped
        {"input": {"question": "Return window?", "context": "Returns within 30 days."}, "expected": None, "tags": []},
    ]}))]
    rows, calls = generate_tests(TEMPLATE, "You are a support bot.", n=3, llm=anthropic_llm(fake_llm))
    assert len(calls) == 1 and calls[0].provider == "anthropic"
    model_rows = [r for r in rows if "llm" in r.tags]
    assert [r.input["question"] for r in model_rows] == ["Do you ship to Canada?", "Return window?"]
    assert model_rows[0].expected == "Yes, we ship to Canada." and "shipping" in model_rows[0].tags
    assert sum("edge_case" in r.tags for r in rows) == len(EDGE_CASES)
    content = fake_llm.requests[0].body["messages"][0]["content"]
    assert "Variables: question, context. Write 3 rows." in content and "You are a support bot." in content


def test_unusable_model_reply_falls_back_to_heuristic_rows(fake_llm):
    fake_llm.script = [Reply('{"rows": "lots"}'), Reply('{"rows": [{"input": {}}]}')]
    rows, calls = generate_tests(TEMPLATE, n=2, llm=anthropic_llm(fake_llm), include_edge_cases=False)
    assert len(calls) == 2 and len(rows) == 2 and all("heuristic" in r.tags for r in rows)
    assert 'needs a "rows" list' in fake_llm.requests[1].body["messages"][-1]["content"]
