"""Prometheus metrics of the ingest service."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("evalforge_ingest_requests_total", "Ingest requests", ["endpoint", "status"])
SPANS_ACCEPTED = Counter("evalforge_ingest_spans_accepted_total", "Spans acknowledged by the bus")
SPANS_REJECTED = Counter("evalforge_ingest_spans_rejected_total", "Spans rejected", ["reason"])
PRODUCE_SECONDS = Histogram(
    "evalforge_ingest_produce_seconds", "Time for the bus to acknowledge one request's records",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OFFLOADED_BYTES = Counter("evalforge_ingest_offloaded_bytes_total", "Payload bytes moved to the blob store")
INFLIGHT_BYTES = Gauge("evalforge_ingest_inflight_bytes", "Bytes of request bodies this process holds until the bus acknowledges them")
SCORES_ACCEPTED = Counter("evalforge_ingest_scores_accepted_total", "Scores acknowledged by the bus")
SCORES_REJECTED = Counter("evalforge_ingest_scores_rejected_total", "Scores rejected", ["reason"])
