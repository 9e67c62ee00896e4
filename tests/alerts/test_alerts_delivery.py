"""Slack delivery against a real HTTP receiver: retries, Retry-After, giving up, and the secret URL."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from stream_processors.alerts import AlertEngine, AlertRule, DeliverySettings, SlackNotifier, redact_rule
from tests.loopback import LOOPBACK_EGRESS

FAST = DeliverySettings(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5)
MESSAGE = {"text": "hello", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]}


def notifications(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("evalforge_alert_notifications_total", {"kind": kind, "outcome": outcome}) or 0.0


def rule_for(project: str, url: str | None) -> AlertRule:
    return AlertRule(id=f"r-{project}", project_id=project, name="Latency", metric="latency", aggregation="p95",
                     threshold=1000.0, window_seconds=60, min_samples=5, slack_webhook_url=url)


@pytest.mark.timeout(60)
def test_engine_retries_webhook_500s_then_delivers(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    slack.fail_with((500, {}), (500, {}))
    engine = AlertEngine(clickhouse, redis_factory(), [rule_for(project, slack.url)], SlackNotifier(FAST, egress=LOOPBACK_EGRESS),
                         alert_settings)
    spans.insert(spans.slow(t0 - timedelta(seconds=60), 60, 10))
    sent_before = notifications("firing", "sent")

    report = engine.tick(t0)

    assert [status for _, status in slack.attempts] == [500, 500, 200]
    assert len(slack.bodies) == 1 and slack.bodies[0]["blocks"][0]["text"]["text"] == "🔴 Firing: Latency"
    assert report.deliveries == [(f"r-{project}", "", "firing", True)]
    assert notifications("firing", "sent") == sent_before + 1
    assert engine.tick(t0 + timedelta(seconds=1)).deliveries == []  # delivered means done: not sent again


@pytest.mark.timeout(60)
def test_engine_records_a_delivery_it_gave_up_on(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    slack.fail_with(*[(503, {})] * 4)
    engine = AlertEngine(clickhouse, redis_factory(), [rule_for(project, slack.url)], SlackNotifier(FAST, egress=LOOPBACK_EGRESS),
                         alert_settings)
    spans.insert(spans.slow(t0 - timedelta(seconds=60), 60, 10))
    failed_before = notifications("firing", "failed")

    report = engine.tick(t0)

    assert len(slack.attempts) == 4 and slack.bodies == []
    assert report.deliveries == [(f"r-{project}", "", "firing", False)]
    assert notifications("firing", "failed") == failed_before + 1
    [failure] = engine.store.failures()
    assert failure["rule_id"] == f"r-{project}" and failure["attempts"] == 4 and "503" in failure["error"]
    assert slack.url not in json.dumps(failure)
    # the alert is still firing (state moved on); the failed message is not retried forever
    assert engine.tick(t0 + timedelta(seconds=1)).deliveries == []


@pytest.mark.timeout(30)
def test_429_waits_for_retry_after(slack):
    slack.fail_with((429, {"Retry-After": "1"}))
    result = SlackNotifier(FAST, egress=LOOPBACK_EGRESS).deliver(slack.url, MESSAGE)
    assert result.ok and result.attempts == 2
    (first, _), (second, _) = slack.attempts
    assert second - first >= 0.95
    assert slack.bodies == [MESSAGE]


@pytest.mark.timeout(30)
def test_permanent_4xx_is_not_retried(slack):
    slack.fail_with((404, {}))
    result = SlackNotifier(FAST, egress=LOOPBACK_EGRESS).deliver(slack.url, MESSAGE)
    assert not result.ok and result.attempts == 1 and result.status == 404
    assert len(slack.attempts) == 1


@pytest.mark.timeout(30)
def test_network_errors_are_retried_then_given_up():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}/services/T1/B2/secret-path-part"
    result = SlackNotifier(FAST, egress=LOOPBACK_EGRESS).deliver(url, MESSAGE)
    assert not result.ok and result.attempts == 4 and result.status is None and "ConnectError" in result.error
    assert "secret-path-part" not in result.error
    assert time.monotonic() - started < 5


def test_redact_rule_never_shows_the_webhook_url():
    url = "https://hooks.slack.com/services/T024BE7LD/B01234ABCDE/9xQ7secretTokenWXYZ"
    rule = AlertRule(id="r1", project_id="p", name="n", metric="latency", threshold=1.0, slack_webhook_url=url)
    for shown in (redact_rule(rule), redact_rule({"id": "r1", "slack_webhook_url": url})):
        text = json.dumps(shown)
        assert url not in text and "secretToken" not in text and "B01234ABCDE" not in text
        assert shown["slack_webhook_url"] == "https://hooks.slack.com/…WXYZ"
    assert url not in repr(rule) and url not in str(rule)
    assert redact_rule(rule)["threshold"] == 1.0 and redact_rule(rule)["metric"] == "latency"
    assert redact_rule({"id": "r2", "slack_webhook_url": None})["slack_webhook_url"] is None


@pytest.mark.timeout(60)
def test_messages_never_carry_the_webhook_url(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    engine = AlertEngine(clickhouse, redis_factory(), [rule_for(project, slack.url)], SlackNotifier(FAST, egress=LOOPBACK_EGRESS),
                         alert_settings)
    spans.insert(spans.slow(t0 - timedelta(seconds=60), 60, 10))
    engine.tick(t0)
    secret = slack.url.rsplit("/", 1)[1]
    assert len(slack.bodies) == 1 and secret not in json.dumps(slack.bodies[0])
    # and nothing in Redis holds it either (the outbox names the rule, the URL is looked up at send time)
    client = redis_factory()
    keys = list(client.scan_iter(match="{" + alert_settings.key_prefix + "}*"))
    assert keys  # the engine did keep state under this test's prefix
    assert not any(secret.encode() in (client.dump(key) or b"") for key in keys)


def test_user_text_cannot_ping_the_channel_or_forge_links():
    from stream_processors.alerts.messages import build_message

    rule = AlertRule(id="r", project_id="p", name="<!channel> latency", metric="latency", threshold=1.0,
                     group_by="user_id")
    payload = {"value": 2.0, "samples": 3, "window_end": "2026-01-01T00:00:00.000Z",
               "query_start": "2025-12-31T23:55:00.000Z"}
    body = build_message(rule, "firing", "<https://evil.example|click me>", payload, "https://ef.example")
    mrkdwn = [body["text"]] + [f["text"] for f in body["blocks"][2]["fields"]]
    assert not any("<!channel>" in t or "<https://evil" in t for t in mrkdwn)
    assert "&lt;https://evil.example|click me&gt;" in body["blocks"][2]["fields"][1]["text"]
