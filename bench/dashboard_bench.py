"""Dashboard benchmark: the web app in Chromium against ``evalforge up``'s app on N generated spans.

Times, over ``--runs`` page loads each (after 2 warm-ups), from navigation start until:
- Traces page: the table shows its first rows;
- Dashboard (7 days): every chart is drawn (5 charts + the score panel: the generator writes no scores);
- a 10,000-span trace: the span count, the virtualised tree rows and their timeline bars are drawn;
and the compressed JavaScript the first page (Traces) downloads. Budgets: 1 s / 1.5 s / 1 s p95,
first page <= 400 KiB.

    PYTHONPATH=. .venv/bin/python bench/dashboard_bench.py --spans 10000000 --data-dir /tmp/evalforge_dash_bench
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from query_bench import generate_spans  # noqa: E402  (the same generated data as the query bench)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# A 10,000-span trace: one root, 99 agents, 100 tool calls under each (as the browser test's).
HUGE_TRACE_SQL = """
INSERT INTO spans (project_id, trace_id, span_id, parent_span_id, name, kind, service_name, start_time, end_time,
    duration_ms, status, input_preview, output_preview, events, ingested_at)
SELECT {p:String}, {t:String}, span_id, parent, name, kind, 'bench-app', start, start + toIntervalMillisecond(dur), dur,
    'ok', concat('input of ', name), concat('output of ', name), '[]', now64(3)
FROM (
    SELECT number AS n, intDiv(n - 100, 100) AS a,
        lower(hex(MD5(concat({t:String}, toString(n))))) AS h, substring(h, 1, 16) AS span_id,
        multiIf(n = 0, '', n < 100, substring(lower(hex(MD5(concat({t:String}, '0')))), 1, 16),
                substring(lower(hex(MD5(concat({t:String}, toString(1 + a % 99))))), 1, 16)) AS parent,
        multiIf(n = 0, 'root', n < 100, concat('agent-', toString(n)), concat('step-', toString(n))) AS name,
        multiIf(n = 0, 'agent', n < 100, 'agent', 'tool') AS kind,
        {start:DateTime64(6, 'UTC')} + toIntervalMillisecond(multiIf(n = 0, 0, n < 100, n * 600, (1 + a % 99) * 600 + n % 100 * 5)) AS start,
        multiIf(n = 0, 60000, n < 100, 590, 4) AS dur
    FROM numbers(10000)
)
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def prepare(services, args) -> tuple[str, str, str]:
    """The bench project, a key for it, and its data (generated once per data dir)."""
    from core.auth import create_key, ensure_project
    from stream_processors.roller import roll_due

    with services.pg_sync() as conn:
        project = ensure_project(conn, "dashboard-bench")
        key = create_key(conn, project)
    ch = services.clickhouse
    have = ch.query("SELECT count() FROM spans WHERE project_id = {p:String}", parameters={"p": project.id}).result_rows[0][0]
    huge = "ffff" + "0" * 28
    if have < args.spans:
        t0 = time.perf_counter()
        generate_spans(ch, project.id, args.spans - have, datetime.now(timezone.utc))
        print(f"generated {args.spans - have:,} spans in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        for table in ("spans", "trace_index", "trace_spans", "metrics_1m", "metrics_user_1m"):
            ch.command(f"OPTIMIZE TABLE {table} FINAL")
        print(f"merged parts in {time.perf_counter() - t0:.0f} s")
    if not ch.query("SELECT count() FROM trace_index WHERE project_id = {p:String} AND trace_id = {t:String}",
                    parameters={"p": project.id, "t": huge}).result_rows[0][0]:
        start = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S.%f")
        ch.command(HUGE_TRACE_SQL, parameters={"p": project.id, "t": huge, "start": start})
        ch.command("INSERT INTO rollup_minutes (project_id, minute) SELECT DISTINCT project_id, toStartOfMinute(start_time) "
                   "FROM spans WHERE project_id = {p:String} AND trace_id = {t:String}", parameters={"p": project.id, "t": huge})
    # Where a running `evalforge up` is seconds after the spans stop: its roller has rolled every quiet
    # minute (no processor runs here, so the bench rolls them). Before 2026-12-07 evening the bench left
    # them unrolled: every dashboard query then re-aggregated the raw spans of its whole range.
    t0 = time.perf_counter()
    if rolled := roll_due(ch):
        print(f"rolled {rolled:,} minutes in {time.perf_counter() - t0:.0f} s")
    return project.id, key, huge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--data-dir", default="/tmp/evalforge_dash_bench")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--waterfall", action="store_true", help="print the requests of each page's last load")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from launcher.cli import ALL_PARTS, _routers
    from core.http import build_app
    from tests.harness.live_server import LiveServer

    from core.settings import Settings

    settings = Settings(data_dir=Path(args.data_dir))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # The query service's routes on every embedded part (no processors: the data is generated).
    app = build_app(settings, parts=ALL_PARTS, routers=_routers("query"), migrate=True)
    server = LiveServer(app).start(timeout=120)
    project_id, key, huge = prepare(app.state.services, args)
    pages = {
        "Traces page, table filled": (f"/projects/{project_id}/traces",
                                      "() => document.querySelectorAll('[data-testid=trace-row]').length > 0"),
        "Dashboard 7 days, all charts drawn": (
            f"/projects/{project_id}/dashboard?range=7d",
            "() => document.querySelectorAll(\"figure.chart[data-drawn='1']\").length >= 5"
            " && document.body.innerText.includes('No scores in this range')"),
        "10,000-span trace, tree + timeline drawn": (
            f"/projects/{project_id}/traces/{huge}",
            "() => document.querySelector('[data-testid=span-count]')?.textContent === '10,000'"
            " && document.querySelectorAll('[data-testid=timeline-bar] .bar').length > 10"),
    }
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            ctx = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 900},
                                      extra_http_headers={"Authorization": f"Bearer {key}"})
            first = ctx.new_page()
            first.goto(pages["Traces page, table filled"][0])
            first.wait_for_function(pages["Traces page, table filled"][1], timeout=60_000)
            js = first.evaluate("performance.getEntriesByType('resource').filter(e => e.name.endsWith('.js'))"
                                ".reduce((s, e) => s + e.encodedBodySize, 0)")
            first.close()
            print(f"\n{args.spans:,} spans; {args.runs} loads per page after 2 warm-ups (browser cache warm); ms; "
                  f"load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
            print(f"{'page':44s} {'p50':>8s} {'p95':>8s}")
            for label, (url, ready) in pages.items():
                times = []
                for i in range(args.runs + 2):
                    page = ctx.new_page()
                    page.goto(url)
                    page.wait_for_function(ready, timeout=60_000, polling=10)
                    elapsed = page.evaluate("performance.now()")  # since this page's navigation start
                    if i == args.runs + 1 and args.waterfall:
                        for name, start, dur in page.evaluate(
                                "performance.getEntriesByType('resource').map(e => [e.name, e.startTime, e.duration])"):
                            print(f"    {start:7.0f} +{dur:6.0f}  {name.split('/', 3)[-1][:100]}")
                    page.close()
                    if i >= 2:
                        times.append(elapsed)
                print(f"{label:44s} {pct(times, 50):8.0f} {pct(times, 95):8.0f}")
            print(f"load average at the end {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
            print(f"first page (Traces) JavaScript, gzip as served: {js / 1024:.1f} KiB (budget 400 KiB)")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
