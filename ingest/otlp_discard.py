"""OTLP metrics and logs: answered with a success and counted, not stored.

EvalForge stores traces. Many exporters (the OTel SDK auto-configuration, Phoenix, collectors with a
default pipeline) also send metrics and logs to the same endpoint; a 404 there makes them log an
error on every export. So those requests are read, their data points / log records counted in
``evalforge_ingest_discarded_total`` and answered with the signal's empty Export*ServiceResponse.
Shared by OTLP/HTTP (``ingest.routers.otlp_aliases``) and OTLP/gRPC (``ingest.grpc_server``).
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.message import DecodeError
from prometheus_client import Counter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from ingest.otlp import PROTOBUF, OTLPDecodeError

DISCARDED = Counter("evalforge_ingest_discarded_total",
                    "OTLP metric data points / log records answered with success and not stored", ["signal"])

SIGNALS = ("metrics", "logs")
_METRIC_SHAPES = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
_METRIC_SHAPES_JSON = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary")


def discard(signal: str, body: bytes, kind: str) -> int:
    """Count the items of one export request and drop them; raises OTLPDecodeError for a bad body."""
    count = _count_protobuf(signal, body) if kind == PROTOBUF else _count_json(signal, body)
    DISCARDED.labels(signal).inc(count)
    return count


def _count_protobuf(signal: str, body: bytes) -> int:
    request = ExportMetricsServiceRequest() if signal == "metrics" else ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OTLPDecodeError(f"body is not a valid protobuf {type(request).__name__}: {exc}") from None
    if signal == "logs":
        return sum(len(scope.log_records) for res in request.resource_logs for scope in res.scope_logs)
    total = 0
    for res in request.resource_metrics:
        for scope in res.scope_metrics:
            for metric in scope.metrics:
                shape = metric.WhichOneof("data")
                total += len(getattr(metric, shape).data_points) if shape in _METRIC_SHAPES else 0
    return total


def _items(obj: Any, camel: str, snake: str) -> list[Any]:
    value = obj.get(camel, obj.get(snake)) if isinstance(obj, dict) else None
    return value if isinstance(value, list) else []


def _count_json(signal: str, body: bytes) -> int:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OTLPDecodeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise OTLPDecodeError("body must be a JSON object")
    if signal == "logs":
        return sum(len(_items(scope, "logRecords", "log_records"))
                   for res in _items(request, "resourceLogs", "resource_logs")
                   for scope in _items(res, "scopeLogs", "scope_logs"))
    total = 0
    for res in _items(request, "resourceMetrics", "resource_metrics"):
        for scope in _items(res, "scopeMetrics", "scope_metrics"):
            for metric in _items(scope, "metrics", "metrics"):
                for shape in _METRIC_SHAPES_JSON:
                    if isinstance(metric, dict) and isinstance(metric.get(shape), dict):
                        total += len(_items(metric[shape], "dataPoints", "data_points"))
    return total
