"""Conversions between ClickHouse results and JSON values (times always UTC ISO-8601)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any


def iso_from_micros(us: int | None) -> str | None:
    """Unix microseconds (as selected with toUnixTimestamp64Micro) -> ISO-8601 UTC with ``Z``."""
    if us is None:
        return None
    dt = datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(microsecond=us % 1_000_000)
    return dt.isoformat().replace("+00:00", "Z")


def iso_from_seconds(s: int | None) -> str | None:
    return None if s is None else iso_from_micros(int(s) * 1_000_000)


def num(value: Any) -> Any:
    """JSON-safe number: NaN / inf (empty aggregates) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
