"""Model prices and span cost: the one place cost is computed.

The price table is data (``model_prices.json``, versioned); project overrides have the same entry
shape and take precedence. Cost is exact: prices are held as integers (units of 1e-9 USD per
1M tokens, i.e. 1e-15 USD per token), multiplied by integer token counts and divided once, so the
float returned is the one nearest to the true rational value.

Token convention (``core.span``): ``input_tokens`` includes cache reads and cache writes,
``output_tokens`` includes reasoning tokens. Each token is priced once (``cost_terms`` in
``span_schema.json``, shared with the Rust extension):

    uncached input = input - cache_read - cache_creation   -> input price
    cache_read                                             -> cache_read price
    cache_creation - cache_creation_1h                     -> cache_write_5m price
    cache_creation_1h                                      -> cache_write_1h price
    output - reasoning                                     -> output price
    reasoning                                              -> reasoning price (output unless set)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from core.span_schema import COST_SCALE, COST_TERMS, PRICE_KEYS, PRICE_SCALE

DEFAULT_PRICES_PATH = Path(__file__).with_name("model_prices.json")

# The scales (1 USD per 1M tokens == PRICE_SCALE units; cost units are 1e-15 USD), the price keys and
# which token kind each prices come from span_schema.json, which the Rust extension embeds too.
TOKEN_TYPES = PRICE_KEYS  # the order of an entry's units and of CostResult.details
_PRICE_KEYS = frozenset(TOKEN_TYPES)
# The token kinds price_usage counts; the schema says which price each kind pays. Resolved once here
# to (index of the price in an entry's units, CostResult.details key) per kind.
_TOKEN_KINDS = ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h", "visible_output", "reasoning")
if sorted(kind for kind, _ in COST_TERMS) != sorted(_TOKEN_KINDS) or not {k for _, k in COST_TERMS} <= _PRICE_KEYS:
    raise RuntimeError(f"span_schema.json cost_terms must price each of {_TOKEN_KINDS} with one of {TOKEN_TYPES}")
_TERMS = {kind: (TOKEN_TYPES.index(key), key) for kind, key in COST_TERMS}
(_UNCACHED, _UNCACHED_KEY), (_CACHE_READ, _CACHE_READ_KEY), (_WRITE_5M, _WRITE_5M_KEY), (_WRITE_1H, _WRITE_1H_KEY), \
    (_VISIBLE_OUT, _VISIBLE_OUT_KEY), (_REASONING, _REASONING_KEY) = (_TERMS[kind] for kind in _TOKEN_KINDS)

# Used when a table (e.g. a list of project overrides) does not bring its own.
FALLBACK_SUFFIX = (
    r"(?:-latest|-preview|-exp|-\d{8}|@\d{8}|@latest|-\d{4}-\d{2}-\d{2}|-\d{2}-\d{4}"
    r"|-\d{2}-\d{2}|-\d{3,4}|-v\d+(?::\d+)?|:\d+)*"
)
# Bedrock model ids: "anthropic.claude-...", cross-region "us.anthropic.claude-...".
_VENDOR_PREFIX = re.compile(
    r"^(?:(?:us|eu|apac|global|us-gov|jp|au|ca)\.)?"
    r"(?:anthropic|meta|mistral|cohere|amazon|deepseek|openai|ai21|writer|qwen)\."
)
# Model names seen at 50k spans/s are few; the bound only stops a hostile stream of unique
# names from growing the cache forever.
_LOOKUP_CACHE_MAX = 65_536


class Usage(NamedTuple):
    """Token counts of one call, in the canonical convention of ``core.span``.

    NamedTuples here and in :class:`CostResult`: built once per span on the processors' hot path,
    where a frozen dataclass's __init__ (object.__setattr__ per field) cost ~2 us each."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_1h_tokens: int = 0  # subset of cache_creation_tokens
    reasoning_tokens: int = 0

    def is_empty(self) -> bool:
        """True when no token of any kind was reported."""
        return not (
            self.input_tokens
            or self.output_tokens
            or self.cache_read_tokens
            or self.cache_creation_tokens
            or self.reasoning_tokens
        )


