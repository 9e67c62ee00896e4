"""Deterministic evaluators: matching, JSON, length, refusal, latency and cost budgets.

Pass/fail evaluators return a boolean score where True means "passed" (matched, valid, within budget);
detectors (refusal) return True when the thing was detected. The reason always says why.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators as jsonschema_validators
from pydantic import Field, field_validator, model_validator

from evaluators.base import EXPECTED_ATTRIBUTE, Evaluator, EvaluatorConfig, Score, SpanOrTrace, Subject, subject_of
from evaluators.registry import register

# Regexes run on model output we do not control; capping the text bounds the worst case of a
# user's pattern (Python's re has no timeout).
MAX_MATCH_CHARS = 200_000


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ExpectedSource(EvaluatorConfig):
    """Where the expected value comes from: ``expected`` in the rule, else a span attribute."""

    expected: Any = None
    expected_attribute: str = EXPECTED_ATTRIBUTE

    def resolve(self, subject: Subject) -> Any:
        return self.expected if self.expected is not None else subject.attribute(self.expected_attribute)


class ExpectedConfig(ExpectedSource):
    """An expected value compared as text, optionally ignoring case and whitespace differences."""

    case_sensitive: bool = True
    normalize_whitespace: bool = True

    def norm(self, text: str) -> str:
        if self.normalize_whitespace:
            text = " ".join(text.split())
        return text if self.case_sensitive else text.casefold()


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


@register
class ExactMatch(Evaluator[ExpectedConfig]):
    """Output equals the expected value (after optional whitespace / case normalisation)."""

    name = "exact_match"
    Config = ExpectedConfig

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        subject = subject_of(span_or_trace)
        expected = self.config.resolve(subject)
        if expected is None:
            return []  # nothing to compare against: no score rather than a false failure
        ok = self.config.norm(subject.output) == self.config.norm(_as_text(expected))
        reason = "output equals expected" if ok else f"expected {_clip(_as_text(expected))!r}, got {_clip(subject.output)!r}"
        return [self.score(ok, reason)]


class ContainsConfig(ExpectedConfig):
    mode: Literal["any", "all"] = "any"  # with a list of expected substrings
    negate: bool = False  # "must not contain"


@register
class Contains(Evaluator[ContainsConfig]):
    """Output contains the expected substring (or any/all of a list of them)."""

    name = "contains"
    Config = ContainsConfig

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        subject = subject_of(span_or_trace)
        expected = self.config.resolve(subject)
        if expected is None:
            return []
        needles = [_as_text(e) for e in expected] if isinstance(expected, list) else [_as_text(expected)]
        haystack = self.config.norm(subject.output)
        found = [n for n in needles if self.config.norm(n) in haystack]
        missing = [n for n in needles if n not in found]
        hit = bool(found) if self.config.mode == "any" else not missing
        ok = hit != self.config.negate
        if self.config.negate:
            reason = f"forbidden text present: {found!r}" if not ok else "no forbidden text present"
        else:
            reason = f"found {found!r}" if ok else f"missing {missing!r}"
        return [self.score(ok, _clip(reason, 300))]


class RegexConfig(ExpectedSource):
    pattern: str | None = None  # else the expected value is used as the pattern
    ignore_case: bool = False
    multiline: bool = False
    dotall: bool = False
    full_match: bool = False
    negate: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    def flags(self) -> int:
        return (
            (re.IGNORECASE if self.ignore_case else 0)
            | (re.MULTILINE if self.multiline else 0)
            | (re.DOTALL if self.dotall else 0)
        )


@register
class RegexMatch(Evaluator[RegexConfig]):
    """Output matches a regular expression (search by default, or full match)."""

    name = "regex"
    Config = RegexConfig

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        subject = subject_of(span_or_trace)
        pattern = self.config.pattern or self.config.resolve(subject)
        if pattern is None:
            return []
        try:
            regex = re.compile(_as_text(pattern), self.config.flags())
        except re.error as exc:  # a bad pattern from span attributes is the span's problem, say so
            raise ValueError(f"{self.config.expected_attribute}: invalid regular expression: {exc}") from None
        text = subject.output[:MAX_MATCH_CHARS]
        match = regex.fullmatch(text) if self.config.full_match else regex.search(text)
        ok = (match is not None) != self.config.negate
        if match is not None:
            reason = f"matched {_clip(match.group(0))!r} at {match.start()}"
        else:
            reason = f"no match for /{_clip(regex.pattern)}/"
        return [self.score(ok, reason)]


_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def parse_json_output(text: str, allow_code_fence: bool = True) -> Any:
    """Parse model output as JSON, optionally unwrapping a ```json fence. Raises ValueError."""
    if allow_code_fence:
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None


class JsonValidConfig(EvaluatorConfig):
    allow_code_fence: bool = True


@register
class JsonValid(Evaluator[JsonValidConfig]):
    """Output parses as JSON."""

    name = "json_valid"
    Config = JsonValidConfig

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        subject = subject_of(span_or_trace)
        try:
            parse_json_output(subject.output, self.config.allow_code_fence)
        except ValueError as exc:
            return [self.score(False, str(exc))]
        return [self.score(True, "valid JSON")]


class JsonSchemaConfig(JsonValidConfig):
    schema_: dict[str, Any] = Field(alias="schema")

    @field_validator("schema_")
    @classmethod
    def _is_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema_validators.validator_for(value).check_schema(value)
        except jsonschema_exceptions.SchemaError as exc:
            raise ValueError(f"invalid JSON Schema: {exc.message}") from None
        return value


@register
class JsonSchema(Evaluator[JsonSchemaConfig]):
    """Output is JSON that conforms to a JSON Schema (draft chosen by the schema's ``$schema``)."""

    name = "json_schema"
    Config = JsonSchemaConfig

    def __init__(self, config: JsonSchemaConfig | None = None, **deps: Any) -> None:
        super().__init__(config, **deps)
        schema = self.config.schema_
        self._validator = jsonschema_validators.validator_for(schema)(schema)

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        subject = subject_of(span_or_trace)
        try:
            document = parse_json_output(subject.output, self.config.allow_code_fence)
        except ValueError as exc:
            return [self.score(False, str(exc))]
        errors = sorted(self._validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        if not errors:
            return [self.score(True, "conforms to schema")]
        details = "; ".join(f"{e.json_path}: {_clip(e.message, 160)}" for e in errors[:3])
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        return [self.score(False, details + more)]


class LengthConfig(EvaluatorConfig):
    unit: Literal["chars", "words", "lines"] = "words"
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> LengthConfig:
        if self.min is None and self.max is None:
            raise ValueError("set min and/or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must be <= max")
        return self


@register
class LengthBounds(Evaluator[LengthConfig]):
    """Output length (chars, words or lines) lies within [min, max]."""

    name = "length"
    Config = LengthConfig

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        text = subject_of(span_or_trace).output
        unit = self.config.unit
        size = len(text) if unit == "chars" else len(text.split()) if unit == "words" else len(text.splitlines())
        lo, hi = self.config.min, self.config.max
        ok = (lo is None or size >= lo) and (hi is None or size <= hi)
        bounds = f"[{'' if lo is None else lo}, {'' if hi is None else hi}]"
        return [self.score(ok, f"{size} {unit}, bounds {bounds}")]


# Phrases models use when declining. Anchored loosely: a refusal usually opens the reply.
REFUSAL_PATTERNS = [
    r"\bI(?:'m| am) (?:sorry|afraid),? (?:but )?I (?:can(?:'|no)t|cannot|won't|will not|am unable to|'m unable to|'m not able to)",
    r"\bI (?:can(?:'|no)t|cannot|won't|will not) (?:help|assist|comply|provide|do that|fulfil|fulfill|answer|create|generate|share|support)",
    r"\bI(?:'m| am) (?:unable|not able) to (?:help|assist|comply|provide|do that|fulfil|fulfill|answer|create|generate|share)",
    r"\bI (?:must|have to) (?:decline|refuse)",
    r"\bAs an AI(?: language model)?,? I (?:can(?:'|no)t|cannot|don't|do not|am not able)",
    r"\b(?:against|violates?) (?:my|our|the) (?:guidelines|policies|policy|usage policies|content policy)",
    r"\bI(?:'m| am) not (?:comfortable|permitted|allowed) (?:to|with)",
]
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS), re.IGNORECASE)


class RefusalConfig(EvaluatorConfig):
    extra_patterns: list[str] = Field(default_factory=list)

    @field_validator("extra_patterns")
    @classmethod
    def _compile(cls, value: list[str]) -> list[str]:
        for i, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {i}: invalid regular expression: {exc}") from None
        return value


@register
class Refusal(Evaluator[RefusalConfig]):
    """Detects a refusal in the output (True = the model refused)."""

    name = "refusal"
    Config = RefusalConfig

    def __init__(self, config: RefusalConfig | None = None, **deps: Any) -> None:
        super().__init__(config, **deps)
        extra = [f"(?:{p})" for p in self.config.extra_patterns]
        self._regex = re.compile("|".join([_REFUSAL.pattern, *extra]), re.IGNORECASE) if extra else _REFUSAL

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        text = subject_of(span_or_trace).output[:MAX_MATCH_CHARS]
        match = self._regex.search(text)
        if match:
            return [self.score(True, f"refusal phrase: {_clip(match.group(0))!r}")]
        return [self.score(False, "no refusal phrase found")]


class LatencyBudgetConfig(EvaluatorConfig):
    max_ms: float = Field(gt=0)


@register
class LatencyBudget(Evaluator[LatencyBudgetConfig]):
    """Span (or trace wall-clock) duration is within ``max_ms``."""

    name = "latency_budget"
    Config = LatencyBudgetConfig

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        duration = subject_of(span_or_trace).duration_ms
        if duration is None:
            return []
        ok = duration <= self.config.max_ms
        return [self.score(ok, f"{duration:.1f} ms {'<=' if ok else '>'} budget {self.config.max_ms:g} ms")]


class CostBudgetConfig(EvaluatorConfig):
    max_usd: float = Field(gt=0)


@register
class CostBudget(Evaluator[CostBudgetConfig]):
    """Span cost (or the trace's summed cost) is within ``max_usd``. Unknown cost -> no score."""

    name = "cost_budget"
    Config = CostBudgetConfig

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        cost = subject_of(span_or_trace).cost
        if cost is None:
            return []  # unknown model: cost is NULL, and a budget verdict on it would be invented
        ok = cost <= self.config.max_usd
        return [self.score(ok, f"${cost:.6f} {'<=' if ok else '>'} budget ${self.config.max_usd:g}")]
