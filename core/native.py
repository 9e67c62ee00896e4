"""The compiled extension (``native/``, Rust + PyO3), when installed and not turned off.

``scripts/bootstrap`` builds it. Without it (no Rust toolchain, or ``EVALFORGE_NATIVE=0``) every
caller takes its Python path, which stays the reference the differential tests compare against.
"""

from __future__ import annotations

import os
from types import ModuleType


def load() -> ModuleType | None:
    """``evalforge_native``, or None when it is not installed or ``EVALFORGE_NATIVE=0``."""
    if os.environ.get("EVALFORGE_NATIVE", "1") == "0":
        return None
    try:
        import evalforge_native
    except ImportError:
        return None
    return evalforge_native
