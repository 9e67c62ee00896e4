"""kill -9 of a real `evalforge process` worker on Kafka mid-run; every span counted exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from core.bus import TOPIC_SPANS
from core.bus.kafka import KafkaBus
from core.pricing import Usage, compute_cost
from tests.processors.conftest import as_message, make_span

N = 30_000
REPO = Path(__file__).resolve().parents[2]

VERIFY = """
import json, sys, clickhouse_connect
from tests.processors.rollups_check import assert_rollups_exact, read
c = clickhouse_connect.get_client(dsn=sys.argv[1])
p = {"p": sys.argv[2]}
# FINAL: what the query API reads (copies re-inserted after a crash collapse there and at merge time)
base = c.query("SELECT count(), uniqExact(span_id), sum(cost), sum(input_tokens), sum(output_tokens) "
               "FROM spans FINAL WHERE project_id = {p:String}", parameters=p).result_rows[0]
# as the metrics API reads the rollups (some minutes rolled by the worker's roller, some not yet)
agg = [sum(v[i] for v in read(c, sys.argv[2], "metrics_1m").values()) for i in (0, 2, 3)]
user = [sum(v[i] for v in read(c, sys.argv[2], "metrics_user_1m").values()) for i in (0, 2)]
assert_rollups_exact(c, sys.argv[2], requests=base[0])
print(json.dumps({"rows": base[0], "distinct": base[1], "cost": base[2], "input": base[3], "output": base[4],
                  "agg_requests": agg[0], "agg_cost": agg[1], "agg_input": agg[2],
                  "user_requests": user[0], "user_cost": user[1]}))
"""


async def _lag(bootstrap: str, group: str) -> tuple[int, int]:
    """(committed, end) offsets summed over the partitions of spans.raw for ``group``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        [topic] = await admin.describe_topics([TOPIC_SPANS])
        parts = [TopicPartition(TOPIC_SPANS, p["partition"]) for p in topic["partitions"]]
        end = await consumer.end_offsets(parts)
        try:
            committed = await admin.list_consumer_group_offsets(group)
        except KafkaError:  # the group does not exist yet: nothing committed
            committed = {}
        done = sum(max(committed[tp].offset, 0) for tp in parts if tp in committed)
        return done, sum(end.values())
    finally:
        await consumer.stop()
        await admin.close()


def test_kill9_mid_run_then_restart_counts_every_span_once(kafka_broker, migrated_postgres, redis_url, tmp_path):
    project = uuid.uuid4().hex[:12]
    group = f"kill9-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "EVALFORGE_BUS_URL": f"kafka://{kafka_broker.bootstrap}",
        "EVALFORGE_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
        "EVALFORGE_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "EVALFORGE_POSTGRES_URL": migrated_postgres,
        "EVALFORGE_REDIS_URL": redis_url,
        "EVALFORGE_PROCESSOR_GROUP": group,
        "EVALFORGE_SINK_BATCH_ROWS": "1000",
        "EVALFORGE_SINK_BATCH_MS": "200",
        "EVALFORGE_DATA_DIR": str(tmp_path / "data"),
        "EVALFORGE_LOG_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-m", "launcher.cli"]
    subprocess.run([*cli, "migrate"], env=env, cwd=REPO, check=True, timeout=120)

    spans = [make_span(project, i) for i in range(N)]

    async def publish() -> None:
        bus = KafkaBus(kafka_broker.bootstrap, timeout_s=30)
        await bus.start()
        for start in range(0, N, 2000):
            await bus.publish(TOPIC_SPANS, [as_message(s) for s in spans[start:start + 2000]])
        await bus.close()

    asyncio.run(publish())
    _, end = asyncio.run(_lag(kafka_broker.bootstrap, group))

    worker = subprocess.Popen([*cli, "process"], env=env, cwd=REPO)
    try:
        # Kill -9 once the worker is part-way through (some batches committed, more to go).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done, _ = asyncio.run(_lag(kafka_broker.bootstrap, group))
            if done >= 3000:
                break
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
        done_at_kill, _ = asyncio.run(_lag(kafka_broker.bootstrap, group))
        assert 0 < done_at_kill < end, (done_at_kill, end)  # the kill really hit mid-run

        worker = subprocess.Popen([*cli, "process"], env=env, cwd=REPO)
        deadline = time.monotonic() + 240
        while asyncio.run(_lag(kafka_broker.bootstrap, group))[0] < end:
            assert time.monotonic() < deadline, "restarted worker did not catch up"
            time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)  # SIGTERM: flush, commit, exit 0
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()

    out = subprocess.run([sys.executable, "-c", VERIFY, f"chdb://{tmp_path / 'ch'}", project], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    expected_cost = sum(
        compute_cost("openai", "gpt-4o-mini", Usage(input_tokens=s["input_tokens"], output_tokens=s["output_tokens"])).cost
        for s in spans
    )
    assert got["rows"] == N and got["distinct"] == N
    assert got["input"] == sum(s["input_tokens"] for s in spans)
    assert got["output"] == sum(s["output_tokens"] for s in spans)
    assert abs(got["cost"] - expected_cost) < 1e-6
    assert got["agg_requests"] == N
    assert got["agg_input"] == got["input"]
    assert abs(got["agg_cost"] - expected_cost) < 1e-6
    assert got["user_requests"] == N
    assert abs(got["user_cost"] - expected_cost) < 1e-6
