"""A mute holds back pages, not the end of a problem people were already paged about, and loses no page:
the real engine over rules stored through the API, its state in Redis, a Slack-shaped receiver (see
test_alert_rule_api.py for why the engine judges windows two days ahead)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from stream_processors.alerts.rule_store import load_rules
from tests.alerts.conftest import SpanWriter
from tests.alerts.test_alert_rule_api import W, _create, ahead, engine_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)


def _mute(stack, key: str, rule_id: str) -> None:
    r = stack.client.post(f"/api/v1/alert-rules/{rule_id}/mute", headers=stack.headers(key), json={"minutes": 60})
    assert r.status_code == 200, r.text


def test_a_firing_announced_before_the_mute_gets_its_resolve_during_it(stack, engine_for, slack, ahead):  # noqa: F811
    project_id, key = stack.create_key()
    rule = _create(stack, key, slack_webhook_url=slack.url)
    spans = SpanWriter(stack.clickhouse, project_id)
    spans.insert(spans.slow(ahead - W, 300, 50))
    engine = engine_for(project_id)
    assert engine.tick(ahead).transitions == [(rule["id"], "", "firing")]
    assert len(slack.bodies) == 1

    _mute(stack, key, rule["id"])
    spans.insert(spans.fast(ahead, 300, 50))  # the next window is fast: the problem is over
    report = engine.tick(ahead + W)
    assert report.transitions == [(rule["id"], "", "resolved")] and report.suppressed == []
    assert len(slack.bodies) == 2 and "Resolved" in str(slack.bodies[1])


def test_a_firing_queued_before_the_mute_is_announced_after_it(stack, engine_for, slack, ahead):  # noqa: F811
    project_id, key = stack.create_key()
    rule = _create(stack, key, slack_webhook_url=slack.url)
    spans = SpanWriter(stack.clickhouse, project_id)
    spans.insert(spans.slow(ahead - W, 300 + 120, 70))  # slow through the next two minutes too
    engine = engine_for(project_id)
    # Another replica's evaluation queued the firing (and marked it announced) ...
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        [stored] = [r for r in load_rules(conn) if r.id == rule["id"]]
    epoch_ms = int(ahead.timestamp() * 1000)
    [applied] = engine.store.apply(stored, [("", True, {"value": 2000.0, "samples": 50})], epoch_ms)
    assert (applied.kind, applied.transition) == ("firing", "firing")
    # ... and the rule is muted before any replica delivers it: dropped, nothing sent.
    _mute(stack, key, rule["id"])
    assert engine.tick(ahead + timedelta(seconds=60)).transitions == []
    assert slack.bodies == []

    r = stack.client.post(f"/api/v1/alert-rules/{rule['id']}/unmute", headers=stack.headers(key))
    assert r.status_code == 200, r.text
    # still firing once unmuted, and never announced: announced now
    assert engine.tick(ahead + timedelta(seconds=120)).transitions == [(rule["id"], "", "firing")]
    assert len(slack.bodies) == 1 and "Firing" in str(slack.bodies[0])
