"""Alert rules: the validated shape of an ``alert_rules`` row, and how to show one without its secret.

A rule watches one metric of one project over a sliding window and compares it with a threshold:

- ``metric``: ``latency`` (duration_ms), ``ttft`` (ttft_ms), ``cost`` (USD per span), ``score_avg``
  (numeric score values), ``error_rate`` (errors / spans), ``errors``, ``requests``; or
  ``anomaly:<one of those>``, which compares the window's value with a rolling baseline of the
  previous ``baseline_windows`` windows and fires when the comparator holds for ``|z|`` vs ``threshold``.
- ``aggregation``: avg, p50, p90, p95, p99, sum, count (which ones make sense depends on the metric).
- ``group_by``: none, or one of model, provider, name, environment, release, user_id (score rules:
  name, evaluator, source) — the rule then fires and resolves per group.
- ``filter``: ``{column: value}`` or ``{column: [values]}`` equality filters on whitelisted columns;
  ``{"tags": "x"}`` matches spans carrying the tag.

The webhook URL is a secret: ``AlertRule`` keeps it out of ``repr`` and ``redact_rule`` is the only
dict form an admin API should return.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

VALUE_METRICS = ("latency", "ttft", "cost", "score_avg")  # aggregate a per-span (per-score) value
COUNT_METRICS = ("errors", "requests")  # a count per window
RATE_METRICS = ("error_rate",)
BASE_METRICS = VALUE_METRICS + COUNT_METRICS + RATE_METRICS
ANOMALY_PREFIX = "anomaly:"

AGGREGATIONS = ("avg", "p50", "p90", "p95", "p99", "sum", "count")
COMPARATORS = (">", ">=", "<", "<=", "==", "!=")

SPAN_GROUP_BY = ("model", "provider", "name", "environment", "release", "user_id")
SCORE_GROUP_BY = ("name", "evaluator", "source")
SPAN_FILTER_COLUMNS = SPAN_GROUP_BY + (
    "status", "kind", "operation", "service_name", "session_id", "prompt_name", "prompt_version",
    "error_class", "request_model", "tags",
)
SCORE_FILTER_COLUMNS = SCORE_GROUP_BY + ("data_type",)

# Which aggregations a metric accepts; the rest would be silently meaningless.
_ALLOWED_AGGREGATIONS = {
    **{m: AGGREGATIONS for m in VALUE_METRICS},
    **{m: ("sum", "count") for m in COUNT_METRICS},
    "error_rate": ("avg",),
}
# A count metric's value is the same whichever of its aggregations is chosen.
_DEFAULT_AGGREGATION = {"errors": "count", "requests": "count", "error_rate": "avg"}

UNITS = {"latency": "ms", "ttft": "ms", "cost": "USD", "error_rate": "", "errors": "", "requests": "",
         "score_avg": ""}


class RuleError(ValueError):
    """A rule that cannot be evaluated; the message names the offending field."""


@dataclass(frozen=True)
class AlertRule:
    """One alert rule. Build it with ``AlertRule.from_row`` (validates) or the constructor + ``validate``.

    Fields beyond the ``alert_rules`` table (``renotify``, ``baseline_windows``) have defaults so rows
    from today's table load unchanged.
    """

    id: str
    project_id: str
    name: str
    metric: str
    threshold: float
    aggregation: str = "avg"
    comparator: str = ">"
    window_seconds: int = 300
    min_samples: int = 1
    group_by: str | None = None
    filter: Mapping[str, Any] = field(default_factory=dict)
    cooldown_seconds: int = 900
    slack_webhook_url: str | None = field(default=None, repr=False)
    enabled: bool = True
    # Not in the table yet (proposed columns): re-send "still firing" after each cooldown, and how many
    # previous windows form an anomaly rule's baseline.
    renotify: bool = False
    baseline_windows: int = 12
    # Muted (evaluated, recorded, not notified) from muted_at until muted_until (None: until unmuted).
    muted_at: datetime | None = None
    muted_until: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AlertRule:
        """Build and validate a rule from an ``alert_rules`` row (unknown columns are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in names and v is not None}
        if isinstance(values.get("filter"), str | bytes):  # JSONB fetched as text
            values["filter"] = json.loads(values["filter"])
        if values.get("group_by") in ("", "none"):
            values["group_by"] = None
        try:
            rule = cls(**values)
        except TypeError as exc:  # a required column is missing
            raise RuleError(str(exc)) from None
        numbers = {"threshold": float, "window_seconds": int, "min_samples": int, "cooldown_seconds": int,
                   "baseline_windows": int}
        converted = {}
        for name, kind in numbers.items():
            try:
                converted[name] = kind(getattr(rule, name))
            except (TypeError, ValueError):
                raise RuleError(f"{name}: must be a number, got {getattr(rule, name)!r}") from None
        rule = dataclasses.replace(rule, **converted)
        rule.validate()
        return rule

    def muted(self, at: datetime) -> bool:
        """Whether notifications are suppressed at ``at`` (timezone-aware)."""
        return self.muted_at is not None and (self.muted_until is None or self.muted_until > at)

    @property
    def is_anomaly(self) -> bool:
        return self.metric.startswith(ANOMALY_PREFIX)

    @property
    def base_metric(self) -> str:
        """The measured metric: ``latency`` for both ``latency`` and ``anomaly:latency``."""
        return self.metric[len(ANOMALY_PREFIX):] if self.is_anomaly else self.metric

    @property
    def effective_aggregation(self) -> str:
        """The aggregation actually computed (count metrics and error_rate have a fixed one)."""
        return _DEFAULT_AGGREGATION.get(self.base_metric, self.aggregation)

    def validate(self) -> None:
        """Raise ``RuleError`` naming the first invalid field."""
        base = self.base_metric
        if base not in BASE_METRICS:
            raise RuleError(f"metric: must be one of {BASE_METRICS} or 'anomaly:<metric>', got {self.metric!r}")
        if self.aggregation not in AGGREGATIONS:
            raise RuleError(f"aggregation: must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.aggregation not in _ALLOWED_AGGREGATIONS[base] and self.aggregation != "avg":
            # "avg" is the table default, so it is accepted (and ignored) for count metrics.
            raise RuleError(
                f"aggregation: {base} accepts {_ALLOWED_AGGREGATIONS[base]}, got {self.aggregation!r}")
        if self.comparator not in COMPARATORS:
            raise RuleError(f"comparator: must be one of {COMPARATORS}, got {self.comparator!r}")
        if self.window_seconds < 10:
            raise RuleError("window_seconds: must be at least 10")
        if self.min_samples < 0:
            raise RuleError("min_samples: must be >= 0")
        if self.cooldown_seconds < 0:
            raise RuleError("cooldown_seconds: must be >= 0")
        if self.is_anomaly and self.baseline_windows < 2:
            raise RuleError("baseline_windows: an anomaly baseline needs at least 2 windows")
        allowed_groups = SCORE_GROUP_BY if base == "score_avg" else SPAN_GROUP_BY
        if self.group_by is not None and self.group_by not in allowed_groups:
            raise RuleError(f"group_by: must be one of {allowed_groups} or none, got {self.group_by!r}")
        if not isinstance(self.filter, Mapping):
            raise RuleError("filter: must be an object of column -> value(s)")
        allowed_filters = SCORE_FILTER_COLUMNS if base == "score_avg" else SPAN_FILTER_COLUMNS
        for column, value in self.filter.items():
            if column not in allowed_filters:
                raise RuleError(f"filter: unknown column {column!r}; allowed: {allowed_filters}")
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str | int | float) for v in values):
                raise RuleError(f"filter.{column}: must be a value or a non-empty list of values")
        if self.slack_webhook_url is not None:
            try:
                parts = urlsplit(self.slack_webhook_url)
            except ValueError:
                raise RuleError("slack_webhook_url: must be an http(s) URL") from None
            if parts.scheme not in ("https", "http") or not parts.netloc:
                raise RuleError("slack_webhook_url: must be an http(s) URL")

    def describe(self) -> str:
        """Human-readable metric, e.g. ``latency p95`` or ``anomaly of error_rate``."""
        base = self.base_metric
        what = base if base in COUNT_METRICS + RATE_METRICS else f"{base} {self.aggregation}"
        return f"anomaly of {what}" if self.is_anomaly else what


def redact_webhook_url(url: str | None) -> str | None:
    """Enough of a webhook URL to recognise it, never enough to use it: ``https://hooks.slack.com/…abcd``.
    The host only: userinfo (``https://user:token@…``) is a credential too."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        host = ""
    tail = url[-4:] if len(url) >= 16 else ""
    return f"{parts.scheme}://{host}/…{tail}" if host else f"…{tail}"


def redact_rule(rule: AlertRule | Mapping[str, Any]) -> dict[str, Any]:
    """The rule as a JSON-ready dict with the webhook URL redacted — what admin APIs return."""
    data = dataclasses.asdict(rule) if isinstance(rule, AlertRule) else dict(rule)
    if "slack_webhook_url" in data:
        data["slack_webhook_url"] = redact_webhook_url(data["slack_webhook_url"])
    data["filter"] = dict(data.get("filter") or {})
    return data
