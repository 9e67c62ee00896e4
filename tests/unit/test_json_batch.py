"""ingest.json_batch: the documented JSON span batch and score payloads."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.span import COLUMNS
from ingest.json_batch import BatchError, decode_span_batch, validate_score

TRACE = "5b8efff798038103d269b633813fc60c"
SCORES_SQL = Path(__file__).resolve().parents[2] / "infra" / "clickhouse" / "0002_scores.sql"


def good_span(**overrides) -> dict:
    span = {
        "trace_id": TRACE, "span_id": "eee19b7ec3c1b174", "name": "chat",
        "start_time": "2025-01-01T12:00:00.100Z", "end_time": "2025-01-01T12:00:01.350Z",
    }
    span.update(overrides)
    return span


def test_full_span_maps_every_documented_field():
    span = good_span(
        parent_span_id="EEE19B7EC3C1B173", kind="llm", status="error", status_message="429",
        error_type="RateLimitError", model="claude-3-5-sonnet", provider="Anthropic", operation="chat",
        input=[{"role": "user", "content": "hi"}], output="hello",
        usage={"input_tokens": 1300, "output_tokens": 40, "cache_read_tokens": 1000,
               "cache_creation_tokens": 200, "reasoning_tokens": 10},
        cost=0.0042, ttft_ms=310.5, session_id="s1", user_id="u1", environment="prod", release="1.4.0",
        prompt_name="support", prompt_version="3", service_name="bot", tags=["vip", "beta"],
        metadata={"tenant": "acme", "n": 2}, attributes={"gen_ai.request.temperature": 0.1, "custom": "x"},
    )
    records, rejected = decode_span_batch({"spans": [span]}, "proj")
    assert rejected == []
    rec = records[0]
    assert list(rec) == list(COLUMNS)
    assert (rec["trace_id"], rec["parent_span_id"]) == (TRACE, "eee19b7ec3c1b173")
    assert rec["start_time"] == datetime(2025, 1, 1, 12, 0, 0, 100000, tzinfo=timezone.utc)
    assert rec["duration_ms"] == 1250.0
    assert (rec["kind"], rec["status"], rec["status_message"], rec["error_type"]) == (
        "llm", "error", "429", "RateLimitError")
    assert (rec["model"], rec["request_model"], rec["provider"], rec["operation"]) == (
        "claude-3-5-sonnet", "claude-3-5-sonnet", "anthropic", "chat")
    assert json.loads(rec["input"]) == [{"role": "user", "content": "hi"}] and rec["output"] == "hello"
    assert (rec["input_tokens"], rec["output_tokens"], rec["total_tokens"]) == (1300, 40, 1340)
    assert (rec["cache_read_tokens"], rec["cache_creation_tokens"], rec["reasoning_tokens"]) == (1000, 200, 10)
    assert (rec["cost"], rec["cost_source"], rec["ttft_ms"]) == (0.0042, "user", 310.5)
    assert (rec["session_id"], rec["user_id"], rec["environment"], rec["release"]) == ("s1", "u1", "prod", "1.4.0")
    assert (rec["prompt_name"], rec["prompt_version"], rec["service_name"]) == ("support", "3", "bot")
    assert rec["tags"] == ["vip", "beta"]
    attrs = rec["attributes"]
    assert attrs["metadata.tenant"] == "acme" and attrs["metadata.n"] == "2"
    assert attrs["gen_ai.request.temperature"] == "0.1" and attrs["custom"] == "x"


def test_unix_nanoseconds_and_minimal_span():
    records, rejected = decode_span_batch(
        {"spans": [good_span(start_time=1_735_732_800_000_000_000, end_time="1735732800002000000")]}, "p")
    assert rejected == []
    rec = records[0]
    assert rec["duration_ms"] == 2.0
    assert (rec["kind"], rec["status"], rec["cost"], rec["input"]) == ("span", "unset", None, "")


def test_attributes_use_the_otel_conventions_and_typed_fields_win():
    span = good_span(session_id="typed", attributes={
        "session.id": "from-attributes", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 7,
        "openinference.span.kind": "RETRIEVER"})
    rec = decode_span_batch({"spans": [span]}, "p")[0][0]
    assert rec["session_id"] == "typed" and rec["attributes"]["session.id"] == "from-attributes"
    assert (rec["request_model"], rec["input_tokens"], rec["kind"]) == ("gpt-4o", 7, "retriever")


def test_anthropic_style_usage_is_made_inclusive():
    rec = decode_span_batch({"spans": [good_span(provider="anthropic", usage={
        "input_tokens": 5, "output_tokens": 9, "cache_read_tokens": 4000})]}, "p")[0][0]
    assert rec["input_tokens"] == 4005


def test_mixed_batch_rejects_bad_spans_by_index_and_field():
    spans = [
        good_span(),
        good_span(trace_id="0" * 32),
        {k: v for k, v in good_span().items() if k != "name"},
        good_span(end_time="2025-01-01T11:00:00Z"),
        good_span(usage={"input_tokens": -1}),
        good_span(start_time=1_735_732_800),  # seconds, not nanoseconds
        good_span(start_time="yesterday"),
        good_span(kind="banana"),
        good_span(span_id="xyz"),
        "nope",
        good_span(span_id="eee19b7ec3c1b175"),
    ]
    records, rejected = decode_span_batch({"spans": spans}, "p")
    assert len(records) == 2
    assert [(r.index, r.field) for r in rejected] == [
        (1, "trace_id"), (2, "name"), (3, "end_time"), (4, "usage.input_tokens"), (5, "start_time"),
        (6, "start_time"), (7, "kind"), (8, "span_id"), (9, "span")]
    assert all(r.message for r in rejected)
    assert rejected[0].as_dict()["field"] == "trace_id"


@pytest.mark.parametrize("payload, field", [([], "body"), ({}, "spans"), ({"spans": {}}, "spans")])
def test_unusable_batch_body(payload, field):
    with pytest.raises(BatchError) as info:
        decode_span_batch(payload, "p")
    assert info.value.field == field


def test_batch_speed_is_measured():
    spans = [good_span(span_id=f"{i + 1:016x}", model="gpt-4o", provider="openai", input="hi", output="yo",
                       usage={"input_tokens": 10, "output_tokens": 5}, session_id="s", tags=["a"])
             for i in range(2000)]
    start = time.perf_counter()
    records, rejected = decode_span_batch({"spans": spans}, "p")
    per_span_us = (time.perf_counter() - start) / len(spans) * 1e6
    assert len(records) == 2000 and not rejected
    print(f"json batch: {per_span_us:.1f} us/span")
    assert per_span_us < 1000  # generous: catches a pathological slowdown, not machine noise


# --- scores ---------------------------------------------------------------------------------------

def _score_columns() -> list[str]:
    body = SCORES_SQL.read_text().split("(", 1)[1]
    return [m.group(1) for m in re.finditer(r"^\s+([a-z_]+)\s+[A-Z]", body, re.M)]


NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def test_score_row_matches_the_scores_table():
    row = validate_score({"name": "helpfulness", "value": 0.8, "trace_id": TRACE.upper(),
                          "span_id": "eee19b7ec3c1b174", "comment": "good", "id": "fb-1"}, "proj", now=NOW)
    assert sorted(row) == sorted(_score_columns())
    assert row == {"project_id": "proj", "score_id": "fb-1", "trace_id": TRACE, "span_id": "eee19b7ec3c1b174",
                   "name": "helpfulness", "data_type": "numeric", "value": 0.8, "string_value": "",
                   "comment": "good", "source": "api", "evaluator": "", "evaluator_version": "", "timestamp": NOW}


@pytest.mark.parametrize("payload, data_type, value, string_value", [
    ({"value": True}, "boolean", 1.0, ""),
    ({"value": False}, "boolean", 0.0, ""),
    ({"value": 3}, "numeric", 3.0, ""),
    ({"value": "positive"}, "categorical", None, "positive"),
    ({"value": 1, "data_type": "boolean"}, "boolean", 1.0, ""),
    ({"value": "false", "data_type": "boolean"}, "boolean", 0.0, ""),
    ({"value": 4, "data_type": "categorical"}, "categorical", None, "4"),
])
def test_score_data_type_inference(payload, data_type, value, string_value):
    row = validate_score({"name": "s", "trace_id": TRACE, **payload}, "p")
    assert (row["data_type"], row["value"], row["string_value"]) == (data_type, value, string_value)
    assert re.fullmatch(r"[0-9a-f]{32}", row["score_id"]) and row["source"] == "api"


@pytest.mark.parametrize("payload, field", [
    ({"value": 1, "trace_id": TRACE}, "name"),
    ({"name": " ", "value": 1, "trace_id": TRACE}, "name"),
    ({"name": "s", "trace_id": TRACE}, "value"),
    ({"name": "s", "value": [1], "trace_id": TRACE}, "value"),
    ({"name": "s", "value": float("nan"), "trace_id": TRACE}, "value"),
    ({"name": "s", "value": 10**400, "trace_id": TRACE}, "value"),
    ({"name": "s", "value": "high", "data_type": "numeric", "trace_id": TRACE}, "value"),
    ({"name": "s", "value": 2, "data_type": "boolean", "trace_id": TRACE}, "value"),
    ({"name": "s", "value": 1, "data_type": "percent", "trace_id": TRACE}, "data_type"),
    ({"name": "s", "value": 1}, "trace_id"),
    ({"name": "s", "value": 1, "trace_id": "0" * 32}, "trace_id"),
    ({"name": "s", "value": 1, "trace_id": TRACE, "span_id": "123"}, "span_id"),
    ({"name": "s", "value": 1, "trace_id": TRACE, "source": "robot"}, "source"),
    ({"name": "s", "value": 1, "trace_id": TRACE, "comment": 5}, "comment"),
    ({"name": "s", "value": 1, "trace_id": TRACE, "id": "x" * 200}, "id"),
])
def test_bad_scores_name_the_field(payload, field):
    with pytest.raises(BatchError) as info:
        validate_score(payload, "p")
    assert info.value.field == field


def test_score_source_and_given_id_collapse_resends():
    a = validate_score({"name": "thumbs", "value": True, "trace_id": TRACE, "source": "human", "id": "k"}, "p")
    b = validate_score({"name": "thumbs", "value": False, "trace_id": TRACE, "source": "human", "id": "k"}, "p")
    assert a["score_id"] == b["score_id"] == "k" and a["source"] == "human"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=30,
)
span_keys = st.sampled_from(["trace_id", "span_id", "parent_span_id", "name", "kind", "start_time", "end_time",
                             "status", "model", "usage", "cost", "tags", "metadata", "attributes", "input"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.lists(st.dictionaries(span_keys, json_values, max_size=8), max_size=3))
def test_fuzz_batches_only_raise_batch_error(payload, spans):
    for body in (payload, {"spans": spans}, {"spans": [dict(good_span(), **s) for s in spans]}):
        try:
            records, rejected = decode_span_batch(body, "p")
        except BatchError:
            continue
        assert len(records) + len(rejected) == len(body["spans"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.dictionaries(st.sampled_from(["name", "value", "data_type", "trace_id", "span_id",
                                                     "comment", "source", "id"]), json_values))
def test_fuzz_scores_only_raise_batch_error(payload, fields):
    for body in (payload, fields, {"name": "n", "value": 1, "trace_id": TRACE, **fields}):
        try:
            validate_score(body, "p")
        except BatchError:
            pass
