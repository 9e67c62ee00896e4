"""``evalforge.ab.variant`` against the real server: the same unit gets the same variant in separate
processes and the server's preview agrees; traffic follows the weights (chi-square on 100k units);
spans are tagged and kept by ingest; fallbacks when nothing is cached; the cache survives an outage."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from scipy import stats

import evalforge
from tests.harness.live_server import LiveServer
from tests.waiting import wait_until

CHILD = """
import json, sys, evalforge
evalforge.init(api_key=sys.argv[1], endpoint=sys.argv[2], schedule_delay=0.05)
units = json.loads(sys.stdin.read())
print(json.dumps([evalforge.ab.variant(sys.argv[3], unit_id=u).name for u in units]))
evalforge.shutdown(1)
"""


def live_app(stack):
    from core.http import build_app
    from ingest.routers.ingest import router as ingest_router
    from launcher.cli import INGEST_PARTS
    from query_api.routers.ab_tests import router as ab_router

    return LiveServer(build_app(stack.settings, parts=INGEST_PARTS, routers=[ingest_router, ab_router]))


@pytest.fixture(scope="module")
def server(stack):
    with live_app(stack) as live:
        yield live.url


@pytest.fixture
def project(stack):
    return stack.create_key()


def create(stack, key, name, weights, start=True):
    resp = stack.client.post("/api/v1/ab-tests", headers=stack.headers(key), json={
        "name": name, "start": start, "primary_metric": {"kind": "latency"}, "design": {"mde": 10},
        "variants": [{"name": n, "weight": w, "model": f"model-{n}", "config": {"arm": n}} for n, w in weights.items()]})
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.fixture
def sdk(server, project):
    _, key = project
    evalforge.init(api_key=key, endpoint=server, schedule_delay=0.05, service_name="ab-tests")
    yield key
    evalforge.shutdown(2)


def test_same_unit_same_variant_in_every_process_and_on_the_server(stack, server, project):
    project_id, key = project
    test = create(stack, key, "three-way", {"a": 5, "b": 3, "c": 2})
    units = [f"user-{i}" for i in range(3000)] + [str(uuid.uuid4()) for _ in range(500)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    answers = [json.loads(subprocess.run([sys.executable, "-c", CHILD, key, server, "three-way"], input=json.dumps(units),
                                         capture_output=True, text=True, env=env, timeout=120, check=True).stdout)
               for _ in range(2)]
    assert answers[0] == answers[1]
    assert set(answers[0]) == {"a", "b", "c"}  # every unit assigned (no fallback) in both processes
    for unit, name in list(zip(units, answers[0]))[::25]:  # the server's implementation agrees
        preview = stack.client.get(f"/api/v1/ab-tests/{test['id']}/assignment", params={"unit_id": unit},
                                   headers=stack.headers(key)).json()
        assert preview["variant"] == name


def test_assignment_follows_the_weights(stack, sdk):
    create(stack, sdk, "weighted", {"control": 0.5, "x": 0.3, "y": 0.2})
    assert evalforge.ab.refresh()
    counts = {"control": 0, "x": 0, "y": 0}
    for i in range(100_000):
        counts[evalforge.ab.variant("weighted", unit_id=i).name] += 1
    p = stats.chisquare([counts["control"], counts["x"], counts["y"]], [50_000, 30_000, 20_000]).pvalue
    assert p > 0.001, counts


def test_variant_carries_its_config(stack, sdk):
    create(stack, sdk, "configured", {"only-a": 1, "never": 0})
    assert evalforge.ab.refresh()
    v = evalforge.ab.variant("configured", unit_id="u1")
    assert (v.name, v.model, v.config, v.assigned) == ("only-a", "model-only-a", {"arm": "only-a"}, True)


def test_spans_are_tagged_and_kept_by_ingest(stack, sdk):
    project_id = next(pid for pid, secret in stack.keys.values() if secret == sdk)
    create(stack, sdk, "tagging", {"control": 1, "treatment": 1})
    stopped = create(stack, sdk, "stopped-one", {"control": 1, "treatment": 1})
    stack.client.post(f"/api/v1/ab-tests/{stopped['id']}/stop", headers=stack.headers(sdk))
    assert evalforge.ab.refresh()
    with evalforge.span("handler") as root:
        chosen = evalforge.ab.variant("tagging", unit_id="user-7")  # tags the current span
        assert evalforge.ab.variant("stopped-one", unit_id="user-7").name == "control"  # stopped: control, untagged
        with evalforge.ab.variant("tagging", unit_id="user-7"):  # tags every span in the block
            with evalforge.span("model-call"):
                pass
        with evalforge.span("after-block"):
            pass
    assert root is not None and evalforge.flush(10)
    rows = wait_until(lambda: (r := stack.clickhouse.query(
        "SELECT name, attributes['evalforge.ab.test'], attributes['evalforge.ab.variant'], attributes['evalforge.ab.unit'] "
        "FROM spans WHERE project_id = {p:String}", parameters={"p": project_id}).result_rows) and len(r) == 3 and r)
    salt = stack.client.get("/api/v1/ab-tests/sdk-config", headers=stack.headers(sdk)).json()["tests"]["tagging"]["salt"]
    unit = hashlib.sha256(f"{salt}:user-7".encode()).digest()[8:16].hex()  # the documented unit key, not the id
    tags = {name: rest for name, *rest in rows}
    assert tags == {"handler": ["tagging", chosen.name, unit], "model-call": ["tagging", chosen.name, unit],
                    "after-block": ["", "", ""]}


def test_falls_back_when_nothing_is_cached_and_never_raises(stack):
    evalforge.init(api_key="ef_nothing", endpoint="http://127.0.0.1:9", schedule_delay=0.05, ab_initial_wait=0.2)
    try:
        v = evalforge.ab.variant("anything", unit_id="u")
        assert (v.name, v.assigned, v.config) == ("control", False, {})
        assert evalforge.ab.variant("anything", unit_id="u", fallback="baseline").name == "baseline"
        with evalforge.ab.variant("anything", unit_id=object()):
            pass
        ab = evalforge.stats()["ab"]
        assert ab["fetch_errors"] >= 1 and ab["tests_cached"] is None and "ConnectionRefused" in ab["last_error"]
        assert ab["fallbacks"]["no_configuration"] == 3
    finally:
        evalforge.shutdown(1)
    assert evalforge.ab.variant("anything", unit_id="u").assigned is False  # not initialised: still no raise


def test_unknown_test_falls_back(sdk):
    assert evalforge.ab.refresh()
    assert evalforge.ab.variant("no-such-test", unit_id="u").assigned is False
    assert evalforge.stats()["ab"]["fallbacks"] == {"unknown_test": 1}


def test_cached_configuration_survives_the_server_going_away(stack, project):
    _, key = project
    create(stack, key, "outage", {"control": 1, "treatment": 1})
    with live_app(stack) as live:
        evalforge.init(api_key=key, endpoint=live.url, schedule_delay=0.05)
        assert evalforge.ab.refresh()
        before = [evalforge.ab.variant("outage", unit_id=i).name for i in range(200)]
    try:
        assert evalforge.ab.refresh() is False  # server gone: the refresh fails, the cache stays
        assert [evalforge.ab.variant("outage", unit_id=i).name for i in range(200)] == before
        assert evalforge.stats()["ab"]["fetch_errors"] >= 1 and evalforge.stats()["ab"]["fallbacks"] == {}
    finally:
        evalforge.shutdown(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_keeps_the_cache_and_refreshes_on_its_own(stack, sdk):
    create(stack, sdk, "forking", {"control": 1, "treatment": 1})
    assert evalforge.ab.refresh()
    before = evalforge.stats()["ab"]["fetches"]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a cached answer at once, then its own refresher thread fetches
        try:
            answer = evalforge.ab.variant("forking", unit_id="u-1").assigned
            deadline = time.monotonic() + 20
            while evalforge.stats()["ab"]["fetches"] <= before and time.monotonic() < deadline:
                time.sleep(0.05)
            os.write(write, json.dumps([answer, evalforge.stats()["ab"]["fetches"] > before]).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert json.loads(os.read(read, 1000)) == [True, True]
