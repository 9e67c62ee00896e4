"""Migrations that add a table fed by a view over spans (0004 metrics_user_1m, 0006 trace_spans): spans
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

def store(spans):
    global offset
    sink = ClickHouseSink(c, "test:migration")
    for span in spans:
        offset += 1
        sink.add_span(enrich(span), 0, offset)
    assert sink.flush() == []
"""

USER_ROLLUP = SETUP + """
store([make_span("p1", i, user_id=f"u{i % 3}", cost=0.5, cost_source="user") for i in range(90)])
store([make_span("p1", i, user_id="u0", cost=0.5, cost_source="user") for i in range(90, 100)])
migrate.INFRA = real_infra
assert migrate.migrate_clickhouse(c)[0] == "0004_metrics_user_1m"  # and any later ones
store([make_span("p1", i, user_id="u1", cost=0.25, cost_source="user") for i in range(100, 120)])
rows = c.query("SELECT user_id, sum(requests), sum(cost) FROM metrics_user_1m WHERE project_id = 'p1' "
               "GROUP BY user_id ORDER BY user_id").result_rows
print(json.dumps(rows))
"""


TRACE_SPANS = SETUP + """
from query_api.traces_sql import get_trace

first, second = [make_span("p1", i) for i in range(4)], [make_span("p1", i) for i in range(4, 7)]
for trace, spans in (("t-1", first), ("t-2", second)):
    for span in spans:
        span["trace_id"] = trace
store(first + second[:1])
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


def test_user_rollup_back_fill_then_view_count_each_span_once(tmp_path):
    rows = _run(tmp_path, USER_ROLLUP, "0004")
    # before 0004: u0 30 + 10, u1 30, u2 30 at 0.5 each; after it, u1 20 more at 0.25
    assert rows == [["u0", 40, 20.0], ["u1", 50, 20.0], ["u2", 30, 15.0]]


def test_trace_detail_finds_spans_stored_before_and_after_trace_spans(tmp_path):
    """t-1 stored wholly before 0006, t-2 one span before and two after: detail has every span once
    (the generated spans have no parents, so each is a root, in start order)."""
    detail_1, detail_2, stored_1, stored_2 = _run(tmp_path, TRACE_SPANS, "0006")
    assert (detail_1, detail_2) == (stored_1, stored_2)
