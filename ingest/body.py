"""Reading request bodies under a size limit, gzip/deflate included."""

from __future__ import annotations

import zlib

from fastapi import HTTPException, Request


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The decompressed body; 413 when it (or its decompressed form) exceeds ``max_bytes``, 400 when
    the compressed stream is corrupt, 415 for an unknown Content-Encoding."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body of {declared} bytes exceeds the limit of {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise HTTPException(415, f"unsupported Content-Encoding {encoding!r} (use gzip, deflate or none)")
    wbits = 31 if encoding != "deflate" else 15
    decomp = zlib.decompressobj(wbits=wbits)
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
