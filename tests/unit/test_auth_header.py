"""Reading the API key out of every Authorization scheme the drop-in clients send."""

from __future__ import annotations

import base64

import pytest

from core.auth_header import key_from_authorization

KEY = "ef_abcDEF123-_x"


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("value", [
    f"Bearer {KEY}", f"bearer   {KEY} ", KEY,                      # ours / OTel exporters / Phoenix, Opik
    _basic(f"pk-lf-123:{KEY}"), _basic(f"{KEY}:sk-lf-123"),          # Langfuse, key as secret or public key
    _basic(f"ef_public_part:{KEY}"),                               # both look like ours: the secret wins
])
def test_key_is_found(value):
    assert key_from_authorization(value) == KEY


@pytest.mark.parametrize("value", [None, "", "Bearer ", "Basic !!notbase64", _basic("no-colon"),
                                   "Token " + KEY, "sk-lf-123", "Bearer " + "x" * 2000])
def test_no_key(value):
    assert key_from_authorization(value) is None


def test_basic_without_our_prefix_passes_the_secret_on_to_be_refused():
    assert key_from_authorization(_basic("pk-lf-1:sk-lf-2")) == "sk-lf-2"
