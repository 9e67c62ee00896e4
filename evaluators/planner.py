"""An experiment plan from a goal in plain language: datasets, evaluators and rubrics, targets, repetitions.

With a model configured (the judge's LLM settings), the model proposes the plan as JSON and we keep
only what exists: benchmark names from the registry, the project's own dataset ids, registry
evaluators. Without one, or when the model fails or answers unusably, a keyword heuristic plans
instead; the answer says which (``source``) and why (``llm_error``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from evaluators import benchmarks
from evaluators.registry import evaluator_names

# goal keywords -> benchmarks that measure it
_TOPICS: list[tuple[str, list[str], str]] = [
    (r"\b(math|arithmetic|word problems?|calculat|reasoning)", ["gsm8k"], "multi-step arithmetic reasoning"),
    (r"\b(code|coding|python|program|function|bug)", ["humaneval", "mbpp"], "writing code that passes unit tests"),
    (r"\b(knowledge|trivia|exam|facts?|subjects?|mmlu)", ["mmlu"], "broad academic knowledge"),
    (r"\b(science|physics|chemistry|biology)", ["arc_challenge", "arc_easy"], "grade-school science questions"),
    (r"\b(truth|hallucinat|misconception|honest|factual)", ["truthfulqa_mc1"], "resisting common misconceptions"),
    (r"\b(reading|comprehension|passage|document|rag|retriev)", ["boolq"], "answering from a given passage"),
    (r"\b(common ?sense|everyday|plausib)", ["hellaswag"], "commonsense sentence completion"),
]
_MODEL = re.compile(r"\b(gpt-[\w.-]+|o[134](?:-[\w.-]+)?|claude-[\w.-]+|gemini-[\w.-]+|llama[\w.-]*|mistral[\w.-]*|"
                    r"qwen[\w.-]*|deepseek[\w.-]*)", re.I)
_REPEAT = re.compile(r"\b(consisten|stable|stability|flaky|variance|nondetermin|reliab|robust)", re.I)
_JUDGED = re.compile(r"\b(tone|helpful|polite|quality|summar|style|empath|safe|toxic|support|chat|assistant|answer)",
                     re.I)
_JSON = re.compile(r"\b(json|schema|structured|extract)", re.I)
_WORD = re.compile(r"[a-z0-9]{4,}")


def heuristic_plan(goal: str, datasets: list[dict[str, Any]]) -> dict[str, Any]:
    text = goal.lower()
    chosen: list[dict[str, Any]] = []
    goal_words = set(_WORD.findall(text))
    for d in datasets:  # the project's own data first: it is what the user's app actually sees
        overlap = goal_words & set(_WORD.findall(f"{d.get('name', '')} {d.get('description', '')}".lower()))
        if overlap:
            chosen.append({"kind": "existing", "dataset_id": d["id"], "name": d["name"],
                           "why": f"your dataset matches: {', '.join(sorted(overlap))}"})
    known = {b["name"] for b in benchmarks.list_benchmarks()}
    for pattern, names, what in _TOPICS:
        if re.search(pattern, text):
            for name in names:
                if name in known and not any(c.get("name") == name for c in chosen):
                    chosen.append({"kind": "benchmark", "name": name, "limit": 200, "seed": 0,
                                   "why": f"standard benchmark for {what}"})
    if not chosen:
        chosen.append({"kind": "synthetic", "size": 50, "description": f"test cases generated for: {goal}",
                       "why": "no dataset or benchmark matches the goal; generate cases, then review them"})
    evaluators = _heuristic_evaluators(goal, chosen)
    models = sorted({m.lower() for m in _MODEL.findall(goal)})
    targets = [{"model": m, "provider": "anthropic" if m.startswith("claude") else "openai"} for m in models]
    repetitions = 5 if _REPEAT.search(goal) else 3 if len(targets) > 1 else 1
    return {"datasets": chosen, "evaluators": evaluators,
            "targets": targets or [{"model": "<the model or agent you ship>", "provider": "openai"}],
            "repetitions": repetitions,
            "notes": ("Compare targets on the same items; the compare endpoint tests significance."
                      if len(targets) > 1 else "Run once per candidate target, then compare.")}


def _heuristic_evaluators(goal: str, chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if any(c["kind"] == "benchmark" for c in chosen):
        out.append({"evaluator": "benchmark", "config": {}, "rubric": None,
                    "why": "each benchmark's own scorer (letter accuracy, final number, pass@k)"})
    names = set(evaluator_names())
    if any(c["kind"] != "benchmark" for c in chosen) and "exact_match" in names:
        out.append({"evaluator": "exact_match", "config": {}, "rubric": None,
                    "why": "items with an expected output: exact agreement"})
    if _JSON.search(goal) and "json_schema" in names:
        out.append({"evaluator": "json_schema", "config": {"schema": {"type": "object"}}, "rubric": None,
                    "why": "structured output must parse and match the schema (fill in yours)"})
    if _JUDGED.search(goal) and "llm_judge" in names:
        out.append({"evaluator": "llm_judge", "config": {}, "why": "qualities no string match can check",
                    "rubric": f"Score 1-5 how well the answer serves this goal: {goal}. 5 = fully, correct and "
                              "clear; 3 = partly; 1 = not at all or wrong."})
    return out


# --- the model's plan -----------------------------------------------------------------------------

SYSTEM = """You plan evaluations of LLM applications. Reply with one JSON object only:
{"datasets": [{"kind": "existing", "dataset_id": str, "why": str} | {"kind": "benchmark", "name": str,
  "limit": int, "why": str} | {"kind": "synthetic", "size": int, "description": str, "why": str}],
 "evaluators": [{"evaluator": str, "config": object, "rubric": str | null, "why": str}],
 "targets": [{"provider": "openai" | "anthropic", "model": str}], "repetitions": int, "notes": str}
