"""``GET /api/v1/export``: spans matching the filters as Parquet, CSV or JSONL, streamed.

Rows are read in key order in chunks (keyset pagination on start_time, trace_id, span_id) rather
than one long-lived result stream, so an export holds no connection open between chunks and never
blocks other requests on the shared (embedded) client. Each chunk goes through polars (CSV/JSONL)
or a pyarrow ParquetWriter whose bytes are handed out as soon as a row group is written.

With payloads, memory stays bounded however large the offloaded inputs / outputs are: chunks are
smaller, and within a chunk rows are encoded in slices whose fetched payloads add up to about
``PAYLOAD_SLICE_BYTES`` (one payload larger than that is a slice of its own).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from query_api.filters import READ_SETTINGS, Binder, Filters, span_conditions

FORMATS = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8",
           "jsonl": "application/x-ndjson"}
BASE_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name", "start_time", "end_time",
    "duration_ms", "status", "status_message", "error_type", "error_class", "operation", "provider",
    "request_model", "model", "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
    "reasoning_tokens", "total_tokens", "tokens_estimated", "cost", "cost_source", "ttft_ms",
    "tokens_per_second", "session_id", "user_id", "environment", "release", "tags", "prompt_name",
    "prompt_version", "input_preview", "output_preview",
)
PAYLOAD_COLUMNS = ("input", "output", "input_ref", "output_ref", "toJSONString(attributes) AS attributes", "events")
CHUNK_ROWS = 50_000
PAYLOAD_CHUNK_ROWS = 1_000  # rows carry inline payloads (up to the offload threshold each) and attributes
PAYLOAD_SLICE_BYTES = 2 * 1024 * 1024  # offloaded payload bytes fetched before a slice is encoded


def _chunks(client, project_id: str, f: Filters, payloads: bool, limit: int) -> Iterator[pa.Table]:
    cols = list(BASE_COLUMNS) + (list(PAYLOAD_COLUMNS) if payloads else [])
    # project_id first: the caller's own id, so the file says whose data it is
    select = ", ".join(["project_id", *cols, "toUnixTimestamp64Micro(start_time) AS _k"])
    after: tuple[int, str, str] | None = None
    sent = 0
    while sent < limit:
        b = Binder()
        where = span_conditions(f, b, project_id=project_id)
        if after:
            k = f"fromUnixTimestamp64Micro({b.bind(after[0], 'Int64')}, 'UTC')"
            where.append(f"start_time >= {k}")
            where.append(f"(start_time, trace_id, span_id) > ({k}, {b.bind(after[1], 'String')}, "
                         f"{b.bind(after[2], 'String')})")
        n = min(PAYLOAD_CHUNK_ROWS if payloads else CHUNK_ROWS, limit - sent)
        sql = (f"SELECT {select} FROM spans FINAL WHERE {' AND '.join(where)} "
               f"ORDER BY toStartOfHour(start_time), start_time, trace_id, span_id LIMIT {n}")
        table = client.query_arrow(sql, parameters=b.params, settings=READ_SETTINGS, use_strings=True)
        if table.num_rows == 0:
            return
        last = table.slice(table.num_rows - 1).to_pylist()[0]
        after = (last["_k"], last["trace_id"], last["span_id"])
        sent += table.num_rows
        yield table.drop_columns(["_k"])
        if table.num_rows < n:
            return


def _payload_slices(df: pl.DataFrame, blobs) -> Iterator[pl.DataFrame]:
    """``df`` in row slices with offloaded input / output filled from the blob store (the row keeps
    only the key); a slice ends once its fetched payloads reach PAYLOAD_SLICE_BYTES."""
    if blobs is None or not (any(df["input_ref"].to_list()) or any(df["output_ref"].to_list())):
        yield df
        return
    refs = {field: df[f"{field}_ref"].to_list() for field in ("input", "output")}
    start, fetched = 0, 0
    texts: dict[str, list[str | None]] = {"input": [], "output": []}
    for i in range(df.height):
        for field in ("input", "output"):
            ref = refs[field][i]
            text = None
            if ref:
                try:
                    text = blobs.get(ref).decode("utf-8", "replace")
                    fetched += len(text)
                except Exception:  # one missing blob must not abort a whole export
                    text = None
            texts[field].append(text)
        if fetched >= PAYLOAD_SLICE_BYTES or i == df.height - 1:
            part = df.slice(start, i + 1 - start)
            updates = {}
            for field in ("input", "output"):
                inline = part[field].to_list()
                filled = [t if r else v for t, r, v in zip(texts[field], refs[field][start:i + 1], inline)]
                updates[field] = pl.Series(field, filled, dtype=pl.String)
                del filled
            # the texts now live in the frame: drop the Python copies before the caller encodes it
            start, fetched = i + 1, 0
            texts = {"input": [], "output": []}
            yield part.with_columns(**updates)


class _Drain(io.RawIOBase):
    """Write-only file collecting what ParquetWriter writes, handed out by ``take``."""

    def __init__(self):
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def export_stream(client, blobs, project_id: str, f: Filters, *, fmt: str, payloads: bool,
                  limit: int) -> Iterator[bytes]:
    """Encoded bytes of the export, produced chunk by chunk (a sync generator for StreamingResponse)."""
    writer = None
    drain = _Drain()
    first = True
    for table in _chunks(client, project_id, f, payloads, limit):
        chunk = pl.from_arrow(table)
        for df in _payload_slices(chunk, blobs) if payloads else (chunk,):
            if fmt == "csv":
                df = df.with_columns(pl.col("tags").list.join(","))
                yield df.write_csv(include_header=first).encode()
            elif fmt == "jsonl":
                yield df.write_ndjson().encode()
            else:
                arrow = df.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(drain, arrow.schema, compression="zstd")
                writer.write_table(arrow)
                yield drain.take()
            first = False
    if fmt == "parquet":
        if writer is None:  # no rows: still a valid (empty) Parquet file with the columns
            empty = pl.DataFrame({"project_id": [], "trace_id": [], "span_id": []},
                                 schema={"project_id": pl.String, "trace_id": pl.String, "span_id": pl.String})
            writer = pq.ParquetWriter(drain, empty.to_arrow().schema)
        writer.close()
        yield drain.take()
