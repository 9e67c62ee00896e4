"""``evalforge.get_prompt`` against a real server (query API's prompt routes + ingest on a loopback
port): the cache makes no request within its TTL, serves stale values while refreshing once in the
background, survives the server being down, never raises; a compiled prompt used with a wrapped client
links the span to its name and version in ClickHouse, and metrics group spans by prompt version."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid

import evalforge
import openai
import pytest
from evalforge import _prompts

from core import prompts as server_prompts
from tests.harness.live_server import LiveServer
from tests.sdk.fake_llm import FakeLLM
from tests.waiting import wait_until


class CountingApp:
    """The real app behind a counter of prompt reads (and a switch that answers 503, as an overloaded
    server would)."""

    def __init__(self, app) -> None:
        self.app = app
        self.prompt_reads = 0
        self.unavailable = False
        self.hold: threading.Event | None = None  # set: prompt reads wait for it (a slow server)
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/api/v1/prompts/") and scope["method"] == "GET":
            with self._lock:
                self.prompt_reads += 1
            if self.hold is not None:
                await asyncio.to_thread(self.hold.wait, 30)
            if self.unavailable:
                await send({"type": "http.response.start", "status": 503, "headers": [(b"retry-after", b"1")]})
                await send({"type": "http.response.body", "body": b"{}"})
                return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def server(stack):
    from core.http import build_app
    from ingest.routers.ingest import router as ingest_router
    from launcher.cli import INGEST_PARTS
    from query_api.routers.prompts import router as prompts_router

    app = CountingApp(build_app(stack.settings, parts=INGEST_PARTS, routers=[ingest_router, prompts_router]))
    with LiveServer(app) as live:
        yield app, live.url


@pytest.fixture
def project(stack, server):
    _, key = stack.create_key()
    _prompts.clear_cache()
    yield key, stack.headers(key)
    _prompts.clear_cache()


def _new_version(stack, headers, name: str, prompt, labels=("production",)) -> int:
    r = stack.client.post("/api/v1/prompts", headers=headers, json={"name": name, "prompt": prompt, "labels": list(labels)})
    assert r.status_code == 201, r.text
    return r.json()["version"]


def test_within_ttl_the_cache_makes_no_request(stack, server, project):
    app, url = server
    key, h = project
    name = f"cached-{uuid.uuid4().hex[:6]}"
    _new_version(stack, h, name, "Hello {{who}}")
    before = app.prompt_reads
    first = evalforge.get_prompt(name, api_key=key, endpoint=url)
    assert (first.version, first.prompt, first.is_fallback) == (1, "Hello {{who}}", False)
    for _ in range(500):
        assert evalforge.get_prompt(name, api_key=key, endpoint=url) is first
    assert app.prompt_reads - before == 1
    # the default label is production: asking for it by name shares the cache entry
    assert evalforge.get_prompt(name, label="production", api_key=key, endpoint=url) is first
    assert app.prompt_reads - before == 1
    assert evalforge.get_prompt(name, version=1, api_key=key, endpoint=url).version == 1
    assert app.prompt_reads - before == 2


def test_after_ttl_the_stale_value_is_served_while_one_background_refresh_runs(stack, server, project):
    app, url = server
    key, h = project
    name = f"swr-{uuid.uuid4().hex[:6]}"
    _new_version(stack, h, name, "v1")
    assert evalforge.get_prompt(name, cache_ttl=0.5, api_key=key, endpoint=url).version == 1
    _new_version(stack, h, name, "v2")  # production moves to version 2
    time.sleep(0.6)
    app.unavailable = True  # hold the refresh back so that every caller below sees the stale value
    try:
        before = app.prompt_reads
        results = [evalforge.get_prompt(name, cache_ttl=0.5, api_key=key, endpoint=url) for _ in range(200)]
        assert {p.version for p in results} == {1}
        wait_until(lambda: app.prompt_reads - before >= 1, timeout=10)
        time.sleep(0.2)
        assert app.prompt_reads - before == 1  # one refresh for 200 stale reads
    finally:
        app.unavailable = False
    # the failed refresh is retried (not on every call) and then the new version is served
    assert wait_until(lambda: evalforge.get_prompt(name, cache_ttl=0.5, api_key=key, endpoint=url).version == 2,
                      timeout=15)


def test_a_stale_read_never_waits_for_its_refresh(stack, server, project):
    app, url = server
    key, h = project
    name = f"slow-{uuid.uuid4().hex[:6]}"
    _new_version(stack, h, name, "v1")
    cached = evalforge.get_prompt(name, cache_ttl=0.1, api_key=key, endpoint=url)
    _new_version(stack, h, name, "v2")
    time.sleep(0.15)
    app.hold = threading.Event()  # the server now answers prompt reads only when released
    try:
        before = app.prompt_reads
        # a long fetch timeout: a refresh made on the caller's thread would wait for the held server
        # (and come back with v2); the background refresh lets the caller go with the stale prompt
        assert evalforge.get_prompt(name, cache_ttl=0.1, api_key=key, endpoint=url, fetch_timeout=60) is cached
        # the refresh is in flight and unanswered, yet the caller already has its (stale) prompt
        wait_until(lambda: app.prompt_reads - before == 1, timeout=10)
        assert evalforge.get_prompt(name, cache_ttl=0.1, api_key=key, endpoint=url, fetch_timeout=60) is cached
    finally:
        app.hold.set()
        app.hold = None
    assert wait_until(lambda: evalforge.get_prompt(name, cache_ttl=0.1, api_key=key, endpoint=url).version == 2,
                      timeout=15)


def test_server_down_serves_the_stale_prompt_or_the_fallback_and_never_raises(stack, server, project):
    from core.http import build_app
    from launcher.cli import INGEST_PARTS
    from query_api.routers.prompts import router as prompts_router

    _, url = server
    key, h = project
    name = f"down-{uuid.uuid4().hex[:6]}"
    _new_version(stack, h, name, [{"role": "user", "content": "Hi {{who}}"}])
    with LiveServer(build_app(stack.settings, parts=INGEST_PARTS, routers=[prompts_router])) as doomed:
        cached = evalforge.get_prompt(name, cache_ttl=0.1, api_key=key, endpoint=doomed.url)
        assert cached.version == 1
    # the server is gone: connections are refused; the cached prompt keeps being served, at once
    time.sleep(0.15)
    for _ in range(3):
        for _ in range(20):
            stale = evalforge.get_prompt(name, cache_ttl=0.1, api_key=key, endpoint=doomed.url)
            assert stale is cached
        time.sleep(0.2)  # past the TTL again: refreshes keep failing in the background
    assert stale.compile(who="Bo") == [{"role": "user", "content": "Hi Bo"}]

    fb = evalforge.get_prompt(name, endpoint=doomed.url, api_key=key, label="staging",
                              fallback="Default {{who}}", fetch_timeout=0.5)
    assert fb.is_fallback and fb.version is None and fb.compile(who="you") == "Default you"
    missing = evalforge.get_prompt(f"missing-{uuid.uuid4().hex[:6]}", api_key=key, endpoint=url,
                                   fallback=[{"role": "system", "content": "fallback"}])
    assert missing.is_fallback and missing.compile() == [{"role": "system", "content": "fallback"}]
    assert evalforge.get_prompt(name, label="no-such-label", api_key=key, endpoint=url).is_fallback
    assert evalforge.get_prompt(name, api_key="ef_wrong", endpoint=url).is_fallback


@pytest.mark.parametrize("args", [
    {"name": None}, {"name": ["x"]}, {"name": "x", "version": "2"}, {"name": "x", "version": 0},
    {"name": "x", "label": 5}, {"name": "x", "label": "production", "version": 1},
    {"name": "x", "cache_ttl": "soon"}, {"name": "x", "fetch_timeout": -1},
])
def test_wrong_arguments_are_logged_and_answered_with_the_fallback(args, caplog):
    prompt = evalforge.get_prompt(**args, fallback="safe", endpoint="http://127.0.0.1:9")
    assert prompt.is_fallback and prompt.compile() == "safe"
    assert "evalforge.get_prompt" in caplog.text
    assert evalforge.get_prompt("x", fallback=object(), endpoint="http://127.0.0.1:9").compile() == ""


CASES = [
    ("Hello {{name}}!", {"name": "Ann"}),
    ("{{ spaced }} and {{missing}}", {"spaced": "ok"}),
    ("{{a.b}} {{a.c.0}} {{a.d}}", {"a": {"b": 1.5, "c": ["x", "y"]}}),
    ("json: {{obj}} none: {{n}} bool: {{t}}", {"obj": {"k": [1, "é", None]}, "n": None, "t": True}),
    ("{{dotted.key}}", {"dotted.key": "flat wins"}),
    ("no variables {single} {{ }} {{1bad}}", {}),
    ([{"role": "system", "content": "Be {{tone}}"}, {"role": "user", "content": "{{q}}", "name": "u"}],
     {"tone": "kind", "q": {"nested": True}}),
]


@pytest.mark.parametrize(("template", "variables"), CASES)
def test_sdk_and_server_compile_alike(template, variables):
    server = server_prompts.compile_prompt(template, variables, strict=False)
    sdk = _prompts.compile_prompt(template, variables)
    assert sdk == server and json.dumps(sdk) == json.dumps(server)
    assert evalforge.Prompt("p", 1, template).compile(**{k: v for k, v in variables.items() if "." not in k}) == \
        server_prompts.compile_prompt(template, {k: v for k, v in variables.items() if "." not in k}, strict=False)
    assert server_prompts.VARIABLE.pattern == _prompts.VARIABLE.pattern


def _spans_by_version(stack, project_id: str, name: str, expected: int):
    def rows():
        found = stack.clickhouse.query(
            "SELECT prompt_version, count() FROM spans FINAL WHERE project_id = {p:String} AND prompt_name = {n:String} "
            "GROUP BY prompt_version ORDER BY prompt_version", parameters={"p": project_id, "n": name}).result_rows
        return found if sum(c for _, c in found) >= expected else None
    return wait_until(rows, timeout=30)


def test_a_compiled_prompt_links_the_model_span_and_metrics_group_by_version(stack, server, project):
    _, url = server
    key, h = project
    name = f"linked-{uuid.uuid4().hex[:6]}"
    _new_version(stack, h, name, [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "{{q}}"}])
    _new_version(stack, h, name, "Answer in one word: {{q}}", labels=("staging",))
    llm = FakeLLM()
    evalforge.init(api_key=key, endpoint=url, schedule_delay=0.05, service_name="prompt-app")
    try:
        client = evalforge.wrap(openai.OpenAI(api_key="sk-test", base_url=llm.url + "/v1", max_retries=0))
        chat = evalforge.get_prompt(name)  # production: version 1, chat
        text = evalforge.get_prompt(name, label="staging")  # version 2, text
        assert (chat.version, text.version) == (1, 2)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o", messages=chat.compile(q="why?"))
        for _ in range(2):  # a compiled text inside the app's own message dict still links
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text.compile(q="how?")}])
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "unrelated"}])
        assert evalforge.flush(10)
    finally:
        evalforge.shutdown(2)
        llm.close()
    assert llm.requests[0]["body"]["messages"] == [{"role": "system", "content": "Answer briefly."},
                                           {"role": "user", "content": "why?"}]
    project_id = _project_id(stack, key)
    assert _spans_by_version(stack, project_id, name, 5) == [("1", 3), ("2", 2)]
    r = stack.client.get("/api/v1/metrics", headers=h, params={
        "metric": "requests", "aggregation": "count", "group_by": "prompt_version", "prompt_name": name})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {row["group"]["prompt_version"]: row["value"] for row in body["data"]} == {"1": 3, "2": 2}, body
    compared = stack.client.post("/api/v1/compare", headers=h, json={
        "metric": "latency", "a": {"prompt_name": name, "prompt_version": "1"},
        "b": {"prompt_name": name, "prompt_version": "2"}})
    assert compared.status_code == 200, compared.text
    arms = compared.json()["arms"]
    assert (arms["a"]["n_total"], arms["b"]["n_total"]) == (3, 2), compared.json()


def _project_id(stack, key: str) -> str:
    return next(pid for pid, secret in stack.keys.values() if secret == key)


def test_link_survives_the_ways_apps_pass_a_compiled_prompt():
    chat = evalforge.Prompt("chat", 4, [{"role": "system", "content": "Be {{tone}}"}, {"role": "user", "content": "{{q}}"}])
    text = evalforge.Prompt("text", 7, "You are {{tone}}")
    link = _prompts.prompt_link
    messages = chat.compile(tone="kind", q="hi")
    assert link({"messages": messages}) == {"evalforge.prompt.name": "chat", "evalforge.prompt.version": 4}
    # the app's own list around the compiled messages (history appended), or a slice of them
    assert link({"messages": [*messages, {"role": "assistant", "content": "ok"}]})["evalforge.prompt.version"] == 4
    assert link({"messages": messages[1:]})["evalforge.prompt.name"] == "chat"
    history = [{"role": "user", "content": str(i)} for i in range(20)]
    assert link({"messages": [messages[0], *history]})["evalforge.prompt.version"] == 4  # system prompt first
    assert link({"messages": [*history, messages[1]]})["evalforge.prompt.version"] == 4  # the latest turn
    # Anthropic: a compiled text as the system prompt; OpenAI Responses: as instructions
    assert link({"system": text.compile(tone="brief"), "messages": [{"role": "user", "content": "x"}]}) == {
        "evalforge.prompt.name": "text", "evalforge.prompt.version": 7}
    assert link({"instructions": text.compile(tone="brief"), "input": "x"})["evalforge.prompt.name"] == "text"
    # plain values and fallbacks link nothing; an f-string of a compiled text is a plain str
    assert link({"messages": [{"role": "user", "content": f"{text.compile(tone='x')}!"}]}) == {}
    assert link({"messages": _prompts._fallback("f", [{"role": "user", "content": "x"}]).compile()}) == {}
    # compiled values are ordinary str / list / dict to the provider SDKs (JSON-encodable as such)
    assert json.dumps(messages) == json.dumps([{"role": "system", "content": "Be kind"}, {"role": "user", "content": "hi"}])


def test_a_forked_child_refreshes_what_the_parent_was_refreshing(stack, server, project):
    import multiprocessing

    _, url = server
    key, h = project
    name = f"fork-{uuid.uuid4().hex[:6]}"
    _new_version(stack, h, name, "v1")
    assert evalforge.get_prompt(name, cache_ttl=0.2, api_key=key, endpoint=url).version == 1
    _new_version(stack, h, name, "v2")
    entry = next(e for k, e in _prompts._cache.items() if k[0] == name)
    entry.refreshing = True  # as if a refresh thread were running at fork time
    time.sleep(0.25)

    def child(out):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if evalforge.get_prompt(name, cache_ttl=0.2, api_key=key, endpoint=url).version == 2:
                out.put(True)
                return
            time.sleep(0.05)
        out.put(False)

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=child, args=(out,))
    proc.start()
    try:
        assert out.get(timeout=30) is True
    finally:
        proc.join(10)
        entry.refreshing = False


class DripServer:
    """A server that answers a valid prompt, but a few bytes at a time: every socket read gets data well
    within the client's socket timeout, yet the whole answer takes ``chunks * interval`` seconds (what a
    socket timeout alone never bounds)."""

    def __init__(self, body: bytes, chunks: int = 20, interval: float = 0.2) -> None:
        self.response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body)) + body
        self.chunks, self.interval = chunks, interval
        self.stopped = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True, name="drip-server").start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # timeout, or closed
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            step = -(-len(self.response) // self.chunks)
            for start in range(0, len(self.response), step):
                if self.stopped.is_set():
                    return
                conn.sendall(self.response[start:start + step])
                time.sleep(self.interval)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.fixture
def fresh_cache():
    _prompts.clear_cache()
    yield
    _prompts.clear_cache()


def test_a_slow_first_fetch_returns_the_fallback_after_fetch_timeout_in_total_then_fills_the_cache(fresh_cache):
    body = json.dumps({"name": "slow", "version": 7, "prompt": "slow {{x}}", "config": {}, "labels": ["production"],
                       "tags": []}).encode()
    drip = DripServer(body, chunks=20, interval=0.2)  # the whole answer: ~4 s, a byte run every 0.2 s
    try:
        started = time.monotonic()
        first = evalforge.get_prompt("slow", fallback="fast {{x}}", fetch_timeout=0.5, api_key="k", endpoint=drip.url)
        waited = time.monotonic() - started
        assert first.is_fallback and first.compile(x=1) == "fast 1"
        # bounded by fetch_timeout (0.5 s) in total, with a generous margin, not by the ~4 s answer
        assert waited < 2.5, waited
        # the fetch went on and fills the cache when the answer is complete
        assert wait_until(lambda: evalforge.get_prompt("slow", fetch_timeout=0.5, api_key="k",
                                                       endpoint=drip.url).version == 7, timeout=20)
    finally:
        drip.close()


def test_the_cache_keeps_the_most_recently_used_keys_and_counts_evictions(stack, server, project, monkeypatch):
    app, url = server
    key, h = project
    a, b, c = (f"lru-{x}-{uuid.uuid4().hex[:6]}" for x in "abc")
    for name in (a, b, c):
        _new_version(stack, h, name, name)
    monkeypatch.setattr(_prompts, "MAX_CACHED_PROMPTS", 2)

    def get(name):
        before = app.prompt_reads
        assert evalforge.get_prompt(name, api_key=key, endpoint=url).prompt == name
        return app.prompt_reads - before  # requests it made

    assert (get(a), get(b), get(a)) == (1, 1, 0)  # a is now more recently used than b
    assert get(c) == 1  # over the cap: b, the least recently used, is forgotten
    assert evalforge.stats()["prompts"] == {"cached": 2, "max_cached": 2, "evictions": 1}
    assert (get(a), get(c)) == (0, 0)
    assert get(b) == 1  # fetched again, and a (the least recently used now) goes
    assert evalforge.stats()["prompts"]["evictions"] == 2 and get(c) == 0 and get(a) == 1


@pytest.mark.parametrize("ttl", [float("nan"), float("inf"), -1.0])
def test_a_cache_ttl_that_is_no_finite_number_is_logged_and_the_default_used(stack, server, project, caplog, ttl):
    app, url = server
    key, h = project
    name = f"ttl-{uuid.uuid4().hex[:6]}"
    _new_version(stack, h, name, "v1")
    before = app.prompt_reads
    first = evalforge.get_prompt(name, cache_ttl=ttl, api_key=key, endpoint=url)
    assert (first.version, first.is_fallback) == (1, False)
    assert "cache_ttl must be a finite number" in caplog.text
    # the default TTL (60 s) instead: NaN would never count as fresh nor stale (never refreshed), inf never stale
    for _ in range(20):
        assert evalforge.get_prompt(name, cache_ttl=ttl, api_key=key, endpoint=url) is first
    time.sleep(0.2)
    assert app.prompt_reads - before == 1
    entry = next(e for k, e in _prompts._cache.items() if k[0] == name)
    assert 50 < entry.expires - time.monotonic() <= _prompts.DEFAULT_CACHE_TTL


def test_an_app_with_an_ingest_key_gets_its_prompt(stack, server, project):
    _, url = server
    key, h = project
    name = f"ingest-{uuid.uuid4().hex[:6]}"
    _new_version(stack, h, name, "From the app {{x}}")
    made = stack.client.post("/api/v1/api-keys", headers=h, json={"scope": "ingest"})
    assert made.status_code == 201, made.text
    prompt = evalforge.get_prompt(name, api_key=made.json()["key"], endpoint=url, fallback="fallback")
    assert (prompt.version, prompt.is_fallback, prompt.compile(x=1)) == (1, False, "From the app 1")
