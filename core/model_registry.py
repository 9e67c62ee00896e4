"""The model registry: the shipped catalogue (``models.json``) merged with a project's own models.

A catalogue entry says what a model is (provider, name, snapshots, context window, max output,
modalities, capabilities, deprecation date, metadata); what it costs comes from the price table
(``core.pricing``, shipped prices and the project's overrides) so a price lives in one place. An entry
with ``"price": null`` says on purpose that the shipped table has no price for it.

A project model (PostgreSQL ``project_models``) with the provider and name of a shipped one overrides
the fields it gives; any other is added. Spans and experiments name models as the provider sent them
("gpt-4o-2024-08-06", "openai/gpt-4o"): ``Registry.resolve`` maps such a name to its entry.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

from core import pricing

CATALOGUE_PATH = Path(__file__).with_name("models.json")
MAX_METADATA_BYTES = 16_384
CAPABILITIES = ("tools", "json_output", "vision")
MODALITIES = ("text", "image", "audio", "video", "pdf")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._:@-]{0,199}$")
_SNAPSHOT_SUFFIX = re.compile(pricing.FALLBACK_SUFFIX)
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
# fields a project model may set (provider and name identify it)
EDITABLE = ("snapshots", "context_window", "max_output_tokens", "modalities", "capabilities", "deprecation_date",
            "metadata")


def _given(raw: dict[str, Any], key: str, default: Any) -> Any:
    """The field's value, or ``default`` when absent or null (an empty list or string stays, to be judged)."""
    value = raw.get(key)
    return default if value is None else value


