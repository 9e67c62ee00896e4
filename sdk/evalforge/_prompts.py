"""``get_prompt``: versioned prompts from EvalForge, cached in process, never raising into the app.

    prompt = evalforge.get_prompt("support", fallback="Answer: {{question}}")
    client.chat.completions.create(model="gpt-4o", messages=prompt.compile(question=q))

Cache (per name + label / version, process-wide): within ``cache_ttl`` the cached prompt is returned
with no request; after it, the stale prompt is returned at once and ONE background refresh runs
(stale-while-revalidate). Only the very first fetch of a key makes the caller wait, at most
``fetch_timeout`` in total: the fetch runs on a daemon thread that the caller joins for that long,
because a socket timeout bounds each operation (connect, first byte, each read), not their sum, and
name resolution has none. If it has not answered by then, or fails, ``fallback`` is returned; a fetch
still running fills the cache when it answers, and later refreshes run in the background.
The server down with a cached prompt → the stale prompt, for as long as it stays down.

Bounded memory: at most ``MAX_CACHED_PROMPTS`` keys are kept; the least recently used is forgotten
first (``stats()["prompts"]["evictions"]`` counts them) and is fetched again when asked for.

Linking: ``compile`` returns a ``str`` / ``list`` subclass (and ``dict`` messages) that remember the
prompt's name and version. When such a value is passed to a wrapped client (``evalforge.wrap``), the
model span gets ``evalforge.prompt.name`` / ``evalforge.prompt.version`` (see ``prompt_link``). Values
survive being put into a message dict or a new list (looked for among its first four and last two
messages), but not string formatting (an f-string makes a plain ``str``): pass the compiled value itself.

``compile_prompt`` is a copy of ``core.prompts.compile_prompt`` (the SDK cannot import the server);
tests/prompts/test_sdk_prompts.py checks that both give the same results. Unlike the server's, a
missing variable stays visible as ``{{name}}`` instead of raising.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from typing import Any, Optional, Union
from urllib.parse import quote, urlencode, urlsplit

from ._guard import capture_internal_exceptions, logger

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][\w]*(?:\.[\w]+)*)\s*\}\}")
PRODUCTION = "production"
MAX_CACHED_PROMPTS = 1000  # keys (name, label or version, key, endpoint) kept; least recently used go first
DEFAULT_CACHE_TTL = 60.0
DEFAULT_FETCH_TIMEOUT = 2.0
PromptContent = Union[str, list]


# ------------------------------------------------------------------------------------------- compile

def _variable_value(variables: dict, path: str) -> Any:
    if path in variables:
        return variables[path]
    head, *rest = path.split(".")
    if head not in variables:
        raise KeyError(path)
    value = variables[head]
    for part in rest:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _fill(template: str, variables: dict, strict: bool) -> str:
    def one(m: "re.Match[str]") -> str:
        try:
            return _as_text(_variable_value(variables, m.group(1)))
        except KeyError:
            if strict:
                raise KeyError(f"prompt variable {m.group(1)!r} was not given") from None
            return m.group(0)

    return VARIABLE.sub(one, template)


def compile_prompt(prompt: PromptContent, variables: dict, *, strict: bool = False) -> PromptContent:
    """Fill ``{{var}}`` placeholders (the server's rule); missing ones stay visible unless ``strict``."""
    if isinstance(prompt, str):
        return _fill(prompt, variables, strict)
    out = []
    for message in prompt:
        message = dict(message)
        if isinstance(message.get("content"), str):
            message["content"] = _fill(message["content"], variables, strict)
        out.append(message)
    return out


# ----------------------------------------------------------------------------------- linked values

class PromptText(str):
    """A compiled text prompt that remembers where it came from (``evalforge_prompt``: (name, version))."""

    evalforge_prompt: tuple


class PromptMessages(list):
    """Compiled chat messages that remember where they came from."""

    evalforge_prompt: tuple


class PromptMessage(dict):
    """One compiled message (kept when the app builds its own list around it)."""

    evalforge_prompt: tuple


_LINKED_TYPES = frozenset((PromptText, PromptMessages, PromptMessage))
_SCANNED_KWARGS = ("messages", "system", "input", "prompt", "instructions")


def _origin(value: Any) -> Optional[tuple]:
    kind = type(value)  # exact types: this runs on every wrapped call
    if kind in _LINKED_TYPES:
        return value.evalforge_prompt
    if kind is list or kind is tuple:
        # Look where compiled messages sit (the system prompt first, the user's turn last) rather than
        # through a long history.
        for item in value if len(value) <= 6 else (*value[:4], *value[-2:]):
            if type(item) is dict:
                content = item.get("content")
                if type(content) is PromptText:
                    return content.evalforge_prompt
            elif type(item) is PromptMessage:
                return item.evalforge_prompt
    elif kind is dict and type(value.get("content")) is PromptText:
        return value["content"].evalforge_prompt
    return None


def prompt_link(kwargs: dict) -> dict:
    """Span attributes linking a model call's request ``kwargs`` to the prompt version it was built from."""
    for key in _SCANNED_KWARGS:
        value = kwargs.get(key)
        if value is not None:
            origin = _origin(value)
            if origin is not None:
                return {"evalforge.prompt.name": origin[0], "evalforge.prompt.version": origin[1]}
    return {}


# -------------------------------------------------------------------------------------------- Prompt

class Prompt:
    """One prompt version: ``name``, ``version``, ``prompt`` (text or messages), ``config``, ``labels``,
    ``tags``, ``type``; ``is_fallback`` when it is the caller's ``fallback``, not a fetched version."""

    __slots__ = ("name", "version", "prompt", "config", "labels", "tags", "type", "is_fallback")

    def __init__(self, name: str, version: Optional[int], prompt: PromptContent, config: Optional[dict] = None,
                 labels: Optional[list] = None, tags: Optional[list] = None, is_fallback: bool = False) -> None:
        self.name = name
        self.version = version
        self.prompt = prompt
        self.config = config or {}
        self.labels = labels or []
        self.tags = tags or []
        self.type = "text" if isinstance(prompt, str) else "chat"
        self.is_fallback = is_fallback

    def compile(self, **variables: Any) -> PromptContent:
        """The prompt with ``{{variables}}`` filled: a ``str`` for text, a list of message dicts for chat.
        Missing variables stay visible. Never raises."""
        with capture_internal_exceptions():
            compiled = compile_prompt(self.prompt, variables)
            if self.is_fallback or self.version is None:
                return compiled  # a fallback is no stored version: nothing to link
            origin = (self.name, self.version)
            if isinstance(compiled, str):
                text = PromptText(compiled)
                text.evalforge_prompt = origin
                return text
            messages = PromptMessages()
            for m in compiled:
                message = PromptMessage(m)
                message.evalforge_prompt = origin
                messages.append(message)
            messages.evalforge_prompt = origin
            return messages
        return self.prompt

    def __repr__(self) -> str:
        flag = ", fallback" if self.is_fallback else ""
        return f"Prompt({self.name!r}, version={self.version}, type={self.type}{flag})"


def _fallback(name: Any, fallback: Any) -> Prompt:
    if isinstance(fallback, Prompt):
        return fallback
    content: PromptContent = fallback if isinstance(fallback, (str, list)) else ""
    return Prompt(str(name), None, content, is_fallback=True)


# --------------------------------------------------------------------------------------------- cache

class _Entry:
    __slots__ = ("prompt", "expires", "refreshing")

    def __init__(self, prompt: Optional[Prompt], expires: float) -> None:
        self.prompt = prompt  # None: never fetched successfully
        self.expires = expires
        self.refreshing = False


# An LRU: the hot path moves a hit to the end without the lock (single C-level OrderedDict operations
# are atomic under the GIL); inserts and evictions take the lock.
_cache: "OrderedDict[tuple, _Entry]" = OrderedDict()
_lock = threading.Lock()
_evictions = 0


def _after_fork_in_child() -> None:
    """A refresh running in the parent does not exist in a forked child: without this, an entry marked
    refreshing at fork time would never be refreshed there (and the lock might be held)."""
    global _lock
    _lock = threading.Lock()
    for entry in list(_cache.values()):
        entry.refreshing = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def clear_cache() -> None:
    """Forget every cached prompt (the next ``get_prompt`` of each fetches again)."""
    global _evictions
    with _lock:
        _cache.clear()
        _evictions = 0


def stats() -> dict:
    """``cached``: keys in the cache; ``evictions``: keys forgotten to stay within ``MAX_CACHED_PROMPTS``."""
    return {"cached": len(_cache), "max_cached": MAX_CACHED_PROMPTS, "evictions": _evictions}


def _insert(key: tuple) -> _Entry:
    """A new entry for ``key`` (the caller holds ``_lock``), evicting the least recently used beyond the cap."""
    global _evictions
    entry = _cache[key] = _Entry(None, 0.0)
    while len(_cache) > MAX_CACHED_PROMPTS:
        _cache.popitem(last=False)
        _evictions += 1
    return entry


def _connection_settings(api_key: Optional[str], endpoint: Optional[str]) -> tuple:
    from ._client import DEFAULT_ENDPOINT, get_state

    state = get_state()
    key = api_key or (state.api_key if state else None) or os.environ.get("EVALFORGE_API_KEY", "")
    url = (endpoint or (state.endpoint if state else None) or os.environ.get("EVALFORGE_ENDPOINT")
           or DEFAULT_ENDPOINT)
    return key, url.rstrip("/")


def _fetch(name: str, label: Optional[str], version: Optional[int], api_key: str, endpoint: str,
           timeout: float) -> Prompt:
    """One GET of the version; raises on any failure (the callers decide what the app sees)."""
    parts = urlsplit(endpoint)
    query = urlencode({"version": version} if version is not None else {"label": label})
    path = f"{parts.path}/api/v1/prompts/{quote(name, safe='')}?{query}"
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.netloc, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {resp.status}: {body[:200]!r}")
    data = json.loads(body)
    return Prompt(data["name"], int(data["version"]), data["prompt"], data.get("config") or {},
                  list(data.get("labels") or []), list(data.get("tags") or []))


def _refresh(key: tuple, entry: _Entry, ttl: float, api_key: str, endpoint: str, timeout: float,
             first: bool = False) -> None:
    """Fetch into ``entry`` (on its own thread); a failure keeps what the entry has and retries soon."""
    try:
        prompt = _fetch(key[0], key[1], key[2], api_key, endpoint, timeout)
    except Exception as exc:  # noqa: BLE001 - keep serving what we have
        if first:
            logger.warning("evalforge.get_prompt: cannot fetch %r (%s); returning the fallback", key[0], exc)
        else:
            logger.info("evalforge.get_prompt: refresh of %r failed (%s); serving the cached value", key[0], exc)
        with _lock:
            entry.refreshing = False
            entry.expires = time.monotonic() + min(ttl, 5.0)  # retry soon, not on every call
        return
    with _lock:
        entry.prompt = prompt
        entry.expires = time.monotonic() + ttl
        entry.refreshing = False


def get_prompt(name: str, label: Optional[str] = None, version: Optional[int] = None, *,
               fallback: Any = None, cache_ttl: float = DEFAULT_CACHE_TTL, fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
               api_key: Optional[str] = None, endpoint: Optional[str] = None) -> Prompt:
    """The prompt ``name`` at ``label`` (default ``production``; ``latest`` = newest) or ``version``.

    Served from the in-process cache when fresh; stale → returned at once while one background refresh
    runs. Nothing cached and the server unreachable, slower than ``fetch_timeout`` in total (or the
    prompt / label missing) → ``fallback`` (text, messages or a Prompt) as a Prompt with
    ``is_fallback=True``. Never raises: a bad name / label / version is logged and answered with the
    fallback; a ``cache_ttl`` / ``fetch_timeout`` that is no finite number >= 0 / > 0 is logged and
    replaced by its default.
    """
    # api_key / endpoint as passed (None: from init): two projects in one process never share prompts
    key = (name, None, version, api_key, endpoint) if version is not None else \
        (name, label or PRODUCTION, None, api_key, endpoint)
    try:
        entry = _cache.get(key)
    except TypeError:  # an unhashable argument: the slow path says which
        entry = None
    else:
        if entry is not None and entry.prompt is not None and time.monotonic() < entry.expires:
            try:
                _cache.move_to_end(key)  # recently used: evicted last
            except KeyError:  # evicted meanwhile by another thread: still a valid prompt to return
                pass
            return entry.prompt  # the hot path: two dict operations and a clock read
    with capture_internal_exceptions():
        return _get_slow(key, entry, (label, version), fallback, cache_ttl, fetch_timeout, api_key, endpoint)
    return _fallback(name, fallback)


def _get_slow(key: tuple, entry: Optional[_Entry], asked: tuple, fallback: Any, ttl: Any, timeout: Any,
              api_key: Optional[str], endpoint: Optional[str]) -> Prompt:
    name = key[0]
    problem = _bad_arguments(name, asked[0], asked[1])
    if problem:
        logger.warning("evalforge.get_prompt: %s; returning the fallback", problem)
        return _fallback(name, fallback)
    ttl = _seconds("cache_ttl", ttl, DEFAULT_CACHE_TTL, zero_ok=True)
    timeout = _seconds("fetch_timeout", timeout, DEFAULT_FETCH_TIMEOUT, zero_ok=False)
    secret, url = _connection_settings(api_key, endpoint)
    if entry is None:
        with _lock:
            existing = _cache.get(key)
            if existing is None:
                entry = _insert(key)
                entry.refreshing = True  # this caller fetches; others get the fallback meanwhile
                first = True
            else:
                entry, first = existing, False
        if first:
            fetcher = threading.Thread(target=_refresh, args=(key, entry, ttl, secret, url, timeout, True),
                                       name="evalforge-prompt-fetch", daemon=True)
            fetcher.start()
            fetcher.join(timeout)  # the whole fetch, DNS and a slow body included, not each socket step
            prompt = entry.prompt
            if prompt is not None:
                return prompt
            if fetcher.is_alive():
                logger.warning("evalforge.get_prompt: %r not fetched within %ss; returning the fallback "
                               "(the fetch goes on and fills the cache if it succeeds)", name, timeout)
            return _fallback(name, fallback)
    with _lock:
        if _cache.get(key) is entry:
            _cache.move_to_end(key)  # a stale or failed key asked for again is used too
        start = not entry.refreshing and time.monotonic() >= entry.expires
        if start:
            entry.refreshing = True
    if start:
        threading.Thread(target=_refresh, args=(key, entry, ttl, secret, url, timeout),
                         name="evalforge-prompt-refresh", daemon=True).start()
    return entry.prompt if entry.prompt is not None else _fallback(name, fallback)


def _bad_arguments(name: Any, label: Any, version: Any) -> str:
    if not isinstance(name, str) or not name:
        return f"name must be a non-empty string, not {name!r}"
    if label is not None and (not isinstance(label, str) or not label):
        return f"label must be a non-empty string, not {label!r}"
    if label is not None and version is not None:
        return "give a label or a version, not both"
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        return f"version must be a positive integer, not {version!r}"
    return ""


def _seconds(what: str, value: Any, default: float, zero_ok: bool) -> float:
    """``value`` when it is a finite number of seconds (>= 0 or > 0); else logged and ``default``: a NaN TTL
    would never count as fresh nor as stale (never refreshed), an infinite one never stale, an infinite
    timeout would block the caller for ever."""
    if not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
            and (value > 0 or (zero_ok and value == 0)):
        return float(value)
    bound = ">= 0" if zero_ok else "> 0"
    logger.warning("evalforge.get_prompt: %s must be a finite number of seconds %s, not %r; using %s",
                   what, bound, value, default)
    return default
