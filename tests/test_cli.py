"""The `evalforge` command as a user runs it: `up` on the embedded default, keys, bad configuration."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from core.auth import read_credentials

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "launcher.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVALFORGE_")}
    env.update(extra)
    return env


class Up:
    """`evalforge up` in a subprocess on a free port and a fresh data dir."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = _free_port()
        self.grpc_port = _free_port()  # not 4317: other runs on this machine may hold it
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def start(self, timeout: float = 90) -> float:
        started = time.monotonic()
        self.proc = subprocess.Popen([*CLI, "up", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                                     cwd=REPO, env=_env(EVALFORGE_GRPC_PORT=str(self.grpc_port)),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while time.monotonic() - started < timeout:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("evalforge up did not answer /healthz in time")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = self.proc.wait(60)
        self.output += self.proc.stdout.read()
        return code


@pytest.fixture
def data_dir():
    # PostgreSQL runs as another user when we are root, so not under pytest's 0700 tmp dir.
    path = Path(f"/tmp/evalforge-cli-{uuid.uuid4().hex[:8]}")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_up_serves_health_keeps_data_across_restart_and_keys_work_against_it(data_dir):
    up = Up(data_dir)
    up.start()
    try:
        health = httpx.get(f"{up.url}/healthz").json()
        assert {name: part["status"] for name, part in health["parts"].items()} == {
            "bus": "ok", "clickhouse": "ok", "postgres": "ok", "redis": "ok", "blobs": "ok"}
        cred = data_dir / "credentials"
        assert stat.S_IMODE(cred.stat().st_mode) == 0o600
        key = read_credentials(cred)["EVALFORGE_API_KEY"]

        # `keys create` against the running stack's data dir, then use that key.
        made = subprocess.run([*CLI, "keys", "create", "--project", "second", "--data-dir", str(data_dir)],
                              cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        second_key = made.stdout.strip().splitlines()[-1]
        assert second_key.startswith("ef_")
        assert httpx.get(f"{up.url}/api/v1/projects/current", headers={"Authorization": f"Bearer {second_key}"}).json()["name"] == "second"
        app_key = subprocess.run([*CLI, "keys", "create", "--project", "second", "--scope", "ingest", "--data-dir",
                                  str(data_dir)], cwd=REPO, env=_env(), capture_output=True, text=True,
                                 timeout=120).stdout.strip().splitlines()[-1]
        assert httpx.get(f"{up.url}/api/v1/traces", headers={"Authorization": f"Bearer {app_key}"}).status_code == 403

        trace_id = uuid.uuid4().hex
        now = time.time_ns()
        r = httpx.post(f"{up.url}/api/v1/spans", headers={"Authorization": f"Bearer {key}"}, json={"spans": [{
            "trace_id": trace_id, "span_id": uuid.uuid4().hex[:16], "name": "llm", "kind": "llm",
            "start_time": now - 10**9, "end_time": now, "model": "gpt-4o", "provider": "openai",
            "usage": {"input_tokens": 10, "output_tokens": 3}}]})
        assert r.status_code == 200 and r.json()["accepted"] == 1
    finally:
        code = up.stop()
    assert code == 0
    assert key in up.output  # printed once, on first start

    up2 = Up(data_dir)
    up2.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            r = httpx.get(f"{up2.url}/api/v1/traces/{trace_id}", headers={"Authorization": f"Bearer {key}"})
            if r.status_code == 200:
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.2)
        assert r.json()["spans"][0]["model"] == "gpt-4o"
    finally:
        assert up2.stop() == 0
    assert key not in up2.output  # not printed again


@pytest.mark.parametrize("env, setting", [
    ({"EVALFORGE_CLICKHOUSE_URL": "mysql://db:3306"}, "EVALFORGE_CLICKHOUSE_URL"),
    ({"EVALFORGE_BLOB_URL": "ftp://x"}, "EVALFORGE_BLOB_URL"),
    ({"EVALFORGE_REDIS_URL": "redis://host:notaport"}, "EVALFORGE_REDIS_URL"),
    ({"EVALFORGE_PORT": "eighty"}, "EVALFORGE_PORT"),
])
def test_bad_configuration_is_one_line_naming_the_setting(env, setting, tmp_path):
    r = subprocess.run([*CLI, "ingest", "--data-dir", str(tmp_path)], cwd=REPO, env=_env(**env),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and setting in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_kafka_unreachable_at_start_is_one_line(migrated_postgres, redis_url, tmp_path):
    port = _free_port()  # nothing listens here
    r = subprocess.run([*CLI, "ingest", "--data-dir", str(tmp_path)], cwd=REPO, timeout=120, capture_output=True, text=True,
                       env=_env(EVALFORGE_BUS_URL=f"kafka://127.0.0.1:{port}", EVALFORGE_POSTGRES_URL=migrated_postgres,
                                EVALFORGE_REDIS_URL=redis_url, EVALFORGE_BUS_TIMEOUT_SECONDS="2"))
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("evalforge: error: EVALFORGE_BUS_URL"), r.stderr
    assert "Traceback" not in r.stderr


def test_eval_rules_cli_adds_lists_validates_and_deletes(migrated_postgres):
    env = _env(EVALFORGE_POSTGRES_URL=migrated_postgres)
    project = f"cli-{uuid.uuid4().hex[:6]}"
    run = lambda *a: subprocess.run([*CLI, "eval-rules", *a], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    added = run("add", "--project", project, "--name", "no pii", "--evaluator", "pii", "--filter", '{"kind": "llm"}')
    assert added.returncode == 0, added.stderr
    rule_id = added.stdout.strip()
    listed = run("list", "--project", project)
    assert rule_id in listed.stdout and '"evaluator": "pii"' in listed.stdout
    bad = run("add", "--project", project, "--name", "x", "--evaluator", "contains", "--config", '{"nope": 1}')
    assert bad.returncode != 0 and "config.nope" in bad.stderr
    assert run("delete", rule_id).returncode == 0
    assert rule_id not in run("list", "--project", project).stdout
