"""The egress guard (core/egress.py) against real HTTP servers on loopback.

Refused addresses are refused before any connection: no test sends a packet beyond loopback. Names
that should resolve elsewhere go through the ``fake_dns`` fixture (the guard's resolver hook).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from core import egress
from core.egress import (
    EgressRefused,
    acheck_url,
    check_url,
    guarded_async_client,
    guarded_client,
)
from core.settings import Settings

NO_ALLOW_LIST = Settings()
LOOPBACK_ALLOWED = Settings(egress_allowed_hosts="127.0.0.1")

# (url, reason); "loopback.test" is made to resolve to loopback by the fake_dns fixture.
REFUSED = [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link_local"),
    ("http://10.20.30.40/", "private"),
    ("https://192.168.1.1/", "private"),
    ("http://[::1]:9000/", "loopback"),
    ("http://[fe80::1]/", "link_local"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped IPv6 is judged by its IPv4 address
    ("http://0.0.0.0:8123/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://100.64.0.1/", "reserved"),  # carrier-grade NAT: not global
    ("http://loopback.test/v1", "loopback"),
]


def refused_count(purpose: str, reason: str) -> float:
    return REGISTRY.get_sample_value("evalforge_egress_refused_total", {"purpose": purpose, "reason": reason}) or 0.0


class Receiver:
    """An HTTP server on a loopback address that records requests and the connections it accepted."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, redirect_to: str | None = None) -> None:
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.connections = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                receiver.connections += 1
                super().setup()

            def do_GET(self) -> None:
                receiver.requests.append((self.path, self.headers["Host"]))
                if redirect_to and self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = f"{host} saw {self.headers['Host']}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def dns(fake_dns: dict[str, list[str]]) -> dict[str, list[str]]:
    fake_dns["loopback.test"] = ["127.0.0.1"]
    fake_dns["public.test"] = ["93.184.216.34"]
    return fake_dns


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_internal_addresses_are_refused_at_configuration_time(url, reason, dns):
    with pytest.raises(EgressRefused) as info:
        check_url(url, NO_ALLOW_LIST)
    assert info.value.reason == reason
    assert "EVALFORGE_EGRESS_ALLOWED_HOSTS" in str(info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_async_check_refuses_the_same(url, reason, dns):
    with pytest.raises(EgressRefused) as info:
        await acheck_url(url, NO_ALLOW_LIST)
    assert info.value.reason == reason


def test_a_name_with_one_internal_address_among_public_ones_is_refused(dns):
    dns["mixed.test"] = ["93.184.216.34", "10.0.0.5"]
    with pytest.raises(EgressRefused, match=r"'mixed.test' refused \(private: resolves to 10.0.0.5\)"):
        check_url("https://mixed.test/hook", NO_ALLOW_LIST)


def test_public_hosts_pass_and_bad_urls_do_not(dns):
    check_url("https://public.test/services/T/B/x", NO_ALLOW_LIST)  # only resolved, nothing sent
    check_url("https://93.184.216.34/", NO_ALLOW_LIST)
    for bad in ("ftp://public.test/", "file:///etc/passwd", "http:///nohost", "http://[::1/"):
        with pytest.raises(EgressRefused) as info:
            check_url(bad, NO_ALLOW_LIST)
        assert info.value.reason == "bad_url"
    with pytest.raises(EgressRefused) as info:
        check_url("http://no-such-name.invalid/", NO_ALLOW_LIST)
    assert info.value.reason == "unresolvable"


def test_refusals_never_echo_the_url_or_its_credentials(dns):
    with pytest.raises(EgressRefused) as info:
        check_url("http://admin:hunter2@10.1.1.1/services/secret-token", NO_ALLOW_LIST)
    assert "hunter2" not in str(info.value) and "secret-token" not in str(info.value)


def test_allow_list_entries_host_host_port_ip_and_network(dns):
    dns["vllm.internal"] = ["10.8.0.7"]
    check_url("http://vllm.internal:8000/v1", Settings(egress_allowed_hosts="vllm.internal"))
    check_url("http://vllm.internal:8000/v1", Settings(egress_allowed_hosts=" VLLM.internal:8000 "))
    with pytest.raises(EgressRefused):  # host:port allows that port only
        check_url("http://vllm.internal:8001/v1", Settings(egress_allowed_hosts="vllm.internal:8000"))
    check_url("http://vllm.internal/v1", Settings(egress_allowed_hosts="10.8.0.0/16"))
    check_url("http://vllm.internal/v1", Settings(egress_allowed_hosts="10.8.0.7"))
    with pytest.raises(EgressRefused):
        check_url("http://169.254.169.254/", Settings(egress_allowed_hosts="10.8.0.0/16"))
    # the deprecated judge setting adds to the list
    check_url("http://vllm.internal/v1", Settings(judge_allowed_hosts="vllm.internal"))


@pytest.mark.asyncio
async def test_an_allowed_host_is_reached(receiver):
    async with guarded_async_client(LOOPBACK_ALLOWED, purpose="test") as client:
        response = await client.post(f"http://127.0.0.1:{receiver.port}/hook", json={"text": "hi"})
    assert response.status_code == 200 and receiver.requests == [("/hook", f"127.0.0.1:{receiver.port}")]


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "loopback.test"])
async def test_send_time_refusal_is_counted_and_nothing_connects(receiver, dns, host):
    before = refused_count("test_send", "loopback")
    async with guarded_async_client(NO_ALLOW_LIST, purpose="test_send") as client:
        with pytest.raises(EgressRefused):
            await client.get(f"http://{host}:{receiver.port}/")
    with guarded_client(NO_ALLOW_LIST, purpose="test_send") as client, pytest.raises(EgressRefused):
        client.get(f"http://{host}:{receiver.port}/")
    assert refused_count("test_send", "loopback") == before + 2
    assert receiver.connections == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://internal.test:8080/admin"])
