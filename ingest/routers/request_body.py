"""The body of a drop-in request (Langfuse scores, OTLP metrics / logs): decompressed, under the
ingest limits (413 above ``EVALFORGE_MAX_BODY_BYTES``, 415 for an unknown Content-Encoding, 400
for a corrupt one, 503 beyond the bytes-in-flight cap). One function, so the drop-in routes read
bodies exactly as the ingest routes do (``ingest.admission``)."""

from __future__ import annotations

from fastapi import HTTPException, Request

from core.services import Services
from ingest.admission import ClientGone, content_encoding, decompress, inflight, off_loop, read_raw_body


async def drop_in_body(request: Request, services: Services) -> bytes:
    max_bytes = services.settings.max_body_bytes
    encoding = content_encoding(request)
    try:
        with inflight(services).reservation() as held:
            raw = await read_raw_body(request, max_bytes, held)
            return await off_loop(len(raw), services.settings.ingest_thread_decode_bytes,
                                  lambda: decompress(raw, encoding, max_bytes))
    except ClientGone:
        raise HTTPException(400, "body: the client disconnected before it was complete") from None
