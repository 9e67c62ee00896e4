"""The processor's native record path on spans with as many attributes as ingest lets through (10,000):
repeated keys are found by a set past a few dozen keys (a scan was quadratic), with the same outcome
as the scan: the same block as the Python path, or the record declined when a key repeats."""

from __future__ import annotations

import orjson
import pytest

from .test_native_records import _native_block, _python_block, _value


def _with_attributes(pairs: list[tuple[str, str]]) -> bytes:
    rec = orjson.loads(_value())
    body = b"{" + b",".join(orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in pairs) + b"}"
    return orjson.dumps(rec).replace(orjson.dumps(rec["attributes"]), body, 1) if rec["attributes"] else \
        orjson.dumps(rec).replace(b'"attributes":{}', b'"attributes":' + body, 1)


def test_ten_thousand_distinct_attributes_give_the_python_block():
    value = _with_attributes([(f"k{i}", f"v{i}") for i in range(10_000)])
    keys, block = _native_block([value])
    assert keys[0] is not None
    assert block == _python_block([value])


@pytest.mark.parametrize("repeat_at", [5, 31, 32, 33, 9_999])
def test_a_repeated_attribute_key_is_left_to_python_wherever_it_is(repeat_at):
    pairs = [(f"k{i}", f"v{i}") for i in range(10_000)]
    pairs.insert(repeat_at + 1, (f"k{repeat_at}", "again"))
    keys, _ = _native_block([_with_attributes(pairs)])
    assert keys == [None]
