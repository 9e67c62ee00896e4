"""The Models page in a real Chromium: the registry, a model's profile and a recommendation show the
API's own numbers."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tests.dashboard.conftest import span
from tests.query.model_seed import binary_scores, store_experiment

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def models_project(live):
    project_id, key = live.create_project()
    rng = np.random.default_rng(5)
    now = datetime.now(timezone.utc)
    spans = []
    for model, mu in (("gpt-4o-mini-2024-07-18", 6.0), ("gpt-4o", 7.0), ("claude-haiku-4-5", 6.4)):
        for i in range(60):
            error = i % 20 == 0
            spans.append(span(project_id, uuid.uuid4().hex, uuid.uuid4().hex[:16], "", now - timedelta(hours=2, minutes=i),
                              float(np.exp(rng.normal(mu, 0.3))), name="chat", kind="llm", model=model,
                              provider="anthropic" if model.startswith("claude") else "openai",
                              status="error" if error else "ok", error_type="openai.RateLimitError" if error else "",
                              input_tokens=300, output_tokens=0 if error else 120, ttft_ms=float(rng.uniform(50, 200))))
    live.insert_spans(spans)
    with live.api(key) as api:
        dataset = api.post("/api/v1/datasets", json={"name": "faq"}).json()["id"]
    for model, rate, seed in (("gpt-4o-mini", 0.82, 1), ("gpt-4o", 0.86, 2), ("claude-haiku-4-5", 0.60, 3)):
        store_experiment(live.postgres_url, project_id, dataset, model, binary_scores(rate, 100, seed))
    return project_id, key, dataset


def test_registry_filters_profile_and_recommendation_show_the_api_numbers(live, models_project, page_for):
    project_id, key, dataset = models_project
    page = page_for(key)
    page.goto(f"/projects/{project_id}/models?provider=anthropic&capability=vision&model=openai/gpt-4o-mini")
    registry = page.get_by_test_id("registry")
    registry.wait_for()
    with live.api(key) as api:
        listed = api.get("/api/v1/models", params={"provider": "anthropic", "capability": "vision"}).json()["models"]
        profile = api.get("/api/v1/models/openai/gpt-4o-mini", params={"days": 30}).json()
        rec = api.post("/api/v1/models/recommend", json={"task": {"dataset_id": dataset}}).json()
    rows = registry.locator("tbody tr")
    assert [r.get_attribute("data-model") for r in rows.all()] == [m["id"] for m in listed]
    assert page.get_by_label("Provider").input_value() == "anthropic"

    o = profile["observed"]
    prof = page.get_by_test_id("profile")
    prof.locator("[data-field=calls]").wait_for()
    assert prof.locator("[data-field=calls]").inner_text() == f"{o['calls']:,}" == "60"
    assert prof.locator("[data-field=latency]").inner_text() == f"{o['latency_ms']['p50']:.1f} / {o['latency_ms']['p95']:.1f}"
    assert prof.locator("[data-field=ttft]").inner_text() == f"{o['ttft_ms']['p50']:.1f} / {o['ttft_ms']['p95']:.1f}"
    assert prof.locator("[data-field=error_rate]").inner_text() == f"{o['error_rate']:.4f}"
    assert prof.locator("[data-field=errors_by_class]").inner_text() == "rate_limit 3"
    assert f"{profile['experiments'][0]['scores']['correct']['mean']:.3f}" in prof.get_by_role("table", name="Experiment scores").inner_text()

    page.get_by_label("Task value").fill(dataset)
    page.get_by_role("button", name="Recommend", exact=True).click()
    result = page.get_by_test_id("recommendation")
    result.wait_for()
    shown = result.get_by_role("table", name="Candidates").locator("tbody tr")
    assert [r.get_attribute("data-model") for r in shown.all()] == [c["model"] for c in rec["candidates"]]
    for row, cand in zip(shown.all(), rec["candidates"]):
        ev = cand["evidence"]
        assert row.locator("[data-field=score]").inner_text() == f"{ev['score']:.3f}"
        assert row.locator("[data-field=ci]").inner_text() == f"[{ev['ci'][0]:.3f}, {ev['ci'][1]:.3f}]"
        assert row.locator("[data-field=n]").inner_text() == str(ev["n"])
        assert row.locator("[data-field=p95]").inner_text() == f"{ev['p95_latency_ms']:.1f}"
    assert rec["decision"]["why"] in page.get_by_test_id("decision").inner_text()
    excluded = result.get_by_role("table", name="Excluded models")
    haiku = next(x for x in rec["excluded"] if x["model"] == "anthropic/claude-haiku-4-5")
    assert "; ".join(haiku["reasons"]) in excluded.locator("tr[data-model='anthropic/claude-haiku-4-5']").inner_text()
    # gpt-4o (0.86) and gpt-4o-mini (0.82) on 100 items each: too close to call
    assert rec["decision"]["winner"] is None and rec["proposed_experiment"]["models"] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    items = rec["proposed_experiment"]["items_needed"]
    assert page.get_by_test_id("proposed-experiment").locator("[data-field=items_needed]").inner_text() == str(items)
    assert page.js_errors == []  # type: ignore[attr-defined]
