"""Migration 0004 (metrics_user_1m): spans stored before it are back-filled, later ones are counted by
its view, each once. Runs the real `migrate_clickhouse` on a fresh chDB in a subprocess (one chDB per
process; the session's shared engine is already migrated)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
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
for path in migrate._files("clickhouse"):
    if path.stem < "0004":
        shutil.copy(path, older / "clickhouse" / path.name)
real_infra, migrate.INFRA = migrate.INFRA, older  # the schema as it was before 0004
assert migrate.migrate_clickhouse(c) == ["0001_spans", "0002_scores", "0003_no_block_dedup_on_spans"]
offset = 0

def store(spans):
    global offset
    sink = ClickHouseSink(c, "test:migration")
    for span in spans:
        offset += 1
        sink.add_span(enrich(span), 0, offset)
    assert sink.flush() == []

store([make_span("p1", i, user_id=f"u{i % 3}", cost=0.5, cost_source="user") for i in range(90)])
store([make_span("p1", i, user_id="u0", cost=0.5, cost_source="user") for i in range(90, 100)])
migrate.INFRA = real_infra
assert migrate.migrate_clickhouse(c)[0] == "0004_metrics_user_1m"  # and any later ones
store([make_span("p1", i, user_id="u1", cost=0.25, cost_source="user") for i in range(100, 120)])
rows = c.query("SELECT user_id, sum(requests), sum(cost) FROM metrics_user_1m WHERE project_id = 'p1' "
               "GROUP BY user_id ORDER BY user_id").result_rows
print(json.dumps(rows))
"""


def test_back_fill_then_view_count_each_span_once(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, f"chdb://{tmp_path / 'ch'}"], cwd=REPO,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    # before 0004: u0 30 + 10, u1 30, u2 30 at 0.5 each; after it, u1 20 more at 0.25
    assert rows == [["u0", 40, 20.0], ["u1", 50, 20.0], ["u2", 30, 15.0]]
