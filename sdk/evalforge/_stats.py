"""Delivery counters: every span is either exported or dropped for a named reason, never silently lost."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """Thread-safe counters read by ``evalforge.stats()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._exported = 0
            self._retried = 0
            self._scores_sent = 0
            self._dropped: Counter[str] = Counter()
            self._scores_dropped: Counter[str] = Counter()

    def exported(self, n: int) -> None:
        with self._lock:
            self._exported += n

    def retried(self, n: int = 1) -> None:
        with self._lock:
            self._retried += n

    def dropped(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._dropped[reason] += n

    def score_sent(self) -> None:
        with self._lock:
            self._scores_sent += 1

    def score_dropped(self, reason: str) -> None:
        with self._lock:
            self._scores_dropped[reason] += 1

    def snapshot(self, queued: int = 0) -> dict[str, Any]:
        with self._lock:
            return {
                "exported": self._exported,
                "dropped": dict(self._dropped),
                "dropped_total": sum(self._dropped.values()),
                "retried": self._retried,
                "queued": queued,
                "scores_sent": self._scores_sent,
                "scores_dropped": dict(self._scores_dropped),
            }
