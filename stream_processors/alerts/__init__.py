"""Alerting: rules over span / score metrics, evaluated periodically, state in Redis, Slack delivery.

Wiring (inside ``evalforge process``)::

    engine = AlertEngine(clickhouse, redis_client, rules=lambda: load_rules(pg_conn),
                         settings=EngineSettings(public_url=settings.resolved_public_url()),
                         history=PgAlertHistory(pg_conn))  # transitions and states for the API
    await run_alerts(engine, interval_s=30, stop_event=stop)

Admin APIs return rules through ``redact_rule`` only: the webhook URL is a secret.
"""

from .engine import AlertEngine, EngineSettings, TickReport
from .history import PgAlertHistory
from .rule_store import load_rules
from .rules import AlertRule, RuleError, redact_rule, redact_webhook_url
from .runner import run_alerts
from .slack import DeliverySettings, SlackNotifier

__all__ = [
    "AlertEngine", "AlertRule", "DeliverySettings", "EngineSettings", "PgAlertHistory", "RuleError", "SlackNotifier",
    "TickReport", "load_rules", "redact_rule", "redact_webhook_url", "run_alerts",
]
