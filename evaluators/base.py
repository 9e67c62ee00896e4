"""The evaluator contract: what an evaluator receives, what it returns, and how a result becomes a row.

An evaluator takes one canonical span record (``core.span``) or a whole trace (a list of span records)
and returns ``list[Score]``. A ``Score`` knows its data type from its value (bool -> boolean,
str -> categorical, number -> numeric) and turns into a ``scores`` table row with ``to_row``.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict

SpanRecord = Mapping[str, Any]
SpanOrTrace = SpanRecord | Sequence[SpanRecord]

# The attribute under which a span carries its expected answer (set by the SDK from metadata).
EXPECTED_ATTRIBUTE = "evalforge.metadata.expected"
CONTEXT_ATTRIBUTE = "evalforge.metadata.context"


@dataclass
class Score:
    """One evaluation result.

    ``value`` is a bool (boolean score), a str (categorical) or an int/float (numeric).
    ``reason`` is the human-readable why (the judge's reasoning for LLM judges).
    ``judge_calls`` is set by LLM judges: the judge's own model calls (``evaluators.llm.LLMCall``; two
    when the first reply was malformed), so the caller can record each as a span and cost it.
    """

    name: str
    value: bool | str | float | int
    reason: str = ""
    evaluator: str = ""
    evaluator_version: str = ""
    judge_calls: list[Any] = field(default_factory=list)

    @property
    def data_type(self) -> str:
        """``numeric`` | ``categorical`` | ``boolean``, derived from the value's type."""
        if isinstance(self.value, bool):
            return "boolean"
        if isinstance(self.value, str):
            return "categorical"
        if isinstance(self.value, (int, float)):
            return "numeric"
        raise TypeError(f"score value must be bool, str or number, not {type(self.value).__name__}")

    def to_row(
        self,
        project_id: str,
        trace_id: str,
        span_id: str,
        *,
        timestamp: datetime | None = None,
        score_id: str | None = None,
    ) -> dict[str, Any]:
        """A dict with exactly the ``scores`` table columns (infra/clickhouse/0002_scores.sql).

        ``score_id`` defaults to a hash of (project, trace, span, score name, evaluator), so re-running
        the same evaluator on the same span replaces its earlier row instead of adding one.
        """
        data_type = self.data_type
        if data_type == "numeric" and not math.isfinite(float(self.value)):
            raise ValueError(f"score {self.name!r}: numeric value must be finite, got {self.value!r}")
        if score_id is None:
            key = "\x1f".join((project_id, trace_id, span_id, self.name, self.evaluator))
            score_id = hashlib.sha256(key.encode()).hexdigest()[:32]
        if data_type == "boolean":
            value, string_value = (1.0 if self.value else 0.0), ("true" if self.value else "false")
        elif data_type == "categorical":
            value, string_value = None, str(self.value)  # categorical: the value is a str
        else:
            value, string_value = float(self.value), ""
        return {
            "project_id": project_id,
            "score_id": score_id,
            "trace_id": trace_id,
            "span_id": span_id,
            "name": self.name,
            "data_type": data_type,
            "value": value,
            "string_value": string_value,
            "comment": self.reason,
            "source": "evaluator",
            "evaluator": self.evaluator,
            "evaluator_version": self.evaluator_version,
            "timestamp": timestamp or datetime.now(timezone.utc),
        }


class EvaluatorConfig(BaseModel):
    """Base for every evaluator's config: unknown keys are errors, so typos are caught at rule creation."""

    model_config = ConfigDict(extra="forbid")

    score_name: str | None = None  # defaults to the evaluator's name


ConfigT = TypeVar("ConfigT", bound=EvaluatorConfig)


