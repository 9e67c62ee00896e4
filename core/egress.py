"""The egress guard: the one path for outgoing HTTP calls made on a project's behalf.

Project users configure URLs the server then calls (Slack webhooks, an LLM judge's ``base_url``, later
experiment targets and webhooks). Without a guard any of them could make the server call its own
network: cloud metadata (169.254.169.254), an admin port on loopback, a database on a private address
(SSRF). So every such call goes through here:

- the URL's host is resolved, and the call is refused if ANY of its addresses is loopback, link-local,
  private, multicast, reserved, unspecified or otherwise not global — unless the host (or host:port)
  is listed in ``EVALFORGE_EGRESS_ALLOWED_HOSTS``, or the address falls in an IP / CIDR entry there;
- the connection goes to the very address that was checked: the check runs inside the HTTP client's
  network backend at connect time and hands the checked IP to the socket, so a DNS answer that changes
  between check and connect (rebinding) cannot redirect it. Host header and TLS SNI / certificate
  checks still use the URL's host name, because the URL itself is never rewritten;
- every connection, including one opened for a redirect, passes the same check, so a redirect to a
  refused address is refused before any packet is sent to it;
- proxies from the environment are ignored (they would be a way around the check).

``check_url`` / ``acheck_url`` are for configuration time (an API answers 400 naming its field);
``guarded_async_client`` / ``guarded_client`` (httpx) and ``guarded_sdk_http_client`` (httpx2, the HTTP
library of the openai and anthropic SDKs) enforce the guard at send time and count each refusal in
``evalforge_egress_refused_total{purpose, reason}``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import httpcore
import httpx
from prometheus_client import Counter

ALLOWED_HOSTS_SETTING = "EVALFORGE_EGRESS_ALLOWED_HOSTS"

EGRESS_REFUSED = Counter("evalforge_egress_refused", "Outgoing calls refused by the egress guard",
                         ["purpose", "reason"])

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(ValueError):
    """An outgoing call the guard refuses. The message names the host and the reason, never the URL
    (a webhook URL is a secret)."""

    def __init__(self, host: str, reason: str, detail: str = "") -> None:
        self.host = host
        self.reason = reason
        hint = "" if reason == "bad_url" else f"; an operator can allow it with {ALLOWED_HOSTS_SETTING}"
        super().__init__(f"host {host!r} refused ({reason}{': ' + detail if detail else ''}){hint}")


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# The resolver the guard uses, looked up at each call: tests replace it (monkeypatch) to make a name
# resolve to a chosen address without touching /etc/hosts or DNS.
resolve: Callable[[str, int], list[str]] = system_resolve


@dataclass(frozen=True)
class AllowList:
    """``EVALFORGE_EGRESS_ALLOWED_HOSTS`` parsed: host names, host:port pairs, IP addresses / networks."""

    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def allows_host(self, host: str, port: int) -> bool:
        host = _normal_host(host)
        return host in self.hosts or f"{host}:{port}" in self.hosts or f"[{host}]:{port}" in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks)


@lru_cache(maxsize=32)
def _parse_allow_list(raw: str) -> AllowList:
    hosts, networks = set(), []
    for entry in (e.strip().lower() for e in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry.rstrip("."))
    return AllowList(frozenset(hosts), tuple(networks))


def allow_list(settings: Any) -> AllowList:
    """The allow-list of ``settings``: ``egress_allowed_hosts`` plus the deprecated
    ``judge_allowed_hosts`` (EVALFORGE_JUDGE_ALLOWED_HOSTS), which adds to it. A plain collection of
    entries is accepted too (callers written before the guard passed ``settings.judge_hosts``)."""
    if isinstance(settings, set | frozenset | list | tuple):
        return _parse_allow_list(",".join(sorted(settings)))
    raw = ",".join(str(getattr(settings, name, "") or "") for name in ("egress_allowed_hosts", "judge_allowed_hosts"))
    return _parse_allow_list(raw)


def refusal_reason(address: IPAddress) -> str | None:
    """Why an address may not be called, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 form that carries an IPv4 address is judged by the IPv4 address it reaches.
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal_reason(embedded)
    for reason in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{reason}"):
            return reason
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "private"
    if not address.is_global:  # shared address space 100.64/10, documentation ranges...
        return "reserved"
    return None