class CostResult(NamedTuple):
    """Cost of one span.

    ``cost`` is USD, or None when it cannot be known (never 0 for an unknown model).
    ``source`` is 'user' (reported by the caller), 'computed', 'unknown_model' or ''.
    ``matched`` is the id of the price entry used. ``details`` maps token type -> USD, plus
    ``tier_above_input_tokens`` when a long-context tier applied.
    """

    cost: float | None
    source: str
    matched: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class PriceEntry:
    """One model's prices, prepared for integer math."""

    id: str
    provider: str
    names: tuple[str, ...]
    suffix: re.Pattern[str]
    units: tuple[int, ...]  # per TOKEN_TYPES, price units per 1M tokens
    tiers: tuple[tuple[int, tuple[int, ...]], ...]  # (above_input_tokens, units), ascending
    raw: dict[str, Any] = field(compare=False, repr=False)

    def units_for(self, input_tokens: int) -> tuple[int | None, tuple[int, ...]]:
        """The tier threshold that applies (None for base prices) and its price units."""
        chosen: tuple[int | None, tuple[int, ...]] = (None, self.units)
        for threshold, units in self.tiers:
            if input_tokens > threshold:
                chosen = (threshold, units)
        return chosen


def _to_units(value: Any, where: str) -> int:
    # Decimal(str(float)) keeps what the author wrote (0.075, not 0.07499999...).
    dec = value if isinstance(value, Decimal) else Decimal(str(value))
    scaled = dec * PRICE_SCALE
    if scaled != scaled.to_integral_value() or scaled < 0:
        raise ValueError(f"{where}: price {value} is negative or finer than 1e-9 USD per 1M tokens")
    return int(scaled)


def _resolve_units(prices: dict[str, Any], where: str) -> tuple[int, ...]:
    unknown = set(prices) - _PRICE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown price keys {sorted(unknown)}")
    if "input" not in prices:
        raise ValueError(f"{where}: an input price is required")
    p = {k: _to_units(v, f"{where}.{k}") for k, v in prices.items()}
    # a price not given is the one it refines: cache prices the input's, reasoning the output's
    p.setdefault("output", 0)
    p.setdefault("cache_read", p["input"])
    p.setdefault("cache_write_5m", p["input"])
    p.setdefault("cache_write_1h", p["cache_write_5m"])
    p.setdefault("reasoning", p["output"])
    return tuple(p[key] for key in TOKEN_TYPES)


def _build_entry(raw: dict[str, Any], default_suffix: str) -> PriceEntry:
    model = str(raw.get("model") or "").strip().lower()
    if not model:
        raise ValueError(f"price entry lacks 'model': {raw!r}")
    entry_id = str(raw.get("id") or f"override/{model}")
    names = (model, *(str(a).strip().lower() for a in raw.get("aliases") or ()))
    base = dict(raw.get("prices") or {})
    units = _resolve_units(base, entry_id)
    tiers = []
    for tier in raw.get("tiers") or ():
        threshold = int(tier["above_input_tokens"])
        # A tier changes only the prices it names; the rest stay as in the base.
        merged = {**base, **tier.get("prices", {})}
        tiers.append((threshold, _resolve_units(merged, f"{entry_id}@>{threshold}")))
    tiers.sort()
    return PriceEntry(
        id=entry_id,
        provider=str(raw.get("provider") or "").strip().lower(),
        names=names,
        suffix=re.compile(raw.get("suffix") or default_suffix),
        units=units,
        tiers=tuple(tiers),
        raw=raw,
    )


def normalize_model(model: str) -> str:
    """Lower-case a model name and strip provider prefixes ('openai/', 'models/', Bedrock's)."""
    name = model.strip().lower()
    if "/" in name:
        name = name.rsplit("/", 1)[1]
    return _VENDOR_PREFIX.sub("", name, count=1)


