"""Criteria detection: from a prompt (system + user template), propose eval rules and rubrics.

Heuristics read format constraints that a prompt states outright (JSON, a schema or an example
object, word limits, citations, language, privacy, tone); an LLM, when given, adds the semantic
criteria a keyword cannot see. Every proposal is a valid eval rule — (evaluator name, config) that
``get_evaluator`` accepts — so a user can enable it as is.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators as jsonschema_validators

from evaluators.judge import extract_json_object
from evaluators.llm import JudgeError, JudgeGuard, LLMCall, LLMClient, chat_parsed
from evaluators.registry import evaluator_names, validate_config
from evaluators.rubrics import RUBRICS


@dataclass
class ProposedCriterion:
    """A proposed eval rule: score name, evaluator + config, the rubric in words, and why."""

    name: str
    evaluator: str
    config: dict[str, Any]
    rubric: str
    rationale: str
    source: Literal["heuristic", "llm"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10, "twenty": 20, "fifty": 50, "hundred": 100}
_LIMIT = re.compile(
    r"\b(?:under|below|at most|no more than|fewer than|less than|maximum(?: of)?|max(?:imum)?\.?|within|up to|limit(?:ed)? to)\s+"
    r"(\d+|" + "|".join(_NUMBER_WORDS) + r")\s+(words?|characters?|chars?|lines?|sentences?)\b",
    re.IGNORECASE,
)
_LIMIT_AFTER = re.compile(r"\b(\d+)\s+(words?|characters?|chars?|lines?)\s+or\s+(?:less|fewer)\b", re.IGNORECASE)
_LANGUAGE = re.compile(
    r"\b(?:respond|reply|answer|write|always respond)\s+(?:only\s+)?in\s+(English|French|Spanish|German|Italian|"
    r"Portuguese|Dutch|Japanese|Chinese|Korean|Arabic|Hindi|Russian|Polish|Turkish|Swedish)\b",
    re.IGNORECASE,
)


def _has(text: str, *words: str) -> bool:
    return any(re.search(rf"\b{w}\b", text, re.IGNORECASE) for w in words)


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Top-level JSON objects written in the prompt (fenced or inline), in order."""
    found: list[dict[str, Any]] = []
    pos = 0
    while (start := text.find("{", pos)) != -1:
        depth, end = 0, -1
        for j in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                end = j
                break
        if end < 0:
            break
        try:
            obj = orjson.loads(text[start : end + 1])
        except orjson.JSONDecodeError:
            pos = start + 1  # not JSON (e.g. a {{placeholder}}): look inside it
            continue
        if isinstance(obj, dict):
            found.append(obj)
        pos = end + 1
    return found


