"""The processor's native path (bus record -> enriched row of a Native block, ``native/src/processor.rs``)
against the Python path (``core.span.decode`` + ``enrich`` + ``offload_payloads``), the reference: the
same block byte for byte for every record it takes, and the records it must leave to Python declined."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from bench._common import build_request, canonical_records
from core.pricing import override_entry
from core.span import decode, encode
from stream_processors import sink as sink_module
from stream_processors.worker import enrich_row, price_resolver
from tests.conftest import report

from .conftest import make_span

_native = sink_module._native
SOURCE = "test:native"


class Overrides:
    """What the worker's PriceOverrides hands enrichment: a project's override entries."""

    def __init__(self, by_project: dict[str, list[dict]]):
        self.by_project = by_project

    def get(self, project_id: str):
        return self.by_project.get(project_id)


def _python_block(values: list[bytes], prices=None, blobs=None, offload_bytes: int = 32 * 1024) -> bytes:
    block = _native.SpanBlock(sink_module._ROW_TYPES, SOURCE)
    for i, value in enumerate(values):
        block.add_dict(enrich_row(decode(value), prices, blobs, offload_bytes), 3, i)
    return block.block()


def _native_block(values: list[bytes], prices=None, offload_bytes: int | None = None):
    block = _native.SpanBlock(sink_module._ROW_TYPES, SOURCE)
    pricer = _native.Pricer(price_resolver(prices))
    keys = [block.add_record(v, 3, i, pricer, offload_bytes, None) for i, v in enumerate(values)]
    return keys, block.block()


def _value(**fields) -> bytes:
    return encode(make_span(uuid.uuid4().hex[:8], 7, **fields))


def _raw(**changes) -> bytes:
    """A record with raw JSON values (as a producer other than ours could write them)."""
    rec = orjson.loads(_value())
    rec.update(changes)
    return orjson.dumps(rec)


def test_the_native_path_is_built_and_on():
    assert _native is not None  # scripts/bootstrap builds native/
    assert _native.SpanBlock(sink_module._ROW_TYPES, SOURCE).fast
    assert not _native.SpanBlock(sink_module._ROW_TYPES[:-1], SOURCE).fast  # a column it does not know: off


def test_bench_records_give_the_python_paths_block_byte_for_byte():
    values = [v for seed in range(4) for _, v in canonical_records(build_request(512, seed=seed).SerializeToString(), "proj")]
    keys, block = _native_block(values)
    declined = sum(k is None for k in keys)
    taken = [v for v, k in zip(values, keys) if k is not None]
    assert declined < len(values) * 0.1  # the fast path takes the common case
    assert block == _python_block(taken)
    for value, key in zip(values, keys):
        if key is not None:
            span = decode(value)
            epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
            micros = [(span[c] - epoch) // timedelta(microseconds=1) for c in ("ingested_at", "start_time")]
            assert key == (span["project_id"], span["trace_id"], span["span_id"], *micros)


ACCEPTED = {
    "plain": dict(),
    "openai cached input and reasoning, dated snapshot": dict(
        model="gpt-4o-2024-08-06", input_tokens=12_000, cache_read_tokens=4_000, output_tokens=900, reasoning_tokens=300),
    "anthropic cache read, 5m and 1h writes, long-context tier": dict(
        provider="anthropic", model="claude-sonnet-4-20250514", request_model="claude-sonnet-4", input_tokens=250_000,
        cache_read_tokens=100_000, cache_creation_tokens=50_000, output_tokens=2_000,
        attributes={"gen_ai.usage.cache_creation.1h_input_tokens": "20000"}),
    "unknown model": dict(model="acme-9000", request_model="acme-9000"),
    "deployment name priced as requested": dict(model="my-prod-deployment", request_model="gpt-4o"),
    "user cost wins": dict(cost=0.123456789, cost_source="user"),
    "user cost without a model": dict(model="", request_model="", cost=2.5, cost_source="user"),
    "no model, tokens": dict(model="", request_model="", kind="chain"),
    "no tokens, no text": dict(input_tokens=0, output_tokens=0, input="", output=""),
    "error with its class": dict(status="error", error_type="RateLimitError", error_class="rate_limit"),
    "ttft and a throughput": dict(ttft_ms=120.5),
    "ttft longer than the call": dict(ttft_ms=10_000.0),
    "throughput kept when no output": dict(output_tokens=0, tokens_per_second=12.5),
    "total tokens given": dict(total_tokens=99_999),
    "end before start": dict(end_time=make_span("x", 7)["start_time"].replace(year=2025)),
    "unicode, escapes and long previews": dict(
        input="é\"\\\n\t\u2028" + "😀" * 300, output="日本語" * 100, tags=["a\"b", "ü", ""],
        attributes={"k\"ey": "v\nal", "emoji😀": "ok", "gen_ai.request.temperature": "0.7"}),
    "previews already set": dict(input_preview="given", output_preview="given too"),
    "offloaded already": dict(input="", input_ref="p/t/s/input", input_preview="short"),
    "expensive model, cost still below 2**53 units": dict(model="o1-pro", input_tokens=20_000, output_tokens=5_000),
}


@pytest.mark.parametrize("fields", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_records_the_native_path_takes_match_the_python_path(fields):
    value = _value(**fields)
    keys, block = _native_block([value])
    assert keys[0] is not None
    assert block == _python_block([value])


def test_raw_json_forms_the_native_path_takes():
    for value in (
        _raw(start_time="2026-11-20T12:00:03.253Z", end_time="2026-11-20T12:00:04+00:00"),  # 3-digit fraction, offset 0
        _raw(duration_ms=5, ttft_ms=3),  # integers where floats are expected
    ):
        keys, block = _native_block([value])
        assert keys[0] is not None, value
        assert block == _python_block([value])


def test_project_overrides_price_the_native_path_too():
    project = "proj-override"
    prices = Overrides({project: [override_entry("openai", "gpt-4o", {"input": 2, "cache_read": 0.5, "output": 8,
                                                                         "reasoning": 12})]})
    values = [encode(make_span(p, 1, model="gpt-4o-2024-11-20", input_tokens=1_000, cache_read_tokens=200,
                               output_tokens=500, reasoning_tokens=100)) for p in (project, "other")]
    keys, block = _native_block(values, prices)
    assert None not in keys
    assert block == _python_block(values, prices)
    assert block != _python_block(values)  # the override did change the cost


DECLINED = {
    "model call without usage (tokenizer)": _value(input_tokens=0, output_tokens=0, input="count me"),
    "error without a class (classifier)": _value(status="error", error_type="TimeoutError"),
    "payload to offload": _value(input="x" * 40_000),
    "time with another offset": _raw(start_time="2026-11-20T13:00:03+01:00"),
    "time without a zone": _raw(start_time="2026-11-20T12:00:03"),
    "no ingest time": _raw(ingested_at=None),
    "token count over UInt32": _raw(input_tokens=2**32),
    "wrong type in a String column": _raw(session_id=12345),
    "a column missing": orjson.dumps({k: v for k, v in orjson.loads(_value()).items() if k != "events"}),
    "repeated attribute key": _value().replace(b'"attributes":{}', b'"attributes":{"a":"1","a":"2"}'),
    "1h cache writes Python's int() must read": _value(attributes={"gen_ai.usage.cache_creation.1h_input_tokens": "12.0"}),
    "cost not exact as a float division": _value(model="o1-pro", input_tokens=4_000_000_000, output_tokens=0),
    "no span id": _raw(span_id=""),
    "not JSON": b"{not json",
    "a key it does not know (unchecked by serde)": _raw(extra_key={"nested": [1, 2]}),
    "a lone surrogate in an unknown key": _value()[:-1] + b',"x":"\\ud800"}',
}


@pytest.mark.parametrize("value", DECLINED.values(), ids=DECLINED.keys())
def test_records_it_cannot_do_exactly_are_left_to_python(value):
    block = _native.SpanBlock(sink_module._ROW_TYPES, SOURCE)
    pricer = _native.Pricer(price_resolver(None))
    assert block.add_record(value, 0, 1, pricer, 32 * 1024, None) is None
    assert len(block) == 0


def test_projects_a_hook_needs_as_dicts_are_left_to_python_and_rows_mix_in_one_block():
    mine, other = _value(), _value()
    project = orjson.loads(mine)["project_id"]
    block = _native.SpanBlock(sink_module._ROW_TYPES, SOURCE)
    pricer = _native.Pricer(price_resolver(None))
    assert block.add_record(mine, 3, 0, pricer, None, frozenset({project})) is None
    block.add_dict(enrich_row(decode(mine), None, None, 32 * 1024), 3, 0)
    assert block.add_record(other, 3, 1, pricer, None, frozenset({project})) is not None
    assert len(block) == 2
    assert block.block() == _python_block([mine, other])


def test_native_record_path_takes_most_plain_records_exactly():
    """Random plain OTLP requests through ingest's Python path give bus records; the processor's native
    path must take at least 80 % of those records, each row byte for byte the Python path's."""
    from hypothesis import HealthCheck, given, settings

    from tests.ingest.test_native import requests

    seen = {"records": 0, "native": 0}

    @settings(max_examples=400, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(requests(wild=False))
    def run(body: bytes) -> None:
        values = [v for _, v in canonical_records(body, "proj")]
        keys, block = _native_block(values)
        taken = [(offset, v) for offset, (v, k) in enumerate(zip(values, keys)) if k is not None]
        seen["records"] += len(values)
        seen["native"] += len(taken)
        reference = _native.SpanBlock(sink_module._ROW_TYPES, SOURCE)
        for offset, value in taken:
            reference.add_dict(enrich_row(decode(value), None, None, 32 * 1024), 3, offset)
        assert block == reference.block()

    run()
    rate = seen["native"] / seen["records"]
    report(f"native record path took {seen['native']} of {seen['records']} plain bus records ({rate:.0%})")
    assert rate >= 0.8, f"native record path took only {rate:.0%} of plain records"
