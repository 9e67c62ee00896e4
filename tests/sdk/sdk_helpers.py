"""Assertion helpers shared by the SDK tests."""

from __future__ import annotations

import evalforge
from fake_llm import TRUE_TTFT

API_KEY = "ef-test-key"


def one_span(receiver, name_prefix: str = "", timeout: float = 5.0) -> dict:
    """Flush and return the only span (asserting there is exactly one)."""
    assert evalforge.flush(timeout)
    spans = [s for s in receiver.spans if s["name"].startswith(name_prefix)]
    assert len(spans) == 1, [s["name"] for s in receiver.spans]
    return spans[0]


def assert_ttft(attributes: dict) -> None:
    """Time to first token is the server's hold-back of the first *content* event, within 10 %."""
    ttft = attributes["gen_ai.response.time_to_first_chunk"]
    assert abs(ttft - TRUE_TTFT) <= 0.1 * TRUE_TTFT, (ttft, TRUE_TTFT)
