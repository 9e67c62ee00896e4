"""``wrap(client)`` and ``instrument()``: thin sync/async shims around provider methods.

``wrap`` patches the client's own resource objects (instance attributes), so other clients in the
process are untouched and the client stays the very same object. ``instrument`` patches the resource
classes, covering every client, including ones created later and ``client.with_options(...)`` copies.
Both are idempotent, and a call is traced once even if both are used (re-entrancy guard) -- e.g. a
``parse`` that internally calls ``create``.

The shims do the minimum on the caller's thread: build the request attributes, start a span, call
through, read the response. No I/O, no locks held across the call, no awaits of our own.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
from types import ModuleType
from typing import Any, Callable

from opentelemetry import context as otel_context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY

from ._client import get_state
from ._guard import capture_internal_exceptions, logger
from ._stream import instrument_manager, instrument_stream
from .integrations._genai import Endpoint, LLMCall

_in_call: contextvars.ContextVar[bool] = contextvars.ContextVar("evalforge_in_call", default=False)
MARK = "__evalforge_wrapped__"


def _integration_for(client: Any) -> ModuleType | None:
    module = type(client).__module__.split(".", 1)[0]
    if module == "openai":
        from .integrations import openai as integration
    elif module == "anthropic":
        from .integrations import anthropic as integration
    else:
        return None
    return integration


def _start(provider: str, endpoint: Endpoint, kwargs: dict[str, Any]) -> LLMCall | None:
    state = get_state()
    if state is None or _in_call.get() or otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY):
        return None
    with capture_internal_exceptions():
        return LLMCall(state, provider, endpoint, kwargs)
    return None


_UNSET = object()


def _is_raw(result: Any) -> bool:
    # By class name: hasattr() on a pydantic response model is slow (it raises inside __getattr__).
    return type(result).__name__.endswith("APIResponse") and callable(getattr(result, "parse", None))


def _finish(
    call: LLMCall, endpoint: Endpoint, result: Any, stream_types: tuple, is_async: bool, parsed: Any = _UNSET
) -> Any:
    """Read the result into the span; streams are instrumented in place. Returns ``result`` itself."""
    with capture_internal_exceptions():
        if isinstance(result, stream_types):
            if endpoint.accumulator is None:
                call.finish(None)
                return result
            return instrument_stream(result, call, endpoint.accumulator(), is_async)
        if _is_raw(result):
            # with_raw_response: parse() caches its result, so the user's later parse() gets the same
            # object (for streams: the one we instrumented in place).
            if parsed is _UNSET:
                parsed = result.parse()
            if isinstance(parsed, stream_types) and endpoint.accumulator is not None:
                instrument_stream(parsed, call, endpoint.accumulator(), is_async)
                return result
            result_for_span = parsed
        else:
            result_for_span = result
        call.finish(endpoint.response(result_for_span))
        return result
    call.finish(None)
    return result


def make_wrapper(
    original: Callable[..., Any],
    endpoint: Endpoint,
    provider: Callable[[tuple], str],
    stream_types: tuple,
    is_async: bool,
) -> Callable[..., Any]:
    """One shim per (method, sync|async). ``provider(args)`` names the provider for this call."""
    if is_async:

        @functools.wraps(original)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            call = _start(provider(args), endpoint, kwargs) if get_state() is not None else None
            if call is None:
                return await original(*args, **kwargs)
            token = _in_call.set(True)
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                call.fail(exc)
                raise
            finally:
                _in_call.reset(token)
            parsed = _UNSET
            if _is_raw(result) and inspect.iscoroutinefunction(result.parse):
                try:  # anthropic's async raw response parses asynchronously (and caches)
                    parsed = await result.parse()
                except Exception:  # noqa: BLE001 - the user's own parse() will raise it to them
                    call.finish(None)
                    return result
            return _finish(call, endpoint, result, stream_types, True, parsed)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(original)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            call = _start(provider(args), endpoint, kwargs) if get_state() is not None else None
            if call is None:
                return original(*args, **kwargs)
            token = _in_call.set(True)
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                call.fail(exc)
                raise
            finally:
                _in_call.reset(token)
            return _finish(call, endpoint, result, stream_types, False)

        wrapper = sync_wrapper
    setattr(wrapper, MARK, True)
    return wrapper


def make_manager_wrapper(
    original: Callable[..., Any], endpoint: Endpoint, provider: Callable[[tuple], str]
) -> Callable[..., Any]:
    """For ``messages.stream(...)``: the request happens on ``__enter__``, so the span starts there."""

    @functools.wraps(original)
    def manager_wrapper(*args: Any, **kwargs: Any) -> Any:
        manager = original(*args, **kwargs)
        if get_state() is None or endpoint.accumulator is None:
            return manager
        with capture_internal_exceptions():
            name = provider(args)
            params = dict(kwargs, stream=True)
            return instrument_manager(manager, lambda: _start(name, endpoint, params), endpoint.accumulator)
        return manager

    setattr(manager_wrapper, MARK, True)
    return manager_wrapper


def _resolve(client: Any, path: tuple[str, ...]) -> Any:
    obj = client
    for part in path:
        obj = getattr(obj, part)
    return obj


def wrap(client: Any) -> Any:
    """Trace calls made with this OpenAI / AzureOpenAI / Anthropic (sync or async) client.

    Returns the same client object. Safe to call before ``init`` (calls stay untraced until then),
    and safe to call twice. Unknown objects are returned untouched.
    """
    with capture_internal_exceptions():
        integration = _integration_for(client)
        if integration is None:
            logger.warning("evalforge.wrap: %s is not a supported client; returned unchanged", type(client).__name__)
            return client
        is_async = integration.is_async_client(client)
        name = integration.provider_name(client)
        provider = lambda args: name  # noqa: E731
        streams = integration.stream_types()
        for path, method, endpoint in integration.TARGETS:
            with capture_internal_exceptions():
                resource = _resolve(client, path)
                current = getattr(resource, method)
                if getattr(current, MARK, False) or getattr(getattr(type(resource), method, None), MARK, False):
                    continue  # already wrapped, here or by instrument()
                setattr(resource, method, make_wrapper(current, endpoint, provider, streams, is_async))
        for path, method, endpoint in integration.STREAM_MANAGER_TARGETS:
            with capture_internal_exceptions():
                resource = _resolve(client, path)
                current = getattr(resource, method)
                if getattr(current, MARK, False) or getattr(getattr(type(resource), method, None), MARK, False):
                    continue
                setattr(resource, method, make_manager_wrapper(current, endpoint, provider))
    return client


def _class_provider(integration: ModuleType) -> Callable[[tuple], str]:
    def provider(args: tuple) -> str:
        try:
            return integration.provider_name(args[0]._client)
        except Exception:  # noqa: BLE001
            return integration.__name__.rsplit(".", 1)[-1]

    return provider


def instrument(providers: tuple[str, ...] = ("openai", "anthropic")) -> list[str]:
    """Patch the OpenAI and Anthropic resource classes process-wide. Returns the providers patched.

    Missing libraries are skipped. Idempotent.
    """
    done = []
    for name in providers:
        with capture_internal_exceptions():
            try:
                importlib.import_module(name)
            except ImportError:
                continue
            integration = importlib.import_module(f"evalforge.integrations.{name}")
            provider = _class_provider(integration)
            streams = integration.stream_types()
            for module_name, sync_cls, async_cls, method, endpoint in integration.CLASS_TARGETS:
                module = importlib.import_module(module_name)
                for cls_name, is_async in ((sync_cls, False), (async_cls, True)):
                    cls = getattr(module, cls_name)
                    current = cls.__dict__.get(method)
                    if current is None or getattr(current, MARK, False):
                        continue
                    setattr(cls, method, make_wrapper(current, endpoint, provider, streams, is_async))
            for module_name, sync_cls, async_cls, method, endpoint in integration.CLASS_STREAM_MANAGER_TARGETS:
                module = importlib.import_module(module_name)
                for cls_name in (sync_cls, async_cls):
                    cls = getattr(module, cls_name)
                    current = cls.__dict__.get(method)
                    if current is None or getattr(current, MARK, False):
                        continue
                    setattr(cls, method, make_manager_wrapper(current, endpoint, provider))
            done.append(name)
    return done
