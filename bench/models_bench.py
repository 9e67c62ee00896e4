"""Model recommendation benchmark: ``POST /api/v1/models/recommend`` over 50 models x 30 days of spans.

Spans are generated inside ClickHouse by query_bench's seeding helper (the same SQL, spread over 50
registry models: the 46 catalogued ones and 4 project models), rolled and merged as there; 50 finished
experiments (200 scored items each, one per model) sit in PostgreSQL (the embedded server
``evalforge up`` uses). The endpoint is timed through the HTTP app (TestClient), like query_bench: the
registry, the rollup and span scans, the experiments' summaries, the Pareto step and the decision.

The first call summarises the 50 experiments (a bootstrap CI each); completed experiments never change,
so later calls reuse those summaries (``query_api.model_quality``): both figures are printed.

    .venv/bin/python bench/models_bench.py --spans 10000000 --data-dir /tmp/evalforge_models_bench
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.query_bench import _percentile, generate_spans  # noqa: E402

TABLES = ("spans", "trace_index", "trace_spans", "rollup_spans", "rollup_minutes", "metrics_1m", "metrics_user_1m")
PROJECT_MODELS = [("bench", f"custom-{i}") for i in range(1, 5)]
ITEMS = 200


def _models():
    from core.model_registry import CATALOGUE

    models = [(e["name"], e["provider"]) for e in CATALOGUE] + [(n, p) for p, n in PROJECT_MODELS]
    # USD per 1k tokens: spread so the cost constraint cuts some models
    return tuple((name, provider, 0.0001 * (1 + i % 25)) for i, (name, provider) in enumerate(models))


def _seed_postgres(pg_url: str) -> tuple[str, str]:
    """(project id, dataset id): the project, its 4 own models, a dataset and one finished experiment per model."""
    import numpy as np
    import psycopg
    from psycopg.types.json import Jsonb

    from core.auth import ensure_project
    from core.migrate import migrate_postgres

    with psycopg.connect(pg_url, autocommit=True) as conn:
        migrate_postgres(conn)
        project = ensure_project(conn, "bench-models")
        row = conn.execute("SELECT id FROM datasets WHERE project_id = %s", (project.id,)).fetchone()
        if row:
            return project.id, row[0]
        dataset_id = "bench-dataset"
        conn.execute("INSERT INTO datasets (id, project_id, name, source, version) VALUES (%s, %s, 'bench', 'manual', 1)",
                     (dataset_id, project.id))
        for provider, name in PROJECT_MODELS:
            conn.execute("INSERT INTO project_models (project_id, provider, name, spec) VALUES (%s, %s, %s, %s)",
                         (project.id, provider, name, Jsonb({"capabilities": {"tools": True}})))
        rng = np.random.default_rng(0)
        for i, (model, provider, _) in enumerate(_models()):
            exp_id = f"bench-exp-{i}"
            conn.execute(
                "INSERT INTO experiments (id, project_id, name, kind, dataset_id, dataset_version, target, status, total, "
                "finished_at) VALUES (%s, %s, %s, 'server', %s, 1, %s, 'completed', %s, now())",
                (exp_id, project.id, f"{model} on bench", dataset_id, Jsonb({"provider": provider, "model": model}), ITEMS))
            rate = 0.5 + 0.45 * rng.random()
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO experiment_results (experiment_id, item_id, repetition, position, scores, latency_ms, cost) "
                    "VALUES (%s, %s, 0, %s, %s, %s, %s)",
                    [(exp_id, f"item-{j}", j, Jsonb([{"name": "correct", "value": float(rng.random() < rate)}]),
                      float(rng.uniform(300, 3000)), 0.001) for j in range(ITEMS)])
    return project.id, dataset_id


def _app(client, pg_url: str, project_id: str):
    from types import SimpleNamespace

    from fastapi import FastAPI
    from psycopg_pool import AsyncConnectionPool

    from core.auth import Project
    from core.deps import current_project, get_services
    from core.http import install_error_handlers
    from query_api.routers.models import router

    services = SimpleNamespace(clickhouse=client)

    @asynccontextmanager
    async def lifespan(app):
        pool = AsyncConnectionPool(pg_url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True})
        await pool.open(wait=True)
        services.require_pg = lambda: pool
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    install_error_handlers(app)
    app.dependency_overrides[current_project] = lambda: Project(id=project_id, name="bench-models")
    app.dependency_overrides[get_services] = lambda: services
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=10_000_000, help="spans to generate (default 10M)")
    parser.add_argument("--data-dir", default="/tmp/evalforge_models_bench", help="chDB + PostgreSQL data dir")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per request")
    parser.add_argument("--reuse", action="store_true", help="keep spans already in --data-dir if there are enough")
    args = parser.parse_args()

    import clickhouse_connect
    from starlette.testclient import TestClient

    from core.embedded import EmbeddedPostgres
    from core.migrate import migrate_clickhouse
    from stream_processors.roller import roll_due

    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(data / "postgres")
    pg_url = pg.start()
    try:
        project_id, dataset_id = _seed_postgres(pg_url)
        client = clickhouse_connect.get_client(dsn=f"chdb://{data / 'clickhouse'}")
        migrate_clickhouse(client)
        have = client.query("SELECT count() FROM spans WHERE project_id = {p:String}",
                            parameters={"p": project_id}).result_rows[0][0]
        if not (args.reuse and have >= args.spans):
            for table in TABLES:
                client.command(f"TRUNCATE TABLE IF EXISTS {table}")
            t0 = time.perf_counter()
            now = datetime.now(timezone.utc)
            generate_spans(client, project_id, args.spans, now, models=_models())
            generate_spans(client, "other-project", max(args.spans // 100, 1000), now, models=_models())
            print(f"generated {args.spans:,} spans over 50 models in {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            print(f"rolled {roll_due(client):,} minutes in {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            for table in TABLES:
                client.command(f"OPTIMIZE TABLE {table} FINAL")
            print(f"merged parts (OPTIMIZE FINAL) in {time.perf_counter() - t0:.1f} s")
        else:
            print(f"reusing {have:,} spans in {args.data_dir}")
        body = {"task": {"dataset_id": dataset_id}, "days": 30,
                "constraints": {"max_p95_latency_ms": 2500, "max_cost_per_1k_calls": 2.0, "capabilities": ["tools"]}}
        with TestClient(_app(client, pg_url, project_id)) as http:
            t0 = time.perf_counter()
            first = http.post("/api/v1/models/recommend", json=body)
            cold = (time.perf_counter() - t0) * 1000
            if first.status_code != 200:
                raise SystemExit(f"HTTP {first.status_code}: {first.text[:300]}")
            result = first.json()
            timings: dict[str, list[float]] = {"recommend (50 models, 30 days)": [],
                                               "profile of one model (30 days)": []}
            for label, call in (("recommend (50 models, 30 days)", lambda: http.post("/api/v1/models/recommend", json=body)),
                                ("profile of one model (30 days)", lambda: http.get("/api/v1/models/openai/gpt-4o?days=30"))):
                for i in range(args.runs + 2):
                    t0 = time.perf_counter()
                    resp = call()
                    elapsed = (time.perf_counter() - t0) * 1000
                    if resp.status_code != 200:
                        raise SystemExit(f"{label}: HTTP {resp.status_code}: {resp.text[:300]}")
                    if i >= 2:
                        timings[label].append(elapsed)
        print(f"\n{args.spans:,} spans; {len(result['candidates'])} candidates, {len(result['excluded'])} excluded; "
              f"winner {result['decision']['winner']}")
        print(f"first recommend (summarises the 50 experiments): {cold:.1f} ms")
        print(f"{'request':40s} {'p50':>8s} {'p95':>8s}   ({args.runs} runs after 2 warm-ups, ms)")
        for label, times in timings.items():
            print(f"{label:40s} {_percentile(times, 50):8.1f} {_percentile(times, 95):8.1f}")
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