def check_entry(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The entry in canonical shape; ValueError naming the bad field (``where.field: why``)."""
    out: dict[str, Any] = {}
    for key in ("provider", "name"):
        value = str(raw.get(key) or "").strip().lower()
        if not (_PROVIDER if key == "provider" else _NAME).match(value):
            raise ValueError(f"{where}.{key}: required; lower-case letters, digits and . _ - (name also : @)")
        out[key] = value
    snapshots = _given(raw, "snapshots", [])
    if not isinstance(snapshots, list) or not all(isinstance(s, str) and _NAME.match(s.lower()) for s in snapshots):
        raise ValueError(f"{where}.snapshots: a list of model names")
    out["snapshots"] = [s.lower() for s in snapshots]
    for size in ("context_window", "max_output_tokens"):
        tokens = raw.get(size)
        if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or not 0 < tokens <= 10**9):
            raise ValueError(f"{where}.{size}: a positive whole number of tokens or null")
        out[size] = tokens
    modalities = _given(raw, "modalities", {"input": ["text"], "output": ["text"]})
    if not isinstance(modalities, dict) or set(modalities) - {"input", "output"}:
        raise ValueError(f"{where}.modalities: an object with input and output lists")
    for side in ("input", "output"):
        values = modalities.get(side, ["text"])
        if not isinstance(values, list) or not values or any(v not in MODALITIES for v in values):
            raise ValueError(f"{where}.modalities.{side}: a non-empty list among {', '.join(MODALITIES)}")
    out["modalities"] = {"input": list(modalities.get("input", ["text"])), "output": list(modalities.get("output", ["text"]))}
    caps = _given(raw, "capabilities", {})
    if not isinstance(caps, dict) or set(caps) - set(CAPABILITIES) or any(not isinstance(v, bool) for v in caps.values()):
        raise ValueError(f"{where}.capabilities: an object of booleans among {', '.join(CAPABILITIES)}")
    out["capabilities"] = {c: bool(caps.get(c, False)) for c in CAPABILITIES}
    deprecation = raw.get("deprecation_date")
    if deprecation is not None:
        try:
            date.fromisoformat(str(deprecation))
        except ValueError:
            raise ValueError(f"{where}.deprecation_date: a date YYYY-MM-DD or null") from None
    out["deprecation_date"] = deprecation
    metadata = _given(raw, "metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}.metadata: an object")
    try:  # stored as JSONB, which has no NaN / Infinity; bounded like any stored document
        stored = len(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError):
        raise ValueError(f"{where}.metadata: JSON without NaN or Infinity") from None
    if stored > MAX_METADATA_BYTES:
        raise ValueError(f"{where}.metadata: larger than {MAX_METADATA_BYTES} bytes as JSON")
    out["metadata"] = metadata
    if "price" in raw:
        if raw["price"] is not None:
            raise ValueError(f"{where}.price: only null (no shipped price); prices live in the price table")
        out["price"] = None
    return out


def load_catalogue(path: Path = CATALOGUE_PATH) -> tuple[str, list[dict[str, Any]]]:
    """(version, the shipped entries validated); duplicate (provider, name) or snapshot names are refused."""
    doc = json.loads(path.read_text())
    entries = [check_entry(raw, f"models[{i}]") for i, raw in enumerate(doc["models"])]
    seen: set[str] = set()
    for e in entries:
        for name in (e["name"], *e["snapshots"]):
            if f"{e['provider']}/{name}" in seen:
                raise ValueError(f"{path.name}: {e['provider']}/{name} is listed twice")
            seen.add(f"{e['provider']}/{name}")
    return str(doc.get("version", "")), entries


CATALOGUE_VERSION, CATALOGUE = load_catalogue()


def price_of(entry: dict[str, Any], overrides: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The prices a call to this model is charged (USD per 1M tokens) and where they come from."""
    found = pricing.match(entry["provider"], entry["name"], overrides)
    if found is None:
        return None
    source, price_entry = found
    return {"source": source, "entry": price_entry.id,
            "prices": {k: float(v) for k, v in price_entry.raw.get("prices", {}).items()}}


class Registry:
    """The catalogue as one project sees it: shipped entries, overridden or extended by its own."""

    def __init__(self, project_models: list[dict[str, Any]], price_overrides: list[dict[str, Any]] | None = None):
        merged: dict[tuple[str, str], dict[str, Any]] = {(e["provider"], e["name"]): {**e, "source": "shipped"}
                                                          for e in CATALOGUE}
        for pm in project_models:
            key = (pm["provider"], pm["name"])
            base = merged.get(key)
            if base is None:  # a model of the project's own: the fields it left out take their defaults
                merged[key] = {**check_entry(pm, "project model"), "source": "project"}
            else:
                merged[key] = {**base, **pm, "source": "shipped+project"}
        self.price_overrides = price_overrides or []
        self.entries = sorted(merged.values(), key=lambda e: (e["provider"], e["name"]))
        self._by_name: dict[str, dict[str, Any]] = {}
        # a bare name means the shipped model of that name before a project's own of another provider
        for e in sorted(self.entries, key=lambda e: e["source"] == "project"):
            for name in (e["name"], *e.get("snapshots", ())):
                self._by_name.setdefault(name, e)
                self._by_name[f"{e['provider']}/{name}"] = e

    def get(self, provider: str, name: str) -> dict[str, Any] | None:
        return self._by_name.get(f"{provider.lower()}/{name.lower()}")

    def resolve(self, model: str, provider: str | None = None) -> dict[str, Any] | None:
        """The entry a model name seen on a span or an experiment target refers to, or None.

        The provider the span (or target) names comes first: a project's ``azure/gpt-4o`` takes the spans
        of Azure's gpt-4o and OpenAI's spans stay OpenAI's. A provider with no entry of that name (an
        OpenAI-compatible API serving another vendor's model, "openai" + "mistral-small") and a span
        without one fall back to the bare name, which is the shipped entry's when there is one."""
        lowered = model.strip().lower()
        scope = (provider or "").strip().lower()
        prefixes = [f"{scope}/", ""] if scope and "/" not in lowered else [""]
        for prefix in prefixes:
            found = self._by_name.get(prefix + lowered)
            if found is not None:
                return found
            # the price table's rule: a catalogued name followed by a snapshot suffix (-2025-04-14, -v1:0, @001)
            name = pricing.normalize_model(lowered)
            for cut in range(len(name), 0, -1):
                entry = self._by_name.get(prefix + name[:cut])
                if entry is not None and (cut == len(name) or _SNAPSHOT_SUFFIX.fullmatch(name[cut:])):
                    return entry
        return None

    def public(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The entry as the API shows it, with its price from the price table."""
        out = {k: v for k, v in entry.items() if k != "price"}
        out["id"] = f"{entry['provider']}/{entry['name']}"
        out["price"] = price_of(entry, self.price_overrides)
        return out
