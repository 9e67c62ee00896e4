"""Token counting: exact tiktoken counts for OpenAI models, offline; flagged estimates elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.tokens import count_tokens, encoding_name_for_model, get_encoding

ROOT = Path(__file__).resolve().parents[2]


def test_known_token_ids_match_tiktoken_reference_vectors() -> None:
    # Vectors from tiktoken's own test suite.
    cl100k = get_encoding("cl100k_base")
    assert cl100k.encode("hello world") == [15339, 1917]
    assert cl100k.encode("rer") == [38149]
    assert cl100k.encode("'rer") == [2351, 81]
    assert cl100k.encode("today\n ") == [31213, 198, 220]
    assert cl100k.encode("today\n \n") == [31213, 27907]
    assert cl100k.encode("today\n  \n") == [31213, 14211]
    o200k = get_encoding("o200k_base")
    assert o200k.encode("hello world") == [24912, 2375]
    text = "Tokenizers split text; 12345 numbers, ünïcödé and emoji 🎉 round-trip."
    assert o200k.decode(o200k.encode(text)) == text


@pytest.mark.parametrize(("model", "encoding"), [
    ("gpt-4o", "o200k_base"),
    ("gpt-4o-mini-2024-07-18", "o200k_base"),
    ("openai/gpt-4.1", "o200k_base"),
    ("o3-mini", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("codex-mini-latest", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5-turbo-0125", "cl100k_base"),
    ("text-embedding-3-small", "cl100k_base"),
    ("claude-3-5-sonnet-20241022", None),
    ("gemini-2.5-pro", None),
    (None, None),
])
def test_encoding_for_model(model: str | None, encoding: str | None) -> None:
    assert encoding_name_for_model(model) == encoding


def test_openai_counts_are_exact() -> None:
    assert count_tokens("hello world", "gpt-4o") == (2, False)
    assert count_tokens("hello world", "gpt-4") == (2, False)
    assert count_tokens("today\n \n", "gpt-3.5-turbo") == (2, False)
    assert count_tokens("hello world", "openai/gpt-4o-mini") == (2, False)
    # Text that contains a special-token string is user text: counted, not rejected.
    n, estimated = count_tokens("say <|endoftext|> please", "gpt-4o")
    assert n > 3 and estimated is False


def test_other_models_are_estimated_and_flagged() -> None:
    text = "The quick brown fox jumps over the lazy dog."  # 44 chars -> 11
    assert count_tokens(text, "claude-3-5-sonnet-20241022") == (11, True)
    assert count_tokens(text, None) == (11, True)
    assert count_tokens("abcde", "gemini-2.5-flash") == (2, True)  # rounds up
    assert count_tokens("", "claude-3-haiku") == (0, False)


def test_counting_works_without_network_or_tiktoken_cache(tmp_path: Path) -> None:
    # A fresh process with an empty tiktoken cache and sockets that refuse to connect.
    script = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network disabled in test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from core.tokens import count_tokens\n"
        "print(count_tokens('hello world', 'gpt-4o'), count_tokens('hello world', 'gpt-4'))\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path), "DATA_GYM_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(2, False) (2, False)"
    assert not any(tmp_path.iterdir())


def _llm_record(**fields):
    from datetime import datetime, timedelta, timezone

    from core.span import empty_record
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rec = empty_record()
    rec.update(project_id="p", trace_id="a" * 32, span_id="b" * 16, name="chat gpt-4o", kind="llm",
               provider="openai", model="gpt-4o", request_model="gpt-4o", start_time=start,
               end_time=start + timedelta(seconds=1), status="ok", input="Say hello to the world")
    rec.update(fields)
    return rec


def test_failed_call_without_usage_is_not_counted_or_priced() -> None:
    from stream_processors.enrich import enrich
    failed = enrich(_llm_record(status="error", error_type="RateLimitError", status_message="429"))
    assert (failed["input_tokens"], failed["cost"], failed["cost_source"]) == (0, None, "")
    assert "evalforge.tokens.counted" not in failed["attributes"]
    # the same call that succeeded without reported usage is counted (exactly, by tiktoken) and priced
    ok = enrich(_llm_record())
    assert ok["input_tokens"] == count_tokens("Say hello to the world", "gpt-4o")[0] and ok["cost"] > 0


def test_failed_call_with_reported_usage_is_priced() -> None:
    from core.pricing import Usage, compute_call_cost
    from stream_processors.enrich import enrich
    failed = enrich(_llm_record(status="error", error_type="ContentFilter", input_tokens=50, output_tokens=3,
                                total_tokens=53))
    expected = compute_call_cost("openai", "gpt-4o", "gpt-4o", Usage(input_tokens=50, output_tokens=3)).cost
    assert failed["cost"] == expected and failed["cost_source"] == "computed"
