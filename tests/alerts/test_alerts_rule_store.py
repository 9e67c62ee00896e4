"""Rules loaded from the session's real PostgreSQL, migrated with the project's schema."""

from __future__ import annotations

import logging
import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from stream_processors.alerts import load_rules, redact_rule


@pytest.mark.timeout(60)
def test_load_rules_keeps_enabled_valid_rows(migrated_postgres, caplog):
    project = f"p-{uuid.uuid4().hex[:12]}"
    url = "https://hooks.slack.com/services/T1/B2/abcdefghijklmnop"
    insert = ("INSERT INTO alert_rules (id, project_id, name, metric, aggregation, threshold, group_by, filter,"
              " slack_webhook_url, enabled) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    with psycopg.connect(migrated_postgres, autocommit=True) as conn:
        conn.execute("INSERT INTO projects (id, name) VALUES (%s, %s)", (project, project))
        conn.execute(insert, (f"{project}-a", project, "p95 latency", "latency", "p95", 1500, "model",
                              Jsonb({"environment": "prod"}), url, True))
        conn.execute(insert, (f"{project}-b", project, "typo", "latancy", "avg", 1, None, Jsonb({}), None, True))
        conn.execute(insert, (f"{project}-c", project, "off", "errors", "count", 5, None, Jsonb({}), None, False))

        with caplog.at_level(logging.WARNING):
            rules = [r for r in load_rules(conn) if r.project_id == project]

    [rule] = rules
    assert (rule.id, rule.metric, rule.aggregation, rule.threshold, rule.group_by, rule.window_seconds) == (
        f"{project}-a", "latency", "p95", 1500.0, "model", 300)
    assert dict(rule.filter) == {"environment": "prod"} and rule.slack_webhook_url == url
    assert f"alert rule {project}-b skipped: metric" in caplog.text
    assert redact_rule(rule)["slack_webhook_url"] == "https://hooks.slack.com/…mnop"
