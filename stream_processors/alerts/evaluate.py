"""Turning a rule's window values into a decision per group: breaching, not breaching, or undecided.

Undecided (too few samples, or an anomaly rule without enough baseline) leaves the alert's state as it
is: a firing alert neither resolves nor re-fires on thin data — until the engine resolves a group that
stayed undecided for NO_DATA_RESOLVE_WINDOWS windows (engine._silent_resolutions).
"""

from __future__ import annotations

import math
import operator
import statistics
from dataclasses import dataclass, field

from .metrics_query import WindowValue
from .rules import AlertRule

_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
            "==": operator.eq, "!=": operator.ne}
# A perfectly flat baseline has stddev 0, which would turn any jitter into an infinite z-score; the
# spread is floored at this fraction of the baseline mean (and an absolute epsilon for a mean of 0).
STDDEV_FLOOR_RATIO = 0.01
STDDEV_FLOOR_ABS = 1e-9


@dataclass(frozen=True)
class Decision:
    """The outcome for one (rule, group) at one tick; ``details`` travel into the notification."""

    group: str
    breach: bool
    value: float | None  # None: no data (a silent group resolving)
    samples: int
    details: dict[str, float] = field(default_factory=dict)


def compare(value: float, comparator: str, threshold: float) -> bool:
    """Whether ``value <comparator> threshold`` holds."""
    return _COMPARE[comparator](value, threshold)


def min_baseline_windows(rule: AlertRule) -> int:
    """Baseline windows that must have data (>= min_samples) before an anomaly rule decides."""
    return max(2, math.ceil(rule.baseline_windows / 2))


def decide(rule: AlertRule, windows: dict[str, dict[int, WindowValue]], buckets: int) -> list[Decision]:
    """Decisions for every group that has enough data in the current window (bucket ``buckets - 1``)."""
    current_bucket = buckets - 1
    decisions = []
    for group, by_bucket in windows.items():
        current = by_bucket.get(current_bucket)
        if current is None or current.value is None or current.samples < rule.min_samples:
            continue
        if not rule.is_anomaly:
            decisions.append(Decision(group, compare(current.value, rule.comparator, rule.threshold),
                                      current.value, current.samples))
            continue
        baseline = [w.value for b, w in by_bucket.items()
                    if b < current_bucket and w.value is not None and w.samples >= rule.min_samples]
        if len(baseline) < min_baseline_windows(rule):
            continue
        mean = statistics.fmean(baseline)
        spread = max(statistics.stdev(baseline), abs(mean) * STDDEV_FLOOR_RATIO, STDDEV_FLOOR_ABS)
        z = (current.value - mean) / spread
        decisions.append(Decision(
            group, compare(abs(z), rule.comparator, rule.threshold), current.value, current.samples,
            {"z": z, "baseline_mean": mean, "baseline_stddev": spread, "baseline_windows": len(baseline)},
        ))
    return decisions
