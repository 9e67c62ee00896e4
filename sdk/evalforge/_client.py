"""``init`` / ``flush`` / ``shutdown`` / ``stats``: the SDK's process-wide state.

Until ``init`` the state is ``None`` and every public function is a cheap no-op (user code never
branches on whether the SDK is set up). ``init`` builds its *own* TracerProvider and never touches the
global one, so an app's own OpenTelemetry setup is left alone; ``attach_to_global_provider=True``
adds our processor to the app's SDK provider instead (their spans and ours then share one pipeline).
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

from ._exporter import HttpExporter
from ._guard import capture_internal_exceptions, logger
from ._processor import BackgroundProcessor
from ._stats import Stats

DEFAULT_ENDPOINT = "http://localhost:4318"
TRACER_NAME = "evalforge"


@dataclass
class Options:
    """Everything ``init`` accepts besides ``api_key`` / ``endpoint``."""

    service_name: str | None = None
    environment: str | None = None
    release: str | None = None
    sample_rate: float = 1.0  # per trace: children follow their root's decision
    capture_content: bool = True
    mask: Callable[[Any], Any] | None = None  # applied to every captured message payload
    max_queue_size: int = 2048
    max_batch_size: int = 512
    schedule_delay: float = 1.0  # seconds between exports when the batch is not full
    export_timeout: float = 10.0  # per HTTP request
    max_retries: int = 5
    backoff_max: float = 30.0
    shutdown_timeout: float = 2.0  # bound of the atexit flush
    propagate_threads: bool = True
    attach_to_global_provider: bool = False
    enabled: bool = True
    ab_refresh_interval: float = 30.0  # seconds between A/B configuration fetches (evalforge.ab)
    ab_initial_wait: float = 0.5  # the first ab.variant() call of a process waits this long at most
    ab_endpoint: str | None = None  # where /api/v1/ab-tests/sdk-config is served; default: endpoint
    extra: dict[str, Any] = field(default_factory=dict)


class State:
    """What ``init`` built. Read on hot paths, so plain attributes."""

    def __init__(self, api_key: str, endpoint: str, options: Options) -> None:
        self.api_key = api_key
        self.endpoint = endpoint.rstrip("/")
        self.options = options
        self.stats = Stats()
        self.ab: Any = None  # evalforge.ab's configuration cache, made on first use
        static: dict[str, Any] = {}
        if options.environment:
            static["evalforge.environment"] = options.environment
        if options.release:
            static["evalforge.release"] = options.release
        self.processor = BackgroundProcessor(
            make_exporter=lambda stop: HttpExporter(
                self.endpoint,
                api_key,
                self.stats,
                stop,
                timeout=options.export_timeout,
                max_retries=options.max_retries,
                backoff_max=options.backoff_max,
            ),
            stats=self.stats,
            static_attributes=static,
            max_queue_size=options.max_queue_size,
            max_batch_size=options.max_batch_size,
            schedule_delay=options.schedule_delay,
        )
        global_provider = trace.get_tracer_provider()
        if options.attach_to_global_provider and isinstance(global_provider, TracerProvider):
            global_provider.add_span_processor(self.processor)
            self.provider = global_provider
            self.owns_provider = False
        else:
            resource_attrs = {"service.name": options.service_name or _default_service_name()}
            if options.environment:
                resource_attrs["deployment.environment.name"] = options.environment
            if options.release:
                resource_attrs["service.version"] = options.release
            self.provider = TracerProvider(
                resource=Resource.create(resource_attrs),
                sampler=_sampler(options.sample_rate),
                shutdown_on_exit=False,  # we run our own bounded atexit hook
            )
            self.provider.add_span_processor(self.processor)
            self.owns_provider = True
        self.tracer = self.provider.get_tracer(TRACER_NAME, "0.1.0")


def _sampler(rate: float) -> Sampler:
    """Per-trace decision at the root, inherited by children (whole traces are kept or dropped)."""
    if rate >= 1.0:
        return ParentBased(ALWAYS_ON)  # same decisions, without hashing the trace id
    return ParentBased(TraceIdRatioBased(max(0.0, rate)))


_state: State | None = None
_lock = threading.Lock()
_atexit_registered = False


def get_state() -> State | None:
    return _state


def _default_service_name() -> str:
    return os.environ.get("OTEL_SERVICE_NAME") or "evalforge-app"


def init(api_key: str | None = None, endpoint: str | None = None, **options: Any) -> bool:
    """Start tracing. Falls back to ``EVALFORGE_API_KEY`` / ``EVALFORGE_ENDPOINT``.

    Returns True when tracing is active. Without an API key (or with ``enabled=False``) the SDK stays
    a no-op and says so once in the log. Calling ``init`` again replaces the previous setup (its queue
    is flushed in the background, bounded by ``shutdown_timeout``).
    """
    global _state, _atexit_registered
    with capture_internal_exceptions():
        known = {k: v for k, v in options.items() if k in Options.__dataclass_fields__}
        extra = {k: v for k, v in options.items() if k not in known}
        opts = Options(**known, extra=extra)
        if extra:
            logger.warning("evalforge.init: unknown options ignored: %s", sorted(extra))
        api_key = api_key or os.environ.get("EVALFORGE_API_KEY")
        endpoint = endpoint or os.environ.get("EVALFORGE_ENDPOINT") or DEFAULT_ENDPOINT
        if not opts.enabled or not api_key:
            if opts.enabled:
                logger.warning("evalforge.init: no API key (EVALFORGE_API_KEY); tracing disabled")
            return False
        with _lock:
            old, _state = _state, State(api_key, endpoint, opts)
            if not _atexit_registered:
                atexit.register(_atexit)
                _atexit_registered = True
        if opts.propagate_threads:
            from ._context import propagate_to_threads

            propagate_to_threads()
        if old is not None:
            _shutdown_state(old, opts.shutdown_timeout, background=True)
        return True
    return False


def _shutdown_state(state: State, timeout: float, background: bool = False) -> None:
    if state.ab is not None:
        state.ab.stop()

    def run() -> None:
        with capture_internal_exceptions():
            state.processor.shutdown(int(timeout * 1000))

    if background:
        threading.Thread(target=run, name="evalforge-retire", daemon=True).start()
    else:
        run()


def flush(timeout: float = 2.0) -> bool:
    """Block up to ``timeout`` seconds until spans and scores recorded so far are delivered.

    Returns True if everything was delivered (or dropped for a counted reason) in time. Useful at the
    end of a serverless handler. Never waits longer than ``timeout``.
    """
    state = _state
    if state is None:
        return True
    with capture_internal_exceptions():
        return state.processor.force_flush(int(timeout * 1000))
    return False


def shutdown(timeout: float = 2.0) -> None:
    """Flush for at most ``timeout`` seconds, stop the worker, return to no-op mode."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is not None:
        _shutdown_state(state, timeout)


def stats() -> dict[str, Any]:
    """Delivery counters: ``exported``, ``dropped`` by reason, ``retried``, ``queued``, score counters,
    ``ab``: the A/B configuration cache (fetches, errors, age, fallbacks served by reason), and
    ``prompts``: the ``get_prompt`` cache (keys cached, its cap, evictions)."""
    from . import _prompts, ab

    state = _state
    snapshot = Stats().snapshot() if state is None else state.stats.snapshot(queued=state.processor.queued())
    return {**snapshot, "ab": ab.stats(), "prompts": _prompts.stats()}


def _atexit() -> None:
    state = _state
    if state is not None:
        shutdown(state.options.shutdown_timeout)
