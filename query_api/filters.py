"""Filters shared by every query endpoint: parsed from query strings (or a JSON object) into ``Filters``,
then rendered as SQL conditions whose every user value is a bound server-side parameter.

Semantics: on span endpoints (metrics, export, compare) a filter applies to each span; on trace
endpoints a trace matches when, for each filter, at least one of its spans matches (latency and cost
ranges apply to the trace's totals there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

MAX_VALUES = 100  # values per multi-valued filter
MAX_TEXT = 256  # length of any single filter value

# filter name -> spans column. Column names only ever come from this table, never from the request.
LIST_FILTERS: dict[str, str] = {
    "model": "model", "provider": "provider", "name": "name", "status": "status", "user_id": "user_id",
    "session_id": "session_id", "environment": "environment", "release": "release", "kind": "kind",
    "prompt_name": "prompt_name", "prompt_version": "prompt_version", "trace_id": "trace_id",
}
STATUSES = ("ok", "error", "unset")
RANGE_FILTERS = ("min_latency_ms", "max_latency_ms", "min_cost", "max_cost", "min_score", "max_score")
FILTER_PARAMS = frozenset({"from", "to", "tag", "q", "score_name", "attribute", "metadata", *LIST_FILTERS, *RANGE_FILTERS})


class BadParam(ValueError):
    """A request parameter is invalid; ``param`` names it (answered as 400)."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass
class Filters:
    """Validated filter values. Empty fields do not filter."""

    start: datetime | None = None
    end: datetime | None = None
    lists: dict[str, list[str]] = field(default_factory=dict)  # LIST_FILTERS key -> accepted values
    tags: list[str] = field(default_factory=list)  # any of these tags
    text: str = ""  # case-insensitive substring of the input / output previews
    # (attribute key, value) pairs, each matched exactly; metadata k=v is attribute metadata.k=v
    attributes: list[tuple[str, str]] = field(default_factory=list)
    min_latency_ms: float | None = None
    max_latency_ms: float | None = None
    min_cost: float | None = None
    max_cost: float | None = None
    score_name: str = ""
    min_score: float | None = None
    max_score: float | None = None

    def span_filter_keys(self) -> list[str]:
        """Names of the set filters that look at individual spans (everything but the time range)."""
        keys = [k for k, v in self.lists.items() if v]
        keys += ["tag"] if self.tags else []
        keys += ["q"] if self.text else []
        keys += ["attribute"] if self.attributes else []
        return keys

    def span_only(self) -> Filters:
        """The filters on spans alone: no time range, no score filter (for picking the traces of
        scores, whose own time range applies)."""
        return Filters(lists=self.lists, tags=self.tags, text=self.text, attributes=self.attributes,
                       min_latency_ms=self.min_latency_ms,
                       max_latency_ms=self.max_latency_ms, min_cost=self.min_cost, max_cost=self.max_cost)


