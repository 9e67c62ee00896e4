"""A disabled rule is evaluated by nobody: the API says "disabled" rather than its last evaluation's
"firing" for ever (the real engine and API; see test_alert_rule_api.py for the two-days-ahead windows)."""

from __future__ import annotations

import pytest

from tests.alerts.conftest import SpanWriter
from tests.alerts.test_alert_rule_api import W, _create, _rule, ahead, engine_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)


def test_a_disabled_firing_rule_reports_disabled_and_its_state_again_once_enabled(stack, engine_for, slack, ahead):  # noqa: F811
    project_id, key = stack.create_key()
    rule = _create(stack, key, slack_webhook_url=slack.url)
    spans = SpanWriter(stack.clickhouse, project_id)
    spans.insert(spans.slow(ahead - W, 300, 50))
    assert engine_for(project_id).tick(ahead).transitions == [(rule["id"], "", "firing")]
    assert _rule(stack, key, rule["id"])["state"]["status"] == "firing"

    url = f"/api/v1/alert-rules/{rule['id']}"
    r = stack.client.patch(url, headers=stack.headers(key), json={"enabled": False})
    assert r.status_code == 200, r.text
    assert (r.json()["state"]["status"], r.json()["state"]["since"]) == ("disabled", None)
    assert _rule(stack, key, rule["id"])["state"]["status"] == "disabled"  # the list says so too
    assert stack.client.get(url, headers=stack.headers(key)).json()["state"]["status"] == "disabled"

    r = stack.client.patch(url, headers=stack.headers(key), json={"enabled": True})
    assert r.status_code == 200 and r.json()["state"]["status"] == "firing"
