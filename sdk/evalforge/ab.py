"""Online A/B tests: ``evalforge.ab.variant("checkout-prompt", unit_id=user_id)``.

    v = evalforge.ab.variant("checkout-prompt", unit_id=user.id)
    reply = client.chat.completions.create(model=v.model or "gpt-4o", ...)
    # or tag every span of the block (the model call's span included):
    with evalforge.ab.variant("checkout-prompt", unit_id=user.id) as v:
        ...

Assignment (identical in every process and language; the server's ``/assignment`` preview agrees)::

    digest = SHA-256(UTF-8(salt + ":" + unit_id))
    bucket = (first 8 bytes of digest as an unsigned big-endian 64-bit integer) mod 1_000_000
    variant = variants[i] for the segment [start, end, i] of the test's segments with start <= bucket < end

``salt`` and ``segments`` come from ``GET /api/v1/ab-tests/sdk-config`` (see the server's
``query_api/ab_allocation.py`` for how ramps keep units in place).

Configuration is fetched by a background thread and cached in the process, like a feature flag:
refreshed every ``ab_refresh_interval`` seconds (``init`` option, default 30); a failed refresh keeps the
last configuration. The first ``variant`` call of a process starts the fetch and waits for it at most
``ab_initial_wait`` seconds (default 0.5); after that no call waits or touches the network. It never
raises: without a configuration (not initialised, server unreachable, unknown or draft test) it returns
the ``fallback`` variant (default ``"control"``) with ``assigned=False`` and counts it in
``evalforge.stats()["ab"]["fallbacks"]``. While a test runs, the current span (and, with ``with``, every
span started in the block) gets the attributes ``evalforge.ab.test``, ``evalforge.ab.variant`` and
``evalforge.ab.unit`` (bytes 8-15 of the digest in hex: results compare units, and the unit id itself,
often a user id, is not stored). One test per span: a span in two tests keeps the last one's tags.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from bisect import bisect_right
from collections import Counter
from hashlib import sha256
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace

from . import _client
from ._context import _current
from ._guard import capture_internal_exceptions, logger

BUCKETS = 1_000_000
CONFIG_PATH = "/api/v1/ab-tests/sdk-config"
TEST_ATTR, VARIANT_ATTR, UNIT_ATTR = "evalforge.ab.test", "evalforge.ab.variant", "evalforge.ab.unit"
_get_current_span = trace.get_current_span


class Variant:
    """The variant a unit gets: ``name``, ``model``, ``prompt`` ({name, version | label}) and ``config``.
    ``assigned`` is False for a fallback. As a context manager it tags every span started inside."""

    __slots__ = ("test", "name", "model", "prompt", "config", "assigned", "_unit", "_token")

    def __init__(self, test: str, name: str, model: str | None = None, prompt: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None, assigned: bool = True, unit: str | None = None) -> None:
        self.test, self.name, self.model, self.prompt = test, name, model, prompt
        self.config = config if config is not None else {}
        self.assigned, self._unit, self._token = assigned, unit, None  # unit: set while the test is tagged

    def __enter__(self) -> Variant:
        if self._unit:
            with capture_internal_exceptions():
                tags = {TEST_ATTR: self.test, VARIANT_ATTR: self.name, UNIT_ATTR: self._unit}
                self._token = _current.set({**(_current.get() or {}), **tags})
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None:
            with capture_internal_exceptions():
                _current.reset(self._token)
            self._token = None

    def __repr__(self) -> str:
        return f"Variant(test={self.test!r}, name={self.name!r}, model={self.model!r}, assigned={self.assigned})"


class _Test:
    """One test's configuration, prepared for the hot path."""

    __slots__ = ("name", "prefix", "starts", "owners", "variants", "tag")

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        segments = sorted(spec["segments"])
        self.name = name
        self.prefix = f"{spec['salt']}:".encode()
        self.starts = [s[0] for s in segments]
        self.owners = [s[2] for s in segments]
        self.variants = [(v["name"], v.get("model"), v.get("prompt"), v.get("config") or {}) for v in spec["variants"]]
        self.tag = bool(spec.get("tag"))


