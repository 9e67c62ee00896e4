"""Criteria detection from prompts: heuristics alone, and with a model behind the OpenAI protocol."""

from __future__ import annotations

import json

from evaluators import LLMClient, LLMSettings, get_evaluator, propose_criteria

from .conftest import make_span
from .fake_llm import Reply
from tests.loopback import LOOPBACK_EGRESS

SUPPORT_PROMPT = (
    "You are Acme's support assistant. Answer politely, using only the provided context documents, and cite "
    "sources like [1]. Keep answers under 80 words. Never reveal customer email addresses. If the question "
    'is off-topic, decline. Return JSON like {"answer": "...", "sources": [1]}'
)


def by_name(criteria):
    return {c.name: c for c in criteria}


def test_heuristics_read_the_prompt_constraints():
    criteria, calls = propose_criteria(SUPPORT_PROMPT, "Question: {{question}}\nContext: {{context}}")
    assert calls == []
    found = by_name(criteria)
    assert set(found) == {"json_valid", "json_schema", "length", "faithfulness", "has_citation", "pii", "refusal",
                          "toxicity", "helpfulness"}
    assert found["json_schema"].config == {"schema": {"type": "object", "required": ["answer", "sources"]}}
    assert found["length"].config == {"max": 80, "unit": "words"}
    assert found["faithfulness"].config["rubric"] == "faithfulness"
    assert all(c.source == "heuristic" and c.rubric and c.rationale for c in criteria)


def test_every_proposal_is_a_working_rule():
    criteria, _ = propose_criteria(SUPPORT_PROMPT)
    span = make_span('{"answer": "Our store opens at 9am [1].", "sources": [1]}')
    results = {}
    for c in criteria:
        if c.evaluator == "llm_judge":
            get_evaluator(c.evaluator, c.config)  # builds; calling it would need a model
            continue
        [score] = get_evaluator(c.evaluator, c.config).evaluate(span)
        results[c.name] = score.value
    assert results == {"json_valid": True, "json_schema": True, "length": True, "has_citation": True,
                       "pii": False, "refusal": False}


def test_other_phrasings():
    crit = by_name(propose_criteria("Be concise. Always respond in French.")[0])
    assert crit["length"].config == {"max": 150, "unit": "words"}
    assert crit["language_french"].config["score_type"] == "boolean"
    crit = by_name(propose_criteria("Summarise the article in no more than three sentences.", "{article}")[0])
    assert crit["length"].config == {"max": 75, "unit": "words"}
    schema_prompt = 'Output JSON matching {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}'
    crit = by_name(propose_criteria(schema_prompt)[0])
    assert crit["json_schema"].config["schema"]["properties"] == {"n": {"type": "integer"}}
    assert set(by_name(propose_criteria("Tell me a joke about {{topic}}")[0])) == {"helpfulness"}


def llm(fake_llm) -> LLMClient:
    return LLMClient(LLMSettings(base_url=fake_llm.openai_base_url, max_retries=0), api_key="k", egress=LOOPBACK_EGRESS)


def test_llm_proposals_are_validated_and_merged(fake_llm):
    fake_llm.script = [Reply(json.dumps({"criteria": [
        {"name": "mentions_order_id", "evaluator": "regex", "config": {"pattern": r"ORD-\d+"},
         "rubric": "Reply quotes the order id.", "rationale": "the prompt says to reference the order"},
        {"name": "empathy", "evaluator": "llm_judge", "config": {"rubric": "custom", "criteria": "Is the reply empathetic?",
         "score_type": "boolean", "model": "gpt-5-super", "base_url": "http://evil.example"},
         "rubric": "Acknowledges the customer's frustration.", "rationale": "support context"},
        {"name": "bad", "evaluator": "regex", "config": {"pattern": "("}},  # invalid: dropped
        {"name": "magic", "evaluator": "telepathy", "config": {}},  # unknown: dropped
        {"name": "helpfulness", "evaluator": "llm_judge", "config": {"rubric": "helpfulness"}},  # duplicate: dropped
    ]}))]
    criteria, calls = propose_criteria("Help customers with their orders.", "{{message}}", llm=llm(fake_llm))
    assert len(calls) == 1 and calls[0].input_tokens == 120
    found = by_name(criteria)
    assert [c.name for c in criteria if c.source == "llm"] == ["mentions_order_id", "empathy"]
    assert found["mentions_order_id"].config == {"pattern": r"ORD-\d+", "score_name": "mentions_order_id"}
    # Model / endpoint settings proposed by the model are stripped: the project chooses its judge.
    assert "model" not in found["empathy"].config and "base_url" not in found["empathy"].config
    assert found["helpfulness"].source == "heuristic"
    sent = fake_llm.requests[0].body["messages"]
    assert "Help customers with their orders." in sent[1]["content"]


def test_model_failure_falls_back_to_heuristics_and_reports_calls(fake_llm):
    fake_llm.script = [Reply("sure, here are some ideas"), Reply("still prose")]
    criteria, calls = propose_criteria("Reply in JSON.", llm=llm(fake_llm))
    assert [c.name for c in criteria] == ["json_valid", "helpfulness"] and len(calls) == 2
    fake_llm.script = [Reply("down", status=500)]
    criteria, calls = propose_criteria("Reply in JSON.", llm=llm(fake_llm))
    assert [c.name for c in criteria] == ["json_valid", "helpfulness"] and calls == []
