"""OTLP/gRPC: the TraceService (plus MetricsService / LogsService, acknowledged and counted) on
``EVALFORGE_GRPC_PORT`` (4317; 0 turns it off), served by ``evalforge up`` and ``evalforge ingest``.

Same key, limits and promise as OTLP/HTTP: a call goes to the very handler of ``POST /v1/traces``
(``ingest.inprocess``), so it succeeds only once the bus acknowledged its spans and every admission
rule of that handler applies. Its answers become the codes the OTLP spec asks for:
- no or unknown key: ``UNAUTHENTICATED`` (the message lists the accepted schemes); a key that cannot
  be checked (its cache or database down): ``UNAVAILABLE``;
- unreadable request: ``INVALID_ARGUMENT``; bad spans in a readable request: success with
  ``partial_success`` naming them, the good ones kept;
- rate limited: ``RESOURCE_EXHAUSTED``; bus down or slow: ``UNAVAILABLE``; both with a RetryInfo
  (as ``google.rpc.retryinfo-bin``, which the OTel Python exporter reads, and inside
  ``grpc-status-details-bin``, which the Go / Java exporters read);
- more spans than ``EVALFORGE_MAX_SPANS_PER_REQUEST``: ``INVALID_ARGUMENT``, not RESOURCE_EXHAUSTED,
  because exporters retry the latter and a resend cannot get smaller. A message over
  ``EVALFORGE_MAX_BODY_BYTES`` is refused by grpc itself (``RESOURCE_EXHAUSTED``, before it is read).

The services are the opentelemetry-proto generated servicers, registered with identity
(de)serializers: the handler gets the request's protobuf bytes, which the native decoder takes as
they are, instead of a message object it would have to serialize again.
"""

from __future__ import annotations

import socket

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from core.auth import AuthUnavailable, Project
from core.auth_header import key_from_authorization, unauthorized_message
from core.services import Services
from ingest import metrics
from ingest.inprocess import call
from ingest.otlp import PROTOBUF, OTLPDecodeError
from ingest.otlp_discard import discard
from ingest.routers.ingest import otlp_traces


TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
_EMPTY_RESPONSE = b""  # an empty Export*ServiceResponse: full success, for every signal
_HTTP_TO_GRPC = {429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str,
                 retry_after: float | None = None) -> None:
    trailing: tuple[tuple[str, bytes], ...] = ()
    if retry_after is not None:
        retry = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=max(1, round(retry_after))))
        detail = AnyProto()
        detail.Pack(retry)
        status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[detail])
        trailing = (("google.rpc.retryinfo-bin", retry.SerializeToString()),
                    ("grpc-status-details-bin", status.SerializeToString()))
    await context.abort(code, message, trailing_metadata=trailing)


async def _project(services: Services, context: grpc.aio.ServicerContext) -> Project:
    header = next((value for key, value in context.invocation_metadata() or () if key == "authorization"), None)
    secret = key_from_authorization(header if isinstance(header, str) else None)
    try:
        project = await services.auth.project_for_key(secret) if secret else None  # type: ignore[union-attr]
    except AuthUnavailable as exc:
        await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc), retry_after=1)
    if project is None:
        reason = "unknown or revoked API key" if secret else "missing authorization metadata"
        await _abort(context, grpc.StatusCode.UNAUTHENTICATED, unauthorized_message(reason))
    return project  # type: ignore[return-value]


class TraceIngest(trace_service_pb2_grpc.TraceServiceServicer):
    """``TraceService/Export`` -> the handler of ``POST /v1/traces`` (``ingest.inprocess``)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def Export(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # noqa: N802 - generated name
        project = await _project(self._services, context)
        answer = await call(otlp_traces, "/v1/traces", request, PROTOBUF, project, self._services,
                            client=(context.peer() or "grpc", 0))
        metrics.REQUESTS.labels("otlp_grpc", str(answer.status)).inc()
        if answer.status == 200:
            return answer.body  # an ExportTraceServiceResponse, partial_success naming rejected spans
        code = _HTTP_TO_GRPC.get(answer.status, grpc.StatusCode.INVALID_ARGUMENT if answer.status < 500
                                 else grpc.StatusCode.INTERNAL)
        retry_after = (answer.retry_after or 1.0) if code in _HTTP_TO_GRPC.values() else None
        await _abort(context, code, _status_message(answer.body), retry_after)
        return b""  # not reached: abort raises


def _status_message(body: bytes) -> str:
    """The message of the google.rpc.Status the OTLP/HTTP handler answers a failure with."""
    try:
        return status_pb2.Status.FromString(body).message or body.decode("utf-8", "replace")
    except DecodeError:
        return body.decode("utf-8", "replace")


class _Discard:
    """``MetricsService/Export`` and ``LogsService/Export``: counted, answered, not stored."""

    def __init__(self, services: Services, signal: str) -> None:
        self._services = services
        self._signal = signal

    async def Export(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # noqa: N802
        await _project(self._services, context)
        try:
            discard(self._signal, request, PROTOBUF)
        except OTLPDecodeError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        metrics.REQUESTS.labels(f"{self._signal}_grpc", "200").inc()
        return _EMPTY_RESPONSE


class MetricsIngest(_Discard, metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, services: Services) -> None:
        super().__init__(services, "metrics")


class LogsIngest(_Discard, logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, services: Services) -> None:
        super().__init__(services, "logs")


def _raw_handler(service: str, servicer: object) -> grpc.GenericRpcHandler:
    # no (de)serializer: grpc hands over and sends back the protobuf bytes as they are
    export = grpc.unary_unary_rpc_method_handler(servicer.Export)  # type: ignore[attr-defined]
    return grpc.method_handlers_generic_handler(service, {"Export": export})


async def start_grpc_server(services: Services, host: str, port: int, *,
                            reuse_port: bool = False) -> tuple[grpc.aio.Server, int]:
    """Listen on ``host:port`` (0 = a free port, for tests) and serve; returns the server and its port.

    Raises RuntimeError when the port cannot be bound. ``reuse_port``: one of several processes
    sharing the port (``evalforge ingest --workers N``); otherwise a port in use is an error, not a
    silent share with whatever else listens there.
    """
    if port and not reuse_port:
        _check_free(host, port)
    max_bytes = services.settings.max_body_bytes
    # 1 MiB HTTP/2 frames instead of 16 KiB: an export of 512 spans (~600 KiB) arrives in one frame, not
    # ~40, which took ingest from 20 to 16 us of CPU a span (bench/ingest_bench.py)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_bytes),
                                      ("grpc.http2.max_frame_size", 1 << 20),
                                      ("grpc.so_reuseport", int(reuse_port))])
    server.add_generic_rpc_handlers((
        _raw_handler(TRACE_SERVICE, TraceIngest(services)),
        _raw_handler(METRICS_SERVICE, MetricsIngest(services)),
        _raw_handler(LOGS_SERVICE, LogsIngest(services)),
    ))
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise RuntimeError(f"cannot listen on {host}:{port}")
    await server.start()
    return server, bound


def _check_free(host: str, port: int) -> None:
    # grpc core would log its own multi-line bind error to stderr first; ask the kernel ourselves
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def stop_with(server: grpc.aio.Server, grace_s: float = 10.0):
    """A background task (``core.http.BackgroundTask``) that stops ``server`` at shutdown, finishing the
    calls in flight before the app closes the bus under them."""

    async def grpc_server(services: Services, stopping) -> None:  # noqa: ARG001 - the task signature
        await stopping.wait()
        await server.stop(grace_s)

    return grpc_server
