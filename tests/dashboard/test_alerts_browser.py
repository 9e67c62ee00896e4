"""Alerts, eval-rule editing and "Add to dataset" in the dashboard, in a real Chromium against the real app.

The alert engine here is the real one, run by the test over the project's rules as stored (its record in
PostgreSQL is what the page shows). It judges windows two days ahead, where the test writes its spans,
so the stack's own background engine (wall clock) never decides for these rules.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import redis

from stream_processors.alerts import AlertEngine, EngineSettings, PgAlertHistory
from stream_processors.alerts.rule_store import load_rules
from tests.alerts.conftest import SpanWriter
from tests.dashboard.conftest import span
from tests.dashboard.test_auth_browser import _sign_in, _user

pytestmark = pytest.mark.timeout(240)


def _rule(live, key: str, **fields) -> dict:
    body = {"name": f"Slow chat {uuid.uuid4().hex[:4]}", "metric": "latency", "aggregation": "p95", "threshold": 1000,
            "window_seconds": 300, "min_samples": 10, **fields}
    with live.api(key) as api:
        r = api.post("/api/v1/alert-rules", json=body)
        assert r.status_code == 201, r.text
        return r.json()


def _fire(live, clickhouse, redis_url: str, project_id: str) -> None:
    """Slow spans two days ahead, then one tick of the real engine over the project's stored rules."""
    ahead = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(days=2)
    spans = SpanWriter(clickhouse, project_id)
    spans.insert(spans.slow(ahead - timedelta(seconds=300), 300, 40))
    with psycopg.connect(live.postgres_url, autocommit=True) as conn, redis.Redis.from_url(redis_url) as client:
        engine = AlertEngine(clickhouse, client, rules=lambda: [r for r in load_rules(conn) if r.project_id == project_id],
                             settings=EngineSettings(key_prefix=f"evalforge:alerts:test:{uuid.uuid4().hex}"),
                             history=PgAlertHistory(conn))
        try:
            assert [kind for _, _, kind in engine.tick(ahead).transitions] == ["firing"]
        finally:
            engine.close()


def test_alert_state_history_edit_and_mute_in_the_page(live, page_for, clickhouse, redis_url):
    project_id, key = live.create_project()
    rule = _rule(live, key)
    _fire(live, clickhouse, redis_url, project_id)
    page = page_for(key)
    page.goto(f"/projects/{project_id}/alerts")
    row = page.locator(f"[data-testid=alert-rule][data-rule-id='{rule['id']}']")
    assert row.get_by_test_id("alert-state").inner_text() == "firing"
    assert "2,000" in row.inner_text()  # the last value: p95 of 2,000 ms spans

    row.get_by_role("button", name="History").click()
    history = page.get_by_test_id("alert-history")
    transition = history.get_by_test_id("alert-transition")
    transition.wait_for()
    assert transition.count() == 1
    text = transition.inner_text()
    assert "firing" in text and "2,000" in text and "> 1,000" in text and "no webhook" in text

    row.get_by_role("button", name="Edit").click()
    form = page.get_by_role("form", name="Edit alert rule")
    assert form.get_by_label("Threshold").input_value() == "1000"
    assert form.get_by_label("Name").input_value() == rule["name"]
    form.get_by_label("Threshold").fill("5000")
    form.get_by_role("button", name="Save changes").click()
    row.filter(has_text="p95(latency) > 5000").wait_for()
    with live.api(key) as api:
        assert api.get(f"/api/v1/alert-rules/{rule['id']}").json()["threshold"] == 5000

    row.get_by_role("button", name="Mute 1 h").click()
    row.get_by_test_id("alert-state").filter(has_text="muted until").wait_for()
    with live.api(key) as api:
        state = api.get(f"/api/v1/alert-rules/{rule['id']}").json()["state"]
    until = datetime.fromisoformat(state["muted_until"])
    assert state["status"] == "muted" and timedelta(minutes=59) < until - datetime.now(timezone.utc) <= timedelta(hours=1)
    row.get_by_role("button", name="Unmute").click()
    row.get_by_test_id("alert-state").filter(has_text="firing").wait_for()
    row.get_by_role("button", name="Mute until unmuted").click()
    row.get_by_test_id("alert-state").filter(has_text="muted until unmuted").wait_for()
    with live.api(key) as api:
        assert api.get(f"/api/v1/alert-rules/{rule['id']}").json()["state"]["muted_indefinitely"] is True
    assert not page.js_errors


