"""Editing an eval rule (PATCH /api/v1/eval-rules/{id}) through the real app: the processor's trigger
evaluates spans with the edited rule."""

from __future__ import annotations

import time

from tests.test_e2e_embedded import _otlp_body
from tests.waiting import wait_until

TRIGGER_REFRESH_S = 5.5  # the trigger reloads rules every 5 s (stream_processors/eval_trigger.py)


def _send(stack, key: str, output: str) -> str:
    body, trace_id = _otlp_body(output)
    r = stack.client.post("/v1/traces", content=body,
                          headers={**stack.headers(key), "Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    return trace_id


def _rows(stack, sql: str, project_id: str) -> list[tuple]:
    return stack.clickhouse.query(sql, parameters={"p": project_id}).result_rows


def test_an_edited_sampling_rate_takes_effect(stack):
    project_id, key = stack.create_key()
    r = stack.client.post("/api/v1/eval-rules", headers=stack.headers(key), json={
        "name": "mentions paris", "evaluator": "contains", "sampling_rate": 0.0,
        "config": {"expected": "Paris", "score_name": "edited_rate"}})
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    time.sleep(TRIGGER_REFRESH_S)
    unsampled = _send(stack, key, "Paris, while the rule samples nothing.")
    wait_until(lambda: _rows(stack, "SELECT 1 FROM spans WHERE project_id = {p:String}", project_id), 30)

    r = stack.client.patch(f"/api/v1/eval-rules/{rule_id}", headers=stack.headers(key), json={"sampling_rate": 1.0})
    assert r.status_code == 200, r.text
    assert (r.json()["sampling_rate"], r.json()["evaluator"], r.json()["name"]) == (1.0, "contains", "mentions paris")
    listed = stack.client.get("/api/v1/eval-rules", headers=stack.headers(key)).json()["rules"]
    assert [rule["sampling_rate"] for rule in listed] == [1.0]
    time.sleep(TRIGGER_REFRESH_S)
    sampled = _send(stack, key, "Paris is the capital of France.")
    sql = "SELECT trace_id, value FROM scores FINAL WHERE project_id = {p:String} AND name = 'edited_rate'"
    assert wait_until(lambda: _rows(stack, sql, project_id), 40) == [(sampled, 1.0)]
    assert unsampled != sampled


def test_edit_validates_like_create_and_is_scoped_to_the_project(stack):
    _, key = stack.create_key()
    _, other_key = stack.create_key()
    rule = stack.client.post("/api/v1/eval-rules", headers=stack.headers(key), json={
        "name": "r", "evaluator": "contains", "config": {"expected": "x"}}).json()
    url = f"/api/v1/eval-rules/{rule['id']}"
    for body, field in (({"sampling_rate": 1.5}, "sampling_rate"), ({"config": {"no_such_field": 1}}, "config.no_such_field"),
                        ({"filter": {"colour": "red"}}, "filter"), ({"evaluator": "no-such-evaluator"}, "evaluator"),
                        ({"enabled": None}, "enabled"), ({}, "body")):
        r = stack.client.patch(url, headers=stack.headers(key), json=body)
        assert r.status_code in (400, 422) and field in r.text, (body, r.text)
    assert stack.client.patch(url, headers=stack.headers(other_key), json={"enabled": False}).status_code == 404
    r = stack.client.patch(url, headers=stack.headers(key), json={"enabled": False, "filter": {"model": "gpt-4o"}})
    assert r.status_code == 200 and (r.json()["enabled"], r.json()["filter"]) == (False, {"model": "gpt-4o"})
    assert r.json()["config"] == {"expected": "x"}  # untouched fields stay


def test_an_edited_evaluator_takes_effect(stack):
    """Same rule id and config, another evaluator: the worker must not keep scoring with the old one."""
    project_id, key = stack.create_key()
    r = stack.client.post("/api/v1/eval-rules", headers=stack.headers(key), json={
        "name": "paris", "evaluator": "contains", "config": {"expected": "Paris", "score_name": "edited_evaluator"}})
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    time.sleep(TRIGGER_REFRESH_S)
    output = "Paris is the capital of France."  # contains "Paris", but is not exactly "Paris"
    before = _send(stack, key, output)
    sql = "SELECT trace_id, value FROM scores FINAL WHERE project_id = {p:String} AND name = 'edited_evaluator'"
    assert wait_until(lambda: _rows(stack, sql, project_id), 40) == [(before, 1.0)]

    r = stack.client.patch(f"/api/v1/eval-rules/{rule_id}", headers=stack.headers(key), json={"evaluator": "exact_match"})
    assert r.status_code == 200, r.text
    assert (r.json()["evaluator"], r.json()["config"]) == ("exact_match", {"expected": "Paris", "score_name": "edited_evaluator"})
    time.sleep(TRIGGER_REFRESH_S)
    after = _send(stack, key, output)
    wait_until(lambda: len(_rows(stack, sql, project_id)) == 2, 40)
    assert dict(_rows(stack, sql, project_id)) == {before: 1.0, after: 0.0}
