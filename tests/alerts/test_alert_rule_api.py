"""Alert rules through the app's API (edit, mute / unmute, state, firing history) with the real engine
evaluating them from PostgreSQL, its state in Redis, its record in PostgreSQL, and a Slack-shaped
HTTP receiver.

``stack`` runs ``evalforge up``'s own alert engine every 30 s over every rule, wall clock. So that it
never decides for these rules, this test's engine judges windows two days ahead (spans are written
there): the background engine sees no data for them, and its older evaluations never overwrite the
state recorded by this one's.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from stream_processors.alerts import AlertEngine, PgAlertHistory, SlackNotifier
from stream_processors.alerts.rule_store import load_rules
from tests.alerts.conftest import SpanWriter
from tests.alerts.test_alerts_engine import FAST_RETRIES
from tests.loopback import LOOPBACK_EGRESS

pytestmark = pytest.mark.timeout(120)
W = timedelta(seconds=300)


@pytest.fixture
def ahead() -> datetime:
    """A whole-minute evaluation time two days ahead (see the module docstring)."""
    return datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(days=2)


@pytest.fixture
def engine_for(stack, redis_factory, alert_settings):
    """``engine_for(project_id)``: the real engine over the project's rules as stored, recording history."""
    conns, engines = [], []

    def make(project_id: str) -> AlertEngine:
        conn = psycopg.connect(stack.postgres_url, autocommit=True)
        conns.append(conn)
        engine = AlertEngine(stack.clickhouse, redis_factory(),
                             rules=lambda: [r for r in load_rules(conn) if r.project_id == project_id],
                             notifier=SlackNotifier(FAST_RETRIES, egress=LOOPBACK_EGRESS), settings=alert_settings,
                             history=PgAlertHistory(conn))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
    for conn in conns:
        conn.close()