def _schema_from(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON Schema written in the prompt, or one derived from an example object (its keys required)."""
    if "properties" in obj or obj.get("type") == "object" or "$schema" in obj:
        try:
            jsonschema_validators.validator_for(obj).check_schema(obj)
            return obj
        except jsonschema_exceptions.SchemaError:
            return None
    if obj:
        return {"type": "object", "required": sorted(obj)}
    return None


def heuristic_criteria(system_prompt: str, user_template: str = "") -> list[ProposedCriterion]:
    """Criteria read from the prompt's own words. Deterministic; no model call."""
    text = f"{system_prompt}\n{user_template}"
    out: list[ProposedCriterion] = []

    def add(name: str, evaluator: str, config: dict[str, Any], rubric: str, rationale: str) -> None:
        out.append(ProposedCriterion(name, evaluator, config, rubric, rationale, "heuristic"))

    if _has(text, "json"):
        schema = next((s for s in map(_schema_from, _json_objects(text)) if s), None)
        add("json_valid", "json_valid", {}, "The output parses as JSON.", "the prompt asks for JSON output")
        if schema:
            add("json_schema", "json_schema", {"schema": schema},
                "The output is JSON with the structure the prompt specifies.",
                "the prompt shows the expected JSON structure")
    limit = _LIMIT.search(text) or _LIMIT_AFTER.search(text)
    if limit:
        raw, unit_word = limit.group(1).lower(), limit.group(2).lower()
        n = int(raw) if raw.isdigit() else _NUMBER_WORDS[raw]
        unit = "chars" if unit_word.startswith(("char",)) else "lines" if unit_word.startswith("line") else "words"
        if unit_word.startswith("sentence"):  # no sentence unit: ~25 words a sentence
            n, unit = n * 25, "words"
        add("length", "length", {"max": n, "unit": unit}, f"The output is at most {n} {unit}.",
            f"the prompt sets a limit: {limit.group(0)!r}")
    elif _has(text, "concise", "brief", "briefly", "succinct", "short", "terse"):
        add("length", "length", {"max": 150, "unit": "words"}, "The output is concise (at most 150 words).",
            "the prompt asks for a concise answer")
    if _has(text, "cite", "citation", "citations", "sources?", "context", "documents?", "passages?", "retrieved",
            "provided information", "based only on", "only use"):
        add("faithfulness", "llm_judge", {"rubric": "faithfulness", "score_name": "faithfulness"},
            RUBRICS["faithfulness"].criteria, "the prompt grounds answers in given context")
    if _has(text, "cite", "citation", "citations"):
        add("has_citation", "regex", {"pattern": r"\[(?:\d+|[^\]\n]{1,80})\]", "score_name": "has_citation"},
            "The output contains at least one citation marker such as [1].", "the prompt asks to cite sources")
    language = _LANGUAGE.search(text)
    if language:
        lang = language.group(1).capitalize()
        add(f"language_{lang.lower()}", "llm_judge",
            {"rubric": "custom", "criteria": f"Is the response written in {lang}? Score true if it is, false if not.",
             "score_type": "boolean", "score_name": f"language_{lang.lower()}"},
            f"The response is written in {lang}.", f"the prompt says {language.group(0)!r}")
    if _has(text, "pii", "personal (?:data|information)", "private", "confidential", "never reveal", "do not reveal",
            "don't reveal", "email address(?:es)?", "phone numbers?", "credit card", "api keys?", "secrets?"):
        add("pii", "pii", {}, "The output contains no personal data or secrets.",
            "the prompt handles personal or confidential data")
    if _has(text, "refuse", "decline", "off-topic", "only answer", "not allowed", "do not answer", "don't answer"):
        add("refusal", "refusal", {}, "Whether the model refused (expected only for out-of-scope requests).",
            "the prompt defines requests the model must decline")
    if _has(text, "polite", "politely", "professional", "friendly", "respectful", "empathetic", "courteous", "tone",
            "customers?"):
        add("toxicity", "llm_judge", {"rubric": "toxicity", "score_name": "toxicity"}, RUBRICS["toxicity"].criteria,
            "the prompt sets a tone for user-facing replies")
    if _has(text, "accurate", "accurately", "correct", "correctly", "factual", "facts"):
        add("correctness", "llm_judge", {"rubric": "correctness", "score_name": "correctness"},
            RUBRICS["correctness"].criteria, "the prompt stresses correctness (needs a reference answer per item)")
    add("helpfulness", "llm_judge", {"rubric": "helpfulness", "score_name": "helpfulness"},
        RUBRICS["helpfulness"].criteria, "a baseline for every assistant prompt")
    return out


CRITERIA_SYSTEM = (
    "You design evaluations for LLM applications. Given an application's prompt, propose the criteria its "
    "outputs should be checked against: only criteria the prompt implies, at most 6. For each, choose an "
    "evaluator and its config. Evaluators: exact_match/contains {expected}, regex {pattern}, json_valid {}, "
    "json_schema {schema}, length {max, min, unit: words|chars|lines}, refusal {}, pii {}, latency_budget {max_ms}, "
    "cost_budget {max_usd}, llm_judge {rubric: helpfulness|correctness|faithfulness|toxicity|custom, criteria "
    "(custom rubric text), score_type: numeric|boolean|categorical, choices}. Reply with only a JSON object: "
    '{"criteria": [{"name": "...", "evaluator": "...", "config": {...}, "rubric": "what a passing output '
    'looks like", "rationale": "which part of the prompt implies it"}]}'
)

# LLM proposals must not smuggle in model or endpoint settings: those are the project's choice.
_JUDGE_RUNTIME_KEYS = {"provider", "model", "base_url", "max_retries", "timeout_s"}


def _parse_llm_criteria(text: str) -> list[ProposedCriterion]:
    data = extract_json_object(text)
    items = data.get("criteria")
    if not isinstance(items, list):
        raise ValueError('the JSON object needs a "criteria" list')
    known = set(evaluator_names())
    out: list[ProposedCriterion] = []
    for item in items:
        if not isinstance(item, dict) or item.get("evaluator") not in known:
            continue  # an unknown evaluator is skipped, not fatal: the rest may be good
        config = {k: v for k, v in (item.get("config") or {}).items() if k not in _JUDGE_RUNTIME_KEYS}
        name = str(item.get("name") or item["evaluator"])
        config.setdefault("score_name", name)
        try:
            validate_config(item["evaluator"], config)
        except ValueError:
            continue
        out.append(ProposedCriterion(name, item["evaluator"], config, str(item.get("rubric", "")),
                                     str(item.get("rationale", "")), "llm"))
    if not out:
        raise ValueError("no proposed criterion was a valid evaluator config")
    return out


def _key(c: ProposedCriterion) -> tuple[str, str]:
    return c.evaluator, str(c.config.get("rubric") or c.config.get("criteria") or "")


def propose_criteria(
    system_prompt: str,
    user_template: str = "",
    *,
    llm: LLMClient | None = None,
    guard: JudgeGuard | None = None,
    project_id: str = "",
) -> tuple[list[ProposedCriterion], list[LLMCall]]:
    """Proposed eval rules for a prompt, and the model calls made (to record and cost).

    Heuristic criteria always come first; with ``llm``, its proposals are added where they do not
    duplicate one (same evaluator and rubric). If the model fails or replies unusably twice, the
    heuristic criteria are returned alone — proposal is advisory, so it degrades instead of failing.
    """
    criteria = heuristic_criteria(system_prompt, user_template)
    if llm is None:
        return criteria, []
    user = f"<system_prompt>\n{system_prompt}\n</system_prompt>\n\n<user_template>\n{user_template}\n</user_template>"
    try:
        proposed, calls = chat_parsed(llm, guard or JudgeGuard(), project_id, CRITERIA_SYSTEM,
                                      [{"role": "user", "content": user}], _parse_llm_criteria,
                                      'the JSON object {"criteria": [...]}')
    except JudgeError as err:
        return criteria, err.calls
    seen = {_key(c) for c in criteria}
    criteria += [c for c in proposed if _key(c) not in seen]
    return criteria, calls
