"""Asking the optimiser model for new prompts: the request it gets (the current best, its worst dev
cases with the evaluators' reasons, the scored history, a few train examples) and the reply it must give
(``{"candidates": [{"prompt": ..., "rationale": ...}]}``), checked before anything is spent on it."""

from __future__ import annotations

from typing import Any

import orjson

from evaluators.judge import extract_json_object
from evaluators.llm import LLMSettings
from evaluators.optimizer.prompt_store import variables

def model_settings(model: dict[str, Any]) -> LLMSettings:
    """The optimiser model's client settings from its spec (``ModelSpec``): ``params`` temperature and
    max_tokens (sampling on by default: the proposals should differ). ValidationError on a bad value."""
    params = model.get("params") or {}
    return LLMSettings(provider=model["provider"], model=model["model"], base_url=model.get("base_url"),
                       temperature=params.get("temperature", 1.0), max_tokens=params.get("max_tokens", 4096),
                       timeout_s=model.get("timeout_s", 60.0))


SYSTEM = (
    "You improve prompts for a language model. You are shown the current best prompt, the cases it gets "
    "most wrong on a development set with the evaluators' reasons, the prompts tried so far with their "
    "scores, and a few examples of the task. Propose new prompts that should score higher. Keep every "
    "{{variable}} placeholder of the current prompt exactly as written (they are filled from each case); "
    "add no new ones. Reply with only a JSON object: "
    '{"candidates": [{"prompt": <the new prompt>, "rationale": "<why it should do better>"}]}.'
)
_CLIP = 600  # characters of any one input / output / reason shown to the optimiser


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= _CLIP else text[:_CLIP] + " ..."


def worst_cases(rows: dict[str, dict[str, Any]], values: dict[str, float], n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` lowest-scoring dev runs, worst first, in dataset order on ties (each shows its score, so
    a prompt that gets everything right is shown right answers)."""
    ids = sorted(values, key=lambda i: (values[i], rows[i].get("position", 0)))[:n]
    out = []
    for i in ids:
        r = rows[i]
        out.append({"input": _clip(r.get("input")), "expected_output": _clip(r.get("expected_output")),
                    "output": _clip(r.get("output") if r.get("error") is None else f"(error: {r['error']})"),
                    "score": values[i],
                    "reasons": [_clip(f"{s['name']}: {s.get('reason') or ''}") for s in r.get("scores") or []]})
    return out


def build_messages(best: dict[str, Any], worst: list[dict[str, Any]], history: list[dict[str, Any]],
                   examples: list[dict[str, Any]], n: int) -> list[dict[str, str]]:
    """The user message for one round. ``best``: {"prompt", "dev_mean"}; ``history``: [{"prompt", "dev_mean"}]."""
    shape = "a string" if isinstance(best["prompt"], str) else 'a list of {"role", "content"} messages'
    body = {
        "current_best": {"prompt": best["prompt"], "dev_score": best["dev_mean"]},
        "worst_dev_cases": worst,
        "history": history,
        "task_examples": [{"input": _clip(e.get("input")), "expected_output": _clip(e.get("expected_output"))}
                          for e in examples],
    }
    ask = (f"Propose {n} new prompts. Each prompt must be {shape}, like the current one. Scores are means "
           f"over the development cases (higher is better).\n\n{orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()}")
    return [{"role": "user", "content": ask}]


def _well_formed(prompt: Any, like: Any) -> bool:
    if isinstance(like, str):
        return isinstance(prompt, str) and bool(prompt.strip())
    return (isinstance(prompt, list) and bool(prompt) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt))


def parse_candidates(text: str, base: Any, seen: list[Any], n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(usable, rejected) candidates from the optimiser's reply. A usable one has the base prompt's shape
    (text or messages) and exactly its variables, and is not a prompt already tried; at most ``n``.
    ValueError (so the model is asked once more) when the reply has no usable candidate."""
    data = extract_json_object(text)
    raw = data.get("candidates")
    if not isinstance(raw, list) or not raw:
        raise ValueError('the JSON object needs a non-empty "candidates" list')
    usable: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    want = variables(base)
    for c in raw:
        prompt = c.get("prompt") if isinstance(c, dict) else None
        if isinstance(prompt, list):  # keep only role and content: nothing else reaches the target
            prompt = [{"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m for m in prompt]
        if not _well_formed(prompt, base):
            rejected.append({"prompt": prompt, "reason": "not a prompt of the base version's shape"})
        elif variables(prompt) != want:
            rejected.append({"prompt": prompt, "reason": f"variables {sorted(variables(prompt))} differ from {sorted(want)}"})
        elif prompt in seen or any(prompt == u["prompt"] for u in usable):
            rejected.append({"prompt": prompt, "reason": "already tried"})
        elif len(usable) < n:
            rationale = c.get("rationale")
            usable.append({"prompt": prompt, "rationale": rationale[:2000] if isinstance(rationale, str) else ""})
    if not usable:
        raise ValueError("no usable candidate: " + "; ".join(r["reason"] for r in rejected))
    return usable, rejected
