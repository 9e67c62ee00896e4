"""Experiments and their results in PostgreSQL (psycopg 3 async connections, project-scoped).

Results are keyed (experiment, item, repetition) and inserted with ON CONFLICT DO NOTHING: a resumed
run, a redelivered job or a client retrying its upload never counts an item twice.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson
from psycopg.types.json import Jsonb

from evaluators import benchmarks
from evaluators.datasets import read_items

FINISHED = ("completed", "cancelled", "failed")
_EXPERIMENT_COLUMNS = ("id, name, kind, dataset_id, dataset_version, benchmark, split, target, evaluators, repetitions, "
                       "max_concurrency, status, total, error, metadata, created_at, started_at, finished_at")
RESULT_COLUMNS = ("item_id", "repetition", "position", "input", "expected_output", "output", "scores", "latency_ms",
                  "input_tokens", "output_tokens", "cost", "error", "trace_id")


class NotFound(LookupError):
    pass


def _experiment(row: tuple) -> dict[str, Any]:
    keys = [k.strip() for k in _EXPERIMENT_COLUMNS.split(",")]
    out = dict(zip(keys, row))
    for k in ("created_at", "started_at", "finished_at"):
        out[k] = out[k].isoformat() if out[k] is not None else None
    return out


async def create(conn, project_id: str, spec: dict[str, Any]) -> str:
    experiment_id = uuid.uuid4().hex
    await conn.execute(
        "INSERT INTO experiments (id, project_id, name, kind, dataset_id, dataset_version, benchmark, split, target, "
        "evaluators, repetitions, max_concurrency, status, total, metadata) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (experiment_id, project_id, spec["name"], spec["kind"], spec.get("dataset_id"), spec.get("dataset_version"),
         Jsonb(spec["benchmark"]) if spec.get("benchmark") else None, spec.get("split"), Jsonb(spec.get("target") or {}),
         Jsonb(spec.get("evaluators") or []), spec["repetitions"], spec["max_concurrency"], spec["status"],
         spec["total"], Jsonb(spec.get("metadata") or {})))
    return experiment_id


async def get(conn, experiment_id: str, project_id: str | None = None) -> dict[str, Any]:
    """One experiment; ``project_id`` scopes it (the worker, which read the job, passes None)."""
    sql = f"SELECT {_EXPERIMENT_COLUMNS}, project_id FROM experiments WHERE id = %s"
    params: list[Any] = [experiment_id]
    if project_id is not None:
        sql += " AND project_id = %s"
        params.append(project_id)
    row = await (await conn.execute(sql, params)).fetchone()
    if row is None:
        raise NotFound("no such experiment in your project")
    out = _experiment(row[:-1])
    out["project_id"] = row[-1]
    return out


async def list_for(conn, project_id: str, limit: int = 100, dataset_id: str | None = None) -> list[dict[str, Any]]:
    """Newest first, each with its progress; ``dataset_id`` keeps the runs on that dataset (to compare)."""
    sql = (f"SELECT {_EXPERIMENT_COLUMNS}, (SELECT count(*) FROM experiment_results r WHERE r.experiment_id = e.id) "
           "FROM experiments e WHERE project_id = %s")
    params: list[Any] = [project_id]
    if dataset_id is not None:
        sql += " AND dataset_id = %s"
        params.append(dataset_id)
    rows = await (await conn.execute(sql + " ORDER BY created_at DESC LIMIT %s", [*params, limit])).fetchall()
    out = []
    for r in rows:
        exp = _experiment(r[:-1])
        exp["progress"] = {"done": r[-1], "total": exp["total"]}
        out.append(exp)
    return out


async def status(conn, experiment_id: str) -> str | None:
    row = await (await conn.execute("SELECT status FROM experiments WHERE id = %s", (experiment_id,))).fetchone()
    return row[0] if row else None


async def set_status(conn, experiment_id: str, new: str, *, expect: tuple[str, ...], error: str = "") -> bool:
    """Move to ``new`` only from one of ``expect`` (a cancelled run is never marked completed)."""
    stamp = ", started_at = coalesce(started_at, now())" if new == "running" else ""
    if new in FINISHED:
        stamp = ", finished_at = now()"
    cur = await conn.execute(f"UPDATE experiments SET status = %s, error = %s{stamp} WHERE id = %s AND status = ANY(%s)",
                             (new, error[:2000], experiment_id, list(expect)))
    return cur.rowcount == 1


async def try_lock(conn, experiment_id: str) -> bool:
    """Take the experiment's session advisory lock (released by ``unlock`` or when the session ends)."""
    row = await (await conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 18))", (experiment_id,))).fetchone()
    return bool(row[0])


async def unlock(conn, experiment_id: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 18))", (experiment_id,))


async def done_keys(conn, experiment_id: str) -> set[tuple[str, int]]:
    rows = await (await conn.execute("SELECT item_id, repetition FROM experiment_results WHERE experiment_id = %s",
                                     (experiment_id,))).fetchall()
    return {(r[0], r[1]) for r in rows}


async def done_count(conn, experiment_id: str) -> int:
    row = await (await conn.execute("SELECT count(*) FROM experiment_results WHERE experiment_id = %s",
                                    (experiment_id,))).fetchone()
    return row[0]


async def insert_results(conn, experiment_id: str, results: list[dict[str, Any]]) -> int:
    """Insert results, ignoring (item, repetition) pairs already stored; returns how many were new."""
    if not results:
        return 0
    params = []
    for r in results:
        params.append((experiment_id, r["item_id"], r["repetition"], r.get("position", 0), Jsonb(r.get("input")),
                       Jsonb(r.get("expected_output")), Jsonb(r.get("output")), Jsonb(r.get("scores") or []),
                       r.get("latency_ms"), r.get("input_tokens") or 0, r.get("output_tokens") or 0, r.get("cost"),
                       r.get("error"), r.get("trace_id")))
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO experiment_results (experiment_id, item_id, repetition, position, input, expected_output, output, "
            "scores, latency_ms, input_tokens, output_tokens, cost, error, trace_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", params,
            returning=False)
        return cur.rowcount


async def results(conn, experiment_id: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    sql = (f"SELECT {', '.join(RESULT_COLUMNS)} FROM experiment_results WHERE experiment_id = %s "
           "ORDER BY position, item_id, repetition OFFSET %s")
    params: list[Any] = [experiment_id, offset]
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    rows = await (await conn.execute(sql, params)).fetchall()
    return [dict(zip(RESULT_COLUMNS, r)) for r in rows]


def same_items(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two experiments ran on the same items: dataset version, split and benchmark draw all equal."""
    key = ("dataset_id", "dataset_version", "benchmark", "split")
    return all(a[k] == b[k] for k in key)


def benchmark_item_id(item: dict[str, Any]) -> str:
    """A benchmark item's id: from its content, so the same question has the same id in every draw."""
    return hashlib.sha256(orjson.dumps(item["input"], option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


async def experiment_items(conn, exp: dict[str, Any]) -> tuple[list[dict[str, Any]], benchmarks.Benchmark | None]:
    """The items an experiment runs on (its pinned dataset version, or its benchmark draw)."""
    if exp.get("benchmark"):
        b = exp["benchmark"]
        bench = benchmarks.load(b["name"], limit=b.get("limit"), seed=b.get("seed") or 0, subset=b.get("subset"))
        return [{"id": benchmark_item_id(i), **i} for i in bench.items], bench
    return await read_items(conn, exp["dataset_id"], exp["dataset_version"], exp.get("split")), None
