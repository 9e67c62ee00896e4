"""What Python and the Rust extension share, read from ``span_schema.json`` (the one source).

The extension embeds the same file when it is built (``native/src/schema.rs``); ``configure()`` and
``SpanBlock`` turn the fast paths off if the file changed after that build. Nothing here is hand-copied:
change the JSON, not these names.
"""

from __future__ import annotations

import json
from pathlib import Path

_SCHEMA = json.loads(Path(__file__).with_name("span_schema.json").read_text(encoding="utf-8"))

# name -> ClickHouse type, in insert column order
COLUMNS: dict[str, str] = {column["name"]: column["type"] for column in _SCHEMA["columns"]}
PREVIEW_CHARS: int = _SCHEMA["preview_chars"]
PRICE_SCALE: int = _SCHEMA["price_scale"]
COST_SCALE: int = _SCHEMA["cost_scale"]
PRICE_KEYS: tuple[str, ...] = tuple(_SCHEMA["price_keys"])
# (token kind, price key) of each term of the cost: see "cost_terms_about" in the JSON
COST_TERMS: tuple[tuple[str, str], ...] = tuple((kind, key) for kind, key in _SCHEMA["cost_terms"])
