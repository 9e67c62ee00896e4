"""LLM-as-judge: a rubric rendered to a prompt, a JSON verdict parsed into a Score.

The judge must answer ``{"score": ..., "reasoning": ...}``. A reply that cannot be used is sent back
once with the parse error (one retry); a second bad reply raises ``JudgeError(malformed_output)``.
The judge's reasoning becomes the score's reason and its model calls ride on ``Score.judge_calls``
(and on ``JudgeError.calls`` when it fails) so the worker can record and cost them.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import orjson
from pydantic import Field, model_validator

from evaluators.base import (
    CONTEXT_ATTRIBUTE,
    EXPECTED_ATTRIBUTE,
    Evaluator,
    EvaluatorConfig,
    Score,
    SpanOrTrace,
    Subject,
    subject_of,
)
from evaluators.llm import JudgeGuard, LLMCall, LLMClient, LLMSettings, chat_parsed
from evaluators.registry import register
from evaluators.rubrics import RUBRICS, SYSTEM_PROMPT, ScoreType, default_template, placeholders, render, score_spec

_TRUE = {"true", "yes", "pass", "1"}
_FALSE = {"false", "no", "fail", "0"}


def extract_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model reply: the whole reply, a fenced block, or the outermost {...}."""
    candidates = [text.strip()]
    fence = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    if fence:
        candidates.append(fence.group(1))
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            data = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return data
    raise ValueError("reply is not a JSON object")


def parse_judgment(
    text: str, score_type: ScoreType, scale: tuple[float, float] = (1, 5), choices: list[str] | None = None
) -> tuple[bool | str | float, str]:
    """Parse ``{"score": ..., "reasoning": ...}`` into (value, reasoning). ValueError says what is wrong."""
    data = extract_json_object(text)
    if "score" not in data:
        raise ValueError('the JSON object has no "score" key')
    raw = data["score"]
    reasoning = data.get("reasoning", data.get("reason", ""))
    reasoning = reasoning if isinstance(reasoning, str) else orjson.dumps(reasoning).decode()
    if score_type == "boolean":
        if isinstance(raw, bool):
            return raw, reasoning
        key = str(raw).strip().lower()
        if key in _TRUE or key in _FALSE:
            return key in _TRUE, reasoning
        raise ValueError(f'"score" must be true or false, got {raw!r}')
    if score_type == "categorical":
        by_fold = {c.casefold(): c for c in choices or []}
        if isinstance(raw, str) and raw.strip().casefold() in by_fold:
            return by_fold[raw.strip().casefold()], reasoning
        raise ValueError(f'"score" must be one of {choices}, got {raw!r}')
    if isinstance(raw, bool):
        raise ValueError(f'"score" must be a number, got {raw!r}')
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f'"score" must be a number, got {raw!r}') from None
    lo, hi = scale
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f'"score" must be between {lo:g} and {hi:g}, got {raw!r}')
    return value, reasoning


class JudgeConfig(EvaluatorConfig, LLMSettings):
    """An LLM-judge rule: which model (``LLMSettings``), which rubric, what score."""

    rubric: str = "helpfulness"  # a name in RUBRICS, or "custom" with criteria / template
    criteria: str | None = None  # custom criteria text (replaces the rubric's)
    template: str | None = None  # full user prompt with {{input}} {{output}} {{reference}} {{context}}
    score_type: ScoreType | None = None  # default: the rubric's
    # Extra blocks a custom rubric shows the judge (built-in rubrics and templates know their own).
    requires: list[Literal["reference", "context"]] | None = None
    scale_min: float = 1
    scale_max: float = 5
    choices: list[str] | None = Field(default=None, min_length=2)
    reference: str | None = None
    reference_attribute: str = EXPECTED_ATTRIBUTE
    context: str | None = None
    context_attribute: str = CONTEXT_ATTRIBUTE

    @model_validator(mode="after")
    def _consistent(self) -> JudgeConfig:
        if self.rubric != "custom" and self.rubric not in RUBRICS:
            raise ValueError(f"rubric: unknown rubric {self.rubric!r}; known: {', '.join(RUBRICS)}, custom")
        if self.rubric == "custom" and not (self.criteria or self.template):
            raise ValueError("criteria: a custom rubric needs criteria or template")
        if self.scale_min >= self.scale_max:
            raise ValueError("scale_max: must be greater than scale_min")
        if self.resolved_score_type == "categorical" and not self.choices:
            raise ValueError("choices: a categorical score needs choices")
        return self

    @property
    def resolved_score_type(self) -> ScoreType:
        if self.score_type:
            return self.score_type
        return RUBRICS[self.rubric].score_type if self.rubric in RUBRICS else "numeric"


