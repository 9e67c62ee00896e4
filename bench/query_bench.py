"""Query API benchmark: load N generated spans into chDB, then time the dashboard queries.

Generation runs inside ClickHouse (``INSERT … SELECT … FROM numbers()``) so 10M spans load in about
three minutes; the materialized views (trace_index, trace_spans, rollup_spans) fill exactly as they do
from the real sink, each chunk's minutes are marked as the sink marks them, and the roller rolls them
(as `evalforge process` does in the background) before the timing.
Each query is timed through the HTTP app (TestClient) so routing, validation and JSON encoding count.

    .venv/bin/python bench/query_bench.py --spans 10000000 --data-dir /tmp/evalforge_bench
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone

SPANS_PER_TRACE = 4  # one agent root + three children (two LLM calls and a tool call)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-haiku", "llama-3-70b", "gemini-1.5-pro")
PROVIDERS = ("openai", "openai", "anthropic", "anthropic", "groq", "google")
PRICE_PER_1K = (0.005, 0.00015, 0.003, 0.00025, 0.0006, 0.0035)

# One INSERT … SELECT; {…} are bound by the server. Spans of a trace share model/user/session so the
# data looks like an application, not noise: 4 spans per trace, 8 traces per session, 5,000 users.
GENERATE_SQL = """
INSERT INTO spans (project_id, trace_id, span_id, parent_span_id, name, kind, service_name, start_time,
    end_time, duration_ms, status, status_message, error_type, error_class, operation, provider,
    request_model, model, input_tokens, output_tokens, total_tokens, cost, cost_source, ttft_ms,
    tokens_per_second, session_id, user_id, environment, release, tags, prompt_name, prompt_version,
    input_preview, output_preview, events, ingested_at)
SELECT project_id, trace_id, span_id, parent_span_id, name, kind, 'bench-app', start_time,
    start_time + toIntervalMicrosecond(toUInt64(duration_ms * 1000)), duration_ms, status,
    if(status = 'error', 'upstream failed', ''), if(status = 'error', 'RateLimitError', ''),
    if(status = 'error', 'rate_limit', ''), if(kind = 'llm', 'chat', ''), provider, model, model,
    in_tok, out_tok, in_tok + out_tok,
    if(kind = 'llm', (in_tok + out_tok) / 1000 * price, NULL), if(kind = 'llm', 'computed', ''),
    if(kind = 'llm', duration_ms * 0.2, NULL),
    if(kind = 'llm', out_tok / (duration_ms / 1000), NULL),
    session_id, user_id, environment, release, tags, 'support-bot', toString(1 + t % 3),
    concat('question ', toString(t % 100000), ' about order ', toString(cityHash64(t, 7) % 1000)),
    concat('answer for ', toString(t % 100000)), '[]', now64(3)
