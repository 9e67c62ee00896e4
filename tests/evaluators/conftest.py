from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from core.span import empty_record

from .fake_llm import FakeLLMServer


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.stop()


def make_span(output: str = "", input: str = "question?", attributes: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A canonical span record; attribute values are JSON-encoded as in the spans table."""
    rec = empty_record()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rec.update(
        project_id="proj1", trace_id="a" * 32, span_id="b" * 16, name="chat", kind="llm",
        start_time=start, end_time=start + timedelta(milliseconds=250), duration_ms=250.0,
        input=input, output=output,
        attributes={k: orjson.dumps(v).decode() for k, v in (attributes or {}).items()},
    )
    rec.update(fields)
    return rec
