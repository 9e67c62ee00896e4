"""Slack Block Kit messages for alert transitions, and the query-API link they carry.

User-supplied text (group values, names) is escaped for mrkdwn, and texts are cut to Block Kit's
limits, so a message is never rejected by Slack as ``invalid_blocks``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from .rules import UNITS, AlertRule

_HEADER_MAX = 150  # Block Kit limits
_FIELD_MAX = 2000
_TEXT_MAX = 3000
_DIGEST_NAMES = 20  # group values named in a digest
_TITLES = {"firing": "🔴 Firing", "reminder": "🔴 Still firing", "resolved": "✅ Resolved"}


def build_message(rule: AlertRule, kind: str, group: str, payload: dict[str, Any], public_url: str) -> dict[str, Any]:
    """The Block Kit message for one transition of ``rule`` in ``group``.

    ``payload`` is what the engine recorded at the transition: value, samples, window_start,
    window_end (ISO), and for anomaly rules z, baseline_mean, baseline_stddev.
    """
    what = rule.describe()
    value = _fmt(payload["value"], rule.base_metric)
    silent = payload.get("no_data_seconds")
    if silent is not None:  # a resolution because the group stopped sending
        condition = f"No data for {_duration(silent)}: *{what}* is no longer measured in this group"
    elif rule.is_anomaly:
        condition = (f"*{what}* is *{value}* vs a baseline of {_fmt(payload['baseline_mean'], rule.base_metric)}"
                     f" ± {_fmt(payload['baseline_stddev'], rule.base_metric)}: z = *{payload['z']:.2f}*"
                     f" (alert when |z| {rule.comparator} {rule.threshold:g})")
    else:
        condition = (f"*{what}* is *{value}* (alert when {rule.comparator}"
                     f" {_fmt(rule.threshold, rule.base_metric)})")
    if kind == "resolved" and silent is None:
        condition = f"Back to normal: {condition}"
    title = f"{_TITLES[kind]}: {rule.name}"
    group_text = f"{rule.group_by} = {group or '(empty)'}" if rule.group_by else "all"
    window = f"{_duration(rule.window_seconds)} ending {payload['window_end']}"
    fields = [("Window", window), ("Group", group_text), ("Samples", str(payload["samples"])),
              ("Project", rule.project_id)]
    link = metrics_link(rule, group, payload, public_url)
    return {
        "text": _escape(f"{_TITLES[kind]}: {rule.name} — {what} {value}"),  # notification / fallback text
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(title, _HEADER_MAX), "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(_escape(condition), _TEXT_MAX)}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": _cut(f"*{name}*\n{_escape(text)}", _FIELD_MAX)} for name, text in fields]},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open metrics"}, "url": link}]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": _escape(f"rule {rule.id} · {rule.metric} · episode {payload.get('episode', '')}")}]},
        ],
    }


def build_digest(rule: AlertRule, kind: str, groups: list[str], payload: dict[str, Any],
                 public_url: str) -> dict[str, Any]:
    """One message standing for the same transition in many groups of ``rule`` (an alert storm)."""
    what = rule.describe()
    state = {"firing": "firing", "reminder": "still firing", "resolved": "back to normal"}[kind]
    shown = ", ".join(_escape(g or "(empty)") for g in groups[:_DIGEST_NAMES])
    more = f" and {len(groups) - _DIGEST_NAMES:,} more" if len(groups) > _DIGEST_NAMES else ""
    title = f"{_TITLES[kind]}: {rule.name} — {len(groups):,} more groups"
    return {
        "text": _escape(title),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(title, _HEADER_MAX), "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(
                f"*{_escape(what)}* is also {state} for {len(groups):,} {rule.group_by} values: {shown}{more}",
                _TEXT_MAX)}},
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open metrics"},
                                              "url": metrics_link(rule, None, payload, public_url)}]},
        ],
    }


def metrics_link(rule: AlertRule, group: str | None, payload: dict[str, Any], public_url: str) -> str:
    """A query-API URL showing the alert's metric over its window (and the baseline for anomalies),
    for one group, or broken down by the rule's group_by when ``group`` is None."""
    # The API key picks the project; score_avg rules read the score named in their filter.
    metric = "score" if rule.base_metric == "score_avg" else rule.base_metric
    params: dict[str, Any] = {
        "metric": metric,
        "aggregation": rule.effective_aggregation,
        "from": payload["query_start"],
        "to": payload["window_end"],
        "interval": f"{rule.window_seconds}s",
    }
    filters = dict(rule.filter)
    if metric == "score":
        params["score_name"] = filters.pop("name", "")
    if rule.group_by and group is not None:
        filters[rule.group_by] = group
    elif rule.group_by:
        params["group_by"] = rule.group_by
    for column, value in sorted(filters.items()):
        params[column] = value if isinstance(value, list) else [value]
    return f"{public_url.rstrip('/')}/api/v1/metrics?{urlencode(params, doseq=True)}"


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "no data"
    if metric == "error_rate":
        return f"{value:.1%}"
    if metric == "cost":
        return f"${value:,.4f}"
    unit = UNITS.get(metric, "")
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".strip()


def _duration(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _escape(text: str) -> str:
    """Slack mrkdwn control characters; user-supplied names and group values could forge links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
