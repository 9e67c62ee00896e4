"""Prometheus metrics of the span processor."""

from prometheus_client import Counter, Histogram

RECORDS = Counter("evalforge_processor_records_total", "Bus records handled", ["outcome"])
INSERT_SECONDS = Histogram("evalforge_processor_insert_seconds", "ClickHouse insert time per batch",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
FRESHNESS_SECONDS = Histogram(
    "evalforge_processor_freshness_seconds", "From ingest acknowledgement to the span committed in ClickHouse",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10, 30, 60, 300),
)