@register
class LLMJudge(Evaluator[JudgeConfig]):
    """Scores a span with a judge model and a rubric (helpfulness, correctness, faithfulness, toxicity, custom).

    Runtime deps: ``guard`` (JudgeGuard: per-project rate limit and spend cap), ``api_key``, ``egress``
    (the settings of the egress guard its calls go through).
    """

    name = "llm_judge"
    version = "1"
    Config = JudgeConfig

    def __init__(
        self, config: JudgeConfig | None = None, *, guard: JudgeGuard | None = None, api_key: str | None = None,
        egress: Any = None, **deps: Any
    ) -> None:
        super().__init__(config, **deps)
        self.guard = guard or JudgeGuard()
        self.client = LLMClient(self.config, api_key=api_key, egress=egress)
        cfg = self.config
        rubric = RUBRICS.get(cfg.rubric)
        self.score_type: ScoreType = cfg.resolved_score_type
        self.scale = (cfg.scale_min, cfg.scale_max)
        self.criteria = cfg.criteria or (rubric.criteria if rubric else "")
        if cfg.template:
            self.template = cfg.template
            self.requires: tuple[str, ...] = tuple(v for v in ("reference", "context") if v in placeholders(cfg.template))
        else:
            self.requires = tuple(cfg.requires) if cfg.requires is not None else (rubric.requires if rubric else ())
            self.template = default_template(self.criteria, self.requires)
        self.system = SYSTEM_PROMPT.format(score_spec=score_spec(self.score_type, self.scale, cfg.choices))

    def _values(self, subject: Subject) -> dict[str, str] | None:
        cfg = self.config
        values = {"input": subject.input, "output": subject.output}
        if "reference" in self.requires:
            ref = cfg.reference if cfg.reference is not None else subject.attribute(cfg.reference_attribute)
            if ref is None:
                return None
            values["reference"] = ref if isinstance(ref, str) else orjson.dumps(ref).decode()
        if "context" in self.requires:
            ctx: Any = cfg.context if cfg.context is not None else subject.attribute(cfg.context_attribute)
            if ctx is None and subject.context:
                ctx = "\n\n".join(subject.context)  # retriever spans of the trace
            if ctx is None:
                return None
            values["context"] = ctx if isinstance(ctx, str) else orjson.dumps(ctx).decode()
        return values

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        """One judge verdict; ``[]`` when the rubric's reference / context is unavailable. Raises JudgeError."""
        subject = subject_of(span_or_trace)
        values = self._values(subject)
        if values is None:
            return []
        messages = [{"role": "user", "content": render(self.template, values)}]
        value, reasoning, calls = self.judge(subject.project_id, messages)
        return [self.score(value, reasoning, judge_calls=calls)]

    def judge(self, project_id: str, messages: list[dict[str, str]]) -> tuple[bool | str | float, str, list[LLMCall]]:
        """Ask, parse, and on a malformed reply ask once more with the parse error."""
        spec = score_spec(self.score_type, self.scale, self.config.choices)
        (value, reasoning), calls = chat_parsed(
            self.client,
            self.guard,
            project_id,
            self.system,
            messages,
            lambda text: parse_judgment(text, self.score_type, self.scale, self.config.choices),
            f'the JSON object {{"reasoning": "...", "score": {spec}}}',
        )
        return value, reasoning, calls
