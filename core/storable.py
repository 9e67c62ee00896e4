"""What PostgreSQL text and jsonb can hold: neither U+0000 nor NaN / Infinity (which Python's JSON
parser accepts). Stores check user values with this first, so a bad value is a 400 naming its field
rather than a failed insert."""

from __future__ import annotations

import math
from typing import Any


def check_storable(value: Any, where: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``where`` when ``value`` (nested anywhere, keys included) cannot be stored."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise error(f"{where}: contains a non-finite number ({v})")
        if isinstance(v, str):
            if "\x00" in v:
                raise error(f"{where}: contains a NUL character")
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
