"""Model registry, observed profiles and recommendation against the real stack (chDB, PostgreSQL).

Spans of several catalogued models with known latency / cost / errors are written through the real
sink; finished experiments with known per-item scores are stored in PostgreSQL as the runner stores
them. Expected numbers are computed here independently (numpy on the seeded spans, scipy for power).
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb
from scipy import optimize, stats

from core.model_registry import Registry
from query_api.model_profiles import observed_profiles, window
from tests.accounts.conftest import signed_in
from tests.query.conftest import _span
from tests.query.model_seed import binary_scores, store_experiment

NOW = datetime.now(timezone.utc)
# model as the spans name it -> (latency lognormal mu, user cost per call, error every k-th call)
TRAFFIC = {
    "gpt-4o-2024-08-06": (7.45, 0.004, 0),   # slow: p95 ~ 2,000 ms
    "gpt-4o-mini": (6.3, 0.0003, 25),          # fast and cheap
    "gpt-4o-mini-2024-07-18": (6.3, 0.0003, 0),  # a snapshot of the same registry model
    "claude-haiku-4-5": (6.55, 0.001, 0),      # slower and dearer than gpt-4o-mini, and worse
    "o3-mini": (6.3, 0.0005, 0),               # no vision
    "gemini-2.5-flash": (6.2, 0.0002, 0),      # never evaluated on the dataset
    "mistral-small": (6.2, 0.02, 0),           # too dear
}
CALLS = 400


def _traffic(project_id: str) -> list[dict]:
    rng = np.random.default_rng(2026)
    spans = []
    for model, (mu, cost, every) in TRAFFIC.items():
        for i in range(CALLS):
            start = NOW - timedelta(days=2, seconds=int(rng.integers(0, 86400)))
            error = every and i % every == 0
            error_type = ("openai.RateLimitError" if i % (2 * every) == 0 else "openai.APITimeoutError") if error else ""
            spans.append(_span(
                project_id, uuid.uuid4().hex, uuid.uuid4().hex[:16], "", start, float(np.exp(rng.normal(mu, 0.4))),
                name="chat", kind="llm", model=model, request_model=model,
                provider="anthropic" if model.startswith("claude") else "openai",
                status="error" if error else "ok", error_type=error_type, status_message="failed" if error else "",
                input_tokens=int(rng.integers(100, 2000)), output_tokens=0 if error else int(rng.integers(20, 600)),
                cost=cost, cost_source="user", ttft_ms=float(rng.uniform(80, 300))))
    return spans


@pytest.fixture(scope="module")
def seeded(stack):
    project_id, key = stack.create_key()
    spans = _traffic(project_id)
    stack.insert_spans([dict(s) for s in spans])
    stack.insert_spans([dict(s) for s in spans[:50]])  # a redelivered batch: must not count twice
    headers = stack.headers(key)
    dataset = stack.client.post("/api/v1/datasets", json={"name": "support"}, headers=headers).json()["id"]
    close = stack.client.post("/api/v1/datasets", json={"name": "close-call"}, headers=headers).json()["id"]
    pg = stack.postgres_url
    # the known best under the constraints: gpt-4o-mini (gpt-4o scores higher but is too slow)
    for model, rate, seed in (("gpt-4o", 0.95, 1), ("gpt-4o-mini", 0.88, 2), ("claude-haiku-4-5", 0.70, 3),
                              ("o3-mini", 0.93, 4), ("mistral-small", 0.90, 5)):
        store_experiment(pg, project_id, dataset, model, binary_scores(rate, 200, seed))
    # two models too close to call on 120 items
    close_a, close_b = binary_scores(0.80, 120, 6), binary_scores(0.75, 120, 7)
    store_experiment(pg, project_id, close, "gpt-4.1", close_a, cost=None)
    store_experiment(pg, project_id, close, "gpt-4.1-mini", close_b, cost=None)
    # three models too close to call: the proposal must size both comparisons with the best
    three = stack.client.post("/api/v1/datasets", json={"name": "three-close"}, headers=headers).json()["id"]
    three_values = {"gpt-4.1": binary_scores(0.80, 120, 8), "gpt-4.1-mini": binary_scores(0.76, 120, 9),
                    "gpt-4.1-nano": binary_scores(0.73, 120, 10)}
    for model, values in three_values.items():
        store_experiment(pg, project_id, three, model, values, cost=None)
    return {"project_id": project_id, "headers": headers, "spans": spans, "dataset": dataset, "close": close,
            "close_values": (close_a, close_b), "three": three, "three_values": three_values}


def test_profile_equals_numpy_on_the_same_spans(stack, seeded):
    r = stack.client.get("/api/v1/models/openai/gpt-4o-mini?days=30", headers=seeded["headers"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["capabilities"]["vision"] is True and body["price"]["entry"] == "openai/gpt-4o-mini"
    mine = [s for s in seeded["spans"] if s["model"] in ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")]
    obs = body["observed"]
    durations = np.array([s["duration_ms"] for s in mine])
    ttft = np.array([s["ttft_ms"] for s in mine])
    assert obs["calls"] == len(mine) == 2 * CALLS
    assert obs["latency_ms"]["p50"] == pytest.approx(np.percentile(durations, 50), rel=1e-12)
    assert obs["latency_ms"]["p95"] == pytest.approx(np.percentile(durations, 95), rel=1e-12)
    assert obs["ttft_ms"]["p50"] == pytest.approx(np.percentile(ttft, 50), rel=1e-12)
    assert obs["ttft_ms"]["p95"] == pytest.approx(np.percentile(ttft, 95), rel=1e-12)
    errors = [s for s in mine if s["status"] == "error"]
    assert obs["errors"] == len(errors) and obs["error_rate"] == pytest.approx(len(errors) / len(mine))
    assert obs["errors_by_class"] == {
        "rate_limit": sum(s["error_type"] == "openai.RateLimitError" for s in errors),
        "timeout": sum(s["error_type"] == "openai.APITimeoutError" for s in errors)}
    assert obs["cost_per_call"] == pytest.approx(sum(s["cost"] for s in mine) / len(mine), rel=1e-12)
    # generation speed after the first token; a call whose first token came at its end has none
    speed = [s["output_tokens"] / ((s["duration_ms"] - s["ttft_ms"]) / 1000) for s in mine
             if s["output_tokens"] and s["duration_ms"] > s["ttft_ms"]]
    assert obs["output_tokens_per_second"]["p50"] == pytest.approx(np.median(speed), rel=1e-9)
    [exp] = body["experiments"]
    values = binary_scores(0.88, 200, 2)
    assert exp["dataset_id"] == seeded["dataset"] and exp["scores"]["correct"]["n"] == 200
    assert exp["scores"]["correct"]["mean"] == pytest.approx(np.mean(values))
    low, high = exp["scores"]["correct"]["ci_low"], exp["scores"]["correct"]["ci_high"]
    assert low < np.mean(values) < high


def test_recommendation_picks_the_known_best_and_says_why_others_are_out(stack, seeded):
    r = stack.client.post("/api/v1/models/recommend", headers=seeded["headers"], json={
        "task": {"dataset_id": seeded["dataset"]},
        "constraints": {"max_p95_latency_ms": 1500, "max_cost_per_1k_calls": 5.0, "capabilities": ["vision"]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["model"] for c in body["candidates"]] == ["openai/gpt-4o-mini"]
    assert body["decision"]["winner"] == "openai/gpt-4o-mini" and body["decision"]["confident"] is True
    assert body["proposed_experiment"] is None
    evidence = body["candidates"][0]["evidence"]
    mini = [s for s in seeded["spans"] if s["model"].startswith("gpt-4o-mini")]
    assert evidence["n"] == 200 and evidence["score"] == pytest.approx(0.88)
    assert evidence["p95_latency_ms"] == pytest.approx(np.percentile([s["duration_ms"] for s in mini], 95), rel=1e-12)
    assert evidence["cost_per_1k_calls"] == pytest.approx(1000 * np.mean([s["cost"] for s in mini]), rel=1e-12)
    reasons = {e["model"]: e["reasons"] for e in body["excluded"]}
    gpt4o_p95 = np.percentile([s["duration_ms"] for s in seeded["spans"] if s["model"].startswith("gpt-4o-2")], 95)
    assert reasons["openai/gpt-4o"] == [f"p95 {gpt4o_p95:,.0f} ms > 1,500 ms"]
    assert reasons["openai/o3-mini"] == ["lacks capability vision"]
    assert reasons["google/gemini-2.5-flash"] == ["no experiment on this dataset"]
    assert reasons["mistral/mistral-small"] == ["cost $20.00 per 1k calls > $5.00"]
    assert reasons["anthropic/claude-haiku-4-5"] == ["dominated by openai/gpt-4o-mini"]
    assert reasons["meta/llama-4-scout"] == ["no experiment on this dataset", "no latency evidence (no calls in the "
                                             "window, no experiment latency)", "no cost evidence (no priced calls in "
                                             "the window, no experiment cost)"]


def _items_needed_by_hand(p1: float, p2: float, alpha: float = 0.05) -> int:
    """Two-sided two-proportion z-test on Cohen's h, power 0.8, equal groups: the smallest n
    with power(n) >= 0.8, power written out and solved with scipy (independent of statsmodels)."""
    h = abs(2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2)))
    z = stats.norm.ppf(1 - alpha / 2)

    def power(n: float) -> float:
        shift = h * math.sqrt(n / 2)
        return stats.norm.sf(z - shift) + stats.norm.cdf(-z - shift) - 0.8
    return math.ceil(optimize.brentq(power, 1e-6, 1e9, xtol=1e-12))


def test_overlapping_cis_give_no_winner_and_a_powered_experiment(stack, seeded):
    r = stack.client.post("/api/v1/models/recommend", headers=seeded["headers"],
                          json={"task": {"dataset_id": seeded["close"], "score": "correct"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["model"] for c in body["candidates"]] == ["openai/gpt-4.1", "openai/gpt-4.1-mini"]
    assert body["decision"]["winner"] is None and body["decision"]["confident"] is False
    assert "overlaps" in body["decision"]["why"]
    proposal = body["proposed_experiment"]
    assert proposal["models"] == ["openai/gpt-4.1", "openai/gpt-4.1-mini"]
    assert proposal["dataset_id"] == seeded["close"]
    a, b = seeded["close_values"]
    assert proposal["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert proposal["items_needed"] == _items_needed_by_hand(float(np.mean(a)), float(np.mean(b)))
    assert proposal["items_needed"] > 120  # more than either run had: that is why the CIs overlap


def test_three_overlapping_models_size_every_comparison_at_bonferroni_alpha(stack, seeded):
    r = stack.client.post("/api/v1/models/recommend", headers=seeded["headers"],
                          json={"task": {"dataset_id": seeded["three"], "score": "correct"}})
    assert r.status_code == 200, r.text
    proposal = r.json()["proposed_experiment"]
    assert proposal["models"] == ["openai/gpt-4.1", "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]
    means = {m: float(np.mean(v)) for m, v in seeded["three_values"].items()}
    # k = 3 models: 2 comparisons with the best, each at 0.05 / 2
    by_hand = {m: _items_needed_by_hand(means["gpt-4.1"], means[m], alpha=0.025) for m in ("gpt-4.1-mini", "gpt-4.1-nano")}
    assert proposal["alpha"] == pytest.approx(0.025)
    assert [(c["models"][1], c["items_needed"]) for c in proposal["comparisons"]] == \
        [("openai/gpt-4.1-mini", by_hand["gpt-4.1-mini"]), ("openai/gpt-4.1-nano", by_hand["gpt-4.1-nano"])]
    # the closest pair decides, and needs more than it would at an uncorrected 0.05
    assert proposal["items_needed"] == max(by_hand.values()) == by_hand["gpt-4.1-mini"]
    assert proposal["items_needed"] > _items_needed_by_hand(means["gpt-4.1"], means["gpt-4.1-mini"])
    assert proposal["difference"] == pytest.approx(means["gpt-4.1"] - means["gpt-4.1-mini"])
    assert "Bonferroni" in proposal["correction"]


def test_viewers_may_recommend_but_not_change_the_registry(stack, seeded):
    stack.client.cookies.clear()
    try:
        _, h = signed_in(stack.client, stack, "viewer", seeded["project_id"])
        r = stack.client.post("/api/v1/models/recommend", headers=h,
                              json={"task": {"dataset_id": seeded["close"], "score": "correct"}})
        assert r.status_code == 200, r.text  # a read: viewers may run it
        assert r.json()["proposed_experiment"]["models"] == ["openai/gpt-4.1", "openai/gpt-4.1-mini"]
        created = stack.client.post("/api/v1/models", headers=h, json={"provider": "acme", "name": "viewer-model"})
        changed = stack.client.patch("/api/v1/models/openai/gpt-4o", headers=h, json={"context_window": 5})
        deleted = stack.client.delete("/api/v1/models/openai/gpt-4o", headers=h)
        assert (created.status_code, changed.status_code, deleted.status_code) == (403, 403, 403)
    finally:
        stack.client.cookies.clear()


def test_a_project_azure_model_takes_only_azure_spans(stack):
    """A project model azure/gpt-4o sorts before openai/gpt-4o: spans say which provider served them."""
    project_id, key = stack.create_key()
    h = stack.headers(key)
    created = stack.client.post("/api/v1/models", headers=h, json={"provider": "azure", "name": "gpt-4o"})
    assert created.status_code == 201, created.text
    rng = np.random.default_rng(4)
    spans = [_span(project_id, uuid.uuid4().hex, uuid.uuid4().hex[:16], "", NOW - timedelta(hours=2),
                   float(rng.uniform(100, 900)), name="chat", kind="llm", model=model, request_model=model,
                   provider=provider, cost=0.001, cost_source="user")
             for provider, model, n in (("openai", "gpt-4o", 30), ("openai", "gpt-4o-2024-08-06", 20), ("azure", "gpt-4o", 7))
             for _ in range(n)]
    stack.insert_spans([dict(s) for s in spans])
    for provider, calls in (("openai", 50), ("azure", 7)):
        mine = np.array([s["duration_ms"] for s in spans if s["provider"] == provider])
        body = stack.client.get(f"/api/v1/models/{provider}/gpt-4o?days=1", headers=h).json()
        assert body["observed"]["calls"] == calls == mine.size, provider
        assert body["observed"]["latency_ms"]["p95"] == pytest.approx(np.percentile(mine, 95), rel=1e-12)
    # the all-models scan (recommend's evidence) splits them the same way
    registry = Registry([{"provider": "azure", "name": "gpt-4o"}])
    profiles = observed_profiles(stack.clickhouse, project_id, registry, window(1, None, None), None, True)
    assert {k: p["calls"] for k, p in profiles.items()} == {"openai/gpt-4o": 50, "azure/gpt-4o": 7}


def test_project_scoping(stack, seeded):
    other_id, other_key = stack.create_key()
    headers = stack.headers(other_key)
    body = stack.client.get("/api/v1/models/openai/gpt-4o-mini", headers=headers).json()
    assert body["observed"]["calls"] == 0 and body["experiments"] == []
    r = stack.client.post("/api/v1/models/recommend", headers=headers, json={"task": {"dataset_id": seeded["dataset"]}})
    assert r.status_code == 400 and "task.dataset_id" in r.json()["error"]
    created = stack.client.post("/api/v1/models", headers=seeded["headers"], json={
        "provider": "acme", "name": "acme-large", "context_window": 32000, "capabilities": {"tools": True}})
    assert created.status_code == 201, created.text
    mine = stack.client.get("/api/v1/models?provider=acme", headers=seeded["headers"]).json()["models"]
    assert [m["name"] for m in mine] == ["acme-large"]
    assert stack.client.get("/api/v1/models?provider=acme", headers=headers).json()["models"] == []
    assert stack.client.get("/api/v1/models/acme/acme-large", headers=headers).status_code == 404
    assert stack.client.delete("/api/v1/models/acme/acme-large", headers=headers).status_code == 404


def test_project_models_crud_and_bad_fields(stack):
    _, key = stack.create_key()
    h = stack.headers(key)
    c = stack.client
    bad = c.post("/api/v1/models", headers=h, json={"provider": "acme", "name": "m1", "context_window": -5})
    assert bad.status_code == 400 and bad.json()["error"].startswith("context_window")
    bad = c.post("/api/v1/models", headers=h, json={"provider": "acme", "name": "m1", "capabilities": {"telepathy": True}})
    assert bad.status_code == 400 and bad.json()["error"].startswith("capabilities")
    bad = c.post("/api/v1/models", headers=h, json={"provider": "acme", "name": "m1", "deprecation_date": "soon"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("deprecation_date")
    bad = c.post("/api/v1/models", headers=h, json={"provider": "acme", "name": "Bad Name!"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("name")
    assert c.post("/api/v1/models", headers=h, json={"provider": "acme", "name": "m1"}).status_code == 201
    assert c.get("/api/v1/models?capability=tools&provider=acme", headers=h).json()["models"] == []
    assert c.post("/api/v1/models", headers=h, json={"provider": "acme", "name": "m1"}).status_code == 409
    r = c.patch("/api/v1/models/acme/m1", headers=h, json={"capabilities": {"vision": True}, "max_output_tokens": 4096})
    assert r.status_code == 200 and r.json()["capabilities"]["vision"] is True and r.json()["max_output_tokens"] == 4096
    assert c.get("/api/v1/models?capability=vision&provider=acme", headers=h).json()["models"][0]["name"] == "m1"
    assert c.get("/api/v1/models?capability=telepathy", headers=h).status_code == 400
    # overriding a shipped model's field for this project only
    assert c.post("/api/v1/models", headers=h, json={"provider": "openai", "name": "gpt-4o",
                                                      "context_window": 64000}).status_code == 201
    shipped = c.get("/api/v1/models/openai/gpt-4o", headers=h).json()
    assert shipped["context_window"] == 64000 and shipped["source"] == "shipped+project"
    assert shipped["capabilities"]["vision"] is True  # fields not given stay the shipped ones
    assert c.delete("/api/v1/models/openai/gpt-4o", headers=h).status_code == 200
    assert c.get("/api/v1/models/openai/gpt-4o", headers=h).json()["context_window"] == 128000
    assert c.delete("/api/v1/models/acme/m1", headers=h).status_code == 200
    for query, field in (("days=0", "days"), ("from=yesterday", "from"), ("days=7&from=2026-01-01", "days"),
                         ("from=2026-02-01&to=2026-01-01", "from")):
        r = c.get(f"/api/v1/models/openai/gpt-4o?{query}", headers=h)
        assert r.status_code == 400 and r.json()["error"].startswith(field), (query, r.text)
    r = c.get("/api/v1/models/openai/gpt-4o?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", headers=h)
    assert r.json()["observed"]["window"] == {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
    r = c.post("/api/v1/models/recommend", headers=h, json={"task": {"dataset_id": "x", "benchmark": "gsm8k"}})
    assert r.status_code == 400 and r.json()["error"].startswith("task")
    r = c.post("/api/v1/models/recommend", headers=h, json={"task": {"benchmark": "gsm8k"},
                                                            "constraints": {"max_p95_latency_ms": -1}})
    assert r.status_code == 400 and "max_p95_latency_ms" in r.json()["error"]


def test_eval_rule_quality_comes_from_its_online_scores_per_model(stack, seeded):
    from tests.query.conftest import insert_scores

    h = seeded["headers"]
    rule = stack.client.post("/api/v1/eval-rules", headers=h, json={
        "name": "json ok", "evaluator": "json_valid", "config": {"score_name": "json_ok"}, "enabled": False})
    assert rule.status_code == 201, rule.text
    rng = np.random.default_rng(11)
    expected: dict[str, list[float]] = {"openai/gpt-4o-mini": [], "google/gemini-2.5-flash": []}
    rows = []
    for s in seeded["spans"]:
        if s["model"] not in ("gpt-4o-mini", "gemini-2.5-flash") or rng.random() < 0.5:
            continue
        value = float(rng.random() < (0.9 if s["model"] == "gpt-4o-mini" else 0.6))
        # half the scores name the span they judged, half only its trace (one model call per trace here)
        span_id = s["span_id"] if rng.random() < 0.5 else ""
        expected["openai/gpt-4o-mini" if s["model"] == "gpt-4o-mini" else "google/gemini-2.5-flash"].append(value)
        rows.append({"project_id": seeded["project_id"], "score_id": uuid.uuid4().hex, "trace_id": s["trace_id"],
                     "span_id": span_id, "name": "json_ok", "data_type": "boolean", "value": value, "string_value": "",
                     "comment": "", "source": "evaluator", "evaluator": "json_valid", "evaluator_version": "1",
                     "timestamp": NOW - timedelta(days=1)})
    # same score name from another evaluator: not this rule's
    rows.append({**rows[0], "score_id": uuid.uuid4().hex, "evaluator": "llm_judge", "value": 0.0})
    insert_scores(stack.clickhouse, rows)
    r = stack.client.post("/api/v1/models/recommend", headers=h, json={"task": {"eval_rule_id": rule.json()["id"]},
                                                                       "constraints": {"min_score": 0.7}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"]["score"] == "json_ok"
    [winner] = body["candidates"]
    values = expected["openai/gpt-4o-mini"]
    assert winner["model"] == "openai/gpt-4o-mini" and winner["evidence"]["n"] == len(values)
    assert winner["evidence"]["score"] == pytest.approx(np.mean(values))
    ci = stats.bootstrap((np.sort(values),), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                         random_state=0).confidence_interval
    assert winner["evidence"]["ci"] == pytest.approx([ci.low, ci.high])  # the CI of the sorted scores (order-free)
    gemini = np.mean(expected["google/gemini-2.5-flash"])
    reasons = {e["model"]: e["reasons"] for e in body["excluded"]}
    assert reasons["google/gemini-2.5-flash"] == [f"score {gemini:.3f} < 0.700"]
    assert reasons["openai/gpt-4o"] == ["no online scores of this eval rule on its calls in the last 30 days"]


def test_a_deprecated_model_is_excluded_whatever_its_scores(stack):
    _, key = stack.create_key()
    h = stack.headers(key)
    project_id = stack.client.get("/api/v1/projects/current", headers=h).json()["id"]
    dataset = stack.client.post("/api/v1/datasets", json={"name": "d"}, headers=h).json()["id"]
    store_experiment(stack.postgres_url, project_id, dataset, "claude-3-7-sonnet-20250219", binary_scores(0.99, 50, 1))
    store_experiment(stack.postgres_url, project_id, dataset, "claude-sonnet-4-5", binary_scores(0.50, 50, 2))
    body = stack.client.post("/api/v1/models/recommend", headers=h, json={"task": {"dataset_id": dataset}}).json()
    reasons = {e["model"]: e["reasons"] for e in body["excluded"]}
    assert reasons["anthropic/claude-3-7-sonnet"] == ["deprecated as of 2026-02-19"]
    assert body["decision"]["winner"] == "anthropic/claude-sonnet-4-5"


def test_benchmark_task_and_a_score_name_that_must_be_chosen(stack):
    _, key = stack.create_key()
    h = stack.headers(key)
    project_id = stack.client.get("/api/v1/projects/current", headers=h).json()["id"]
    store_experiment(stack.postgres_url, project_id, None, "gpt-5-mini", binary_scores(0.7, 80, 1), benchmark="gsm8k")
    store_experiment(stack.postgres_url, project_id, None, "gpt-5", binary_scores(0.9, 80, 2), benchmark="mmlu")
    body = stack.client.post("/api/v1/models/recommend", headers=h, json={"task": {"benchmark": "gsm8k"}}).json()
    assert [c["model"] for c in body["candidates"]] == ["openai/gpt-5-mini"]
    assert body["candidates"][0]["evidence"]["score"] == pytest.approx(0.7)
    assert {e["model"]: e["reasons"] for e in body["excluded"]}["openai/gpt-5"] == ["no experiment on benchmark gsm8k"]
    # a second score on the same benchmark: the caller must say which one ranks the models
    exp = store_experiment(stack.postgres_url, project_id, None, "gpt-5-nano", binary_scores(0.5, 10, 3), benchmark="gsm8k")
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE experiment_results SET scores = scores || %s WHERE experiment_id = %s",
                     (Jsonb([{"name": "format_ok", "value": 1.0}]), exp))
    r = stack.client.post("/api/v1/models/recommend", headers=h, json={"task": {"benchmark": "gsm8k"}})
    assert r.status_code == 400 and r.json()["error"] == "task.score: required: the experiments on this task have scores correct, format_ok"
    r = stack.client.post("/api/v1/models/recommend", headers=h, json={"task": {"benchmark": "gsm8k", "score": "format_ok"}})
    assert [c["model"] for c in r.json()["candidates"]] == ["openai/gpt-5-nano"]
