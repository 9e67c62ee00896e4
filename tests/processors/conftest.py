"""Helpers for processor tests: canonical span records as the bus carries them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from core.span import empty_record, encode


def make_span(project_id: str, i: int = 0, **extra) -> dict:
    start = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc) + timedelta(seconds=i)
    rec = empty_record()
    rec.update(
        project_id=project_id, trace_id=uuid.uuid4().hex, span_id=uuid.uuid4().hex[:16], name="chat", kind="llm",
        start_time=start, end_time=start + timedelta(milliseconds=250 + i % 100), status="ok", operation="chat",
        provider="openai", request_model="gpt-4o-mini", model="gpt-4o-mini",
        input_tokens=1000 + i % 10, output_tokens=100 + i % 7, input="hi", output="hello",
        ingested_at=datetime.now(timezone.utc),
    )
    rec.update(extra)
    return rec


def as_message(rec: dict) -> tuple[bytes, bytes]:
    return rec["trace_id"].encode(), encode(rec)