class Evaluator(ABC, Generic[ConfigT]):
    """Base class: subclasses set ``name``, ``version``, ``Config`` (the class of their ``ConfigT``)
    and implement ``evaluate``."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    Config: ClassVar[type[EvaluatorConfig]] = EvaluatorConfig

    def __init__(self, config: ConfigT | None = None, **deps: Any) -> None:
        # deps: runtime collaborators (e.g. an LLM judge's guard); evaluators that need none ignore
        # them, so a worker can pass the same ones to every evaluator it builds.
        self.config: ConfigT = config if config is not None else self.Config()  # type: ignore[assignment]

    @abstractmethod
    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        """Score one span record or a trace (list of span records). ``[]`` means nothing to score."""

    async def aevaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        """Async form for workers on an event loop; runs ``evaluate`` in a thread (it may block on I/O)."""
        import asyncio

        return await asyncio.to_thread(self.evaluate, span_or_trace)

    def score(self, value: bool | str | float | int, reason: str = "", **extra: Any) -> Score:
        """Build a Score stamped with this evaluator's score name, name and version."""
        return Score(
            name=self.config.score_name or self.name,
            value=value,
            reason=reason,
            evaluator=self.name,
            evaluator_version=self.version,
            **extra,
        )


@dataclass
class Subject:
    """What an evaluator looks at, whether it was given a span or a trace.

    For a trace, input/output/attributes come from the root span, duration is the trace's wall time,
    cost is the sum over spans (None when no span has a cost), and context is gathered from
    retriever spans' outputs.
    """

    project_id: str
    trace_id: str
    span_id: str
    input: str
    output: str
    attributes: dict[str, Any]
    duration_ms: float | None
    cost: float | None
    context: list[str] = field(default_factory=list)

    def attribute(self, key: str) -> Any:
        """An attribute's value, JSON-decoded (the spans table stores attribute values JSON-encoded)."""
        raw = self.attributes.get(key)
        if not isinstance(raw, str):
            return raw
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw  # a plain string that was never JSON-encoded


def _payload(span: SpanRecord, field_name: str) -> str:
    text = span.get(field_name) or ""
    if not text and span.get(f"{field_name}_ref"):
        # Offloaded payloads must be fetched from the blob store first; scoring "" would be wrong.
        raise ValueError(f"span {field_name} is offloaded ({field_name}_ref set); hydrate payloads first")
    return text


def subject_of(span_or_trace: SpanOrTrace) -> Subject:
    """Normalise a span record or a trace (list of span records) into a ``Subject``."""
    if isinstance(span_or_trace, Mapping):
        spans: list[SpanRecord] = [span_or_trace]
    else:
        spans = list(span_or_trace)
        if not spans:
            raise ValueError("trace has no spans")
    roots = [s for s in spans if not s.get("parent_span_id")]
    root = roots[0] if roots else min(spans, key=lambda s: s.get("start_time") or datetime.max)
    if len(spans) == 1:
        duration = root.get("duration_ms")
    else:
        starts = [s["start_time"] for s in spans if isinstance(s.get("start_time"), datetime)]
        ends = [s["end_time"] for s in spans if isinstance(s.get("end_time"), datetime)]
        duration = (max(ends) - min(starts)).total_seconds() * 1000 if starts and ends else root.get("duration_ms")
    costs = [s["cost"] for s in spans if s.get("cost") is not None]
    context = [s.get("output") or "" for s in spans if s.get("kind") == "retriever" and s.get("output")]
    return Subject(
        project_id=root.get("project_id", ""),
        trace_id=root.get("trace_id", ""),
        span_id=root.get("span_id", ""),
        input=message_text(_payload(root, "input")),
        output=message_text(_payload(root, "output")),
        attributes=dict(root.get("attributes") or {}),
        duration_ms=float(duration) if duration is not None else None,
        cost=float(sum(costs)) if costs else None,
        context=context,
    )


def message_text(text: str) -> str:
    """The text of a chat payload: the last message's content when ``text`` is a JSON message list.

    Anything else (plain text, or JSON that is the model's actual answer) is returned unchanged.
    """
    if not text or text[0] not in "[{":
        return text
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if isinstance(data, dict) and "role" in data and "content" in data:
        data = [data]
    if isinstance(data, list) and data and all(isinstance(m, dict) and "role" in m for m in data):
        content = data[-1].get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):  # content parts: keep the text ones
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return text
