"""Conversions between ClickHouse results and JSON values (times always UTC ISO-8601)."""

from __future__ import annotations

import math
from functools import lru_cache
from datetime import datetime, timezone
from typing import Any


def iso_from_micros(us: int | None) -> str | None:
    """Unix microseconds (as selected with toUnixTimestamp64Micro) -> ISO-8601 UTC with ``Z``
    (``datetime.isoformat``'s text: no fraction when it is zero)."""
    if us is None:
        return None
    seconds, micros = divmod(us, 1_000_000)
    prefix = _iso_seconds(seconds)  # spans of a trace share their seconds: a 10,000-span trace formats few
    return f"{prefix}.{micros:06d}Z" if micros else f"{prefix}Z"


@lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "")


def iso_from_seconds(s: int | None) -> str | None:
    return None if s is None else iso_from_micros(int(s) * 1_000_000)


def num(value: Any) -> Any:
    """JSON-safe number: NaN / inf (empty aggregates) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
