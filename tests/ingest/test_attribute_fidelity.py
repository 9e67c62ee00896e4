"""An OTLP stringValue stays the string it was, on both ingest paths and in the trace detail API:
"9.10" is not 9.1, a 23-digit id is not a float, "false" is not a boolean. Only JSON objects and
arrays come back structured."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from ingest import native
from query_api.traces_sql import attribute_value
from tests.ingest.test_native import native_messages, python_messages

STRINGS = {"version": "9.10", "order_id": "12345678901234567890123", "flag": "false", "nothing": "null",
           "padded": " 42", "quoted": '"x"', "meta": '{"a": [1, 2]}', "list": "[1, 2]"}


def _body() -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(range(1, 17)), bytes(range(1, 9)), "step"
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_001_000_000_000
    for key, value in STRINGS.items():
        span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    span.attributes.append(KeyValue(key="count", value=AnyValue(int_value=3)))
    return request.SerializeToString()


def _attributes(messages) -> dict:
    [(_, data)] = messages
    return orjson.loads(data)["attributes"]


def test_python_path_keeps_strings():
    messages, rejected = python_messages(_body())
    assert rejected == 0
    stored = _attributes(messages)
    assert {k: stored[k] for k in STRINGS} == STRINGS


@pytest.mark.skipif(not native.AVAILABLE, reason="native extension not built")
def test_native_path_keeps_strings_byte_for_byte():
    body = _body()
    got = native_messages(body)
    assert got is not None
    assert got == python_messages(body)[0]
    stored = _attributes(got)
    assert {k: stored[k] for k in STRINGS} == STRINGS


def test_query_shows_scalars_as_text_and_parses_only_objects_and_arrays():
    shown = {k: attribute_value(v) for k, v in {**STRINGS, "count": "3"}.items()}
    assert shown == {**STRINGS, "meta": {"a": [1, 2]}, "list": [1, 2], "count": "3"}
    assert attribute_value("{not json") == "{not json"
