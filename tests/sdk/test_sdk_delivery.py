"""Delivery under a bad backend: the app never waits, memory stays bounded, drops are counted."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import openai
import pytest
from sdk_helpers import API_KEY

import evalforge

SDK_SRC = str(Path(__file__).resolve().parents[2] / "sdk")


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def timed_calls(client, n=30):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        resp = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        times.append(time.perf_counter() - t)
        assert resp.choices[0].message.content == "Hello there!"
    return times


@pytest.mark.parametrize("backend", ["down", "slow", "error"])
def test_bad_backend_adds_no_wait(receiver, llm, backend):
    client = evalforge.wrap(openai.OpenAI(api_key="k", base_url=llm.url + "/v1", max_retries=0))
    receiver.reset("ok")
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.01)
    healthy = statistics.median(timed_calls(client))
    evalforge.shutdown(2)

    endpoint = closed_port_url() if backend == "down" else receiver.url
    receiver.reset({"down": "ok", "slow": "slow", "error": "error"}[backend])
    evalforge.init(api_key=API_KEY, endpoint=endpoint, schedule_delay=0.01, max_batch_size=1)
    times = timed_calls(client)
    assert statistics.median(times) < healthy * 2 + 0.005, (healthy, statistics.median(times))
    assert max(times) < 0.5  # nothing on the caller's thread waits for the exporter

    t = time.perf_counter()
    evalforge.shutdown(0.5)
    assert time.perf_counter() - t < 1.5  # shutdown honours its timeout even mid-request / mid-retry
    receiver.reset("ok")


def test_500_is_dropped_without_retry_and_counted(receiver):
    receiver.reset("error")
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.01)
    with evalforge.span("x"):
        pass
    evalforge.flush(3)
    stats = evalforge.stats()
    assert stats["dropped"] == {"http_500": 1} and stats["retried"] == 0
    assert len(receiver.requests) == 1
    evalforge.shutdown(1)


def test_400_not_retried(receiver):
    receiver.reset("bad")
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.01)
    with evalforge.span("x"):
        pass
    evalforge.flush(3)
    assert evalforge.stats()["dropped"] == {"http_400": 1}
    assert len(receiver.requests) == 1
    evalforge.shutdown(1)


def test_429_retry_after_honoured_then_delivered(receiver):
    receiver.reset("throttle")
    receiver.retry_after = "1"
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.01)
    with evalforge.span("x"):
        pass
    deadline = time.monotonic() + 3
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    receiver.mode = "ok"
    assert evalforge.flush(5)
    assert [s["name"] for s in receiver.spans] == ["x"]
    first, second = receiver.requests[0]["time"], receiver.requests[1]["time"]
    assert second - first >= 0.95  # waited for Retry-After, not the (shorter) default backoff
    stats = evalforge.stats()
    assert stats["retried"] == 1 and stats["exported"] == 1 and stats["dropped_total"] == 0
    evalforge.shutdown(1)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_bounded_over_100k_spans_with_backend_down(receiver):
    evalforge.init(api_key=API_KEY, endpoint=closed_port_url(), schedule_delay=0.01, max_queue_size=2048)
    payload = "x" * 200
    for _ in range(2000):  # warm up allocator / caches before measuring
        with evalforge.span("warm", payload=payload):
            pass
    before = rss_bytes()
    for _ in range(100_000):
        with evalforge.span("s", payload=payload):
            pass
    grown = rss_bytes() - before
    stats = evalforge.stats()
    assert stats["queued"] <= 2048
    assert stats["dropped"].get("queue_full", 0) >= 100_000 - 2048 - 512 * 2
    assert grown < 64 * 1024 * 1024, grown
    evalforge.shutdown(0.2)
    assert evalforge.stats()["exported"] == 0


def run_script(code: str, timeout: float = 20) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SDK_SRC)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=timeout)


def test_script_that_exits_right_after_a_call_delivers(receiver, llm):
    receiver.reset("ok")
    proc = run_script(
        f"""
        import evalforge, openai
        evalforge.init(api_key="{API_KEY}", endpoint="{receiver.url}")
        client = evalforge.wrap(openai.OpenAI(api_key="k", base_url="{llm.url}/v1", max_retries=0))
        client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "bye"}}])
        """
    )
    assert proc.returncode == 0, proc.stderr
    spans = receiver.wait_spans(1, timeout=2)
    assert [s["name"] for s in spans] == ["chat gpt-4o"]


def test_exit_is_bounded_when_backend_hangs(receiver):
    receiver.reset("slow")
    t = time.perf_counter()
    proc = run_script(
        f"""
        import evalforge
        evalforge.init(api_key="{API_KEY}", endpoint="{receiver.url}")
        with evalforge.span("x"):
            pass
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - t < 2.0 + 3.0  # 2 s atexit bound + interpreter start-up
    receiver.reset("ok")


def test_forked_child_keeps_exporting(receiver):
    receiver.reset("ok")
    proc = run_script(
        f"""
        import os, evalforge
        evalforge.init(api_key="{API_KEY}", endpoint="{receiver.url}", schedule_delay=0.05)
        with evalforge.span("before-fork"):
            pass
        pid = os.fork()
        with evalforge.span("child" if pid == 0 else "parent"):
            pass
        assert evalforge.flush(5)
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        """
    )
    assert proc.returncode == 0, proc.stderr
    names = sorted(s["name"] for s in receiver.wait_spans(3, timeout=3))
    assert names == ["before-fork", "child", "parent"]


def test_a_retried_score_batch_carries_the_same_idempotency_key(receiver):
    """The server derives the ids of scores sent without one from this key: a retry after a 503 that
    had in fact stored them collapses onto them instead of doubling the feedback."""
    receiver.reset("throttle")
    receiver.retry_after = "0"
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.01)
    evalforge.score("thumbs", 1, trace_id="5b8efff798038103d269b633813fc60c")
    deadline = time.monotonic() + 3
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    receiver.mode = "ok"
    assert evalforge.flush(5)
    evalforge.score("stars", 4, trace_id="5b8efff798038103d269b633813fc60c")
    assert evalforge.flush(5)
    keys = [r["headers"].get("Idempotency-Key") for r in receiver.requests if r["path"].endswith("/api/v1/scores")]
    assert len(keys) >= 3 and all(keys)
    assert len(set(keys[:-1])) == 1  # the throttled attempts and the delivered one: one key
    assert keys[-1] != keys[0]  # another batch: another key