def _create(stack, key: str, **fields: Any) -> dict:
    body = {"name": "Chat latency p95", "metric": "latency", "aggregation": "p95", "comparator": ">",
            "threshold": 1000, "window_seconds": 300, "min_samples": 10, **fields}
    r = stack.client.post("/api/v1/alert-rules", headers=stack.headers(key), json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _rule(stack, key: str, rule_id: str) -> dict:
    [rule] = [r for r in stack.client.get("/api/v1/alert-rules", headers=stack.headers(key)).json()["rules"]
              if r["id"] == rule_id]
    return rule


def _history(stack, key: str, rule_id: str, **params: Any) -> dict:
    r = stack.client.get(f"/api/v1/alert-rules/{rule_id}/history", headers=stack.headers(key), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_firing_is_recorded_and_sent_and_an_edited_threshold_is_the_one_evaluated(stack, engine_for, slack, ahead):
    project_id, key = stack.create_key()
    rule = _create(stack, key, slack_webhook_url=slack.url)
    assert rule["state"]["status"] == "unknown" and rule["state"]["last_evaluated_at"] is None
    spans = SpanWriter(stack.clickhouse, project_id)
    spans.insert(spans.slow(ahead - W, 300, 50))  # p95 2,000 ms over 1,000
    engine = engine_for(project_id)

    assert engine.tick(ahead).transitions == [(rule["id"], "", "firing")]
    assert len(slack.bodies) == 1 and "Firing: Chat latency p95" in str(slack.bodies[0])
    [fired] = _history(stack, key, rule["id"])["data"]
    assert (fired["kind"], fired["value"], fired["threshold"], fired["notification"]) == ("firing", 2000.0, 1000.0, "sent")
    assert datetime.fromisoformat(fired["at"]) == ahead and fired["notified_at"] is not None
    state = _rule(stack, key, rule["id"])["state"]
    assert (state["status"], state["last_value"], state["firing_groups"]) == ("firing", 2000.0, 1)
    assert datetime.fromisoformat(state["since"]) == ahead == datetime.fromisoformat(state["last_evaluated_at"])

    # the same slow spans, judged against the edited threshold: the rule resolves
    r = stack.client.patch(f"/api/v1/alert-rules/{rule['id']}", headers=stack.headers(key), json={"threshold": 5000})
    assert r.status_code == 200, r.text
    assert r.json()["threshold"] == 5000 and r.json()["slack_webhook_url"] != slack.url  # still redacted
    later = ahead + timedelta(seconds=60)
    assert engine.tick(later).transitions == [(rule["id"], "", "resolved")]
    assert len(slack.bodies) == 2 and "Resolved" in str(slack.bodies[1])
    resolved, fired_again = _history(stack, key, rule["id"])["data"]
    assert (resolved["kind"], resolved["threshold"], resolved["notification"]) == ("resolved", 5000.0, "sent")
    assert fired_again == fired  # newest first
    state = _rule(stack, key, rule["id"])["state"]
    assert state["status"] == "ok" and datetime.fromisoformat(state["since"]) == later

    # pages: one row each, newest first, then no further page
    first = _history(stack, key, rule["id"], limit=1)
    assert [t["kind"] for t in first["data"]] == ["resolved"] and first["next_cursor"]
    second = _history(stack, key, rule["id"], limit=1, cursor=first["next_cursor"])
    assert [t["kind"] for t in second["data"]] == ["firing"] and second["next_cursor"] is None


def test_a_muted_rule_records_the_transition_sends_nothing_and_announces_after_unmute(stack, engine_for, slack, ahead):
    project_id, key = stack.create_key()
    rule = _create(stack, key, slack_webhook_url=slack.url)
    before = datetime.now(timezone.utc)
    r = stack.client.post(f"/api/v1/alert-rules/{rule['id']}/mute", headers=stack.headers(key), json={"minutes": 60})
    assert r.status_code == 200, r.text
    state = r.json()["state"]
    until = datetime.fromisoformat(state["muted_until"])
    assert state["status"] == "muted" and timedelta(minutes=59) < until - before < timedelta(minutes=61)
    spans = SpanWriter(stack.clickhouse, project_id)
    spans.insert(spans.slow(ahead - W, 300 + 120, 60))  # slow through the next two minutes too
    engine = engine_for(project_id)

    report = engine.tick(ahead)
    assert report.transitions == [] and report.suppressed == [(rule["id"], "", "firing")]
    assert slack.bodies == []
    [fired] = _history(stack, key, rule["id"])["data"]
    assert (fired["kind"], fired["notification"], fired["value"]) == ("firing", "muted", 2000.0)
    listed = _rule(stack, key, rule["id"])["state"]
    assert (listed["status"], listed["condition"]) == ("muted", "firing")

    r = stack.client.post(f"/api/v1/alert-rules/{rule['id']}/unmute", headers=stack.headers(key))
    assert r.status_code == 200 and r.json()["state"]["status"] == "firing"
    # still firing once unmuted: announced now (the firing was never sent)
    assert engine.tick(ahead + timedelta(seconds=60)).transitions == [(rule["id"], "", "firing")]
    assert len(slack.bodies) == 1 and "Firing" in str(slack.bodies[0])
    [fired] = _history(stack, key, rule["id"])["data"]  # no new transition: the same firing
    assert fired["notification"] == "muted" and fired["notified_at"] is not None


def test_mute_until_a_time_and_indefinitely(stack):
    _, key = stack.create_key()
    rule = _create(stack, key)
    url = f"/api/v1/alert-rules/{rule['id']}/mute"
    until = (datetime.now(timezone.utc) + timedelta(hours=3)).replace(microsecond=0)
    state = stack.client.post(url, headers=stack.headers(key), json={"until": until.isoformat()}).json()["state"]
    assert datetime.fromisoformat(state["muted_until"]) == until and not state["muted_indefinitely"]
    state = stack.client.post(url, headers=stack.headers(key), json={"indefinitely": True}).json()["state"]
    assert state["status"] == "muted" and state["muted_until"] is None and state["muted_indefinitely"]
    assert _rule(stack, key, rule["id"])["state"]["status"] == "muted"


@pytest.mark.parametrize("body, field", [
    ({"metric": "vibes"}, "metric"),
    ({"aggregation": "p95", "metric": "errors"}, "aggregation"),
    ({"group_by": "colour"}, "group_by"),
    ({"filter": {"nope": "x"}}, "filter"),
    ({"slack_webhook_url": "ftp://example.com/x"}, "slack_webhook_url"),
    ({"threshold": None}, "threshold"),
    ({"window_seconds": 1}, "window_seconds"),
    ({}, "body"),
])
def test_edit_validates_like_create_and_names_the_field(stack, body, field):
    _, key = stack.create_key()
    rule = _create(stack, key)
    r = stack.client.patch(f"/api/v1/alert-rules/{rule['id']}", headers=stack.headers(key), json=body)
    assert r.status_code in (400, 422) and field in r.text, r.text
    assert _rule(stack, key, rule["id"])["threshold"] == 1000  # unchanged


def test_edit_and_mute_are_scoped_to_the_project_and_checked(stack):
    _, key = stack.create_key()
    _, other_key = stack.create_key()
    rule = _create(stack, key)
    for method, path, body in (("PATCH", "", {"threshold": 1}), ("POST", "/mute", {"minutes": 5}),
                               ("POST", "/unmute", None), ("GET", "/history", None), ("GET", "", None)):
        r = stack.client.request(method, f"/api/v1/alert-rules/{rule['id']}{path}", headers=stack.headers(other_key),
                                 json=body)
        assert r.status_code == 404, (method, path, r.text)
    mute = f"/api/v1/alert-rules/{rule['id']}/mute"
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    for body in ({}, {"minutes": 5, "indefinitely": True}, {"until": past}, {"minutes": 0}):
        r = stack.client.post(mute, headers=stack.headers(key), json=body)
        assert r.status_code in (400, 422) and ("until" in r.text or "minutes" in r.text), (body, r.text)
    for cursor in ("garbage", "2026-12-07T10:00:00+00:00|99999999999999999999", "2026-12-07T10:00:00|5"):
        r = stack.client.get(f"/api/v1/alert-rules/{rule['id']}/history", headers=stack.headers(key),
                             params={"cursor": cursor})
        assert r.status_code == 400 and "cursor" in r.text, cursor
    assert _rule(stack, key, rule["id"])["state"]["status"] == "unknown"