async def test_a_redirect_to_a_refused_address_is_refused(dns, target):
    dns["internal.test"] = ["10.0.0.9"]
    reason = "link_local" if "169.254" in target else "private"
    server = Receiver(redirect_to=target)
    try:
        before = refused_count("test_redirect", reason)
        async with guarded_async_client(LOOPBACK_ALLOWED, purpose="test_redirect", follow_redirects=True) as client:
            with pytest.raises(EgressRefused):
                await client.get(f"http://127.0.0.1:{server.port}/redirect")
        with (guarded_client(LOOPBACK_ALLOWED, purpose="test_redirect", follow_redirects=True) as client,
              pytest.raises(EgressRefused)):
            client.get(f"http://127.0.0.1:{server.port}/redirect")
        assert refused_count("test_redirect", reason) == before + 2
        assert [path for path, _ in server.requests] == ["/redirect", "/redirect"]
    finally:
        server.close()


@pytest.mark.asyncio
async def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch):
    """DNS rebinding: a name answers an allowed address to the check and a refused one right after.
    The guard resolves once per connection and connects to that very answer; the HTTP stack never
    resolves the name again (it could not: the system resolver does not know rebind.test)."""
    allowed = Receiver("127.0.0.1")
    forbidden = Receiver("127.0.0.2", port=allowed.port)  # same port on another loopback address
    answers = iter([["127.0.0.1"], ["127.0.0.2"], ["127.0.0.2"]])
    calls: list[str] = []

    def rebinding_resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    monkeypatch.setattr(egress, "resolve", rebinding_resolver)
    try:
        async with guarded_async_client(LOOPBACK_ALLOWED, purpose="test_rebind") as client:
            response = await client.get(f"http://rebind.test:{allowed.port}/")
        assert response.text == f"127.0.0.1 saw rebind.test:{allowed.port}"  # Host header kept
        assert calls == ["rebind.test"]
        # the next connection gets the rebound answer: checked again, refused, never connected
        before = refused_count("test_rebind", "loopback")
        with guarded_client(LOOPBACK_ALLOWED, purpose="test_rebind") as client, pytest.raises(EgressRefused):
            client.get(f"http://rebind.test:{allowed.port}/")
        assert refused_count("test_rebind", "loopback") == before + 1
        assert forbidden.connections == 0 and allowed.connections == 1
    finally:
        allowed.close()
        forbidden.close()


def test_clients_refuse_options_that_would_bypass_the_guard():
    for kw in ({"transport": httpx.HTTPTransport()}, {"proxy": "http://127.0.0.1:3128"}, {"mounts": {}}):
        with pytest.raises(TypeError):
            guarded_client(NO_ALLOW_LIST, purpose="test", **kw)
