"""Keeping one ingest process responsive under pressure: bytes in flight, and decoding off the loop.

Every request body is counted from its first byte until the bus acknowledged its records (or the
request failed): beyond ``EVALFORGE_INGEST_MAX_INFLIGHT_BYTES`` a new body is refused with 503 and
Retry-After, so a burst of large uploads cannot grow memory without bound. Bodies above
``EVALFORGE_INGEST_THREAD_DECODE_BYTES`` are decompressed, decoded and encoded on a small thread
pool of their own, so ``/readyz`` and small requests keep being served while a 16 MiB body is read;
that pool is separate from asyncio's default one, which health checks and blob I/O use.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Self, TypeVar

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from ingest import metrics

T = TypeVar("T")

_decoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="evalforge-ingest-decode")


class InflightBytes:
    """The bytes of request bodies this process holds; one per process (the event loop is single-threaded)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # 0: no limit
        self.used = 0

    def reservation(self) -> Reservation:
        return Reservation(self)


class Reservation:
    """One request's share of :class:`InflightBytes`; grows as its body arrives, released once."""

    def __init__(self, budget: InflightBytes) -> None:
        self._budget = budget
        self.held = 0

    def grow(self, size: int) -> None:
        """Hold ``size`` more bytes; 503 + Retry-After when the process holds too much already."""
        budget = self._budget
        # A body alone is always let in (max_body_bytes bounds it): a limit below it must not refuse all.
        if budget.limit and budget.used + size > budget.limit and budget.used > self.held:
            raise HTTPException(503, f"ingest is busy ({budget.used} bytes of request bodies in flight); retry later",
                                headers={"Retry-After": "1"})
        budget.used += size
        self.held += size
        metrics.INFLIGHT_BYTES.set(budget.used)

    def release(self) -> None:
        self._budget.used -= self.held
        self.held = 0
        metrics.INFLIGHT_BYTES.set(self._budget.used)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def inflight(services) -> InflightBytes:
    budget = services.extras.get("ingest_inflight")
    if budget is None:
        budget = services.extras["ingest_inflight"] = InflightBytes(services.settings.ingest_max_inflight_bytes)
    return budget


class ClientGone(Exception):
    """The client disconnected before its body was complete; there is nobody to answer."""


async def read_raw_body(request: Request, max_bytes: int, held: Reservation) -> bytes:
    """The body as sent (still compressed), counted in ``held``; 413 beyond ``max_bytes``.

    Raises :class:`ClientGone` when the client hangs up mid-upload.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and len(declared) < 20:
        if int(declared) > max_bytes:
            raise HTTPException(413, f"body of {declared} bytes exceeds the limit of {max_bytes} bytes")
        held.grow(int(declared))  # refuse before reading anything when the process is full
        counted = int(declared)
    else:
        counted = 0
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise HTTPException(413, f"body exceeds the limit of {max_bytes} bytes")
            if size > counted:
                held.grow(size - counted)
                counted = size
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone() from None
    return b"".join(chunks)


def content_encoding(request: Request) -> str:
    """The body's Content-Encoding, checked before reading it: 415 for one we cannot undo."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return "identity"
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise HTTPException(415, f"unsupported Content-Encoding {encoding!r} (use gzip, deflate or none)")
    return encoding


def decompress(raw: bytes, encoding: str, max_bytes: int) -> bytes:
    """Undo gzip / deflate (blocking: call through :func:`off_loop`); 413 beyond ``max_bytes``, 400 if corrupt."""
    if encoding == "identity":
        return raw
    decomp = zlib.decompressobj(wbits=15 if encoding == "deflate" else 31)
    try:
        out = decomp.decompress(raw, max_bytes + 1)
        if len(out) > max_bytes or decomp.unconsumed_tail:
            raise HTTPException(413, f"decompressed body exceeds the limit of {max_bytes} bytes")
        out += decomp.flush()
    except zlib.error as exc:
        raise HTTPException(400, f"body: invalid {encoding} data: {exc}") from None
    if len(out) > max_bytes:
        raise HTTPException(413, f"decompressed body exceeds the limit of {max_bytes} bytes")
    return out


async def off_loop(size: int, threshold: int, fn: Callable[[], T]) -> T:
    """``fn()`` inline for a small body (a thread hop costs more than it saves), else on the decode pool."""
    if size < threshold:
        return fn()
    return await asyncio.get_running_loop().run_in_executor(_decoders, fn)