class PriceTable:
    """Price entries with a most-specific-match lookup, memoised per (provider, model)."""

    def __init__(self, entries: Iterable[dict[str, Any]], *, version: str = "", updated: str = "",
                 default_suffix: str = FALLBACK_SUFFIX, provider_must_match: bool = False) -> None:
        self.version = version
        # A project's overrides: an entry naming a provider prices only that provider's spans. (In the
        # shipped table a provider only breaks ties: "openai/gpt-4o" also prices Azure's gpt-4o.)
        self.provider_must_match = provider_must_match
        self.updated = updated
        self.entries: tuple[PriceEntry, ...] = tuple(_build_entry(e, default_suffix) for e in entries)
        ids = [e.id for e in self.entries]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate price entry ids")
        self._cache: dict[tuple[str, str], PriceEntry | None] = {}

    @classmethod
    def from_json(cls, data: bytes | str) -> PriceTable:
        """Build from the JSON document shape of ``model_prices.json``."""
        # Decimals, not floats, so that a price is exactly what the file says.
        doc = json.loads(data, parse_float=Decimal)
        return cls(doc["models"], version=str(doc.get("version", "")), updated=str(doc.get("updated", "")),
                   default_suffix=doc.get("default_suffix") or FALLBACK_SUFFIX)

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """Build from a JSON file."""
        return cls.from_json(Path(path).read_bytes())

    def lookup(self, provider: str | None, model: str | None) -> PriceEntry | None:
        """The most specific entry for this model, or None. A dict hit after the first call."""
        key = (provider or "", model or "")
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._match(key[0], key[1])
        if len(self._cache) >= _LOOKUP_CACHE_MAX:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _match(self, provider: str, model: str) -> PriceEntry | None:
        name = normalize_model(model)
        if not name:
            return None
        provider = provider.lower()
        best: PriceEntry | None = None
        best_rank = (-1, False)
        for entry in self.entries:
            if self.provider_must_match and entry.provider and entry.provider != provider:
                continue
            for candidate in entry.names:
                if not name.startswith(candidate):
                    continue
                rest = name[len(candidate):]
                if rest and not entry.suffix.fullmatch(rest):
                    continue
                # Longest name is the most specific; the span's own provider breaks ties.
                rank = (len(candidate), bool(provider) and entry.provider == provider)
                if rank > best_rank:
                    best, best_rank = entry, rank
        return best


def _load_default() -> PriceTable:
    return PriceTable.from_file(DEFAULT_PRICES_PATH)


price_table: PriceTable = _load_default()

# Override lists arrive per project (from Postgres) and are reused across spans; keep the built
# table keyed by the list's identity, holding the list so its id cannot be reused meanwhile.
_override_tables: dict[int, tuple[list[dict[str, Any]], PriceTable]] = {}
_OVERRIDE_CACHE_MAX = 1024


def override_table(overrides: list[dict[str, Any]]) -> PriceTable:
    """The PriceTable for a list of override entries (memoised; treat the list as immutable)."""
    hit = _override_tables.get(id(overrides))
    if hit is not None and hit[0] is overrides:
        return hit[1]
    table = PriceTable(overrides, provider_must_match=True)
    if len(_override_tables) >= _OVERRIDE_CACHE_MAX:
        _override_tables.clear()
    _override_tables[id(overrides)] = (overrides, table)
    return table


