"""The body of a drop-in request (Langfuse scores, OTLP metrics / logs): decompressed, under the
ingest limits (413 above ``EVALFORGE_MAX_BODY_BYTES``, 415 for an unknown Content-Encoding, 400
for a corrupt one). One function, so the drop-in routes read bodies exactly as the ingest routes do."""

from __future__ import annotations

from fastapi import Request

from core.services import Services
from ingest.body import read_body


async def drop_in_body(request: Request, services: Services) -> bytes:
    return await read_body(request, services.settings.max_body_bytes)
