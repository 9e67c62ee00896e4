"""The one internal-exception guard: SDK bugs are logged and swallowed, never raised into the host.

Every piece of SDK-side work (building attributes, ending spans, enqueueing) runs inside
``capture_internal_exceptions()``. The user's own exceptions never pass through it: wrappers call the
user's / provider's code outside the guard and re-raise whatever it raised, unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger("evalforge")

_last_log = 0.0
internal_errors = 0


class _Guard:
    """Class-based (not @contextmanager): it sits on every hot path, and this is ~5x cheaper."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None or not issubclass(exc_type, Exception):
            return False  # no error, or KeyboardInterrupt/SystemExit: never swallow those
        global _last_log, internal_errors
        internal_errors += 1
        now = time.monotonic()
        # One traceback per 10 s at most, so a bug on a hot path cannot flood the app's logs.
        if now - _last_log > 10.0:
            _last_log = now
            logger.warning("evalforge internal error (ignored)", exc_info=(exc_type, exc, tb))
        return True


_GUARD = _Guard()


def capture_internal_exceptions() -> _Guard:
    """Swallow (and count, and rate-limit-log) any exception raised by SDK code inside the block."""
    return _GUARD