def _normal_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _url_target(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EgressRefused("?", "bad_url", "not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused(parts.hostname or "?", "bad_url", "must be an http(s) URL with a host")
    return _normal_host(parts.hostname), port or (443 if parts.scheme == "https" else 80)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _checked(host: str, addresses: Iterable[str], allowed: AllowList) -> list[str]:
    checked = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        reason = None if allowed.allows_address(address) else refusal_reason(address)
        if reason:
            raise EgressRefused(host, reason, "" if _ip_literal(host) == address else f"resolves to {address}")
        checked.append(str(address))
    if not checked:
        raise EgressRefused(host, "unresolvable")
    return checked


def _resolved(host: str, port: int) -> list[str]:
    try:
        return resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise EgressRefused(host, "unresolvable", type(exc).__name__) from None


def addresses_for(host: str, port: int, settings: Any) -> list[str] | None:
    """The checked addresses to connect to for host:port, or None when the operator allowed the host by
    name (then it is reached as named). Raises EgressRefused."""
    host = _normal_host(host)
    allowed = allow_list(settings)
    if allowed.allows_host(host, port):
        return None
    literal = _ip_literal(host)
    return _checked(host, [str(literal)] if literal else _resolved(host, port), allowed)


async def aaddresses_for(host: str, port: int, settings: Any) -> list[str] | None:
    """``addresses_for`` without blocking the event loop on DNS."""
    host = _normal_host(host)
    allowed = allow_list(settings)
    if allowed.allows_host(host, port):
        return None
    literal = _ip_literal(host)
    if literal:
        return _checked(host, [str(literal)], allowed)
    return _checked(host, await anyio.to_thread.run_sync(_resolved, host, port), allowed)


def check_url(url: str, settings: Any) -> None:
    """Raise EgressRefused unless ``url`` may be called now (configuration time: answer 400 with it)."""
    addresses_for(*_url_target(url), settings)


async def acheck_url(url: str, settings: Any) -> None:
    """``check_url`` for async code (DNS runs in a worker thread)."""
    await aaddresses_for(*_url_target(url), settings)


class _GuardedBackend:
    """A sync httpcore network backend that connects only to addresses the guard checked."""

    def __init__(self, inner: Any, settings: Any, purpose: str, connect_error: type[Exception]) -> None:
        self._inner, self._settings, self._purpose, self._connect_error = inner, settings, purpose, connect_error

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> Any:
        try:
            addresses = addresses_for(host, port, self._settings)
        except EgressRefused as exc:
            EGRESS_REFUSED.labels(self._purpose, exc.reason).inc()
            raise
        last: Exception | None = None
        for address in addresses or [host]:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except self._connect_error as exc:  # try the next checked address
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        EGRESS_REFUSED.labels(self._purpose, "unix_socket").inc()
        raise EgressRefused(path, "unix_socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncGuardedBackend(_GuardedBackend):
    """The async twin of ``_GuardedBackend`` (DNS off the event loop)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        try:
            addresses = await aaddresses_for(host, port, self._settings)
        except EgressRefused as exc:
            EGRESS_REFUSED.labels(self._purpose, exc.reason).inc()
            raise
        last: Exception | None = None
        for address in addresses or [host]:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except self._connect_error as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> Any:
        EGRESS_REFUSED.labels(self._purpose, "unix_socket").inc()
        raise EgressRefused(path, "unix_socket")

    async def sleep(self, seconds: float) -> None:  # type: ignore[override]
        await self._inner.sleep(seconds)


# Client keyword arguments that would route around the guarded transport.
_FORBIDDEN_CLIENT_KW = ("transport", "mounts", "proxy", "proxies", "trust_env", "app")


def _transport(http: ModuleType, core: ModuleType, settings: Any, purpose: str, *, asynchronous: bool,
               verify: Any = True, http2: bool = False, limits: Any = None) -> Any:
    """An httpx(2) transport whose connection pool opens connections only through the guard."""
    cls = http.AsyncHTTPTransport if asynchronous else http.HTTPTransport
    limits = limits or http.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
    transport = cls(verify=verify, http2=http2, limits=limits, trust_env=False)
    pool_cls = core.AsyncConnectionPool if asynchronous else core.ConnectionPool
    backend = (_AsyncGuardedBackend(core.AnyIOBackend(), settings, purpose, core.ConnectError) if asynchronous
               else _GuardedBackend(core.SyncBackend(), settings, purpose, core.ConnectError))
    # httpx has no public knob for the network backend: rebuild its pool with the same options plus ours.
    transport._pool = pool_cls(
        ssl_context=http.create_ssl_context(verify=verify, trust_env=False),
        max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry, http1=True, http2=http2, network_backend=backend)
    return transport


def _client(http: ModuleType, core: ModuleType, settings: Any, purpose: str, timeout: float, asynchronous: bool,
            kw: dict[str, Any]) -> Any:
    bad = [k for k in _FORBIDDEN_CLIENT_KW if k in kw]
    if bad:
        raise TypeError(f"guarded clients choose their own transport; remove {', '.join(bad)}")
    transport_kw = {k: kw.pop(k) for k in ("verify", "http2", "limits") if k in kw}
    transport = _transport(http, core, settings, purpose, asynchronous=asynchronous, **transport_kw)
    cls = http.AsyncClient if asynchronous else http.Client
    return cls(transport=transport, timeout=timeout, trust_env=False, **kw)


def guarded_async_client(settings: Any, *, purpose: str, timeout: float = 30.0, **kw: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection (redirects too) passes the egress guard.

    ``purpose`` labels the refusal counter (e.g. "slack_webhook", "llm_judge"). Other keywords go to
    ``httpx.AsyncClient`` (``verify``, ``http2`` and ``limits`` to its transport); ``transport``,
    ``mounts`` and proxies are refused. A refused call raises ``EgressRefused`` from the request.
    The openai SDK accepts this client as ``http_client=``; the anthropic SDK wants an httpx2 client:
    use ``guarded_sdk_http_client`` for either SDK.
    """
    return _client(httpx, httpcore, settings, purpose, timeout, True, kw)


def guarded_client(settings: Any, *, purpose: str, timeout: float = 30.0, **kw: Any) -> httpx.Client:
    """The synchronous twin of ``guarded_async_client``."""
    return _client(httpx, httpcore, settings, purpose, timeout, False, kw)


def guarded_sdk_http_client(settings: Any, *, purpose: str, timeout: float = 30.0, asynchronous: bool = False,
                            **kw: Any) -> Any:
    """An ``httpx2.Client`` (or ``AsyncClient``) with the guard, for the openai / anthropic SDKs'
    ``http_client=`` (both SDKs are built on httpx2; anthropic accepts nothing else)."""
    import httpcore2
    import httpx2

    return _client(httpx2, httpcore2, settings, purpose, timeout, asynchronous, kw)
