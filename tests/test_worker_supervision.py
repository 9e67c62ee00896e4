"""A background worker of ``evalforge up`` that dies is restarted with backoff, and /readyz fails while it
is down: never a silent death (the processor and eval worker once died unwatched while ingest kept
answering 200 and /readyz "ok")."""

from __future__ import annotations

import asyncio
import itertools
import time

from starlette.testclient import TestClient
from tests.waiting import wait_until


def _wait(predicate, timeout: float = 15.0):
    return wait_until(predicate, timeout)


def test_a_dying_worker_fails_readyz_and_is_restarted(redis_url, service_root, monkeypatch):
    from core import workers
    from core.http import build_app
    from core.settings import Settings

    monkeypatch.setattr(workers, "FIRST_BACKOFF_S", 0.2)
    broken = {"yes": True}
    runs: list[float] = []

    async def flaky_worker(services, stopping: asyncio.Event) -> None:
        runs.append(time.monotonic())
        if broken["yes"]:
            raise ConnectionError("bus read timed out")
        await stopping.wait()

    settings = Settings(data_dir=service_root / "supervision", redis_url=redis_url)
    app = build_app(settings, parts=frozenset({"redis"}), background=[flaky_worker])
    with TestClient(app) as client:
        down = _wait(lambda: (r := client.get("/readyz")).status_code == 503 and r.json()["workers"]["flaky_worker"]["status"] == "restarting" and r)
        state = down.json()["workers"]["flaky_worker"]
        assert state["last_error"] == "ConnectionError: bus read timed out" and state["restarts"] >= 1
        _wait(lambda: len(runs) >= 3)  # it keeps trying, further apart each time
        gaps = [b - a for a, b in itertools.pairwise(runs)]
        assert gaps[1] > gaps[0]
        broken["yes"] = False
        up = _wait(lambda: (r := client.get("/readyz")).status_code == 200 and r)
        assert up.json()["workers"]["flaky_worker"]["status"] == "running"
    assert app.state.workers[0].status == "stopped"  # shut down cleanly, not counted as a death


def test_workers_of_up_survive_their_bus_connections_being_killed(stack, redis_server):
    """The embedded bus (Redis Streams) drops every connection, as when its reads time out: a worker
    that dies of it is restarted, so a span sent afterwards is stored *and* evaluated."""
    import uuid

    import redis

    project_id, key = stack.create_key()
    rule = stack.client.post("/api/v1/eval-rules", headers=stack.headers(key), json={
        "name": "mentions paris", "evaluator": "contains", "config": {"expected": "Paris", "score_name": "paris"},
        "sampling_rate": 1.0})
    assert rule.status_code == 201, rule.text
    time.sleep(5.5)  # the trigger refreshes its rules every 5 s
    admin = redis.Redis(unix_socket_path=str(redis_server.socket_path))
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") > 0
    trace = uuid.uuid4().hex
    now = time.time_ns()
    span = {"trace_id": trace, "span_id": uuid.uuid4().hex[:16], "name": "after-kill", "model": "gpt-4o",
            "output": "Paris.", "start_time": now - 10**6, "end_time": now}
    _wait(lambda: stack.client.post("/api/v1/spans", headers=stack.headers(key), json={"spans": [span]}).status_code == 200)
    scored = _wait(lambda: stack.clickhouse.query(
        "SELECT value FROM scores WHERE project_id = {p:String} AND trace_id = {t:String} AND name = 'paris'",
        parameters={"p": project_id, "t": trace}).result_rows, timeout=60)
    assert scored == [(1.0,)]
    ready = _wait(lambda: (r := stack.client.get("/readyz")).status_code == 200 and r, timeout=60)
    workers = ready.json()["workers"]
    assert set(workers) == {"processor_task", "eval_worker_task", "experiment_worker_task", "optimization_worker_task",
                            "alerts_task"}
    assert all(w["status"] == "running" for w in workers.values())
    for w in workers.values():  # each death is on record, with its cause
        assert bool(w["restarts"]) == bool(w["last_error"])
