"""The EvalForge API key in an ``Authorization`` value, in every scheme the drop-in clients send.

- ``Bearer <key>``: our own SDK, any OTel exporter, Phoenix's ``register(api_key=...)``.
- ``Basic base64(<public key>:<secret key>)``: the Langfuse SDKs. One of the two is the EvalForge key
  (we document the *secret* key, ``LANGFUSE_SECRET_KEY=ef_...``; the public key is free text such as
  the project name); the part that looks like our key wins, the secret part when both do.
- ``<key>`` with no scheme: Opik's OTel exporter (``Authorization: <api key>``).

Only the value is parsed here; ``core.auth.Authenticator`` decides whether the key is real. HTTP and
gRPC share this one parser, so every entry point accepts the same schemes.
"""

from __future__ import annotations

import base64
import binascii

from core.auth import KEY_PREFIX

ACCEPTED_SCHEMES = (
    "Authorization: Bearer <api key>",
    "Authorization: Basic base64(<public key>:<api key>) (Langfuse SDKs: the api key as the secret key)",
    "Authorization: <api key> (Opik)",
    "gRPC metadata authorization: Bearer <api key>",
)
WWW_AUTHENTICATE = 'Bearer realm="evalforge", Basic realm="evalforge"'
_MAX_HEADER_CHARS = 1024


def key_from_authorization(value: str | None) -> str | None:
    """The API key carried by an ``Authorization`` value, or None when it carries none we read."""
    value = (value or "").strip()
    if not value or len(value) > _MAX_HEADER_CHARS:
        return None
    scheme, _, rest = value.partition(" ")
    scheme, rest = scheme.lower(), rest.strip()
    if scheme == "bearer":
        return rest or None
    if scheme == "basic":
        return _key_from_basic(rest)
    if value.startswith(KEY_PREFIX) and " " not in value:
        return value
    return None


def _key_from_basic(encoded: str) -> str | None:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    public, sep, secret = decoded.partition(":")
    if not sep:
        return None
    if secret.startswith(KEY_PREFIX):
        return secret
    if public.startswith(KEY_PREFIX):
        return public
    return secret or None


def unauthorized_message(reason: str) -> str:
    """The 401 text: why, then every scheme we accept (clients switching from another tool read it)."""
    return f"{reason}; accepted: " + " | ".join(ACCEPTED_SCHEMES)