def test_a_viewer_sees_alerts_but_cannot_edit_or_mute(browser, live):
    project_id, key = live.create_project()
    rule = _rule(live, key)
    ctx, page = _sign_in(browser, live, _user(live, "viewer", project_id))
    page.wait_for_url("**/traces")
    page.goto(f"/projects/{project_id}/alerts")
    row = page.locator("[data-testid=alert-rule]")
    row.get_by_role("button", name="History").wait_for()
    for control in ("Edit", "Mute 1 h", "Mute 24 h", "Mute until unmuted", "Delete"):
        assert row.get_by_role("button", name=control).count() == 0
    assert page.get_by_role("form", name="New alert rule").count() == 0
    csrf = {c["name"]: c["value"] for c in ctx.cookies()}["ef_csrf"]
    headers = {"X-EvalForge-Project": project_id, "X-CSRF-Token": csrf}
    assert page.request.patch(f"/api/v1/alert-rules/{rule['id']}", data={"threshold": 1}, headers=headers).status == 403
    assert page.request.post(f"/api/v1/alert-rules/{rule['id']}/mute", data={"minutes": 60}, headers=headers).status == 403
    assert page.request.post(f"/api/v1/alert-rules/{rule['id']}/unmute", headers=headers).status == 403
    with live.api(key) as api:
        after = api.get(f"/api/v1/alert-rules/{rule['id']}").json()
    assert after["threshold"] == 1000 and after["state"]["status"] != "muted"
    ctx.close()


def test_eval_rule_sample_rate_edited_in_the_page(live, page_for):
    project_id, key = live.create_project()
    with live.api(key) as api:
        rule = api.post("/api/v1/eval-rules", json={"name": "mentions paris", "evaluator": "contains",
                                                     "config": {"expected": "Paris"}, "sampling_rate": 0.5}).json()
    page = page_for(key)
    page.goto(f"/projects/{project_id}/evaluations")
    row = page.get_by_test_id("eval-rule")
    row.get_by_role("button", name="Edit").click()
    form = page.get_by_role("form", name="Edit eval rule")
    assert form.get_by_label("Sample rate").input_value() == "0.5"
    form.get_by_label("Sample rate").fill("0.25")
    form.get_by_role("button", name="Save rule").click()
    row.get_by_test_id("sample-rate").filter(has_text="0.25").wait_for()
    with live.api(key) as api:
        [stored] = api.get("/api/v1/eval-rules").json()["rules"]
    assert (stored["id"], stored["sampling_rate"], stored["config"]) == (rule["id"], 0.25, {"expected": "Paris"})
    assert not page.js_errors


def test_add_a_span_to_a_new_then_an_existing_dataset_from_the_trace_page(live, page_for):
    project_id, key = live.create_project()
    trace_id, root_id, llm_id = uuid.uuid4().hex, uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    live.insert_spans([
        span(project_id, trace_id, root_id, "", start, 1200, name="answer", kind="agent", input="capital?", output="Paris"),
        span(project_id, trace_id, llm_id, root_id, start + timedelta(milliseconds=5), 900, name="llm-call", kind="llm",
             model="gpt-4o", input=json.dumps(messages), output="The capital of France is Paris."),
    ])
    page = page_for(key)
    page.goto(f"/projects/{project_id}/traces/{trace_id}?span={llm_id}")
    panel = page.get_by_test_id("span-panel")
    panel.get_by_role("button", name="Add to dataset…").click()
    form = panel.get_by_role("form", name="Add span to dataset")
    form.get_by_label("New dataset name").fill("capitals")
    form.get_by_role("button", name="Add span").click()
    added = panel.get_by_test_id("dataset-added")
    added.wait_for()
    with live.api(key) as api:
        [dataset] = api.get("/api/v1/datasets").json()["datasets"]
        body = api.get(f"/api/v1/datasets/{dataset['id']}").json()
    assert dataset["name"] == "capitals" and f"version {dataset['version']}" in added.inner_text()
    [item] = body["items"]
    assert item["id"] in added.inner_text()
    assert (item["source_trace_id"], item["source_span_id"]) == (trace_id, llm_id)
    assert item["input"] == messages and item["expected_output"] == "The capital of France is Paris."

    # the root span, into the dataset that now exists (offered first)
    page.goto(f"/projects/{project_id}/traces/{trace_id}?span={root_id}")
    panel.get_by_role("button", name="Add to dataset…").click()
    form.get_by_label("Dataset").locator("option", has_text="capitals").wait_for(state="attached")  # once listed
    assert form.get_by_label("Dataset").input_value() == dataset["id"]
    form.get_by_role("button", name="Add span").click()
    added.wait_for()
    with live.api(key) as api:
        body = api.get(f"/api/v1/datasets/{dataset['id']}").json()
    assert body["version"] == dataset["version"] + 1
    assert {(i["source_span_id"], json.dumps(i["expected_output"])) for i in body["items"]} == {
        (llm_id, '"The capital of France is Paris."'), (root_id, '"Paris"')}
    assert not page.js_errors