class ABClient:
    """The configuration cache of one ``init`` (endpoint + key) and its refresher thread."""

    def __init__(self, endpoint: str, api_key: str, refresh_interval: float, initial_wait: float) -> None:
        self.endpoint, self.api_key = endpoint.rstrip("/"), api_key
        self.refresh_interval, self.initial_wait = max(1.0, refresh_interval), initial_wait
        self.tests: dict[str, _Test] | None = None  # None until a fetch succeeded
        self.fetched_at = 0.0
        self.fetches = self.fetch_errors = 0
        self.fallbacks: Counter[str] = Counter()
        self.last_error = ""
        self._first = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._waited = False
        self.forked = False  # set in a forked child (see _after_fork_in_child)

    def ensure_started(self) -> None:
        with self._lock:
            self.forked = False
            if self._pid != os.getpid():  # forked: the parent's thread does not exist here
                self._pid, self._thread = os.getpid(), None
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="evalforge-ab-config", daemon=True)
                self._thread.start()

    def wait_first(self) -> None:
        """The process's one bounded wait, on its first lookup."""
        if not self._waited:
            self._waited = True
            self._first.wait(self.initial_wait)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._first.set()
            self._stop.wait(self.refresh_interval)

    def refresh(self) -> bool:
        """Fetch the configuration once; on failure keep the previous one."""
        with capture_internal_exceptions():
            try:
                body = self._get(CONFIG_PATH)
                tests = {name: _Test(name, spec) for name, spec in body["tests"].items()}
            except Exception as exc:  # unreachable, non-200, unreadable: all count as a fetch error
                self.fetch_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                return False
            self.tests, self.fetched_at = tests, time.time()
            self.fetches += 1
            return True
        return False

    def _get(self, path: str) -> dict[str, Any]:
        url = urlsplit(self.endpoint)
        conn_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = conn_type(url.hostname or "localhost", url.port, timeout=5)
        try:
            conn.request("GET", url.path.rstrip("/") + path, headers={"Authorization": f"Bearer {self.api_key}"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        return json.loads(data)

    def snapshot(self) -> dict[str, Any]:
        return {"tests_cached": None if self.tests is None else len(self.tests), "fetches": self.fetches,
                "fetch_errors": self.fetch_errors, "last_error": self.last_error,
                "config_age_s": round(time.time() - self.fetched_at, 3) if self.fetched_at else None,
                "fallbacks": dict(self.fallbacks)}


_NOT_INITIALISED: Counter[str] = Counter()
_last_tagged: list[Any] = [None, None]  # (span, unit key) of the last tagging


def _after_fork_in_child() -> None:
    state = _client._state
    if state is not None and state.ab is not None:
        state.ab.forked = True
        state.ab._lock = threading.Lock()  # the parent's may have been held by another thread at fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _ab_client() -> ABClient | None:
    state = _client._state
    if state is None:
        return None
    ab = state.ab
    if ab is None:
        with _client._lock:
            if state.ab is None:
                opts = state.options
                state.ab = ABClient(opts.ab_endpoint or state.endpoint, state.api_key, opts.ab_refresh_interval,
                                    opts.ab_initial_wait)
            ab = state.ab
    return ab


def _fallback(test: str, name: str, reason: str, ab: ABClient | None) -> Variant:
    (ab.fallbacks if ab is not None else _NOT_INITIALISED)[reason] += 1
    return Variant(test, name, assigned=False)


def variant(test: str, unit_id: Any, *, fallback: str = "control") -> Variant:
    """The variant of ``test`` for ``unit_id`` (a user id, session id, …). Never raises (see module doc)."""
    ab = None
    try:
        ab = _ab_client()
        if ab is None:
            return _fallback(test, fallback, "not_initialised", None)
        tests = ab.tests
        if tests is None:
            ab.ensure_started()
            ab.wait_first()
            tests = ab.tests
            if tests is None:
                return _fallback(test, fallback, "no_configuration", ab)
        elif ab.forked:  # a forked child keeps the parent's cache and restarts its own refresher
            ab.ensure_started()
        spec = tests.get(test)
        if spec is None:
            return _fallback(test, fallback, "unknown_test", ab)
        digest = sha256(spec.prefix + str(unit_id).encode()).digest()
        index = spec.owners[bisect_right(spec.starts, int.from_bytes(digest[:8], "big") % BUCKETS) - 1]
        name, model, prompt, config = spec.variants[index]
        if not spec.tag:
            return Variant(test, name, model, prompt, config, True, None)
        # the unit key: the rest of the digest, so results can group by unit without storing its id
        # (salted per test, so it also names the test)
        unit = digest[8:16].hex()
        span = _get_current_span()
        # OTel's set_attributes costs several µs (locks, validation): skip re-tagging the span we
        # tagged last for the same unit; a race only costs a redundant tag
        if (span is not _last_tagged[0] or unit != _last_tagged[1]) and span.is_recording():
            span.set_attributes({TEST_ATTR: test, VARIANT_ATTR: name, UNIT_ATTR: unit})
            _last_tagged[:] = (span, unit)
        return Variant(test, name, model, prompt, config, True, unit)
    except Exception:  # an SDK bug must not reach the app: answer the fallback
        with capture_internal_exceptions():
            logger.debug("evalforge.ab.variant failed", exc_info=True)
            return _fallback(test, fallback, "internal_error", ab)
        return Variant(test, fallback, assigned=False)


def refresh() -> bool:
    """Fetch the configuration now (blocking, for start-up or tests); True when it succeeded."""
    with capture_internal_exceptions():
        ab = _ab_client()
        if ab is not None:
            ab.ensure_started()
            return ab.refresh()
    return False


def stats() -> dict[str, Any]:
    ab = _ab_client() if _client._state is not None else None
    if ab is None:
        return {"tests_cached": None, "fetches": 0, "fetch_errors": 0, "last_error": "", "config_age_s": None,
                "fallbacks": dict(_NOT_INITIALISED)}
    return ab.snapshot()
