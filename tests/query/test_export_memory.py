"""An export with payloads streams in bounded memory: many large offloaded outputs are fetched and
encoded a slice at a time, never a whole chunk (or the whole export) at once."""

from __future__ import annotations

import io
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from query_api.export import export_stream
from query_api.filters import Filters

SPANS = 256
PAYLOAD_BYTES = 256 * 1024  # each output far above the offload threshold: kept in the blob store


def test_export_with_large_offloaded_payloads_stays_in_bounded_memory(stack):
    project = f"p-{uuid.uuid4().hex[:10]}"
    start = datetime.now(UTC) - timedelta(hours=1)
    outputs = {}
    records = []
    for i in range(SPANS):
        span_id = f"{i:016x}"
        outputs[span_id] = (f"{i:06d}" * (PAYLOAD_BYTES // 6 + 1))[:PAYLOAD_BYTES]
        records.append({"project_id": project, "trace_id": uuid.uuid4().hex, "span_id": span_id, "name": "chat",
                        "kind": "llm", "status": "ok", "model": "gpt-4o", "provider": "openai",
                        "start_time": start + timedelta(milliseconds=i), "end_time": start + timedelta(milliseconds=i + 5),
                        "ingested_at": datetime.now(UTC), "input": "short question",
                        "output": outputs[span_id]})
    stack.insert_spans(records)
    total_payload = SPANS * PAYLOAD_BYTES  # 64 MiB

    tracemalloc.start()
    try:
        exported, chunks, received = {}, 0, 0
        for chunk in export_stream(stack.clickhouse, stack.services.blobs, project, Filters(), fmt="jsonl",
                                   payloads=True, limit=10_000):
            chunks += 1
            received += len(chunk)
            for line in io.BytesIO(chunk):  # checked and dropped as they come, like a client would
                row = orjson.loads(line)
                exported[row["span_id"]] = len(row["output"]) == PAYLOAD_BYTES and row["output"] == outputs[row["span_id"]]
            del chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    print(f"export with payloads: peak {peak / 2**20:.1f} MiB traced for {total_payload / 2**20:.0f} MiB "
          f"of offloaded payloads in {chunks} chunks")
    assert len(exported) == SPANS and all(exported.values())  # every payload, complete, from the blob store
    assert received > total_payload and chunks > 4
    # the payloads of one slice (~2 MiB) and their encodings, not the 64 MiB of the export
    assert peak < 0.3 * total_payload, f"peak {peak / 2**20:.1f} MiB for {total_payload / 2**20:.0f} MiB of payloads"
