"""Semantic similarity between the output and an expected answer, with MiniLM embeddings."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from evaluators.base import EXPECTED_ATTRIBUTE, Evaluator, EvaluatorConfig, Score, SpanOrTrace, subject_of
from evaluators.embeddings import get_embedder
from evaluators.registry import register


class SimilarityConfig(EvaluatorConfig):
    expected: str | None = None
    expected_attribute: str = EXPECTED_ATTRIBUTE
    # With a threshold the score is boolean (cosine >= threshold); without, the cosine itself.
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)


@register
class SemanticSimilarity(Evaluator[SimilarityConfig]):
    """Cosine similarity of all-MiniLM-L6-v2 embeddings of output and expected answer.

    The model loads on the first evaluation, not when the evaluator is built, so rules can be
    validated and instantiated cheaply.
    """

    name = "semantic_similarity"
    Config = SimilarityConfig

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        subject = subject_of(span_or_trace)
        expected: Any = self.config.expected
        if expected is None:
            expected = subject.attribute(self.config.expected_attribute)
        if expected is None:
            return []
        cosine = get_embedder().similarity(subject.output, expected if isinstance(expected, str) else str(expected))
        threshold = self.config.threshold
        if threshold is None:
            return [self.score(round(cosine, 6), f"cosine similarity {cosine:.3f}")]
        ok = cosine >= threshold
        return [self.score(ok, f"cosine similarity {cosine:.3f} {'>=' if ok else '<'} threshold {threshold:g}")]
