"""``evalforge.context(...)``: session / user / tags / metadata / prompt attached to every span inside.

Stored in a ``contextvars.ContextVar`` as the ready-made span attributes, so applying it when a span
starts is one dict lookup. asyncio tasks copy contextvars by themselves; threads do not, so ``init``
(option ``propagate_threads``, on by default) makes ``Thread.start`` and ``ThreadPoolExecutor.submit``
carry the caller's context -- the OTel parent span travels with it, so trees stay whole across threads.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from ._guard import capture_internal_exceptions

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("evalforge_context", default=None)


def current_attributes() -> dict[str, Any] | None:
    """The attributes of the innermost ``evalforge.context`` (None outside any)."""
    return _current.get()


def _scalar(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


@contextmanager
def context(
    session_id: str | None = None,
    user_id: str | None = None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    prompt_name: str | None = None,
    prompt_version: str | int | None = None,
) -> Iterator[None]:
    """Attach session, user, tags, metadata and prompt to every span started inside the block.

    Nests: inner values override outer ones, tags accumulate, metadata merges. Crosses threads
    (see module doc) and asyncio tasks.
    """
    token = None
    with capture_internal_exceptions():
        attrs = dict(_current.get() or {})
        if session_id is not None:
            attrs["evalforge.session_id"] = str(session_id)
        if user_id is not None:
            attrs["evalforge.user_id"] = str(user_id)
        if tags:
            merged = list(attrs.get("evalforge.tags", ()))
            merged.extend(str(t) for t in tags if str(t) not in merged)
            attrs["evalforge.tags"] = tuple(merged)
        for key, value in (metadata or {}).items():
            attrs[f"evalforge.metadata.{key}"] = _scalar(value)
        if prompt_name is not None:
            attrs["evalforge.prompt.name"] = str(prompt_name)
        if prompt_version is not None:
            attrs["evalforge.prompt.version"] = str(prompt_version)
        token = _current.set(attrs)
    try:
        yield
    finally:
        if token is not None:
            with capture_internal_exceptions():
                _current.reset(token)


@contextmanager
def attributes(extra: Mapping[str, Any]) -> Iterator[None]:
    """Add ready-made span attributes to every span started inside (used by experiments to tag a whole
    item run with its experiment and dataset item)."""
    token = _current.set({**(_current.get() or {}), **extra})
    try:
        yield
    finally:
        _current.reset(token)


_patched = False
_patch_lock = threading.Lock()


def propagate_to_threads() -> None:
    """Make new threads and thread-pool tasks run in a copy of the submitting thread's context."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        _patched = True

    original_start = threading.Thread.start
    original_submit = ThreadPoolExecutor.submit

    def start(self: threading.Thread, *args: Any, **kwargs: Any) -> Any:
        ctx = None
        with capture_internal_exceptions():
            ctx = contextvars.copy_context()
            run = self.run
            # Bound-method instance attribute: only this thread object is affected.
            self.run = lambda: ctx.run(run)  # type: ignore[method-assign]
        return original_start(self, *args, **kwargs)

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if _current.get() is None and not _has_span():
            return original_submit(self, fn, *args, **kwargs)
        ctx = contextvars.copy_context()
        return original_submit(self, ctx.run, fn, *args, **kwargs)

    start.__wrapped__ = original_start  # type: ignore[attr-defined]
    submit.__wrapped__ = original_submit  # type: ignore[attr-defined]
    threading.Thread.start = start  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]


def _has_span() -> bool:
    from opentelemetry import trace

    return trace.get_current_span().get_span_context().is_valid
