"""`migrate` creates every topic the services use, with the replication settings, on a broker that
never auto-creates topics (the session's test broker runs with auto.create.topics.enable=false)."""

from __future__ import annotations

import importlib
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from core.bus import ALL_TOPICS, BusUnavailable
from core.bus.kafka import KafkaBus, topic_replication
from core.services import open_services
from core.settings import ConfigError, Settings

pytestmark = pytest.mark.kafka

# Modules that name topics; every TOPIC_* constant they hold must be one `migrate` creates.
TOPIC_MODULES = ("core.bus", "ingest.routers.ingest", "stream_processors.worker", "stream_processors.eval_trigger",
                 "evaluators.worker", "evaluators.routers.review")


def test_every_topic_constant_is_created_by_migrate():
    used = {value for name in TOPIC_MODULES for attr, value in vars(importlib.import_module(name)).items()
            if attr.startswith("TOPIC_") and isinstance(value, str)}
    assert "eval.dlq" in used
    assert used <= set(ALL_TOPICS), used - set(ALL_TOPICS)


@pytest.mark.parametrize(("brokers", "settings", "expected"), [
    (1, (0, 0), (1, 1)),  # a single broker: nothing else is possible
    (2, (0, 0), (2, 1)),
    (3, (0, 0), (3, 2)),  # acks=all waits for two of three replicas; one broker may be down
    (6, (0, 0), (3, 2)),
    (6, (5, 0), (5, 4)),
    (6, (3, 3), (3, 3)),
])
def test_replication_defaults_follow_the_cluster(brokers, settings, expected):
    assert topic_replication(brokers, *settings) == expected


def test_replication_the_cluster_cannot_honour_names_the_setting():
    with pytest.raises(ConfigError, match="EVALFORGE_KAFKA_REPLICATION_FACTOR: 3 is more than the 1 broker"):
        topic_replication(1, 3, 0)
    with pytest.raises(ConfigError, match="EVALFORGE_KAFKA_MIN_INSYNC_REPLICAS"):
        topic_replication(3, 2, 3)


async def _topic_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        assert all(t["error_code"] == 0 and t["partitions"] for t in described), described
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None}) for t in topics])
        out: dict[str, dict[str, str]] = {}
        for response in responses:
            for _code, _msg, _type, name, entries in response.resources:
                out[name] = {e[0]: e[1] for e in entries}
        return {**out, **{t["topic"]: {**out.get(t["topic"], {}), "partitions": str(len(t["partitions"])),
                                       "replicas": str(len(t["partitions"][0]["replicas"]))} for t in described}}
    finally:
        await admin.close()


@pytest.mark.asyncio
async def test_migrate_creates_every_topic(kafka_broker, tmp_path):
    settings = Settings(data_dir=tmp_path, bus_url=f"kafka://{kafka_broker.bootstrap}", kafka_partitions=3)
    services = await open_services(settings, {"bus"}, migrate=True)
    try:
        # a topic migrate did not create cannot be used: the broker does not create it on the fly
        with pytest.raises(BusUnavailable):
            await services.bus.publish(f"not-migrated-{uuid.uuid4().hex[:6]}", [(b"k", b"{}")])
    finally:
        await services.close()
    configs = await _topic_configs(kafka_broker.bootstrap, list(ALL_TOPICS))  # each exists, with a leader
    assert all(configs[t]["replicas"] == "1" and configs[t]["min.insync.replicas"] == "1" for t in ALL_TOPICS)


@pytest.mark.asyncio
async def test_new_topics_get_the_replication_settings(kafka_broker):
    topic = f"replicated-{uuid.uuid4().hex[:6]}"
    bus = KafkaBus(kafka_broker.bootstrap, partitions=2, timeout_s=5, replication_factor=1, min_insync_replicas=1)
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        too_many = KafkaBus(kafka_broker.bootstrap, partitions=2, timeout_s=5, replication_factor=2)
        with pytest.raises(ConfigError, match="EVALFORGE_KAFKA_REPLICATION_FACTOR"):
            await too_many.ensure_topics([f"{topic}-2"])
    finally:
        await bus.close()
    configs = await _topic_configs(kafka_broker.bootstrap, [topic])
    assert configs[topic] == {"min.insync.replicas": "1", "partitions": "2", "replicas": "1"}


@pytest.mark.asyncio
async def test_a_consumer_of_a_topic_nobody_created_says_to_migrate(kafka_broker):
    bus = KafkaBus(kafka_broker.bootstrap, timeout_s=5)
    consumer = bus.consumer([f"never-migrated-{uuid.uuid4().hex[:6]}"], f"g-{uuid.uuid4().hex[:6]}")
    with pytest.raises(BusUnavailable, match="`evalforge migrate` creates them"):
        await consumer.start()
    await consumer.stop()