Use only the benchmarks, datasets and evaluators listed (evaluator "benchmark" = the benchmark's own scorer)."""


def llm_messages(goal: str, datasets: list[dict[str, Any]]) -> list[dict[str, str]]:
    context = {"benchmarks": [{k: b[k] for k in ("name", "description", "metric")} for b in benchmarks.list_benchmarks()],
               "datasets": [{"dataset_id": d["id"], "name": d["name"], "items": d.get("items")} for d in datasets],
               "evaluators": ["benchmark", *evaluator_names()]}
    return [{"role": "user", "content": f"Goal: {goal}\n\nAvailable:\n{json.dumps(context)}"}]


def parse_llm_plan(text: str, datasets: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The model's plan with anything that does not exist dropped (and listed). ValueError if unusable."""
    match = re.search(r"\{.*\}", text or "", re.S)
    if not match:
        raise ValueError("no JSON object in the reply")
    try:
        raw = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("the plan must be a JSON object")
    dropped: list[str] = []
    known_benchmarks = {b["name"] for b in benchmarks.list_benchmarks()}
    ids = {d["id"]: d for d in datasets}
    kept = []
    for d in raw.get("datasets") or []:
        kind = d.get("kind") if isinstance(d, dict) else None
        if kind == "benchmark" and d.get("name") in known_benchmarks:
            kept.append({**d, "limit": _int(d.get("limit"), 200, 1, 100_000), "seed": 0})
        elif kind == "existing" and d.get("dataset_id") in ids:
            kept.append({**d, "name": ids[d["dataset_id"]]["name"]})
        elif kind == "synthetic" and d.get("description"):
            kept.append({**d, "size": _int(d.get("size"), 50, 1, 1000)})
        else:
            dropped.append(f"dataset {json.dumps(d)[:200]}")
    evaluators = []
    allowed = {"benchmark", *evaluator_names()}
    for e in raw.get("evaluators") or []:
        if isinstance(e, dict) and e.get("evaluator") in allowed:
            evaluators.append({"evaluator": e["evaluator"], "config": e.get("config") if isinstance(e.get("config"), dict) else {},
                               "rubric": e.get("rubric") if isinstance(e.get("rubric"), str) else None,
                               "why": str(e.get("why") or "")})
        else:
            dropped.append(f"evaluator {json.dumps(e)[:200]}")
    if not kept or not evaluators:
        raise ValueError("the plan needs at least one known dataset or benchmark and one known evaluator")
    targets = [{"provider": t.get("provider") if t.get("provider") in ("openai", "anthropic") else "openai",
                "model": str(t["model"])} for t in raw.get("targets") or [] if isinstance(t, dict) and t.get("model")]
    return {"datasets": kept, "evaluators": evaluators, "targets": targets,
            "repetitions": _int(raw.get("repetitions"), 1, 1, 20), "notes": str(raw.get("notes") or "")}, dropped


def _int(value: Any, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value), low), high)
    except (TypeError, ValueError):
        return default
