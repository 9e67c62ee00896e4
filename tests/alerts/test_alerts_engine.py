"""The alert engine end to end: spans in chDB -> rules -> Redis state -> Slack-shaped HTTP receiver."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from stream_processors.alerts import AlertEngine, AlertRule, DeliverySettings, EngineSettings, SlackNotifier
from tests.loopback import LOOPBACK_EGRESS

FAST_RETRIES = DeliverySettings(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5)


def latency_rule(project: str, url: str, **overrides: Any) -> AlertRule:
    fields = dict(id=f"r-{project}", project_id=project, name="Chat latency p95", metric="latency",
                  aggregation="p95", comparator=">", threshold=1000.0, window_seconds=300, min_samples=10,
                  cooldown_seconds=900, slack_webhook_url=url)
    fields.update(overrides)
    rule = AlertRule(**fields)
    rule.validate()
    return rule


def make_engine(clickhouse: Any, redis_client: Any, rules: list[AlertRule], settings: EngineSettings,
                **overrides: Any) -> AlertEngine:
    return AlertEngine(clickhouse, redis_client, rules, SlackNotifier(FAST_RETRIES, egress=LOOPBACK_EGRESS),
                       dataclasses.replace(settings, **overrides))


def titles(slack: Any) -> list[str]:
    return [body["blocks"][0]["text"]["text"] for body in slack.bodies]


@pytest.mark.timeout(60)
def test_p95_fires_once_stays_quiet_in_cooldown_and_resolves(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    rule = latency_rule(project, slack.url)
    engine = make_engine(clickhouse, redis_factory(), [rule], alert_settings)
    w = timedelta(seconds=300)

    # 2 slow spans out of 92: the p95 stays fast, nothing fires
    spans.insert(spans.fast(t0 - 2 * w, 300, 90) + spans.slow(t0 - 2 * w + timedelta(seconds=7), 200, 2))
    assert engine.tick(t0 - w).transitions == []

    # the next window is all slow: one firing message
    spans.insert(spans.slow(t0 - w, 300, 50))
    report = engine.tick(t0)
    assert report.transitions == [(rule.id, "", "firing")]
    assert titles(slack) == ["🔴 Firing: Chat latency p95"]
    body = slack.bodies[0]
    text = str(body)
    assert "latency p95" in body["blocks"][1]["text"]["text"] and "2,000 ms" in text and "1,000 ms" in text
    assert "5m ending" in text and "*Group*\\nall" in text and "*Samples*\\n50" in text
    link = body["blocks"][3]["elements"][0]["url"]
    assert link.startswith("https://evalforge.example/api/v1/metrics?") and "metric=latency" in link
    assert "aggregation=p95" in link and "project_id" not in link  # the API key scopes the project

    # still slow a minute and five minutes later: inside the cooldown, no repeat
    spans.insert(spans.slow(t0, 300, 50))
    assert engine.tick(t0 + timedelta(seconds=60)).transitions == []
    assert engine.tick(t0 + w).transitions == []
    assert len(slack.bodies) == 1

    # recovered: exactly one resolve message, then quiet
    spans.insert(spans.fast(t0 + w, 300, 60))
    assert engine.tick(t0 + 2 * w).transitions == [(rule.id, "", "resolved")]
    assert engine.tick(t0 + 2 * w + timedelta(seconds=30)).transitions == []
    assert titles(slack) == ["🔴 Firing: Chat latency p95", "✅ Resolved: Chat latency p95"]
    assert "Back to normal" in slack.bodies[1]["blocks"][1]["text"]["text"]


@pytest.mark.timeout(60)
def test_flapping_inside_cooldown_is_announced_only_once_the_cooldown_ends(
        clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    rule = latency_rule(project, slack.url, window_seconds=60, cooldown_seconds=600, min_samples=5)
    engine = make_engine(clickhouse, redis_factory(), [rule], alert_settings)
    m = timedelta(seconds=60)
    spans.insert(spans.slow(t0 - m, 60, 10) + spans.fast(t0, 60, 10) + spans.slow(t0 + m, 600, 100))

    assert engine.tick(t0).transitions == [(rule.id, "", "firing")]
    assert engine.tick(t0 + m).transitions == [(rule.id, "", "resolved")]
    # fires again 2 minutes after the first message: silent, the cooldown (10 min) still runs
    assert engine.tick(t0 + 2 * m).transitions == []
    assert engine.tick(t0 + 5 * m).transitions == []
    # still firing when the cooldown ends: now it is announced
    assert engine.tick(t0 + 10 * m).transitions == [(rule.id, "", "firing")]
    assert engine.tick(t0 + 11 * m).transitions == []
    assert [t.split(":")[0] for t in titles(slack)] == ["🔴 Firing", "✅ Resolved", "🔴 Firing"]
    assert slack.bodies[2]["blocks"][4]["elements"][0]["text"].endswith("episode 2")


@pytest.mark.timeout(60)
def test_renotify_reminds_after_each_cooldown_while_firing(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    rule = latency_rule(project, slack.url, window_seconds=60, cooldown_seconds=300, min_samples=5, renotify=True)
    engine = make_engine(clickhouse, redis_factory(), [rule], alert_settings)
    m = timedelta(seconds=60)
    spans.insert(spans.slow(t0 - m, 660, 110))
    kinds = [k for i in range(11) for (_, _, k) in engine.tick(t0 + i * m).transitions]
    assert kinds == ["firing", "reminder", "reminder"]  # at 0, 5 and 10 minutes
    assert titles(slack)[1] == "🔴 Still firing: Chat latency p95"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("claim_ticks", [True, False], ids=["tick-claims", "state-script-only"])
def test_two_replicas_ticking_concurrently_send_each_message_once(
        clickhouse, redis_factory, slack, spans, project, t0, alert_settings, claim_ticks):
    rule = latency_rule(project, slack.url, window_seconds=60, cooldown_seconds=300, min_samples=5)
    replicas = [make_engine(clickhouse, redis_factory(), [rule], alert_settings, claim_ticks=claim_ticks)
                for _ in range(2)]
    m = timedelta(seconds=60)
    # slow 0-3 min, fast 3-5, slow 5-8 (a new firing after the cooldown), fast after
    spans.insert(spans.slow(t0 - m, 180, 60) + spans.fast(t0 + 2 * m, 120, 40)
                 + spans.slow(t0 + 4 * m, 180, 60) + spans.fast(t0 + 7 * m, 180, 60))

    for i in range(10):
        barrier = threading.Barrier(2)
        reports: list[Any] = []

        def run(engine: AlertEngine, at: datetime = t0 + i * m) -> None:
            barrier.wait()
            reports.append(engine.tick(at))

        threads = [threading.Thread(target=run, args=(engine,)) for engine in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(reports) == 2
        if claim_ticks:  # exactly one replica evaluated the rule at this tick
            assert sorted(len(r.evaluated) for r in reports) == [0, 1]

    assert [t.split(":")[0] for t in titles(slack)] == ["🔴 Firing", "✅ Resolved", "🔴 Firing", "✅ Resolved"]
    assert all(status == 200 for _, status in slack.attempts) and len(slack.attempts) == 4


@pytest.mark.timeout(60)
def test_min_samples_is_respected_both_ways(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    rule = latency_rule(project, slack.url, window_seconds=60, min_samples=20)
    engine = make_engine(clickhouse, redis_factory(), [rule], alert_settings)
    m = timedelta(seconds=60)
    spans.insert(spans.slow(t0 - m, 60, 19))
    assert engine.tick(t0).transitions == []  # 19 slow spans are not enough to judge

    spans.insert(spans.slow(t0, 60, 20) + spans.fast(t0 + m, 60, 5) + spans.fast(t0 + 2 * m, 60, 20))
    assert engine.tick(t0 + m).transitions == [(rule.id, "", "firing")]
    assert engine.tick(t0 + 2 * m).transitions == []  # 5 fast spans do not resolve it either
    assert engine.tick(t0 + 3 * m).transitions == [(rule.id, "", "resolved")]
    assert len(slack.bodies) == 2


@pytest.mark.timeout(60)
def test_group_by_fires_and_resolves_per_group(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    rule = latency_rule(project, slack.url, window_seconds=60, min_samples=5, group_by="model")
    engine = make_engine(clickhouse, redis_factory(), [rule], alert_settings)
    m = timedelta(seconds=60)
    spans.insert(spans.slow(t0 - m, 60, 10, model="gpt-4o") + spans.fast(t0 - m, 60, 10, model="claude-sonnet-4")
                 + spans.fast(t0, 60, 10, model="gpt-4o") + spans.slow(t0, 60, 10, model="claude-sonnet-4"))

    assert engine.tick(t0).transitions == [(rule.id, "gpt-4o", "firing")]
    assert sorted(engine.tick(t0 + m).transitions) == [
        (rule.id, "claude-sonnet-4", "firing"), (rule.id, "gpt-4o", "resolved")]
    sent = sorted((title.split(":")[0], body["blocks"][2]["fields"][1]["text"])
                  for title, body in zip(titles(slack), slack.bodies, strict=True))
    assert sent == [("✅ Resolved", "*Group*\nmodel = gpt-4o"), ("🔴 Firing", "*Group*\nmodel = claude-sonnet-4"),
                    ("🔴 Firing", "*Group*\nmodel = gpt-4o")]
    assert "model=gpt-4o" in slack.bodies[0]["blocks"][3]["elements"][0]["url"]


@pytest.mark.timeout(60)
def test_a_firing_group_that_stops_sending_resolves_after_three_windows(clickhouse, redis_factory, slack, spans,
                                                                        project, t0, alert_settings):
    rule = latency_rule(project, slack.url, window_seconds=60, min_samples=5, group_by="model")
    engine = make_engine(clickhouse, redis_factory(), [rule], alert_settings)
    m = timedelta(seconds=60)
    spans.insert(spans.slow(t0 - m, 60, 10, model="retired-model"))  # its last calls, all slow
    assert engine.tick(t0).transitions == [(rule.id, "retired-model", "firing")]
    assert engine.tick(t0 + m).transitions == []  # no data: the state stays as it is for a while
    assert engine.tick(t0 + 2 * m).transitions == []
    assert engine.tick(t0 + 3 * m).transitions == [(rule.id, "retired-model", "resolved")]
    assert engine.tick(t0 + 4 * m).transitions == []
    assert titles(slack) == ["🔴 Firing: Chat latency p95", "✅ Resolved: Chat latency p95"]
    resolved = str(slack.bodies[1])
    assert "No data for 3m" in resolved and "no data" in slack.bodies[1]["text"]


@pytest.mark.timeout(60)
def test_filter_limits_the_rule_to_matching_spans(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    rule = latency_rule(project, slack.url, window_seconds=60, min_samples=5, filter={"environment": "prod"})
    engine = make_engine(clickhouse, redis_factory(), [rule], alert_settings)
    spans.insert(spans.slow(t0 - timedelta(seconds=60), 60, 10, environment="staging")
                 + spans.fast(t0 - timedelta(seconds=60), 60, 10, environment="prod"))
    assert engine.tick(t0).transitions == []
    assert slack.bodies == []


@pytest.mark.timeout(60)
def test_anomaly_fires_on_a_spike_against_a_steady_baseline(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    import random

    rng = random.Random(7)
    rule = latency_rule(project, slack.url, name="Latency anomaly", metric="anomaly:latency", aggregation="avg",
                        threshold=4.0, window_seconds=60, min_samples=10, baseline_windows=10)
    engine = make_engine(clickhouse, redis_factory(), [rule], alert_settings)
    m = timedelta(seconds=60)
    steady = [{"start": t0 - k * m + timedelta(seconds=s), "duration_ms": rng.gauss(300, 30)}
              for k in range(1, 12) for s in range(0, 60, 3)]
    spans.insert(steady)
    assert engine.tick(t0).transitions == []  # a normal minute: |z| is small

    spike = [{"start": t0 + timedelta(seconds=s), "duration_ms": rng.gauss(900, 30)} for s in range(0, 60, 3)]
    spans.insert(spike)
    assert engine.tick(t0 + m).transitions == [(rule.id, "", "firing")]
    text = slack.bodies[0]["blocks"][1]["text"]["text"]
    assert "anomaly of latency avg" in text and "baseline of" in text and "|z| &gt; 4" in text

    # a project with the spike but no history: no baseline, no verdict
    other = latency_rule(project + "-new", slack.url, metric="anomaly:latency", aggregation="avg", threshold=4.0,
                         window_seconds=60, min_samples=10)
    spans.insert(spike, project=project + "-new")
    assert make_engine(clickhouse, redis_factory(), [other], alert_settings).tick(t0 + m).transitions == []


@pytest.mark.timeout(60)
def test_a_replica_lagging_behind_cannot_undo_a_newer_decision(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    rule = latency_rule(project, slack.url, window_seconds=60, min_samples=5)
    ahead, behind = (make_engine(clickhouse, redis_factory(), [rule], alert_settings, claim_ticks=False)
                     for _ in range(2))
    m = timedelta(seconds=60)
    spans.insert(spans.slow(t0 - m, 60, 10) + spans.fast(t0, 60, 10))
    assert ahead.tick(t0).transitions == [(rule.id, "", "firing")]
    assert ahead.tick(t0 + m).transitions == [(rule.id, "", "resolved")]
    assert behind.tick(t0).transitions == []  # its (older) window is still slow: ignored, no re-fire
    assert len(slack.bodies) == 2


class ReplicaCrash(BaseException):
    """Stands for the process dying (not an error the engine could handle)."""


class DyingNotifier(SlackNotifier):
    def deliver(self, url: str, payload: dict[str, Any]) -> Any:
        raise ReplicaCrash


@pytest.mark.timeout(60)
def test_a_message_taken_by_a_replica_that_died_is_sent_by_another(clickhouse, redis_factory, slack, spans, project, t0, alert_settings):
    rule = latency_rule(project, slack.url, window_seconds=60, min_samples=5)
    settings = dataclasses.replace(alert_settings, lease_s=0.3)
    dying = AlertEngine(clickhouse, redis_factory(), [rule], DyingNotifier(FAST_RETRIES, egress=LOOPBACK_EGRESS), settings)
    survivor = AlertEngine(clickhouse, redis_factory(), [rule], SlackNotifier(FAST_RETRIES, egress=LOOPBACK_EGRESS), settings)
    spans.insert(spans.slow(t0 - timedelta(seconds=60), 60, 10))

    with pytest.raises(ReplicaCrash):
        dying.tick(t0)  # made the transition, took the message, died before sending it
    assert survivor.tick(t0).deliveries == []  # within the lease the message is the dead replica's
    time.sleep(0.4)
    assert survivor.tick(t0 + timedelta(seconds=1)).deliveries == [(rule.id, "", "firing", True)]
    assert titles(slack) == ["🔴 Firing: Chat latency p95"]


@pytest.mark.timeout(60)
def test_an_alert_storm_across_many_groups_becomes_a_digest(clickhouse, redis_factory, slack, spans, project, t0,
                                                            alert_settings):
    rule = latency_rule(project, slack.url, window_seconds=60, min_samples=5, group_by="user_id")
    engine = make_engine(clickhouse, redis_factory(), [rule], alert_settings, max_messages_per_rule=3)
    m = timedelta(seconds=60)
    users = [f"user-{i:02}" for i in range(30)]
    spans.insert([s for u in users for s in spans.slow(t0 - m, 60, 5, user_id=u)]
                 + [s for u in users for s in spans.fast(t0, 60, 5, user_id=u)])

    report = engine.tick(t0)
    assert len(report.transitions) == 30 and len(report.deliveries) == 30
    assert len(slack.bodies) == 4  # 3 groups one by one, then one digest for the other 27
    digest = slack.bodies[3]
    assert digest["blocks"][0]["text"]["text"] == "🔴 Firing: Chat latency p95 — 27 more groups"
    named = [u for u in users if u in digest["blocks"][1]["text"]["text"]]
    assert len(named) == 20 and "and 7 more" in digest["blocks"][1]["text"]["text"]
    assert "group_by=user_id" in digest["blocks"][2]["elements"][0]["url"]

    assert len(engine.tick(t0 + m).transitions) == 30  # all resolve together: again 3 + 1 digest
    assert len(slack.bodies) == 8 and slack.bodies[7]["blocks"][0]["text"]["text"].startswith("✅ Resolved")
