"""Two edits of one rule at the same time (eval rules and alert rules): each is validated against the
row as the other left it, so together they cannot store a rule that neither alone could.

The test holds the rule's row lock itself until both PATCH requests wait on it, then lets go: the
interleaving is forced, not left to chance."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from tests.waiting import wait_until


def _waiting_on_lock(conn, table: str) -> int:
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE %s",
                        (f"%{table}%",)).fetchone()[0]


def _concurrent_patches(stack, key: str, table: str, url: str, bodies: list[dict]) -> list[int]:
    with psycopg.connect(stack.postgres_url, autocommit=True) as holder, \
            psycopg.connect(stack.postgres_url, autocommit=True) as watcher, ThreadPoolExecutor(2) as pool:
        rule_id = url.rsplit("/", 1)[1]
        with holder.transaction():
            holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", (rule_id,))
            futures = [pool.submit(stack.client.patch, url, headers=stack.headers(key), json=b) for b in bodies]
            wait_until(lambda: _waiting_on_lock(watcher, table) >= 2, 30)
        return sorted(f.result().status_code for f in futures)


def test_concurrent_eval_rule_edits_cannot_store_an_invalid_pair(stack):
    _, key = stack.create_key()
    r = stack.client.post("/api/v1/eval-rules", headers=stack.headers(key), json={
        "name": "race", "evaluator": "contains", "config": {"expected": "x"}})
    assert r.status_code == 201, r.text
    url = f"/api/v1/eval-rules/{r.json()['id']}"
    # each valid against the rule as created; "mode" is not a regex option, so not both
    statuses = _concurrent_patches(stack, key, "eval_rules", url, [
        {"evaluator": "regex"}, {"config": {"expected": "x", "mode": "all"}}])
    assert statuses == [200, 400]
    [rule] = stack.client.get("/api/v1/eval-rules", headers=stack.headers(key)).json()["rules"]
    assert (rule["evaluator"], rule["config"]) in [("regex", {"expected": "x"}),
                                                   ("contains", {"expected": "x", "mode": "all"})]


def test_concurrent_alert_rule_edits_cannot_store_an_invalid_rule(stack):
    _, key = stack.create_key()
    r = stack.client.post("/api/v1/alert-rules", headers=stack.headers(key), json={
        "name": "race", "metric": "latency", "aggregation": "avg", "comparator": ">", "threshold": 1000,
        "window_seconds": 300})
    assert r.status_code == 201, r.text
    url = f"/api/v1/alert-rules/{r.json()['id']}"
    # each valid against the rule as created; a count of errors has no p95
    statuses = _concurrent_patches(stack, key, "alert_rules", url, [{"aggregation": "p95"}, {"metric": "errors"}])
    assert statuses == [200, 400]
    rule = stack.client.get(url, headers=stack.headers(key)).json()
    assert (rule["metric"], rule["aggregation"]) in [("latency", "p95"), ("errors", "avg")]
