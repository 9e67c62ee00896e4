"""OTLP/HTTP protobuf (gzip) delivery to ``<endpoint>/v1/traces`` and JSON scores to ``/api/v1/scores``.

Runs only on the SDK's background worker thread, never on the caller's. Why our own transport and not
``OTLPSpanExporter``: we need per-outcome counters for ``stats()`` (exported / dropped by reason /
retried), a retry wait that shutdown can interrupt, and one connection shared by spans and scores.
Encoding is the official OTel encoder; the transport is stdlib ``http.client`` (no requests/urllib3).

Retry policy: 429/502/503/504 and connection errors are retried with exponential backoff and full
jitter, honouring ``Retry-After`` (seconds or HTTP date); any other 4xx/5xx is final.
"""

from __future__ import annotations

import gzip
import http.client
import json
import random
import ssl
import threading
import time
import uuid
from email.utils import parsedate_to_datetime
from typing import Any, Sequence
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

from ._stats import Stats

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
USER_AGENT = "evalforge-python/0.1.0"


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now, or None when absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


class Outcome:
    """Result of one delivery: ``ok`` or a drop ``reason``."""

    __slots__ = ("ok", "reason")

    def __init__(self, ok: bool, reason: str = "") -> None:
        self.ok = ok
        self.reason = reason


class HttpExporter:
    """Posts payloads with retries. Not thread-safe by design: only the worker thread uses it."""

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        stats: Stats,
        stop_event: threading.Event,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        parts = urlsplit(endpoint.rstrip("/"))
        self._scheme = parts.scheme or "http"
        self._netloc = parts.netloc
        self._base_path = parts.path
        self._headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}
        self._stats = stats
        self._stop = stop_event
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._conn: http.client.HTTPConnection | None = None

    # -- public, called by the worker -------------------------------------------------------------
    def export_spans(self, spans: Sequence[ReadableSpan]) -> Outcome:
        body = gzip.compress(encode_spans(spans).SerializeToString(), compresslevel=5)
        return self._post("/v1/traces", body, "application/x-protobuf", gzipped=True)

    def post_json(self, path: str, payload: dict[str, Any]) -> Outcome:
        body = json.dumps(payload, default=str).encode()
        # One key for all attempts: the server derives the ids of scores sent without one from it, so a
        # retry after a timeout or a 503 that had in fact stored them does not store them twice.
        return self._post(path, body, "application/json", gzipped=False, extra={"Idempotency-Key": uuid.uuid4().hex})

    def reset_after_fork(self) -> None:
        """The parent's socket must not be shared with the child."""
        self._conn = None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    # -- internals --------------------------------------------------------------------------------
    def _post(self, path: str, body: bytes, content_type: str, gzipped: bool,
              extra: dict[str, str] | None = None) -> Outcome:
        headers = {**self._headers, **(extra or {})}
        headers["Content-Type"] = content_type
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        attempt = 0
        while True:
            status, retry_after = self._send_once(self._base_path + path, body, headers)
            if status is not None and 200 <= status < 300:
                return Outcome(True)
            retryable = status is None or status in RETRYABLE_STATUS
            if not retryable:
                return Outcome(False, f"http_{status}")
            if attempt >= self._max_retries:
                return Outcome(False, "retries_exhausted")
            delay = retry_after
            if delay is None:
                # Full jitter: spreads retries of many processes that failed at the same moment.
                delay = random.uniform(0, min(self._backoff_max, self._backoff_base * 2**attempt))
            delay = min(delay, self._backoff_max)
            attempt += 1
            self._stats.retried()
            if self._stop.wait(delay):
                return Outcome(False, "shutdown")

    def _send_once(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, float | None]:
        """One POST. Returns (status or None on network error, Retry-After seconds)."""
        try:
            conn = self._conn or self._connect()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()  # drain so the keep-alive connection can be reused
            if resp.will_close:
                self.close()
            return resp.status, parse_retry_after(resp.getheader("Retry-After"))
        except (OSError, http.client.HTTPException):
            self.close()
            return None, None

    def _connect(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._netloc, timeout=self._timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self._netloc, timeout=self._timeout)
        self._conn = conn
        return conn
