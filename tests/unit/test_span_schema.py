"""core/span_schema.json is the one source of what Python and the Rust extension share: the extension
embeds it when built, and refuses its fast paths when Python's columns are not the ones it was built
with (an extension older than the file), instead of writing rows in a stale layout."""

from __future__ import annotations

import pytest

from core import native
from core.span_schema import COLUMNS, PREVIEW_CHARS

_native = native.load()
pytestmark = pytest.mark.skipif(_native is None, reason="the Rust extension is not installed (scripts/bootstrap)")


def test_the_extension_takes_the_schema_columns():
    from ingest import native as ingest_native

    assert _native.SpanBlock(list(COLUMNS.items()), "src").fast
    assert ingest_native._configure()  # the OTLP record writer writes these columns


@pytest.mark.parametrize("change", ["type", "order", "extra"])
def test_columns_other_than_the_embedded_ones_turn_the_fast_paths_off(change):
    columns = list(COLUMNS.items())
    if change == "type":
        columns[9] = (columns[9][0], "Nullable(Float64)")  # duration_ms
    elif change == "order":
        columns[1], columns[2] = columns[2], columns[1]
    else:
        columns.append(("new_column", "String"))
    assert not _native.SpanBlock(columns, "src").fast
    if change != "type":  # the OTLP path writes JSON records: only the names and their order matter
        with pytest.raises(ValueError, match="span_schema.json"):  # refused before any setting changes
            _native.configure([name for name, _ in columns], {}, [], [], [], {}, {}, {}, {}, [], PREVIEW_CHARS)
