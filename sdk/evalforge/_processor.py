"""Background delivery: a bounded queue drained by one daemon worker thread.

A documented equivalent of opentelemetry-sdk's ``BatchSpanProcessor`` (same model: bounded deque,
batches by count and by interval, one worker thread, export under ``suppress_instrumentation``), kept
separate because the SDK's version (a) exports on the *caller's* thread in ``force_flush`` and ignores
its timeout (otel-python #4568) -- a hang at exit or inside a request handler; (b) only reports drops
through internal metrics; (c) cannot carry our score posts. Here the caller's thread only ever does a
``deque.append``; ``flush(timeout)`` waits on a condition and returns when the deadline passes.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

from opentelemetry import context as otel_context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ._context import current_attributes
from ._exporter import HttpExporter
from ._guard import capture_internal_exceptions
from ._stats import Stats


class BackgroundProcessor(SpanProcessor):
    """Applies context attributes on start; queues finished spans (and scores) for the worker."""

    def __init__(
        self,
        make_exporter: Callable[[threading.Event], HttpExporter],
        stats: Stats,
        static_attributes: dict[str, Any],
        max_queue_size: int = 2048,
        max_batch_size: int = 512,
        schedule_delay: float = 1.0,
        max_score_queue: int = 1000,
    ) -> None:
        self._stats = stats
        self._static = static_attributes
        self._max_queue = max_queue_size
        self._max_batch = max_batch_size
        self._delay = schedule_delay
        self._max_scores = max_score_queue
        self._make_exporter = make_exporter
        self._spans: deque[ReadableSpan] = deque()
        self._scores: deque[dict[str, Any]] = deque()
        self._shutdown = False
        self._setup()
        if hasattr(os, "register_at_fork"):
            # Weak, so a replaced (re-init'ed) processor can be collected.
            weak = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (m := weak()) is not None and m())

    def _setup(self) -> None:
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cond = threading.Condition(threading.Lock())
        self._enqueued = 0  # items accepted, ever
        self._finished = 0  # items exported or dropped by the worker, ever
        self._exporter = self._make_exporter(self._stop)
        self._thread = threading.Thread(target=self._run, name="evalforge-export", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        # The child has a copy of the parent's queue (the parent exports those) and no worker thread.
        with capture_internal_exceptions():
            self._spans.clear()
            self._scores.clear()
            if not self._shutdown:
                self._exporter.reset_after_fork()
                self._setup()

    # -- caller's thread: must stay O(1) and non-blocking -------------------------------------------
    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        with capture_internal_exceptions():
            if self._static:
                span.set_attributes(self._static)
            attrs = current_attributes()
            if attrs:
                span.set_attributes(attrs)

    def on_end(self, span: ReadableSpan) -> None:
        with capture_internal_exceptions():
            if not span.context.trace_flags.sampled:
                return
            self._enqueue(self._spans, span, self._max_queue, self._stats.dropped)

    def submit_score(self, payload: dict[str, Any]) -> None:
        self._enqueue(self._scores, payload, self._max_scores, self._stats.score_dropped)
        self._wake.set()  # scores are few and users expect them soon

    def _enqueue(self, queue: deque, item: Any, limit: int, drop: Callable[[str], None]) -> None:
        if self._shutdown:
            drop("shutdown")
            return
        if self._pid != os.getpid():  # fork without register_at_fork (very old platforms)
            self._after_fork()
        if len(queue) >= limit:
            drop("queue_full")
            return
        queue.append(item)
        self._enqueued += 1  # only ever incremented here; a lost race only makes flush wait less
        if len(queue) >= self._max_batch:
            self._wake.set()

    # -- worker thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        # Our own HTTP calls must never be traced by anyone's instrumentation (no feedback loop).
        otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        while True:
            self._wake.wait(self._delay)
            self._wake.clear()
            with capture_internal_exceptions():
                self._drain()
            if self._stop.is_set():
                break
        with capture_internal_exceptions():
            self._exporter.close()

    def _drain(self) -> None:
        while self._scores or self._spans:
            if self._scores:
                payload = self._scores.popleft()
                if self._stop.is_set() and self._shutdown_deadline_passed():
                    self._stats.score_dropped("shutdown")
                else:
                    outcome = self._exporter.post_json("/api/v1/scores", payload)
                    if outcome.ok:
                        self._stats.score_sent()
                    else:
                        self._stats.score_dropped(outcome.reason)
                self._mark_finished(1)
                continue
            batch = []
            while self._spans and len(batch) < self._max_batch:
                batch.append(self._spans.popleft())
            if self._stop.is_set() and self._shutdown_deadline_passed():
                self._stats.dropped("shutdown", len(batch))
            else:
                outcome = self._exporter.export_spans(batch)
                if outcome.ok:
                    self._stats.exported(len(batch))
                else:
                    self._stats.dropped(outcome.reason, len(batch))
            self._mark_finished(len(batch))

    def _mark_finished(self, n: int) -> None:
        with self._cond:
            self._finished += n
            self._cond.notify_all()

    _deadline = 0.0

    def _shutdown_deadline_passed(self) -> bool:
        return time.monotonic() > self._deadline

    # -- control ------------------------------------------------------------------------------------
    def queued(self) -> int:
        return len(self._spans) + len(self._scores)

    def force_flush(self, timeout_millis: int = 2000) -> bool:
        """Wait (at most ``timeout_millis``) until everything queued before the call is delivered."""
        target = self._enqueued
        deadline = time.monotonic() + timeout_millis / 1000
        self._wake.set()
        with self._cond:
            while self._finished < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
        return True

    def shutdown(self, timeout_millis: int = 2000) -> None:
        """Flush for at most the timeout, then stop the worker (which is never joined past it)."""
        if self._shutdown:
            return
        self._deadline = time.monotonic() + timeout_millis / 1000
        self.force_flush(timeout_millis)
        self._shutdown = True
        # Interrupts a retry wait; what is still queued is counted as dropped("shutdown").
        self._stop.set()
        self._wake.set()
        remaining = self._deadline - time.monotonic()
        if remaining > 0:
            self._thread.join(remaining)
        if not self._thread.is_alive():
            left = len(self._spans)
            if left:
                self._spans.clear()
                self._stats.dropped("shutdown", left)
