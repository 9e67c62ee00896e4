"""Webhook and judge URLs pointing inside the network: refused with a 400 naming the field when
configured, refused and counted when sent (no connection made). The fake Slack / LLM servers of the
other tests listen on 127.0.0.1 and are allowed there through EVALFORGE_EGRESS_ALLOWED_HOSTS; here the
allow-list is empty."""

from __future__ import annotations

import pytest

from core.settings import Settings
from evaluators.llm import JudgeError, LLMClient, LLMSettings
from stream_processors.alerts import DeliverySettings, SlackNotifier
from tests.test_egress import refused_count

NO_ALLOW_LIST = Settings()
INTERNAL = [
    ("http://127.0.0.1:9000/services/T/B/secret", "loopback"),
    ("http://localhost/services/T/B/secret", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link_local"),
    ("http://10.0.0.12/services/T/B/secret", "private"),
    ("http://[::1]:8080/v1", "loopback"),
    ("https://loopback.test/v1", "loopback"),
]


@pytest.fixture
def dns(fake_dns):
    fake_dns["loopback.test"] = ["127.0.0.1"]
    return fake_dns


@pytest.mark.parametrize(("url", "reason"), INTERNAL)
def test_configuring_an_internal_url_is_a_400_naming_the_field(stack, dns, monkeypatch, url, reason):
    monkeypatch.setattr(stack.settings, "egress_allowed_hosts", "")  # the stack allows its fakes' 127.0.0.1
    _, key = stack.create_key()
    headers = stack.headers(key)
    r = stack.client.post("/api/v1/alert-rules", headers=headers, json={
        "name": "slow", "metric": "latency", "aggregation": "p95", "threshold": 2000, "slack_webhook_url": url})
    assert r.status_code == 400 and r.json()["error"].startswith("slack_webhook_url: host"), r.text
    assert f"({reason}" in r.json()["error"] and "secret" not in r.text
    judge = {"provider": "openai", "model": "gpt-4o-mini", "base_url": url}
    r = stack.client.post("/api/v1/eval-rules", headers=headers, json={
        "name": "judge", "evaluator": "llm_judge", "config": judge})
    assert r.status_code == 400 and r.json()["error"].startswith("config.base_url: host"), r.text
    r = stack.client.post("/api/v1/criteria", headers=headers, json={"system_prompt": "Be nice.", "llm": judge})
    assert r.status_code == 400 and r.json()["error"].startswith("llm.base_url: host"), r.text
    assert stack.client.get("/api/v1/alert-rules", headers=headers).json()["rules"] == []
    assert stack.client.get("/api/v1/eval-rules", headers=headers).json()["rules"] == []


@pytest.mark.parametrize(("url", "reason"), INTERNAL)
def test_sending_to_an_internal_webhook_is_refused_once_and_counted(dns, url, reason):
    notifier = SlackNotifier(DeliverySettings(max_attempts=3, backoff_base_s=0.01), egress=NO_ALLOW_LIST)
    before = refused_count("slack_webhook", reason)
    try:
        result = notifier.deliver(url, {"text": "hi"})
    finally:
        notifier.close()
    assert not result.ok and result.attempts == 1 and "refused" in result.error  # not retried
    assert "secret" not in result.error
    assert refused_count("slack_webhook", reason) == before + 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(("url", "reason"), INTERNAL)
def test_calling_an_internal_judge_url_is_refused_and_counted(dns, url, reason, provider):
    client = LLMClient(LLMSettings(provider=provider, base_url=url, max_retries=2), api_key="k", egress=NO_ALLOW_LIST)
    before = refused_count("llm_judge", reason)
    with pytest.raises(JudgeError) as info:
        client.chat("system", [{"role": "user", "content": "hi"}])
    assert info.value.message.startswith("base_url: host") and not info.value.retryable
    assert refused_count("llm_judge", reason) == before + 1


def test_the_sdk_transport_refuses_even_without_the_early_check(dns):
    """The early check in LLMClient.chat only saves the SDK's retries: the SDK's HTTP client refuses too."""
    import openai

    from core.egress import EgressRefused, guarded_sdk_http_client

    before = refused_count("llm_judge", "loopback")
    sdk = openai.OpenAI(api_key="k", base_url="http://loopback.test/v1", max_retries=2,
                        http_client=guarded_sdk_http_client(NO_ALLOW_LIST, purpose="llm_judge"))
    with pytest.raises(EgressRefused, match=r"refused \(loopback"):  # passed through, not retried
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert refused_count("llm_judge", "loopback") == before + 1
