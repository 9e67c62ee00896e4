"""Per-project model prices: the admin API, and the processor pricing a project's spans with them
(embedded stack: HTTP ingest -> Redis Streams -> processor -> chDB; overrides in PostgreSQL)."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from stream_processors.price_overrides import PriceOverrides

from .test_e2e_embedded import _wait

EPS = 1e-9
CONTRACT = {"provider": "openai", "model": "gpt-4o", "prices": {"input": 2, "cache_read": 0.5, "output": 8, "reasoning": 12}}


def _span(model: str, **usage) -> dict:
    now = time.time_ns()
    return {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "name": "chat", "kind": "llm",
            "provider": "openai", "model": model, "start_time": now - 10**9, "end_time": now, "usage": usage}


def _costs(stack, key: str, project_id: str, spans: list[dict]) -> list[tuple]:
    """Send ``spans`` through ingest and return (cost, cost_source) of each once the processor stored it."""
    assert stack.client.post("/api/v1/spans", headers=stack.headers(key), json={"spans": spans}).status_code == 200
    ids = [s["span_id"] for s in spans]

    def stored():
        rows = dict((r[0], r[1:]) for r in stack.clickhouse.query(
            "SELECT span_id, cost, cost_source FROM spans WHERE project_id = {p:String} AND span_id IN {ids:Array(String)}",
            parameters={"p": project_id, "ids": ids}).result_rows)
        return [rows[i] for i in ids] if len(rows) == len(ids) else None

    return _wait(stored)


def _after_processor_refresh() -> None:
    time.sleep(PriceOverrides(None).refresh_seconds + 0.5)


def test_project_prices_override_the_shipped_table_for_that_project_only(stack):
    project_a, key_a = stack.create_key()
    project_b, key_b = stack.create_key()
    put = stack.client.put("/api/v1/model-prices", headers=stack.headers(key_a), json=CONTRACT)
    assert put.status_code == 200, put.text
    own = {"model": "acme-llm", "prices": {"input": 1, "output": 2}}
    assert stack.client.put("/api/v1/model-prices", headers=stack.headers(key_a), json=own).status_code == 200
    _after_processor_refresh()

    usage = {"input_tokens": 1_000, "cache_read_tokens": 200, "output_tokens": 500, "reasoning_tokens": 100}
    # the contract: 800*2 + 200*0.5 + 400*8 + 100*12 = 6,100 per 1M -> 0.0061 USD, on the dated snapshot too
    (cost_a, src_a), (acme_a, acme_src_a) = _costs(stack, key_a, project_a, [
        _span("gpt-4o-2024-11-20", **usage), _span("acme-llm-v2", input_tokens=1_000_000, output_tokens=1_000_000)])
    assert src_a == "computed" and abs(cost_a - 0.0061) < EPS
    assert acme_src_a == "computed" and abs(acme_a - 3.0) < EPS
    # project B keeps the shipped price: 800*2.5 + 200*1.25 + 500*10 = 7,250 per 1M; acme-llm is unknown there
    (cost_b, src_b), (acme_b, acme_src_b) = _costs(stack, key_b, project_b, [
        _span("gpt-4o-2024-11-20", **usage), _span("acme-llm-v2", input_tokens=10, output_tokens=10)])
    assert src_b == "computed" and abs(cost_b - 0.00725) < EPS
    assert acme_b is None and acme_src_b == "unknown_model"

    # a change applies to the spans processed after it; removing the override restores the shipped price
    changed = {**CONTRACT, "prices": {"input": 1, "output": 4}}
    assert stack.client.put("/api/v1/model-prices", headers=stack.headers(key_a), json=changed).status_code == 200
    _after_processor_refresh()
    [(cost, _)] = _costs(stack, key_a, project_a, [_span("gpt-4o", **usage)])
    assert abs(cost - (1_000 * 1 + 500 * 4) / 1e6) < EPS
    gone = stack.client.delete("/api/v1/model-prices", headers=stack.headers(key_a),
                               params={"provider": "openai", "model": "gpt-4o"})
    assert gone.status_code == 200
    _after_processor_refresh()
    [(cost, _)] = _costs(stack, key_a, project_a, [_span("gpt-4o", **usage)])
    assert abs(cost - 0.00725) < EPS
    # the first span's stored cost is not rewritten by later changes
    [(first, _)] = [r[1:] for r in stack.clickhouse.query(
        "SELECT span_id, cost, cost_source FROM spans WHERE project_id = {p:String} AND model = 'gpt-4o-2024-11-20'",
        parameters={"p": project_a}).result_rows]
    assert abs(first - 0.0061) < EPS


def test_model_prices_api_lists_matches_validates_and_stays_in_its_project(stack):
    project_a, key_a = stack.create_key()
    _, key_b = stack.create_key()
    h = stack.headers(key_a)
    tiered = {"provider": "Google", "model": "Gemini-Acme", "prices": {"input": 1.25, "output": 10},
              "tiers": [{"above_input_tokens": 200_000, "prices": {"input": 2.5, "output": 15}}]}
    r = stack.client.put("/api/v1/model-prices", headers=h, json=tiered)
    assert r.status_code == 200 and (r.json()["provider"], r.json()["model"]) == ("google", "gemini-acme")
    listed = stack.client.get("/api/v1/model-prices", headers=h).json()
    assert listed["shipped"]["version"]
    assert [(o["provider"], o["model"], o["prices"], o["tiers"]) for o in listed["overrides"]] == [
        ("google", "gemini-acme", {"input": 1.25, "output": 10}, [{"above_input_tokens": 200_000, "prices": {"input": 2.5, "output": 15}}])]

    match = stack.client.get("/api/v1/model-prices/match", headers=h,
                             params={"model": "gemini-acme-002", "provider": "google"}).json()
    assert match["source"] == "project" and match["entry"]["model"] == "gemini-acme"
    # an override naming a provider prices that provider's spans only
    other = stack.client.get("/api/v1/model-prices/match", headers=h,
                             params={"model": "gemini-acme-002", "provider": "vertex"}).json()
    assert other["source"] is None
    shipped = stack.client.get("/api/v1/model-prices/match", headers=h,
                               params={"model": "gpt-4o-mini-2024-07-18", "provider": "openai"}).json()
    assert shipped["source"] == "shipped" and shipped["entry"]["id"] == "openai/gpt-4o-mini"
    unknown = stack.client.get("/api/v1/model-prices/match", headers=h, params={"model": "never-heard-of-it"}).json()
    assert unknown["source"] is None

    # another project sees none of it, and cannot delete it
    hb = stack.headers(key_b)
    assert stack.client.get("/api/v1/model-prices", headers=hb).json()["overrides"] == []
    assert stack.client.get("/api/v1/model-prices/match", headers=hb, params={"model": "gemini-acme"}).json()["source"] is None
    assert stack.client.delete("/api/v1/model-prices", headers=hb,
                               params={"provider": "google", "model": "gemini-acme"}).status_code == 404

    # bad input: 400 naming the field, nothing stored
    for body, field in (
        ({"model": "m", "prices": {"input": -1}}, "prices.input"),
        ({"model": "m", "prices": {"input": 1, "outptu": 2}}, "prices.outptu"),
        ({"model": "m", "prices": {"output": 2}}, "prices"),
        ({"model": "m", "prices": {"input": 0.0000000001}}, "prices"),
        ({"model": " ", "prices": {"input": 1}}, "model"),
        ({"prices": {"input": 1}}, "model"),
        ({"model": "m", "prices": {"input": 1}, "tiers": [{"prices": {"input": 2}}]}, "tiers.0.above_input_tokens"),
    ):
        r = stack.client.put("/api/v1/model-prices", headers=h, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"].startswith(field), (body, r.json())
    assert len(stack.client.get("/api/v1/model-prices", headers=h).json()["overrides"]) == 1
    assert stack.client.delete("/api/v1/model-prices", headers=h, params={"model": "m"}).status_code == 404

    # an ingest-only key may not read or change prices
    ingest_key = stack.client.post("/api/v1/api-keys", headers=h, json={"scope": "ingest"}).json()["key"]
    assert stack.client.get("/api/v1/model-prices", headers=stack.headers(ingest_key)).status_code == 403
    assert stack.client.put("/api/v1/model-prices", headers=stack.headers(ingest_key), json=CONTRACT).status_code == 403


@pytest.mark.asyncio
async def test_overrides_are_required_once_then_the_last_ones_outlive_a_postgres_outage(stack):
    """Before a first read the processor must not price (it retries); after one, an outage keeps them."""
    from psycopg_pool import AsyncConnectionPool, PoolClosed

    project_id, _ = stack.create_key()
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO model_prices (project_id, provider, model_pattern, prices) VALUES (%s, '', 'm1', %s)",
                     (project_id, '{"input": 3}'))
        # written around the API, unusable: ignored with a warning, the others still load
        conn.execute("INSERT INTO model_prices (project_id, provider, model_pattern, prices) VALUES (%s, '', 'm2', %s)",
                     (project_id, '{"output": 3}'))
    pool = AsyncConnectionPool(stack.postgres_url, min_size=1, max_size=1, open=False)
    await pool.open(wait=True)
    overrides = PriceOverrides(pool, refresh_seconds=0.0, retry_seconds=0.0)
    await overrides.refresh()
    first = overrides.get(project_id)
    assert [e["model"] for e in first] == ["m1"]
    await overrides.refresh()
    assert overrides.get(project_id) is first  # unchanged rows: the same list, so its price table is reused
    await pool.close()
    await overrides.refresh()  # PostgreSQL unreachable: the last overrides stay
    assert overrides.get(project_id) is first

    never_loaded = PriceOverrides(pool)
    with pytest.raises((psycopg.Error, PoolClosed)):  # the first read has nothing to fall back on
        await never_loaded.refresh()
    assert not never_loaded.loaded
