"""Large payloads go to the blob store; the span row keeps a pointer and a short preview."""

from __future__ import annotations

from typing import Any

from core.blobs import BlobStore

PREVIEW_CHARS = 200
PAYLOAD_FIELDS = ("input", "output")


def blob_key(span: dict[str, Any], field: str) -> str:
    return f"{span['project_id']}/{span['trace_id']}/{span['span_id']}/{field}"


def offload_payloads(span: dict[str, Any], blobs: BlobStore | None, threshold: int) -> int:
    """Fill previews and move oversized input/output to ``blobs``; returns the bytes moved.

    Idempotent: a span already offloaded (its ``*_ref`` set) is left alone, and the key is derived from
    the span's identity, so a retried write overwrites the same object.
    """
    moved = 0
    for field in PAYLOAD_FIELDS:
        text = span.get(field) or ""
        if not span.get(f"{field}_preview"):
            span[f"{field}_preview"] = text[:PREVIEW_CHARS]
        if blobs is None or span.get(f"{field}_ref"):
            continue
        data = text.encode()
        if len(data) > threshold:
            key = blob_key(span, field)
            blobs.put(key, data)
            span[f"{field}_ref"] = key
            span[field] = ""
            moved += len(data)
    return moved
