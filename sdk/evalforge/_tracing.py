"""User-facing spans: ``@observe``, ``with span(...)``, ``score(...)``.

Before ``init`` the tracer is OTel's no-op tracer, so decorated code runs unchanged at near-zero cost.
The user's exceptions are recorded on the span and re-raised as the very same object.
"""

from __future__ import annotations

import functools
import inspect
import json
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from ._client import get_state
from ._guard import capture_internal_exceptions, logger

F = TypeVar("F", bound=Callable[..., Any])
KINDS = ("span", "llm", "embedding", "chain", "tool", "retriever", "agent", "evaluator")
_NOOP_TRACER = trace.NoOpTracer()
_MAX_CAPTURE = 32_000  # characters of observed function input/output kept on the span


def tracer() -> trace.Tracer:
    state = get_state()
    return state.tracer if state is not None else _NOOP_TRACER


def error_type(exc: BaseException) -> str:
    """Fully qualified exception class name, the ``error.type`` convention."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def record_error(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc``. Never raises."""
    with capture_internal_exceptions():
        span.set_attribute("error.type", error_type(exc))
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
        span.record_exception(exc, escaped=True)
        span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))


def to_json(value: Any, limit: int = _MAX_CAPTURE) -> str:
    """Best-effort JSON for captured content (pydantic models, dataclasses, anything with str)."""

    def default(o: Any) -> Any:
        dump = getattr(o, "model_dump", None)
        if callable(dump):
            return dump(mode="json", exclude_none=True)
        return repr(o)

    text = json.dumps(value, default=default, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def _capture(span: Span, key: str, value: Any) -> None:
    state = get_state()
    if state is None or not state.options.capture_content or not span.is_recording():
        return
    with capture_internal_exceptions():
        if state.options.mask is not None:
            value = state.options.mask(value)
        span.set_attribute(key, to_json(value))


def _start(name: str, kind: str) -> Span:
    span = tracer().start_span(name)
    with capture_internal_exceptions():
        if span.is_recording():
            span.set_attribute("evalforge.span.kind", kind if kind in KINDS else "span")
    return span


@contextmanager
def span(name: str, kind: str = "span", **attributes: Any) -> Iterator[Span]:
    """``with evalforge.span("retrieve", kind="retriever") as s:`` -- a child of the current span.

    Yields the OTel span (``s.set_attribute(...)`` works). Exceptions are recorded and re-raised.
    """
    s = _start(name, kind)
    if attributes:
        with capture_internal_exceptions():
            s.set_attributes(attributes)
    token = otel_context.attach(trace.set_span_in_context(s))
    try:
        yield s
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            record_error(s, exc)
        raise
    finally:
        otel_context.detach(token)
        with capture_internal_exceptions():
            s.end()


def _inputs(func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    try:
        bound = _signature(func).bind_partial(*args, **kwargs)
        data = dict(bound.arguments)
        data.pop("self", None)
        data.pop("cls", None)
        return data
    except (TypeError, ValueError):
        return {"args": args, "kwargs": kwargs}


@functools.lru_cache(maxsize=1024)
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def observe(
    func: F | None = None,
    *,
    name: str | None = None,
    kind: str = "span",
    capture_input: bool = True,
    capture_output: bool = True,
) -> Any:
    """Trace every call of a function (sync, async, generator or async generator).

    ``@evalforge.observe`` or ``@evalforge.observe(name="plan", kind="agent")``. Inputs and the return
    value (or the yielded items, for generators) are captured as JSON in ``evalforge.input`` /
    ``evalforge.output`` unless ``capture_content=False`` was given to ``init``.
    """
    if func is None:
        return lambda f: observe(f, name=name, kind=kind, capture_input=capture_input, capture_output=capture_output)
    span_name = name or getattr(func, "__qualname__", None) or getattr(func, "__name__", "observed")

    def begin(args: tuple, kwargs: dict) -> Span:
        s = _start(span_name, kind)
        if capture_input:
            _capture(s, "evalforge.input", _inputs(func, args, kwargs))
        return s

    def finish(s: Span, output: Any = None, exc: BaseException | None = None, has_output: bool = True) -> None:
        if exc is not None:
            record_error(s, exc)
        elif capture_output and has_output:
            _capture(s, "evalforge.output", output)
        with capture_internal_exceptions():
            s.end()

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            s = begin(args, kwargs)
            ctx = trace.set_span_in_context(s)
            inner = func(*args, **kwargs)
            items: list[Any] = []
            sent: Any = None
            thrown: BaseException | None = None
            try:
                while True:
                    token = otel_context.attach(ctx)
                    try:
                        item = await (inner.athrow(thrown) if thrown is not None else inner.asend(sent))
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    thrown = None
                    if capture_output and len(items) < 1000:
                        items.append(item)
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await inner.aclose()
                        raise
                    except BaseException as exc:  # thrown in by the consumer: forward it
                        thrown = exc
            except BaseException as exc:
                finish(s, exc=None if isinstance(exc, GeneratorExit) else exc, has_output=False)
                raise
            finish(s, items)

        return agen_wrapper

    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            s = begin(args, kwargs)
            ctx = trace.set_span_in_context(s)
            inner = func(*args, **kwargs)
            items: list[Any] = []
            sent: Any = None
            thrown: BaseException | None = None
            try:
                while True:
                    token = otel_context.attach(ctx)
                    try:
                        item = inner.throw(thrown) if thrown is not None else inner.send(sent)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    finally:
                        otel_context.detach(token)
                    thrown = None
                    if capture_output and len(items) < 1000:
                        items.append(item)
                    try:
                        sent = yield item
                    except GeneratorExit:
                        inner.close()
                        raise
                    except BaseException as exc:
                        thrown = exc
            except BaseException as exc:
                finish(s, exc=None if isinstance(exc, GeneratorExit) else exc, has_output=False)
                raise
            finish(s, items)
            return result

        return gen_wrapper

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            s = begin(args, kwargs)
            token = otel_context.attach(trace.set_span_in_context(s))
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                finish(s, exc=exc)
                raise
            finally:
                otel_context.detach(token)
            finish(s, result)
            return result

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        s = begin(args, kwargs)
        token = otel_context.attach(trace.set_span_in_context(s))
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            finish(s, exc=exc)
            raise
        finally:
            otel_context.detach(token)
        finish(s, result)
        return result

    return wrapper


def score(
    name: str,
    value: float | int | bool | str,
    trace_id: str | None = None,
    span_id: str | None = None,
    comment: str | None = None,
) -> None:
    """Record feedback (a score) on a trace or span; defaults to the current trace and span.

    Queued and POSTed to ``<endpoint>/api/v1/scores`` by the background worker -- never sent on the
    caller's thread. Without a trace id (none given, no current span) the score is dropped with a log.
    """
    state = get_state()
    if state is None:
        return
    with capture_internal_exceptions():
        if trace_id is None:
            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                trace_id = format(ctx.trace_id, "032x")
                if span_id is None:
                    span_id = format(ctx.span_id, "016x")
        if not trace_id:
            logger.warning("evalforge.score(%r): no trace_id and no current span; dropped", name)
            state.stats.score_dropped("no_trace")
            return
        payload: dict[str, Any] = {"name": name, "value": value, "trace_id": trace_id, "source": "sdk"}
        if span_id:
            payload["span_id"] = span_id
        if comment is not None:
            payload["comment"] = comment
        state.processor.submit_score(payload)


def current_trace_id() -> str | None:
    """Hex id of the current trace, to pass to ``score`` later (e.g. from a feedback endpoint)."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
