"""`evalforge ingest --workers 2`: two processes serve one port (SO_REUSEPORT), every acknowledged
span reaches the topic, and SIGTERM to the parent drains both and exits 0."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid

import httpx
import pytest

from tests.harness.procs import child_processes
from tests.ingest.conftest import read_topic
from tests.test_cli import CLI, REPO, _env, _free_port


def _children(pid: int) -> list[str]:
    """Command lines of the direct children of ``pid``."""
    return [cmdline for _, cmdline in child_processes(pid)]


@pytest.mark.timeout(180)
def test_two_ingest_processes_share_the_port_and_drain(kafka_broker, migrated_postgres, redis_url, project_key,
                                                      tmp_path):
    project_id, key = project_key
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "ingest", "--workers", "2", "--port", str(port), "--data-dir", str(tmp_path)], cwd=REPO,
        env=_env(EVALFORGE_BUS_URL=f"kafka://{kafka_broker.bootstrap}", EVALFORGE_POSTGRES_URL=migrated_postgres,
                 EVALFORGE_REDIS_URL=redis_url, EVALFORGE_BLOB_URL=f"file://{tmp_path / 'blobs'}",
                 EVALFORGE_GRPC_PORT=str(_free_port())),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while sum(1 for c in _children(proc.pid) if "resource_tracker" not in c) < 2 or not _ready(url):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.3)
        time.sleep(2)  # both copies listening (readiness of one is not readiness of the other)
        sent = 0
        for i in range(30):  # a new connection per request: the kernel spreads them over the copies
            spans = [{"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "name": f"w-{i}-{j}",
                      "start_time": time.time_ns() - 10**9, "end_time": time.time_ns()} for j in range(5)]
            r = httpx.post(f"{url}/api/v1/spans", json={"spans": spans}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
            sent += len(spans)
        assert len(read_topic(kafka_broker.bootstrap, project_id, expect=sent)) == sent
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert _children(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_workers_need_server_parts(tmp_path):
    r = subprocess.run([*CLI, "ingest", "--workers", "2", "--data-dir", str(tmp_path)], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "evalforge: error: --workers: several ingest processes need PostgreSQL and Redis as servers "
        "(set EVALFORGE_POSTGRES_URL and EVALFORGE_REDIS_URL)"]
