"""Streams stay the provider's own objects; we observe them in place.

``openai.Stream`` / ``anthropic.Stream`` (and their async twins, and Anthropic's ``MessageStream``)
all iterate through one instance attribute, ``_iterator``. We swap that for a generator that passes
every event through unchanged while feeding an accumulator, and hook ``close``. So ``type(stream)``,
``isinstance``, ``with`` / ``async with`` and every helper method are untouched. The span ends exactly
once: on exhaustion, on error, on ``close()``, or when the stream is garbage-collected unfinished.

Context managers returned by ``messages.stream()`` get a subclass of their own class (so ``isinstance``
holds) whose ``__enter__`` / ``__aenter__`` start the span and instrument the stream they return.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from ._guard import capture_internal_exceptions
from .integrations._genai import Accumulator, LLMCall


class _Finisher:
    """Ends the call with the accumulated attributes. Holds no reference to the stream (GC hook)."""

    __slots__ = ("call", "acc", "__weakref__")

    def __init__(self, call: LLMCall, acc: Accumulator) -> None:
        self.call = call
        self.acc = acc

    def item(self, event: Any) -> None:
        content = False
        with capture_internal_exceptions():
            content = self.acc.add(event)
        if content and not self.call.first_chunk_ns:
            self.call.chunk()

    def attrs(self) -> dict[str, Any] | None:
        with capture_internal_exceptions():
            return self.acc.attributes()
        return None

    def done(self) -> None:
        if not self.call.ended:  # exhaustion, close() and GC may all report the end: read once
            self.call.finish(self.attrs())

    def failed(self, exc: BaseException) -> None:
        if not self.call.ended:
            self.call.fail(exc, self.attrs())


def instrument_stream(stream: Any, call: LLMCall, acc: Accumulator, is_async: bool) -> Any:
    """Observe ``stream`` in place and return it (same object). Falls back to ending the span now."""
    inner = getattr(stream, "_iterator", None)
    if inner is None:  # an unknown stream shape: never break the user's stream for a span
        call.finish(None)
        return stream
    fin = _Finisher(call, acc)
    if is_async:
        stream._iterator = _aiter(inner, fin)
        original_aclose = stream.close

        async def aclose() -> Any:
            try:
                return await original_aclose()
            finally:
                fin.done()

        stream.close = aclose
    else:
        stream._iterator = _iter(inner, fin)
        original_close = stream.close

        def close() -> Any:
            try:
                return original_close()
            finally:
                fin.done()

        stream.close = close
    weakref.finalize(stream, fin.done)
    return stream


def _iter(inner: Any, fin: _Finisher) -> Any:
    try:
        for event in inner:
            fin.item(event)
            yield event
    except GeneratorExit:
        fin.done()
        raise
    except BaseException as exc:
        fin.failed(exc)
        raise
    fin.done()


async def _aiter(inner: Any, fin: _Finisher) -> Any:
    try:
        async for event in inner:
            fin.item(event)
            yield event
    except GeneratorExit:
        fin.done()
        raise
    except BaseException as exc:
        fin.failed(exc)
        raise
    fin.done()


_manager_classes: dict[type, type] = {}


def instrument_manager(manager: Any, start_call: Callable[[], LLMCall | None], make_acc: Callable[[], Accumulator]) -> Any:
    """Trace a ``messages.stream()``-style context manager, keeping ``isinstance`` true."""
    base = type(manager)
    traced = _manager_classes.get(base)
    if traced is None:
        traced = _manager_classes[base] = _make_traced_manager(base)
    manager.__class__ = traced
    manager._evalforge = (start_call, make_acc)
    return manager


def _make_traced_manager(base: type) -> type:
    def __enter__(self: Any) -> Any:
        call = _start(self)
        try:
            stream = base.__enter__(self)
        except BaseException as exc:
            if call is not None:
                call.fail(exc)
            raise
        return _observe(self, call, stream, is_async=False)

    async def __aenter__(self: Any) -> Any:
        call = _start(self)
        try:
            stream = await base.__aenter__(self)
        except BaseException as exc:
            if call is not None:
                call.fail(exc)
            raise
        return _observe(self, call, stream, is_async=True)

    namespace: dict[str, Any] = {"__module__": base.__module__, "__qualname__": base.__qualname__}
    if hasattr(base, "__enter__"):
        namespace["__enter__"] = __enter__
    if hasattr(base, "__aenter__"):
        namespace["__aenter__"] = __aenter__
    return type(base.__name__, (base,), namespace)


def _start(manager: Any) -> LLMCall | None:
    with capture_internal_exceptions():
        start_call, _ = manager._evalforge
        return start_call()
    return None


def _observe(manager: Any, call: LLMCall | None, stream: Any, is_async: bool) -> Any:
    if call is None:
        return stream
    with capture_internal_exceptions():
        return instrument_stream(stream, call, manager._evalforge[1](), is_async)
    return stream
