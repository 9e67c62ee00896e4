"""What the alert engine records in PostgreSQL for people: every transition of a (rule, group) with
what became of its notification (``alert_transitions``), and each rule's state as of its latest
evaluation (``alert_rule_status``). Redis stays the engine's working state; this is the record the
API and the dashboard read.

Sync psycopg, one connection, used from the engine's tick thread only. A write that fails (a rule
deleted mid-tick, PostgreSQL away) is logged and dropped: history must never stop alerting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .rules import AlertRule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transition:
    """One state change of one group of a rule, as the engine applied it."""

    group: str
    kind: str  # firing | resolved
    episode: int
    value: float | None
    notification: str  # pending | muted | cooldown | not_announced


class PgAlertHistory:
    """Writes transitions, notification outcomes and rule states to PostgreSQL."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def transitions(self, rule: AlertRule, at: datetime, changes: list[Transition]) -> None:
        if changes:
            self._write("transitions of rule %s", rule.id, lambda cur: cur.executemany(
                "INSERT INTO alert_transitions (project_id, rule_id, group_key, episode, kind, at, value, threshold, "
                "comparator, notification) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(rule.project_id, rule.id, c.group, c.episode, c.kind, at, c.value, rule.threshold, rule.comparator,
                  c.notification) for c in changes]))

    def notified(self, rule_id: str, group: str, episode: int, kind: str, outcome: str) -> None:
        """The fate of a queued message (sent | failed | no_webhook | rule_gone | muted), written on the
        transition it announces. A late announcement (after a cooldown) fills the row's outcome; a row
        whose outcome is already final keeps it and only gains ``notified_at``."""
        if kind not in ("firing", "resolved"):
            return  # reminders are not transitions
        self._write("notification of rule %s", rule_id, lambda cur: cur.execute(
            "UPDATE alert_transitions SET "
            "notification = CASE WHEN notification IN ('pending', 'cooldown') THEN %s ELSE notification END, "
            "notified_at = CASE WHEN %s = 'sent' THEN now() ELSE notified_at END "
            "WHERE id = (SELECT id FROM alert_transitions WHERE rule_id = %s AND group_key = %s AND episode = %s "
            "AND kind = %s ORDER BY id DESC LIMIT 1)",
            (outcome, outcome, rule_id, group, episode, kind)))

    def status(self, rule: AlertRule, at: datetime, state: str, value: float | None, firing_groups: int) -> None:
        """The rule's state after an evaluation; an older evaluation (a slow replica) never overwrites a
        newer one, and ``since`` moves only when the state changes."""
        self._write("state of rule %s", rule.id, lambda cur: cur.execute(
            "INSERT INTO alert_rule_status AS s (rule_id, state, since, last_value, firing_groups, evaluated_at) "
            "SELECT %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM alert_rules WHERE id = %s) "
            "ON CONFLICT (rule_id) DO UPDATE SET state = EXCLUDED.state, "
            "since = CASE WHEN s.state = EXCLUDED.state THEN s.since ELSE EXCLUDED.since END, "
            "last_value = EXCLUDED.last_value, firing_groups = EXCLUDED.firing_groups, "
            "evaluated_at = EXCLUDED.evaluated_at WHERE s.evaluated_at < EXCLUDED.evaluated_at",
            (rule.id, state, at, value, firing_groups, at, rule.id)))

    def _write(self, what: str, rule_id: str, statement: Any) -> None:
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                statement(cur)
        except Exception:
            log.exception("alert history: could not record the " + what, rule_id)
