"""The canonical span record: the one shape every service agrees on.

Ingest turns whatever arrives (OTLP, JSON batches, other conventions) into this record; it travels on
the bus as JSON (``encode`` / ``decode``); processors enrich it and write it to the ClickHouse ``spans``
table, whose columns are exactly ``COLUMNS``.

Token convention (one for every provider, so cost is computed one way):
- ``input_tokens`` counts *all* prompt tokens, including ``cache_read_tokens`` and
  ``cache_creation_tokens`` (OpenAI's ``prompt_tokens`` already does; Anthropic's ``input_tokens``
  does not, so Anthropic usage is summed up when the span is built).
- ``output_tokens`` counts all completion tokens, including ``reasoning_tokens``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from core import span_schema

# name -> ClickHouse type, in insert column order; the one source is span_schema.json (the Rust
# extension embeds it too), where each column's meaning is noted.
COLUMNS = span_schema.COLUMNS

TIME_COLUMNS = ("start_time", "end_time", "ingested_at")
# Set by ingest (ingest/duplicates.py) on the extra records of a model call recorded twice: the span id
# of the record that counts. ClickHouse's spans.counted is 0 where it is set (migration 0013).
DUPLICATE_OF = "evalforge.duplicate_of"


def empty_record() -> dict[str, Any]:
    """A record with every column at its neutral value."""
    rec: dict[str, Any] = {}
    for name, ch_type in COLUMNS.items():
        if ch_type.startswith("Nullable"):
            rec[name] = None
        elif ch_type.startswith(("UInt", "Float")):
            rec[name] = 0
        elif ch_type.startswith("Array"):
            rec[name] = []
        elif ch_type.startswith("Map"):
            rec[name] = {}
        elif ch_type.startswith("DateTime"):
            rec[name] = None
        else:
            rec[name] = ""
    return rec


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ns_to_datetime(ns: int) -> datetime:
    """Unix nanoseconds -> aware UTC datetime (microsecond precision, as stored; exact, no float)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def encode(record: dict[str, Any]) -> bytes:
    """Record -> bus message. Datetimes travel as ISO-8601 UTC strings."""
    return orjson.dumps(record, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)


def decode(data: bytes) -> dict[str, Any]:
    """Bus message -> record with datetimes restored. Raises ValueError on malformed input."""
    rec = orjson.loads(data)
    if not isinstance(rec, dict):
        raise ValueError("span record must be a JSON object")
    for key in ("project_id", "trace_id", "span_id"):
        if not rec.get(key):
            raise ValueError(f"span record lacks {key}")
    for key in TIME_COLUMNS:
        value = rec.get(key)
        if isinstance(value, str):
            rec[key] = datetime.fromisoformat(value)  # 3.11 reads the trailing "Z" itself
    if rec.get("ingested_at") is None:
        rec["ingested_at"] = datetime.now(timezone.utc)  # records made by our own workers
    for key in ("start_time", "end_time"):
        if not isinstance(rec.get(key), datetime):
            raise ValueError(f"span record lacks {key}")
    return rec
