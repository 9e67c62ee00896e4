"""Loading alert rules from PostgreSQL (the ``alert_rules`` table, psycopg 3)."""

from __future__ import annotations

import logging
from typing import Any

from psycopg.rows import dict_row

from .rules import AlertRule, RuleError

log = logging.getLogger(__name__)


def load_rules(conn: Any) -> list[AlertRule]:
    """Every enabled rule of every project. Rows that fail validation are logged and skipped, so one
    bad rule cannot stop the others from being evaluated. ``conn`` is a sync psycopg connection; use
    it from one thread at a time (the engine calls this once per tick)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM alert_rules WHERE enabled ORDER BY project_id, id")
        rows = cur.fetchall()
    rules = []
    for row in rows:
        try:
            rules.append(AlertRule.from_row(row))
        except RuleError as exc:
            log.warning("alert rule %s skipped: %s", row.get("id"), exc)
    return rules
