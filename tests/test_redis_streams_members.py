"""Redis Streams bus: one member per consumer group (a second `evalforge process` refuses to start with
one line; a crashed one is replaced at once), an embedded socket path that survives restarts, and a
bus identity (stored with every span) that never carries the Redis password."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from core.bus.redis_streams import STREAM_PREFIX, RedisStreamsBus
from core.embedded import EmbeddedRedis

REPO = Path(__file__).resolve().parents[1]
LEASE_KEY = f"{STREAM_PREFIX}lease:evalforge-processors"


@pytest.fixture
def own_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _env(tmp_path: Path, redis_url: str, postgres_url: str, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "EVALFORGE_BUS_URL": "",  # Redis Streams on the Redis below
        "EVALFORGE_REDIS_URL": redis_url,
        "EVALFORGE_POSTGRES_URL": postgres_url,
        # a ClickHouse each: chDB opens a data dir in one process only (replicas would share a server)
        "EVALFORGE_CLICKHOUSE_URL": f"chdb://{tmp_path / name / 'ch'}",
        "EVALFORGE_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "EVALFORGE_DATA_DIR": str(tmp_path / name),
        # other tests' alert rules in the shared PostgreSQL draw warnings; the refusal is an error line
        "EVALFORGE_LOG_LEVEL": "ERROR",
    }


def _lease_holder(client: redis.Redis, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if holder := client.get(LEASE_KEY):
            return holder.decode()
        time.sleep(0.2)
    raise AssertionError("no processor took the consumer group's lease")


@pytest.mark.timeout(240)
def test_a_second_processor_on_a_redis_streams_bus_refuses_and_a_crashed_one_is_replaced(
        own_redis, migrated_postgres, tmp_path):
    cli = [sys.executable, "-m", "launcher.cli"]
    first_env = _env(tmp_path, own_redis.url, migrated_postgres, "one")
    second_env = _env(tmp_path, own_redis.url, migrated_postgres, "two")
    for env in (first_env, second_env):
        subprocess.run([*cli, "migrate"], env=env, cwd=REPO, check=True, timeout=120, capture_output=True)
    client = redis.Redis(unix_socket_path=str(own_redis.socket_path))

    first = subprocess.Popen([*cli, "process"], env=first_env, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert _lease_holder(client).split(" ")[1] == str(first.pid)
        second = subprocess.run([*cli, "process"], env=second_env, cwd=REPO, capture_output=True, text=True,
                                timeout=90, check=False)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert lines and "Traceback" not in second.stderr, second.stderr  # one line says why, no traceback
        assert lines[-1].startswith("evalforge: error: EVALFORGE_BUS_URL: another member of consumer group "
                                   f"'evalforge-processors' (host {os.uname().nodename}, pid {first.pid})")
        assert first.poll() is None  # the first one is untouched

        first.send_signal(signal.SIGKILL)  # a crash: the lease is left behind...
        first.wait(30)
        assert client.get(LEASE_KEY) is not None
        started = time.monotonic()
        replacement = subprocess.Popen([*cli, "process"], env=second_env, cwd=REPO, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        try:  # ...and taken over at once: its holder was a process of this host that is gone
            assert _lease_holder_other_than(client, first.pid).split(" ")[1] == str(replacement.pid)
            assert time.monotonic() - started < 60
        finally:
            replacement.send_signal(signal.SIGTERM)
            assert replacement.wait(60) == 0
        assert client.get(LEASE_KEY) is None  # released on a clean stop
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def _lease_holder_other_than(client: redis.Redis, pid: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = (client.get(LEASE_KEY) or b"").decode()
        if holder and holder.split(" ")[1] != str(pid):
            return holder
        time.sleep(0.2)
    raise AssertionError("the crashed processor's lease was not taken over")


def test_embedded_socket_path_is_the_same_in_every_process(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # too long for a Unix socket in place: goes to /tmp
    code = f"from pathlib import Path; from core.embedded import EmbeddedRedis; print(EmbeddedRedis(Path({str(deep)!r})).url)"
    urls = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, cwd=REPO,
                           capture_output=True, text=True, check=True).stdout for seed in ("1", "2", "3")}
    assert len(urls) == 1 and "/tmp/evalforge-redis-" in urls.pop()


def test_bus_identity_never_holds_the_password():
    assert RedisStreamsBus("redis://default:s3cret-pw@redis.internal:6379/2").identity == \
        "redis:redis://redis.internal:6379/2"
    assert "s3cret" not in RedisStreamsBus("redis://redis.internal:6379/0?password=s3cret&db=1").identity


def test_settings_never_show_the_urls_credentials():
    from core.settings import Settings

    settings = Settings(bus_url="kafka://svc:s3cret-pw@kafka.internal:9092",
                        redis_url="redis://default:s3cret-pw@redis.internal:6379/0",
                        postgres_url="postgresql://app:s3cret-pw@pg.internal/evalforge")
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
