"""Assertion helpers shared by the SDK tests."""

from __future__ import annotations

import evalforge

API_KEY = "ef-test-key"


def one_span(receiver, name_prefix: str = "", timeout: float = 5.0) -> dict:
    """Flush and return the only span (asserting there is exactly one)."""
    assert evalforge.flush(timeout)
    spans = [s for s in receiver.spans if s["name"].startswith(name_prefix)]
    assert len(spans) == 1, [s["name"] for s in receiver.spans]
    return spans[0]
