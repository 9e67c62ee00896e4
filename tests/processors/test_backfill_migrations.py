"""Migrations that add a table fed by a view over spans (0006 trace_spans, 0009 rollup_spans): spans
stored before them are back-filled, later ones reach the table through its view, each once. Runs the
real `migrate_clickhouse` on a fresh chDB in a subprocess (one chDB per process; the session's shared
engine is already migrated)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SETUP = """
import json, shutil, sys, tempfile
from pathlib import Path
import clickhouse_connect
import core.migrate as migrate
from stream_processors.enrich import enrich
from stream_processors.sink import ClickHouseSink
from tests.processors.conftest import make_span

c = clickhouse_connect.get_client(dsn=sys.argv[1])
older = Path(tempfile.mkdtemp())
(older / "clickhouse").mkdir()
before = sys.argv[2]
for path in migrate._files("clickhouse"):
    if path.stem < before:
        shutil.copy(path, older / "clickhouse" / path.name)
real_infra, migrate.INFRA = migrate.INFRA, older  # the schema as it was before that migration
assert migrate.migrate_clickhouse(c)[-1] < before
offset = 0

def store(spans, marks=True):
    global offset
    sink = ClickHouseSink(c, "test:migration")
    for span in spans:
        offset += 1
        sink.add_span(enrich(span), 0, offset)
    if not marks:  # a schema before 0009: nothing to mark
        sink.minutes.clear()
    assert sink.flush() == []
"""

ROLLUPS = SETUP + """
from tests.processors.rollups_check import assert_rollups_exact

before = [make_span("p1", i * 7, user_id=f"u{i % 3}", cost=0.5, cost_source="user") for i in range(90)]
store(before, marks=False)
store(before[:10], marks=False)  # a batch written twice before the migration: its copies counted twice then
migrate.INFRA = real_infra
assert migrate.migrate_clickhouse(c)[0] == "0009_rollups_from_deduplicated_spans"  # and any later ones
after = [make_span("p1", i * 7, user_id="u1", cost=0.25, cost_source="user") for i in range(90, 120)]
store(after)  # the sink marks their minutes
assert_rollups_exact(c, "p1", requests=120)
print(json.dumps(c.query("SELECT count() FROM metrics_user_1m").result_rows))
"""


TRACE_SPANS = SETUP + """
from query_api.traces_sql import get_trace

first, second = [make_span("p1", i) for i in range(4)], [make_span("p1", i) for i in range(4, 7)]
for trace, spans in (("t-1", first), ("t-2", second)):
    for span in spans:
        span["trace_id"] = trace
store(first + second[:1], marks=False)
migrate.INFRA = real_infra
assert migrate.migrate_clickhouse(c)[0] == "0006_trace_spans"  # and any later ones
store(second[1:])
print(json.dumps([[s["span_id"] for s in get_trace(c, None, "p1", trace)["spans"]] for trace in ("t-1", "t-2")]
                 + [[s["span_id"] for s in first], [s["span_id"] for s in second]]))
"""


def _run(tmp_path, script: str, before: str) -> list:
    out = subprocess.run([sys.executable, "-c", script, f"chdb://{tmp_path / 'ch'}", before], cwd=REPO,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_rollups_back_fill_spans_stored_before_0009_then_count_each_span_once(tmp_path):
    [[rows]] = _run(tmp_path, ROLLUPS, "0009")
    assert rows > 0  # the rollups were written (read from them after rolling)


def test_trace_detail_finds_spans_stored_before_and_after_trace_spans(tmp_path):
    """t-1 stored wholly before 0006, t-2 one span before and two after: detail has every span once
    (the generated spans have no parents, so each is a root, in start order)."""
    detail_1, detail_2, stored_1, stored_2 = _run(tmp_path, TRACE_SPANS, "0006")
    assert (detail_1, detail_2) == (stored_1, stored_2)
