"""The message bus: one interface, two backends (Kafka for scale-out, Redis Streams embedded)."""

from __future__ import annotations

from urllib.parse import urlsplit

from core.bus.base import Bus, BusUnavailable, Consumer, Record

TOPIC_SPANS = "spans.raw"
TOPIC_SPANS_DLQ = "spans.dlq"
TOPIC_EVAL_JOBS = "eval.jobs"
TOPIC_SCORES = "scores"
TOPIC_EVAL_DLQ = "eval.dlq"
TOPIC_EXPERIMENT_JOBS = "experiments.jobs"  # one record per experiment run, keyed by experiment id
# Every topic a service publishes to or consumes: ``migrate`` creates them all (brokers may, and in
# production should, run with auto.create.topics.enable=false).
ALL_TOPICS = (TOPIC_SPANS, TOPIC_SPANS_DLQ, TOPIC_EVAL_JOBS, TOPIC_EVAL_DLQ, TOPIC_SCORES, TOPIC_EXPERIMENT_JOBS)


def open_bus(url: str, *, redis_url: str = "", partitions: int = 8, timeout_s: float = 5.0,
             replication_factor: int = 0, min_insync_replicas: int = 0) -> Bus:
    """The bus named by ``url``: ``kafka://h1:9092,h2:9092`` or Redis Streams (``redis://…``, or empty
    for the Redis given by ``redis_url``). Replication settings apply to Kafka topics ``migrate``
    creates (0: chosen from the number of brokers, see ``KafkaBus.ensure_topics``)."""
    parts = urlsplit(url)
    if parts.scheme == "kafka":
        from core.bus.kafka import KafkaBus

        return KafkaBus(parts.netloc, partitions=partitions, timeout_s=timeout_s,
                        replication_factor=replication_factor, min_insync_replicas=min_insync_replicas)
    from core.bus.redis_streams import RedisStreamsBus

    return RedisStreamsBus(url if parts.scheme == "redis" else redis_url, timeout_s=timeout_s)


__all__ = [
    "ALL_TOPICS", "Bus", "BusUnavailable", "Consumer", "Record", "TOPIC_EVAL_DLQ", "TOPIC_EVAL_JOBS",
    "TOPIC_EXPERIMENT_JOBS", "TOPIC_SCORES",
    "TOPIC_SPANS", "TOPIC_SPANS_DLQ", "open_bus",
]