def parse_time(param: str, value: str) -> datetime:
    """ISO-8601 (``Z`` or offset; naive means UTC) or Unix seconds -> aware UTC datetime."""
    value = value.strip()
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise BadParam(param, f"not an ISO-8601 time or Unix seconds: {value[:40]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        dt = dt.astimezone(timezone.utc)  # year 1 or 9999 with an offset leaves datetime's range
    except OverflowError:
        raise BadParam(param, "out of range (years 1970-2200)") from None
    if not 1970 <= dt.year <= 2200:
        raise BadParam(param, "out of range (years 1970-2200)")
    return dt


def parse_float(param: str, value: str, *, minimum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadParam(param, f"not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise BadParam(param, "must be finite")
    if minimum is not None and number < minimum:
        raise BadParam(param, f"must be >= {minimum:g}")
    return number


def parse_int(param: str, value: str, *, minimum: int, maximum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadParam(param, f"not an integer: {str(value)[:40]!r}") from None
    if not minimum <= number <= maximum:
        raise BadParam(param, f"must be between {minimum} and {maximum}")
    return number


def _text(param: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadParam(param, "must be a string")
    if len(value) > MAX_TEXT:
        raise BadParam(param, f"longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise BadParam(param, "contains a NUL character")
    return value


def _values(source: Mapping[str, Any], key: str) -> list[str]:
    """All values of ``key``: repeated query parameters, or a string / list in a JSON object."""
    if hasattr(source, "getlist"):
        raw: Iterable[Any] = source.getlist(key)
    else:
        value = source.get(key)
        raw = [] if value is None else value if isinstance(value, list) else [value]
    values = [_text(key, v if isinstance(v, str) else str(v) if isinstance(v, (int, float)) else v) for v in raw]
    if len(values) > MAX_VALUES:
        raise BadParam(key, f"more than {MAX_VALUES} values")
    return values


def _single(source: Mapping[str, Any], key: str) -> str | None:
    values = _values(source, key)
    if len(values) > 1:
        raise BadParam(key, "given more than once")
    return values[0] if values else None


def parse_filters(source: Mapping[str, Any], *, allowed_extra: Iterable[str] = ()) -> Filters:
    """Query parameters (starlette ``QueryParams``) or a JSON object -> ``Filters``; BadParam if invalid.

    Unknown parameter names are rejected too, so a typo never silently widens a query.
    """
    # ``project`` names the project of a signed-in user's plain GET link (core/deps.py), not a filter.
    extra = set(allowed_extra) | {"project"}
    for key in source.keys():
        if key not in FILTER_PARAMS and key not in extra:
            raise BadParam(key, "unknown parameter")
    f = Filters()
    if (v := _single(source, "from")) is not None:
        f.start = parse_time("from", v)
    if (v := _single(source, "to")) is not None:
        f.end = parse_time("to", v)
    if f.start and f.end and f.start >= f.end:
        raise BadParam("from", "must be before 'to'")
    for key in LIST_FILTERS:
        values = _values(source, key)
        if key == "status":
            for v in values:
                if v not in STATUSES:
                    raise BadParam("status", f"must be one of {', '.join(STATUSES)}")
        if values:
            f.lists[key] = values
    f.tags = _values(source, "tag")
    f.text = _single(source, "q") or ""
    for key, prefix in (("attribute", ""), ("metadata", "metadata.")):
        for pair in _values(source, key):
            name, sep, value = pair.partition("=")
            if not sep or not name:
                raise BadParam(key, f"must be key=value, got {pair[:40]!r}")
            f.attributes.append((prefix + name, value))
    if len(f.attributes) > MAX_VALUES:
        raise BadParam("attribute", f"more than {MAX_VALUES} key=value pairs")
    for key in RANGE_FILTERS:
        if (v := _single(source, key)) is not None:
            minimum = None if key.endswith("_score") else 0.0
            setattr(f, key, parse_float(key, v, minimum=minimum))
    f.score_name = _single(source, "score_name") or ""
    if (f.min_score is not None or f.max_score is not None) and not f.score_name:
        raise BadParam("score_name", "required with min_score / max_score")
    for low, high in (("min_latency_ms", "max_latency_ms"), ("min_cost", "max_cost"), ("min_score", "max_score")):
        lo, hi = getattr(f, low), getattr(f, high)
        if lo is not None and hi is not None and lo > hi:
            raise BadParam(low, f"greater than {high}")
    return f


class Binder:
    """Collects bound parameters under unique names; SQL text only ever holds ``{name:Type}``."""

    def __init__(self, prefix: str = "p"):
        self.params: dict[str, Any] = {}
        self._prefix = prefix

    def bind(self, value: Any, ch_type: str) -> str:
        name = f"{self._prefix}{len(self.params)}"
        if isinstance(value, datetime):
            value = ch_time(value)
        self.params[name] = value
        return "{%s:%s}" % (name, ch_type)


TIME_TYPE = "DateTime64(6, 'UTC')"


def ch_time(dt: datetime) -> str:
    """Aware datetime -> the UTC text a ``DateTime64(6, 'UTC')`` parameter parses."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def span_conditions(f: Filters, b: Binder, *, project_id: str, per_span_ranges: bool = True,
                    time_column: str = "start_time") -> list[str]:
    """Conditions on ``spans`` rows (project first, then every set filter). All values bound."""
    conds = window_conditions(f, b, project_id, time_column=time_column)
    conds += span_match_conditions(f, b)
    if per_span_ranges:
        conds += _range_conditions(f, b, "duration_ms", "cost")
    if f.score_name:
        conds.append(f"trace_id IN ({score_trace_subquery(f, b, project_id)})")
    return conds


def window_conditions(f: Filters, b: Binder, project_id: str, *, time_column: str = "start_time",
                      slack_days: int = 0) -> list[str]:
    """The project and [from, to) on ``time_column``; ``slack_days`` widens ``to`` (children of a root
    that started just before it still count)."""
    conds = [f"project_id = {b.bind(project_id, 'String')}"]
    if f.start:
        conds.append(f"{time_column} >= {b.bind(f.start, TIME_TYPE)}")
    if f.end:
        slack = f" + INTERVAL {int(slack_days)} DAY" if slack_days else ""
        conds.append(f"{time_column} < {b.bind(f.end, TIME_TYPE)}{slack}")
    return conds


def span_match_conditions(f: Filters, b: Binder, *, skip: tuple[str, ...] = ()) -> list[str]:
    """One condition per set list / tag / text filter, each on a single span (lists in ``skip`` aside)."""
    conds = []
    for key, values in f.lists.items():
        if values and key not in skip:
            conds.append(f"has({b.bind(values, 'Array(String)')}, {LIST_FILTERS[key]})")
    if f.tags:
        conds.append(f"hasAny(tags, {b.bind(f.tags, 'Array(String)')})")
    for name, value in f.attributes:
        conds.append(f"attributes[{b.bind(name, 'String')}] = {b.bind(value, 'String')}")
    if f.text:
        q = b.bind(f.text, "String")
        conds.append(f"(positionCaseInsensitiveUTF8(input_preview, {q}) > 0 "
                     f"OR positionCaseInsensitiveUTF8(output_preview, {q}) > 0)")
    return conds


def _range_conditions(f: Filters, b: Binder, latency_expr: str, cost_expr: str) -> list[str]:
    conds = []
    if f.min_latency_ms is not None:
        conds.append(f"{latency_expr} >= {b.bind(f.min_latency_ms, 'Float64')}")
    if f.max_latency_ms is not None:
        conds.append(f"{latency_expr} <= {b.bind(f.max_latency_ms, 'Float64')}")
    if f.min_cost is not None:
        conds.append(f"{cost_expr} >= {b.bind(f.min_cost, 'Float64')}")
    if f.max_cost is not None:
        conds.append(f"{cost_expr} <= {b.bind(f.max_cost, 'Float64')}")
    return conds


def score_range_conditions(f: Filters, b: Binder) -> list[str]:
    """``min_score`` / ``max_score`` on a ``scores`` row's value."""
    conds = []
    if f.min_score is not None:
        conds.append(f"value >= {b.bind(f.min_score, 'Float64')}")
    if f.max_score is not None:
        conds.append(f"value <= {b.bind(f.max_score, 'Float64')}")
    return conds


def score_trace_subquery(f: Filters, b: Binder, project_id: str) -> str:
    """trace_ids of the project that carry score ``score_name`` (within the score value range)."""
    conds = [f"project_id = {b.bind(project_id, 'String')}", f"name = {b.bind(f.score_name, 'String')}"]
    conds += score_range_conditions(f, b)
    return f"SELECT trace_id FROM scores FINAL WHERE {' AND '.join(conds)}"


def score_value_conditions(f: Filters, b: Binder, project_id: str, score_name: str) -> list[str]:
    """``scores`` rows of ``score_name`` that have a value, in [from, to) of their own timestamp, on
    the traces the span filters pick (their spans searched 30 days past ``to``)."""
    where = window_conditions(f, b, project_id, time_column="timestamp")
    where += [f"name = {b.bind(score_name, 'String')}", "value IS NOT NULL"]
    if sub := trace_filter_subquery(f.span_only(), b, project_id, slack_days=30):
        where.append(f"trace_id IN ({sub})")
    return where


# Trace-level rollups over a trace's spans (used by list, session and trace-filter queries).
TRACE_DURATION = "(toUnixTimestamp64Micro(max(end_time)) - toUnixTimestamp64Micro(min(start_time))) / 1000"
TRACE_STATUS = "multiIf(countIf(status = 'error') > 0, 'error', countIf(status = 'ok') > 0, 'ok', 'unset')"


def trace_filter_subquery(f: Filters, b: Binder, project_id: str, *, slack_days: int = 1) -> str | None:
    """trace_ids matching the span-level and trace-total filters, or None when none are set.

    Spans are searched from ``from`` to ``to`` plus ``slack_days`` so children of a root that started
    just before ``to`` still count.
    """
    ranges = [getattr(f, k) for k in ("min_latency_ms", "max_latency_ms", "min_cost", "max_cost")]
    status_agg = bool(f.lists.get("status")) and f.lists["status"] != ["error"]
    matches = span_match_conditions(f, b) if not status_agg else []
    if len(matches) == 1 and not status_agg and not f.score_name and all(r is None for r in ranges):
        # One "some span matches" filter: a plain set of trace_ids, no aggregation (duplicates of a
        # span cannot change whether it exists, so no FINAL either).
        where = window_conditions(f, b, project_id, slack_days=slack_days) + matches
        return f"SELECT trace_id FROM spans WHERE {' AND '.join(where)}"
    # a trace matches when some span matches each filter; status is the trace's own (error if any span)
    having = [f"{TRACE_STATUS} IN {b.bind(f.lists['status'], 'Array(String)')}"] if f.lists.get("status") else []
    having += [f"countIf({cond}) > 0" for cond in span_match_conditions(f, b, skip=("status",))]
    having += _range_conditions(f, b, TRACE_DURATION, "sum(ifNull(cost, 0) * counted)")
    if not having and not f.score_name:
        return None
    where = window_conditions(f, b, project_id, slack_days=slack_days)
    if f.score_name:
        where.append(f"trace_id IN ({score_trace_subquery(f, b, project_id)})")
    sql = f"SELECT trace_id FROM spans FINAL WHERE {' AND '.join(where)} GROUP BY trace_id"
    return sql + (f" HAVING {' AND '.join(having)}" if having else "")


# Applied to every read of spans: duplicates of a span share start_time, hence their daily partition,
# so FINAL need not merge across partitions — this keeps FINAL about as cheap as a plain read.
READ_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}