def override_entry(provider: str, model: str, prices: dict[str, Any], tiers: list[dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
    """A project's price override (a ``model_prices`` row in PostgreSQL) as a price-table entry."""
    return {"id": f"project/{provider}/{model}", "provider": provider, "model": model,
            "prices": prices, "tiers": list(tiers or ())}


def check_entry(raw: dict[str, Any]) -> PriceEntry:
    """The entry as the table would build it; ValueError naming the price that is wrong."""
    return _build_entry(raw, FALLBACK_SUFFIX)


def match(provider: str | None, model: str | None, overrides: list[dict[str, Any]] | None = None
          ) -> tuple[str, PriceEntry] | None:
    """Which entry prices this model: ("project", entry) for an override, ("shipped", entry), or None."""
    entry = override_table(overrides).lookup(provider, model) if overrides else None
    if entry is not None:
        return "project", entry
    entry = price_table.lookup(provider, model)
    return ("shipped", entry) if entry is not None else None


def price_usage(entry: PriceEntry, usage: Usage) -> CostResult:
    """Exact cost of ``usage`` at ``entry``'s prices (tier chosen by total input tokens)."""
    cache_read = usage.cache_read_tokens
    write_1h = min(usage.cache_creation_1h_tokens, usage.cache_creation_tokens)
    write_5m = usage.cache_creation_tokens - write_1h
    # Clamped: a record breaking the convention must not produce a negative cost.
    uncached = max(usage.input_tokens - cache_read - usage.cache_creation_tokens, 0)
    reasoning = usage.reasoning_tokens
    visible_out = max(usage.output_tokens - reasoning, 0)
    threshold, units = entry.units_for(usage.input_tokens) if entry.tiers else (None, entry.units)
    details: dict[str, Any] = {}
    total = 0
    # Unrolled: this runs once per LLM span on the processors' hot path.
    if uncached:
        part = uncached * units[_UNCACHED]
        total += part
        details[_UNCACHED_KEY] = part / COST_SCALE
    if cache_read:
        part = cache_read * units[_CACHE_READ]
        total += part
        details[_CACHE_READ_KEY] = part / COST_SCALE
    if write_5m:
        part = write_5m * units[_WRITE_5M]
        total += part
        details[_WRITE_5M_KEY] = part / COST_SCALE
    if write_1h:
        part = write_1h * units[_WRITE_1H]
        total += part
        details[_WRITE_1H_KEY] = part / COST_SCALE
    if visible_out:
        part = visible_out * units[_VISIBLE_OUT]
        total += part
        details[_VISIBLE_OUT_KEY] = part / COST_SCALE
    if reasoning:
        part = reasoning * units[_REASONING]
        total += part
        details[_REASONING_KEY] = part / COST_SCALE
    if threshold is not None:
        details["tier_above_input_tokens"] = threshold
    return CostResult(total / COST_SCALE, "computed", entry.id, details)


def call_entry(provider: str | None, model: str | None, request_model: str | None,
               overrides: list[dict[str, Any]] | None = None) -> PriceEntry | None:
    """The entry a model call is priced with: by its response model; when the table lacks it (an alias,
    a deployment name) and the requested model is known, as requested. ``model`` defaults to
    ``request_model``."""
    model = model or request_model
    found = match(provider, model, overrides)
    if found is None and request_model and request_model != model:
        found = match(provider, request_model, overrides)
    return found[1] if found is not None else None


def compute_call_cost(provider: str | None, model: str | None, request_model: str | None, usage: Usage,
                      user_cost: float | None = None, overrides: list[dict[str, Any]] | None = None) -> CostResult:
    """Cost of one model call.

    A cost reported by the user wins. Otherwise the call's entry (``call_entry``: project
    ``overrides`` first, then the shipped table) prices it; an unknown model gives cost None with
    source 'unknown_model' (never 0). A span that reports no tokens has nothing to price:
    ``CostResult(None, '', None, {})``.
    """
    if user_cost is not None and not (isinstance(user_cost, float) and math.isnan(user_cost)):
        return CostResult(float(user_cost), "user", None, {})
    if usage.is_empty():
        return CostResult(None, "", None, {})
    entry = call_entry(provider, model, request_model, overrides)
    if entry is None:
        return CostResult(None, "unknown_model", None, {})
    return price_usage(entry, usage)


def compute_cost(provider: str | None, model: str | None, usage: Usage, user_cost: float | None = None,
                 overrides: list[dict[str, Any]] | None = None) -> CostResult:
    """Cost of one span priced by ``model`` alone (see ``compute_call_cost``)."""
    return compute_call_cost(provider, model, None, usage, user_cost=user_cost, overrides=overrides)
