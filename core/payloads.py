"""Large payloads go to the blob store; the span row keeps a pointer and a short preview."""

from __future__ import annotations

from typing import Any

from core.blobs import BlobStore
from core.span_schema import PREVIEW_CHARS

PAYLOAD_FIELDS = ("input", "output")


class BlobStoreUnavailable(Exception):
    """The blob store failed a write (unreachable, refusing, bucket gone): the record is fine, the write
    is to be retried; never a reason to dead-letter a span."""


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
            try:
                blobs.put(key, data)
            except ValueError:
                raise  # a key the store refuses (an id escaping it): the record is bad
            except Exception as exc:
                raise BlobStoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
            span[f"{field}_ref"] = key
            span[field] = ""
            moved += len(data)
    return moved