FROM (
    SELECT
        number + {offset:UInt64} AS n, intDiv(n, 4) AS t, n % 4 AS i,
        {project:String} AS project_id,
        lower(hex(MD5(concat({project:String}, toString(t))))) AS trace_id,
        substring(lower(hex(MD5(toString(n)))), 1, 16) AS span_id,
        if(i = 0, '', substring(lower(hex(MD5(toString(t * 4)))), 1, 16)) AS parent_span_id,
        cityHash64(t, 1) % length({models:Array(String)}) AS m,
        arrayElement({models:Array(String)}, m + 1) AS model,
        arrayElement({providers:Array(String)}, m + 1) AS provider,
        arrayElement({prices:Array(Float64)}, m + 1) AS price,
        multiIf(i = 0, 'agent', i = 3, 'tool', 'llm') AS kind,
        multiIf(i = 0, 'handle_request', i = 3, 'search_orders', i = 1, 'plan', 'answer') AS name,
        {end:DateTime64(6, 'UTC')} - toIntervalMicrosecond(cityHash64(t, 2) % {span_us:UInt64})
            + toIntervalMillisecond(i * 50) AS start_time,
        if(i = 0, 3000 + cityHash64(t, 3) % 4000, exp(6.5 + 0.8 * randNormal(0, 1))) AS duration_ms,
        if(cityHash64(n, 4) % 100 < 3, 'error', 'ok') AS status,
        if(kind = 'llm', toUInt32(200 + cityHash64(n, 5) % 3000), 0) AS in_tok,
        if(kind = 'llm', toUInt32(20 + cityHash64(n, 6) % 800), 0) AS out_tok,
        concat('sess_', toString(intDiv(t, 8))) AS session_id,
        concat('user_', toString(cityHash64(intDiv(t, 8), 8) % 5000)) AS user_id,
        if(t % 10 = 0, 'staging', 'production') AS environment,
        concat('v', toString(1 + intDiv(t, 100000) % 5)) AS release,
        if(t % 4 = 0, ['beta'], if(t % 4 = 1, ['beta', 'vip'], [])) AS tags
    FROM numbers({count:UInt64})
)
"""


def generate_spans(client, project_id: str, n_spans: int, end: datetime, days: int = 30,
                   chunk: int = 2_000_000, models: tuple[tuple[str, str, float], ...] | None = None) -> None:
    """Insert ``n_spans`` generated spans for ``project_id`` ending at ``end``, spread over ``days``,
    and mark their minutes (after the inserts, as the sink does). ``models``: (model, provider, USD
    per 1k tokens) to spread the traces over, default MODELS."""
    names, providers, prices = zip(*models) if models else (MODELS, PROVIDERS, PRICE_PER_1K)
    for offset in range(0, n_spans, chunk):
        client.command(GENERATE_SQL, parameters={
            "offset": offset, "count": min(chunk, n_spans - offset), "project": project_id,
            "models": list(names), "providers": list(providers), "prices": list(prices),
            "end": end.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "span_us": days * 86400 * 1_000_000,
        })
    client.command("INSERT INTO rollup_minutes (project_id, minute) SELECT DISTINCT project_id, minute "
                   "FROM rollup_spans WHERE project_id = {p:String}", parameters={"p": project_id})


def build_app(client, project_id: str):
    """The query router on a bare FastAPI app, with the key lookup replaced by a fixed project
    (auth has its own cache and is not what this bench measures); routing, parameter validation,
    SQL and JSON encoding are the real ones."""
    from types import SimpleNamespace

    from fastapi import FastAPI

    from core.auth import Project
    from core.deps import current_project, get_services
    from core.http import install_error_handlers
    from query_api.router import router

    app = FastAPI()
    app.include_router(router)
    install_error_handlers(app)
    services = SimpleNamespace(clickhouse=client, blobs=None, settings=None)
    app.dependency_overrides[current_project] = lambda: Project(id=project_id, name="bench")
    app.dependency_overrides[get_services] = lambda: services
    return app


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=10_000_000, help="spans to generate (default 10M)")
    parser.add_argument("--data-dir", default="/tmp/evalforge_query_bench", help="chDB data dir")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per query")
    parser.add_argument("--reuse", action="store_true", help="keep data already in --data-dir if it has enough spans")
    parser.add_argument("--no-optimize", action="store_true",
                        help="skip OPTIMIZE FINAL after loading (a long-running server merges in the background)")
    args = parser.parse_args()

    import clickhouse_connect
    from starlette.testclient import TestClient

    from core.migrate import migrate_clickhouse

    client = clickhouse_connect.get_client(dsn=f"chdb://{args.data_dir}")
    migrate_clickhouse(client)  # versioned, as `evalforge migrate`: a reused data dir is not re-migrated
    project = "bench-project"
    have = client.query("SELECT count() FROM spans WHERE project_id = {p:String}", parameters={"p": project}).result_rows[0][0]
    now = datetime.now(timezone.utc)
    if not (args.reuse and have >= args.spans):
        for table in ("spans", "trace_index", "trace_spans", "rollup_spans", "rollup_minutes", "metrics_1m",
                      "metrics_user_1m"):
            client.command(f"TRUNCATE TABLE IF EXISTS {table}")
        t0 = time.perf_counter()
        generate_spans(client, project, args.spans, now)
        generate_spans(client, "other-project", max(args.spans // 100, 1000), now)  # a neighbour tenant
        print(f"generated {args.spans:,} spans in {time.perf_counter() - t0:.1f} s")
        from stream_processors.roller import roll_due

        t0 = time.perf_counter()
        print(f"rolled {roll_due(client):,} minutes in {time.perf_counter() - t0:.1f} s")
        if not args.no_optimize:
            t0 = time.perf_counter()
            for table in ("spans", "trace_index", "trace_spans", "rollup_spans", "rollup_minutes", "metrics_1m",
                          "metrics_user_1m"):
                client.command(f"OPTIMIZE TABLE {table} FINAL")
            print(f"merged parts (OPTIMIZE FINAL) in {time.perf_counter() - t0:.1f} s")
    else:
        print(f"reusing {have:,} spans in {args.data_dir}")
        now = client.query("SELECT max(start_time) FROM spans WHERE project_id = {p:String}",
                           parameters={"p": project}).result_rows[0][0].replace(tzinfo=timezone.utc)

    sample_ids = [r[0] for r in client.query(
        "SELECT trace_id FROM trace_index WHERE project_id = {p:String} ORDER BY cityHash64(trace_id) LIMIT {n:UInt32}",
        parameters={"p": project, "n": args.runs + 5}).result_rows]
    iso = lambda dt: dt.isoformat().replace("+00:00", "Z")  # noqa: E731
    # dashboards ask for whole minutes (their buckets are aligned), which metrics_1m can serve exactly
    aligned = now.replace(second=0, microsecond=0)
    week, month = iso(aligned - timedelta(days=7)), iso(aligned - timedelta(days=30))
    detail_ids = iter(sample_ids * 3)
    queries = {
        "trace list page (50 newest)": ("GET", lambda: "/api/v1/traces?limit=50", None),
        "trace list, model + 7 days": ("GET", lambda: f"/api/v1/traces?limit=50&model=gpt-4o&from={week}", None),
        "trace detail": ("GET", lambda: f"/api/v1/traces/{next(detail_ids)}", None),
        "latency p95 by model per hour, 7 days": (
            "GET", lambda: f"/api/v1/metrics?metric=latency&aggregation=p95&group_by=model&interval=hour&from={week}", None),
        "cost by user per day, 30 days (top 20)": (
            "GET", lambda: f"/api/v1/metrics?metric=cost&aggregation=sum&group_by=user_id&interval=day&from={month}&limit=20",
            None),
        "requests by model per hour, 7 days (metrics_1m)": (
            "GET", lambda: f"/api/v1/metrics?metric=requests&group_by=model&interval=hour&from={week}", None),
        "compare latency gpt-4o vs gpt-4o-mini, 7 days": (
            "POST", lambda: "/api/v1/compare",
            {"metric": "latency", "from": week, "a": {"model": "gpt-4o"}, "b": {"model": "gpt-4o-mini"}}),
    }
    with TestClient(build_app(client, project)) as http:
        print(f"\n{args.spans:,} spans; {args.runs} runs per query after 2 warm-ups; times in ms")
        print(f"{'query':52s} {'p50':>8s} {'p95':>8s}  source")
        for label, (method, path, body) in queries.items():
            times, source = [], ""
            for i in range(args.runs + 2):
                url = path()
                t0 = time.perf_counter()
                resp = http.get(url) if method == "GET" else http.post(url, json=body)
                elapsed = (time.perf_counter() - t0) * 1000
                if resp.status_code != 200:
                    raise SystemExit(f"{label}: HTTP {resp.status_code}: {resp.text[:300]}")
                if i >= 2:
                    times.append(elapsed)
                source = resp.json().get("source", "") if method == "GET" and "metrics" in url else source
            print(f"{label:52s} {_percentile(times, 50):8.1f} {_percentile(times, 95):8.1f}  {source}")


if __name__ == "__main__":
    main()
