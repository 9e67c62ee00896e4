"""Finished experiments stored as the runner stores them, for the model registry's tests (API and page)."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
from psycopg.types.json import Jsonb


def store_experiment(pg_url: str, project_id: str, dataset_id: str | None, model: str, values: list[float],
                      *, benchmark: str | None = None, latency_ms: float = 500.0, cost: float | None = 0.001) -> str:
    """A completed server-side experiment with one result per item, as the runner stores them."""
    exp_id = uuid.uuid4().hex
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO experiments (id, project_id, name, kind, dataset_id, dataset_version, benchmark, target, "
            "status, total, finished_at) VALUES (%s, %s, %s, 'server', %s, %s, %s, %s, 'completed', %s, now())",
            (exp_id, project_id, f"{model} run", dataset_id, 1 if dataset_id else None,
             Jsonb({"name": benchmark}) if benchmark else None, Jsonb({"provider": "openai", "model": model}),
             len(values)))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO experiment_results (experiment_id, item_id, repetition, position, scores, latency_ms, cost) "
                "VALUES (%s, %s, 0, %s, %s, %s, %s)",
                [(exp_id, f"item-{i}", i, Jsonb([{"name": "correct", "value": v, "passed": v >= 1}]), latency_ms, cost)
                 for i, v in enumerate(values)])
    return exp_id


def binary_scores(rate: float, n: int, seed: int) -> list[float]:
    """n 0/1 scores with exactly round(rate * n) ones, shuffled."""
    ones = round(rate * n)
    values = np.array([1.0] * ones + [0.0] * (n - ones))
    np.random.default_rng(seed).shuffle(values)
    return values.tolist()
