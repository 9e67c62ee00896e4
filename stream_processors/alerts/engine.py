"""The alert engine: each ``tick(now)`` evaluates every enabled rule and delivers the resulting messages.

Per rule and tick: one ClickHouse query (metrics_query) -> a decision per group (evaluate) -> the
shared state machine in Redis (state), which queues a message for each transition it makes -> the
outbox is drained, each message built (messages) and POSTed to the rule's Slack webhook (slack). When
one rule has more than ``max_messages_per_rule`` messages of a kind in a tick, the rest go out as one
digest.

Several replicas may run the engine at once. Correctness comes from the Redis script (one transition,
one message); on top of it, with ``claim_ticks`` one replica claims each (rule, tick) so the others skip
the query — ticks aligned by ``run_alerts`` make replicas share the same tick times. (A replica that
claims a tick and dies before applying it skips that rule for one tick; the next tick catches up.)

Everything here is synchronous (clickhouse-connect's sync client, sync redis-py, httpx.Client):
``run_alerts`` runs ticks in a worker thread so the event loop is never blocked.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from .evaluate import Decision, decide
from .history import PgAlertHistory, Transition
from .messages import build_digest, build_message
from .metrics_query import epoch_micros, query_windows
from .rules import AlertRule
from .slack import NOTIFICATIONS, SlackNotifier
from .state import AlertStateStore, Outgoing

NO_DATA_RESOLVE_WINDOWS = 3  # a firing group silent (or too thin to decide) this many windows resolves

log = logging.getLogger(__name__)

RuleSource = Callable[[], Iterable[AlertRule]]


@dataclass(frozen=True)
class EngineSettings:
    """Engine knobs. ``eval_delay_s`` shifts windows back to let late spans land before judging."""

    public_url: str = "http://localhost:8000"
    eval_delay_s: float = 0.0
    claim_ticks: bool = True
    lease_s: float = 300.0
    key_prefix: str = "evalforge:alerts"
    # Per rule and kind, messages sent one by one in a tick; the rest go out as one digest, so a
    # regression across thousands of user_id groups is one Slack post, not thousands (Slack accepts
    # about one message per second per webhook).
    max_messages_per_rule: int = 10


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    evaluated: list[str] = field(default_factory=list)  # rule ids queried by this replica
    skipped: list[str] = field(default_factory=list)  # claimed by another replica
    transitions: list[tuple[str, str, str]] = field(default_factory=list)  # (rule id, group, kind)
    suppressed: list[tuple[str, str, str]] = field(default_factory=list)  # messages a mute held back
    deliveries: list[tuple[str, str, str, bool]] = field(default_factory=list)  # (..., delivered)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (rule id, error)


class AlertEngine:
    """Evaluates alert rules against ClickHouse, keeps their state in Redis, notifies Slack."""

    def __init__(self, clickhouse: Any, redis_client: redis.Redis, rules: RuleSource | Iterable[AlertRule],
                 notifier: SlackNotifier | None = None, settings: EngineSettings | None = None, *,
                 egress: Any = None, history: PgAlertHistory | None = None) -> None:
        self.settings = settings or EngineSettings()
        self._clickhouse = clickhouse
        self._rules = rules if callable(rules) else (lambda r=list(rules): r)
        self._owns_notifier = notifier is None
        # egress: whose EVALFORGE_EGRESS_ALLOWED_HOSTS the default notifier's guard honours
        self._notifier = notifier or SlackNotifier(egress=egress)
        self._history = history  # where transitions and rule states are recorded (None: nowhere)
        self.store = AlertStateStore(redis_client, prefix=self.settings.key_prefix, lease_s=self.settings.lease_s)

    def close(self) -> None:
        """Release what the engine created (its default notifier's HTTP client)."""
        if self._owns_notifier:
            self._notifier.close()

    def tick(self, now: datetime | None = None) -> TickReport:
        """Evaluate every enabled rule over its window ending at ``now`` (UTC), then deliver messages."""
        now = now or datetime.now(timezone.utc)
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        end = now.astimezone(timezone.utc) - timedelta(seconds=self.settings.eval_delay_s)
        report = TickReport()
        rules = {rule.id: rule for rule in self._rules() if rule.enabled}
        for rule in rules.values():
            try:
                self._evaluate(rule, end, report)
            except Exception as exc:  # one broken rule (or a ClickHouse hiccup) must not stop the others
                log.exception("alert rule %s failed to evaluate", rule.id)
                report.errors.append((rule.id, f"{type(exc).__name__}: {exc}"))
        self._deliver(rules, report)
        return report

    def _evaluate(self, rule: AlertRule, end: datetime, report: TickReport) -> None:
        end_ms = epoch_micros(end) // 1000
        if self.settings.claim_ticks and not self.store.claim_tick(rule.id, end_ms, max(rule.window_seconds, 60)):
            report.skipped.append(rule.id)
            return
        buckets = rule.baseline_windows + 1 if rule.is_anomaly else 1
        decisions = decide(rule, query_windows(self._clickhouse, rule, end, buckets), buckets)
        report.evaluated.append(rule.id)
        firing = self.store.firing_groups(rule.id)
        decisions += self._silent_resolutions(rule, firing - {d.group for d in decisions}, end_ms)
        # Non-breaching groups that are not firing have nothing to change: skip the round trip.
        relevant = [d for d in decisions if d.breach or d.group in firing]
        window = timedelta(seconds=rule.window_seconds)
        # A mute is about when people get paged, so it is judged by the wall clock, not the window's end.
        muted = rule.muted(datetime.now(timezone.utc))
        results = self.store.apply(rule, [(d.group, d.breach, _payload(d, end, window, buckets)) for d in relevant],
                                   end_ms, muted)
        changes = []
        for decision, applied in zip(relevant, results, strict=True):
            if applied.kind not in ("none", "stale"):
                report.transitions.append((rule.id, decision.group, applied.kind))
            if applied.suppressed:
                report.suppressed.append((rule.id, decision.group, applied.suppressed))
            if applied.transition == "firing":
                firing.add(decision.group)
            elif applied.transition == "resolved":
                firing.discard(decision.group)
            if applied.transition:
                changes.append(Transition(decision.group, applied.transition, applied.episode, decision.value,
                                          _notification(applied)))
        if self._history is not None:
            self._history.transitions(rule, end, changes)
            self._history.status(rule, end, "firing" if firing else "ok", _headline_value(decisions), len(firing))

    def _silent_resolutions(self, rule: AlertRule, silent: set[str], end_ms: int) -> list[Decision]:
        """Firing groups without a decision for NO_DATA_RESOLVE_WINDOWS windows (a model no longer
        called, a user gone) resolve, marked no_data: otherwise they would stay firing for ever."""
        if not silent:
            return []
        quiet_ms = NO_DATA_RESOLVE_WINDOWS * rule.window_seconds * 1000
        last = self.store.evaluated_at(rule.id, silent)
        return [Decision(group, False, None, 0, {"no_data_seconds": (end_ms - last[group]) // 1000})
                for group in sorted(silent) if group in last and end_ms - last[group] >= quiet_ms]

    def _deliver(self, rules: dict[str, AlertRule], report: TickReport) -> None:
        sent: Counter[tuple[str, str]] = Counter()
        overflow: dict[tuple[str, str], list[Outgoing]] = defaultdict(list)
        while batch := self.store.take():
            for message in batch:
                key = (message.rule_id, message.kind)
                if message.rule_id in rules and sent[key] >= self.settings.max_messages_per_rule:
                    overflow[key].append(message)  # acknowledged once the digest is out
                    continue
                sent[key] += 1
                outcome = self._dispatch(rules.get(message.rule_id), message.kind, [message])
                self._record(outcome, [message], report)
                self.store.done(message.entry_id)
        for (rule_id, kind), messages in overflow.items():
            outcome = self._dispatch(rules[rule_id], kind, messages)
            self._record(outcome, messages, report)
            self.store.done(*(m.entry_id for m in messages))

    def _record(self, outcome: str, messages: list[Outgoing], report: TickReport) -> None:
        for m in messages:
            report.deliveries.append((m.rule_id, m.group, m.kind, outcome == "sent"))
            if self._history is not None:
                self._history.notified(m.rule_id, m.group, m.episode, m.kind, outcome)

    def _dispatch(self, rule: AlertRule | None, kind: str, messages: list[Outgoing]) -> str:
        """Send one message, or one digest for several groups; returns the outcome (sent | failed |
        no_webhook | rule_gone | muted). Never raises (a message that cannot even be built must not come
        back from the outbox forever)."""
        last = messages[-1]
        try:
            if rule is None:  # deleted or disabled since the transition
                NOTIFICATIONS.labels(kind, "rule_gone").inc(len(messages))
                log.warning("alert %s for rule %s dropped: rule no longer enabled", kind, last.rule_id)
                return "rule_gone"
            # muted after the message was queued; a resolve still goes out (as when queued while muted)
            if kind != "resolved" and rule.muted(datetime.now(timezone.utc)):
                NOTIFICATIONS.labels(kind, "muted").inc(len(messages))
                if kind == "firing":  # never sent: announce it after the mute if it is still firing
                    self.store.unannounce(messages)
                return "muted"
            if len(messages) == 1:
                body = build_message(rule, kind, last.group, {**last.payload, "episode": last.episode},
                                     self.settings.public_url)
            else:
                body = build_digest(rule, kind, [m.group for m in messages], last.payload, self.settings.public_url)
            return self._post(rule, kind, body, last, count=len(messages))
        except Exception:
            log.exception("alert %s for rule %s could not be sent", kind, last.rule_id)
            NOTIFICATIONS.labels(kind, "failed").inc(len(messages))
            return "failed"

    def _post(self, rule: AlertRule, kind: str, body: dict[str, Any], message: Outgoing, count: int = 1) -> str:
        if not rule.slack_webhook_url:
            NOTIFICATIONS.labels(kind, "no_webhook").inc(count)
            log.info("alert %s for rule %s: no webhook configured", kind, rule.id)
            return "no_webhook"
        result = self._notifier.deliver(rule.slack_webhook_url, body)
        NOTIFICATIONS.labels(kind, "sent" if result.ok else "failed").inc(count)
        if not result.ok:
            log.error("alert %s for rule %s (%d group(s), e.g. %r) not delivered after %d attempts: %s",
                      kind, rule.id, count, message.group, result.attempts, result.error)
            self.store.record_failure(message, result.error, result.attempts)
        return "sent" if result.ok else "failed"


def _notification(applied: Any) -> str:
    """What a transition's notification is at the moment it happens (the sender updates ``pending``)."""
    if applied.suppressed:
        return "muted"
    if applied.kind == applied.transition:
        return "pending"
    return "cooldown" if applied.transition == "firing" else "not_announced"


def _headline_value(decisions: list[Decision]) -> float | None:
    """The value shown as the rule's last value: a breaching group's, else the first group's (one group
    when the rule has no group_by); None when no group had enough data."""
    for decision in sorted(decisions, key=lambda d: not d.breach):
        if decision.value is not None:
            return decision.value
    return None


def _payload(decision: Decision, end: datetime, window: timedelta, buckets: int) -> dict[str, Any]:
    return {
        "value": decision.value,
        "samples": decision.samples,
        "window_start": _iso(end - window),
        "window_end": _iso(end),
        "query_start": _iso(end - window * buckets),
        **decision.details,
    }


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
