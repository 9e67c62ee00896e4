"""The compiled fast path of OTLP protobuf ingest (``native/``, a Rust extension), when installed.

:func:`encode_otlp` turns a protobuf body straight into bus messages — ``(trace id, record JSON)``,
byte for byte what :func:`ingest.otlp.decode_otlp` followed by :func:`core.span.encode` makes — or
answers ``None`` when the request needs something only the Python path does (a rejected span,
links, prompts sent as events, indexed message keys, a ``metadata`` JSON object, Langfuse usage /
cost details and levels, a value to truncate or a payload to offload, a name to lower-case outside
ASCII, a field the reader does not know, ...). The Python path stays the reference; the
differential tests in ``tests/ingest/test_native.py`` hold the two together.

The extension reads its convention tables from ``ingest.conventions`` here, so adding a row there
needs no Rust change; a new *kind* of column does, and ``configure`` refuses to start without it.
``EVALFORGE_NATIVE=0`` turns the fast path off.
"""

from __future__ import annotations

import logging
from datetime import datetime

import orjson

from core import native as _loader
from core.span import COLUMNS
from ingest import conventions as c
from core.span_schema import PREVIEW_CHARS
from ingest.normalize import _OTEL_KINDS, _RESOURCE_KEYS, Limits

log = logging.getLogger(__name__)

_native = _loader.load()


# Attributes only the Python path maps (messages to convert into the canonical shape, Vercel's
# "provider.api", OpenInference's invocation parameters, the anthropic SDK's one-hour cache writes). They are handed to the extension as prefixes
# to decline, like the indexed message lists, instead of as slots; spans with a first-token event
# (conventions.FIRST_TOKEN_EVENTS, listed in lib.rs too) are declined by the extension itself.
PYTHON_ONLY_KEYS = ("ai.prompt", "ai.response.text", "ai.response.toolCalls", "ai.toolCall.", "ai.model.provider",
                    "request_data", "response_data", "llm.invocation_parameters",
                    "anthropic.usage.cache_creation.ephemeral_1h_input_tokens")


def _configure() -> bool:
    if _native is None:
        return False
    slots = {key: spec for key, spec in c._SLOTS.items() if not key.startswith(PYTHON_ONLY_KEYS)}
    try:
        _native.configure(
            list(COLUMNS), slots, sorted(c._TAG_KEYS), list(c._INDEXED_PREFIXES) + list(PYTHON_ONLY_KEYS),
            list(c._METADATA_PREFIXES),
            _RESOURCE_KEYS, c._KIND_ALIASES, c._OPERATION_ALIASES, c._OPERATION_KINDS, list(_OTEL_KINDS),
            PREVIEW_CHARS,
        )
    except ValueError:
        log.exception("native OTLP path disabled: it does not match this version's record layout")
        return False
    return True


AVAILABLE = _configure()



def encode_otlp(body: bytes, project_id: str, limits: Limits, offload_chars: int,
                ingested_at: datetime) -> list[tuple[bytes, bytes]] | None:
    """Protobuf OTLP body -> bus messages for ``spans.raw``, or ``None`` for the Python path.

    ``offload_chars``: a payload longer than this goes to the blob store, which Python does.
    """
    if not AVAILABLE or _native is None:
        return None
    stamp = orjson.dumps(ingested_at, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)
    return _native.encode_otlp_protobuf(body, project_id, stamp, limits.max_attribute_bytes,
                                        limits.max_payload_bytes, offload_chars)
