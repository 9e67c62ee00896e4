"""Clients are pooled per service, not opened per request; a ClickHouse server client opens no session
(the services' client is used from many threads, and a server refuses concurrent queries in a session)."""

from __future__ import annotations

import redis

from tests.evaluators.fake_llm import FakeLLMServer


def _connections_received(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_connections_received"])
    finally:
        client.close()


def test_assisted_requests_reuse_the_pooled_redis_connection(stack):
    _, key = stack.create_key()
    llm = FakeLLMServer().start()  # answers 500: the assistant falls back to heuristics, after the guard ran
    try:
        body = {"system_prompt": "Answer in JSON.", "llm": {"base_url": llm.openai_base_url, "max_retries": 0}}
        first = stack.client.post("/api/v1/criteria", headers=stack.headers(key), json=body)
        assert first.status_code == 200, first.text
        before = _connections_received(stack.settings.redis_url)
        # 1 + 9 requests: within the judge limiter's burst (60 a minute: 10 at once), so each reaches the model
        for _ in range(9):
            assert stack.client.post("/api/v1/criteria", headers=stack.headers(key), json=body).status_code == 200
        opened = _connections_received(stack.settings.redis_url) - before
    finally:
        llm.stop()
    assert len(llm.requests) == 10  # every request did reach the model (through the guard's limiter)
    # this test's own INFO call and the background tasks' occasional reconnects, not one per request
    assert opened <= 4, f"{opened} new Redis connections for 9 requests"


def test_clickhouse_server_clients_open_no_session(monkeypatch):
    import clickhouse_connect

    from core.services import open_clickhouse

    seen = {}
    monkeypatch.setattr(clickhouse_connect, "get_client", lambda **kw: seen.update(kw) or "client")
    open_clickhouse("http://default:pw@clickhouse.internal:8123/evalforge")
    assert seen["autogenerate_session_id"] is False and "session_id" not in seen
