"""The sink's native Native-block encoding stores exactly what clickhouse-connect's encoding stores."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from core.span import COLUMNS
from stream_processors import sink as sink_module
from stream_processors.enrich import enrich
from stream_processors.sink import SPAN_COLUMNS, ClickHouseSink

from .conftest import make_span

PLUS_0130 = timezone(timedelta(hours=1, minutes=30))


def varied_spans(project: str) -> list[dict]:
    """Enriched spans covering every column type with the values that are easy to get wrong."""
    spans = [enrich(make_span(project, i)) for i in range(20)]
    spans[1].update(cost=None, cost_source="unknown_model", ttft_ms=None, tokens_per_second=None)
    spans[2].update(tags=["beta", "ünïcode", ""], attributes={"k": "v", "é": "☃" * 300, "": ""},
                    input="x" * 70_000, output="\x00\n\t\"", name="naïve name")
    spans[3].update(start_time=datetime(2026, 11, 20, 13, 30, 0, 999_999, tzinfo=PLUS_0130),
                    end_time=datetime(2026, 11, 20, 13, 30, 1, tzinfo=PLUS_0130))
    spans[4].update(input_tokens=2**32 - 1, output_tokens=0, total_tokens=2**32 - 1, tokens_estimated=1,
                    cost=1e-12, duration_ms=0.1 + 0.2, ttft_ms=5e-324)
    spans[5].update(start_time=datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc),  # TTL: not older
                    end_time=datetime(2262, 4, 11, 23, 47, 16, 854_775, tzinfo=timezone.utc),
                    ingested_at=datetime(2026, 11, 20, 12, 0, 0, 123_999, tzinfo=timezone.utc))
    spans[6].update(tags=(), attributes={})
    return spans


def stored(clickhouse, project: str) -> list[tuple]:
    cols = ", ".join(c for c in SPAN_COLUMNS if c not in ("project_id", "bus_source"))
    return clickhouse.query(f"SELECT {cols} FROM spans WHERE project_id = {{p:String}} ORDER BY bus_offset",
                            parameters={"p": project}).result_rows


def test_native_encoder_is_built() -> None:
    assert sink_module._native is not None  # scripts/bootstrap builds native/


def test_native_block_rows_equal_clickhouse_connect_rows(clickhouse) -> None:
    native_project, reference_project = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    spans = varied_spans(native_project)
    sink = ClickHouseSink(clickhouse, "test:native")
    for offset, span in enumerate(spans):
        sink.add_span(span, 3, 2**63 - 100 + offset)
    assert sink.flush() == []

    reference = [dict(s, project_id=reference_project) for s in spans]
    rows = [[s[c] for c in COLUMNS] + ["test:reference", 3, 2**63 - 100 + i] for i, s in enumerate(reference)]
    clickhouse.insert("spans", rows, column_names=SPAN_COLUMNS)

    got, want = stored(clickhouse, native_project), stored(clickhouse, reference_project)
    assert len(got) == len(spans)
    assert got == want
    first = dict(zip([c for c in SPAN_COLUMNS if c not in ("project_id", "bus_source")], got[3]))
    assert first["start_time"] == datetime(2026, 11, 20, 12, 0, 0, 999_999)  # 13:30 at +01:30, in UTC


def test_a_row_that_does_not_fit_its_column_is_rejected_alone(clickhouse) -> None:
    project = uuid.uuid4().hex[:12]
    spans = varied_spans(project)[:5]
    spans[2]["input_tokens"] = -1  # UInt32
    block = sink_module._native.SpanBlock(list(COLUMNS.items()), "s")
    for offset, span in enumerate(spans[:2]):
        block.add_dict(span, 0, offset)
    with pytest.raises(ValueError, match="column input_tokens"):
        block.add_dict(spans[2], 0, 2)
    assert len(block) == 2  # the refused row left nothing behind
    sink = ClickHouseSink(clickhouse, "test:bad")
    for offset, span in enumerate(spans):
        sink.add_span(span, 0, offset)
    rejected = sink.flush()
    assert [(table, index) for table, index, _ in rejected] == [("spans", 2)]
    assert [r[-1] for r in stored(clickhouse, project)] == [0, 1, 3, 4]
