"""Optimisation jobs in PostgreSQL (``prompt_optimizations``), project-scoped.

A worker claims a queued job with ``FOR UPDATE SKIP LOCKED`` and holds the job's session advisory
lock while it runs; ``release_orphans`` finds jobs marked running whose lock nobody holds (their worker
died) and queues them again to resume from their saved ``state`` -- or, after ``MAX_ATTEMPTS`` runs,
marks them failed: no job stays "running" without a worker.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

FINISHED = ("completed", "cancelled", "failed")
MAX_ATTEMPTS = 3  # runs of one job (a worker killed mid-run each time means something in the job kills it)
_COLUMNS = ("id, project_id, prompt_name, base_version, dataset_id, dataset_version, spec, status, progress, history, "
            "decision, result_version, baseline_experiment_id, candidate_experiment_id, state, attempts, error, "
            "created_at, started_at, finished_at")
_KEYS = [k.strip() for k in _COLUMNS.split(",")]
_LOCK_SPACE = 19  # advisory lock key space (experiments use 18)


class NotFound(LookupError):
    pass


def _job(row: tuple) -> dict[str, Any]:
    out = dict(zip(_KEYS, row))
    for k in ("created_at", "started_at", "finished_at"):
        out[k] = out[k].isoformat() if out[k] is not None else None
    return out


async def create(conn, project_id: str, prompt_name: str, base_version: int, dataset_id: str, dataset_version: int,
                 spec: dict[str, Any]) -> str:
    job_id = uuid.uuid4().hex
    await conn.execute(
        "INSERT INTO prompt_optimizations (id, project_id, prompt_name, base_version, dataset_id, dataset_version, spec, "
        "status) VALUES (%s, %s, %s, %s, %s, %s, %s, 'queued')",
        (job_id, project_id, prompt_name, base_version, dataset_id, dataset_version, Jsonb(spec)))
    return job_id


async def get(conn, job_id: str, project_id: str | None = None, prompt_name: str | None = None) -> dict[str, Any]:
    """One job; ``project_id`` (and the prompt's name) scope it; the worker passes neither."""
    sql, params = f"SELECT {_COLUMNS} FROM prompt_optimizations WHERE id = %s", [job_id]
    if project_id is not None:
        sql += " AND project_id = %s"
        params.append(project_id)
    if prompt_name is not None:
        sql += " AND prompt_name = %s"
        params.append(prompt_name)
    row = await (await conn.execute(sql, params)).fetchone()
    if row is None:
        raise NotFound("job_id: no such optimisation of this prompt in your project")
    return _job(row)


async def list_for(conn, project_id: str, prompt_name: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = await (await conn.execute(
        f"SELECT {_COLUMNS} FROM prompt_optimizations WHERE project_id = %s AND prompt_name = %s "
        "ORDER BY created_at DESC LIMIT %s", (project_id, prompt_name, limit))).fetchall()
    return [_job(r) for r in rows]


async def status(conn, job_id: str) -> str | None:
    row = await (await conn.execute("SELECT status FROM prompt_optimizations WHERE id = %s", (job_id,))).fetchone()
    return row[0] if row else None


async def claim(lock_conn) -> dict[str, Any] | None:
    """Take the oldest queued job: its advisory lock on ``lock_conn`` (held until ``unlock`` or the
    session ends), then mark it running. None when there is nothing to take."""
    async with lock_conn.transaction():
        row = await (await lock_conn.execute(
            "SELECT id FROM prompt_optimizations WHERE status = 'queued' ORDER BY created_at "
            "FOR UPDATE SKIP LOCKED LIMIT 1")).fetchone()
        if row is None:
            return None
        locked = await (await lock_conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, %s))",
                                                (row[0], _LOCK_SPACE))).fetchone()
        if not locked[0]:
            return None
        await lock_conn.execute("UPDATE prompt_optimizations SET status = 'running', attempts = attempts + 1, "
                                "started_at = coalesce(started_at, now()), updated_at = now() WHERE id = %s", (row[0],))
    return await get(lock_conn, row[0])


async def unlock(lock_conn, job_id: str) -> None:
    await lock_conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, %s))", (job_id, _LOCK_SPACE))


async def release_orphans(conn) -> list[str]:
    """Queue again every running job whose worker is gone (nobody holds its advisory lock), to resume;
    one that has already been started ``MAX_ATTEMPTS`` times is marked failed instead."""
    rows = await (await conn.execute("SELECT id FROM prompt_optimizations WHERE status = 'running'")).fetchall()
    released = []
    for (job_id,) in rows:
        got = await (await conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, %s))",
                                        (job_id, _LOCK_SPACE))).fetchone()
        if got[0]:
            try:
                if await requeue(conn, job_id):
                    released.append(job_id)
            finally:
                await unlock(conn, job_id)
    return released


async def requeue(conn, job_id: str) -> bool:
    """A running job whose run stopped (its worker died or shut down) back to queued, or failed when
    it has had its attempts."""
    cur = await conn.execute(
        "UPDATE prompt_optimizations SET status = CASE WHEN attempts < %s THEN 'queued' ELSE 'failed' END, "
        "error = CASE WHEN attempts < %s THEN error ELSE %s END, "
        "finished_at = CASE WHEN attempts < %s THEN NULL ELSE now() END, updated_at = now() "
        "WHERE id = %s AND status = 'running'",
        (MAX_ATTEMPTS, MAX_ATTEMPTS, f"its worker stopped mid-run {MAX_ATTEMPTS} times; start a new one",
         MAX_ATTEMPTS, job_id))
    return cur.rowcount == 1


async def save_progress(conn, job_id: str, progress: dict[str, Any], history: list[dict[str, Any]],
                        state: dict[str, Any]) -> str | None:
    """Write progress, history and the resume state; returns the job's status (the runner stops when
    it is cancelled)."""
    row = await (await conn.execute(
        "UPDATE prompt_optimizations SET progress = %s, history = %s, state = %s, updated_at = now() WHERE id = %s "
        "RETURNING status", (Jsonb(progress), Jsonb(history), Jsonb(state), job_id))).fetchone()
    return row[0] if row else None


async def link_experiments(conn, job_id: str, baseline_id: str, candidate_id: str) -> None:
    await conn.execute("UPDATE prompt_optimizations SET baseline_experiment_id = %s, candidate_experiment_id = %s "
                       "WHERE id = %s", (baseline_id, candidate_id, job_id))


async def finish(conn, job_id: str, new: str, *, decision: dict[str, Any] | None = None,
                 result_version: int | None = None, error: str = "") -> bool:
    """Move a queued / running job to a final status (never out of one: a cancel stays a cancel)."""
    cur = await conn.execute(
        "UPDATE prompt_optimizations SET status = %s, decision = coalesce(%s, decision), result_version = %s, "
        "error = %s, finished_at = now(), updated_at = now() WHERE id = %s AND status IN ('queued', 'running')",
        (new, Jsonb(decision) if decision is not None else None, result_version, error[:2000], job_id))
    return cur.rowcount == 1


async def cancel(conn, job_id: str) -> bool:
    return await finish(conn, job_id, "cancelled")
