"""Data for the query API tests: two projects written through the real sink (so the materialized
views fill), with every value generated from a fixed seed and kept for exact expectations.

Project A: 100,000 spans (25,000 traces of 4 spans) over three days, plus spans placed exactly on and
just before hour edges. Project B: a small project whose values (model, user, session, tags, score
names) appear nowhere in A — any of them showing up under A's key is a tenant leak.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from core.span import empty_record

MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3-70b")
LATENCY_MU = {"gpt-4o": 7.0, "gpt-4o-mini": 6.0, "claude-3-5-sonnet": 7.0, "llama-3-70b": 6.5}
BASE = (datetime.now(timezone.utc) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
EDGE_HOUR = BASE + timedelta(days=1, hours=10)  # spans at exactly 10:00:00 and 09:59:59.999999


def _hex(rng: np.random.Generator, chars: int) -> str:
    return rng.bytes(chars // 2).hex()


@dataclass
class Dataset:
    project_id: str
    key: str
    spans: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)

    def column(self, name: str, **where: Any) -> np.ndarray:
        rows = [s for s in self.spans if all(s[k] == v for k, v in where.items())]
        return np.array([s[name] for s in rows], dtype=float)


def _span(project_id: str, trace_id: str, span_id: str, parent: str, start: datetime, duration_ms: float,
          **fields: Any) -> dict[str, Any]:
    end = start + timedelta(microseconds=round(duration_ms * 1000))
    rec = empty_record()
    rec.update({"project_id": project_id, "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent,
           "start_time": start, "end_time": end, "service_name": "test-app", "status": "ok",
           "ingested_at": datetime.now(timezone.utc)})
    rec.update(fields)
    # what enrich stores: the duration is derived from the (microsecond) timestamps
    rec["duration_ms"] = (end - start).total_seconds() * 1000.0
    return rec


def generate_project_a(project_id: str, n_traces: int = 25_000, seed: int = 7) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    spans = []
    span_seconds = 3 * 86400 - 3600
    for t in range(n_traces):
        trace_id = _hex(rng, 32)
        root_id = _hex(rng, 16)
        model = MODELS[t % len(MODELS)]
        start = BASE + timedelta(microseconds=int(rng.integers(0, span_seconds * 1_000_000)))
        common = {"user_id": f"user_{t % 50}", "session_id": f"sess_{t // 10}", "environment": "production",
                  "release": f"v{1 + t % 2}", "tags": ["beta"] if t % 3 == 0 else []}
        spans.append(_span(project_id, trace_id, root_id, "", start, float(rng.uniform(2000, 6000)),
                           name="handle_request", kind="agent", input=f"question {t}", output=f"answer {t}",
                           **common))
        for i, name in enumerate(("plan", "answer")):
            error = rng.random() < 0.04
            in_tok, out_tok = int(rng.integers(100, 3000)), int(rng.integers(10, 800))
            spans.append(_span(
                project_id, trace_id, _hex(rng, 16), root_id, start + timedelta(milliseconds=10 + i * 1000),
                float(np.exp(rng.normal(LATENCY_MU[model], 0.6))), name=name, kind="llm", model=model,
                request_model=model, provider="openai" if model.startswith("gpt") else "other",
                status="error" if error else "ok", status_message="boom" if error else "",
                input_tokens=in_tok, output_tokens=out_tok, cost=round(float(rng.uniform(0.0001, 0.05)), 6),
                cost_source="user", ttft_ms=float(rng.uniform(50, 400)), input=f"prompt {t}.{i}",
                output=f"completion {t}.{i}", **common))
        spans.append(_span(project_id, trace_id, _hex(rng, 16), root_id, start + timedelta(milliseconds=5),
                           float(rng.uniform(5, 50)), name="search_orders", kind="tool", **common))
    # hour-edge spans: 3 exactly on 10:00:00.000000, 2 a microsecond before it
    for i, at in enumerate([EDGE_HOUR] * 3 + [EDGE_HOUR - timedelta(microseconds=1)] * 2):
        tid = _hex(rng, 32)
        spans.append(_span(project_id, tid, _hex(rng, 16), "", at, 100.0 + i, name="edge", kind="llm",
                           model="edge-model", provider="edge", cost=0.5, cost_source="user"))
    return spans


def generate_project_b(project_id: str, n_traces: int = 12) -> list[dict[str, Any]]:
    rng = np.random.default_rng(99)
    spans = []
    for t in range(n_traces):
        trace_id, root_id = _hex(rng, 32), _hex(rng, 16)
        start = BASE + timedelta(hours=5 + t)
        common = {"user_id": "user_b_only", "session_id": "sess_b_only", "environment": "b-env",
                  "release": "b-release", "tags": ["b-tag"]}
        spans.append(_span(project_id, trace_id, root_id, "", start, 1500.0 + t, name="b_root", kind="agent",
                           input="secret input of B", output="secret output of B", **common))
        spans.append(_span(project_id, trace_id, _hex(rng, 16), root_id, start + timedelta(milliseconds=3),
                           900.0 + t, name="b_call", kind="llm", model="model-b-only", provider="provider-b",
                           input_tokens=100, output_tokens=10, cost=1.25, cost_source="user",
                           status="error" if t % 4 == 0 else "ok", **common))
    return spans


def insert_scores(clickhouse, scores: list[dict[str, Any]]) -> None:
    from stream_processors.sink import SCORE_COLUMNS

    clickhouse.insert("scores", [[s.get(c) for c in SCORE_COLUMNS] for s in scores], column_names=SCORE_COLUMNS)


def _score(project_id: str, trace_id: str, name: str, value: float | None, string_value: str = "",
           data_type: str = "numeric", source: str = "evaluator") -> dict[str, Any]:
    return {"project_id": project_id, "score_id": uuid.uuid4().hex, "trace_id": trace_id, "span_id": "",
            "name": name, "data_type": data_type, "value": value, "string_value": string_value, "comment": "",
            "source": source, "evaluator": "test", "evaluator_version": "1", "timestamp": BASE + timedelta(days=1)}


@pytest.fixture(scope="session")
def project_a(stack) -> Dataset:
    project_id, key = stack.create_key()
    ds = Dataset(project_id, key, generate_project_a(project_id))
    for i in range(0, len(ds.spans), 20_000):
        stack.insert_spans([dict(s) for s in ds.spans[i:i + 20_000]])
    roots = [s for s in ds.spans if s["parent_span_id"] == "" and s["name"] == "handle_request"]
    rng = np.random.default_rng(3)
    for i, root in enumerate(roots[:2000]):
        # helpfulness: release v2 traces score clearly higher than v1
        mean = 0.8 if root["release"] == "v2" else 0.6
        ds.scores.append(_score(project_id, root["trace_id"], "helpfulness",
                                float(np.clip(rng.normal(mean, 0.1), 0, 1))))
        ds.scores.append(_score(project_id, root["trace_id"], "tone", None, "polite" if i % 3 else "rude",
                                data_type="categorical"))
    insert_scores(stack.clickhouse, ds.scores)
    return ds


@pytest.fixture(scope="session")
def project_b(stack) -> Dataset:
    project_id, key = stack.create_key()
    ds = Dataset(project_id, key, generate_project_b(project_id))
    stack.insert_spans([dict(s) for s in ds.spans])
    roots = [s for s in ds.spans if s["parent_span_id"] == ""]
    ds.scores = [_score(project_id, r["trace_id"], "b-secret-score", 0.9) for r in roots]
    insert_scores(stack.clickhouse, ds.scores)
    return ds


@pytest.fixture(scope="session")
def api(stack):
    """``api(key).get(path, params=…)`` — the real app with that key's Authorization header."""

    class Api:
        def __init__(self, key: str):
            self.headers = stack.headers(key)

        def get(self, path: str, headers: dict | None = None, **kw):
            return stack.client.get(f"/api/v1{path}", headers={**self.headers, **(headers or {})}, **kw)

        def post(self, path: str, headers: dict | None = None, **kw):
            return stack.client.post(f"/api/v1{path}", headers={**self.headers, **(headers or {})}, **kw)

    return Api
