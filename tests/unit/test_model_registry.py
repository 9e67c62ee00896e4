"""The shipped model catalogue: valid, priced from the price table (or deliberately not), and the
names providers send resolve to their entry."""

from __future__ import annotations

import json

import pytest

from core import model_registry, pricing
from core.model_registry import CATALOGUE, Registry, check_entry, load_catalogue


def test_every_catalogued_model_has_a_price_or_says_it_has_none():
    raw = {(m["provider"], m["name"]): m for m in json.loads(model_registry.CATALOGUE_PATH.read_text())["models"]}
    for entry in CATALOGUE:
        found = pricing.match(entry["provider"], entry["name"])
        says_none = "price" in raw[(entry["provider"], entry["name"])]
        label = f"{entry['provider']}/{entry['name']}"
        if says_none:
            assert found is None, f"{label} says price: null but the price table prices it"
            assert entry["metadata"].get("price_note"), f"{label}: say why there is no price"
        else:
            assert found is not None, f"{label} has no price in core/model_prices.json: add one or say price: null"
            # the catalogue's name, not a shorter entry's prefix, is what is priced
            assert found[1].raw["model"] == entry["name"] or entry["name"] in found[1].raw.get("aliases", ()), label


def test_catalogue_covers_the_major_providers_and_is_consistent():
    providers = {e["provider"] for e in CATALOGUE}
    assert {"openai", "anthropic", "google", "mistral", "meta", "deepseek"} <= providers
    for e in CATALOGUE:
        assert e["context_window"], e["name"]
        assert e["max_output_tokens"] is None or e["max_output_tokens"] <= e["context_window"], e["name"]
        assert e["capabilities"]["vision"] == ("image" in e["modalities"]["input"]), e["name"]


@pytest.mark.parametrize("field, value", [
    ("context_window", 0), ("context_window", "big"), ("max_output_tokens", True), ("modalities", {"input": ["smell"]}),
    ("capabilities", {"vision": "yes"}), ("capabilities", {"teleport": True}), ("deprecation_date", "2026-13-01"),
    ("snapshots", "gpt-x-1"), ("metadata", []), ("metadata", {"x": float("nan")}), ("metadata", {"x": "y" * 20_000}), ("price", {"input": 1}), ("name", ""), ("provider", "Open AI"),
])
def test_a_bad_field_is_named(field, value):
    entry = {"provider": "acme", "name": "m", field: value}
    with pytest.raises(ValueError, match=rf"^e\.{field}\b"):
        check_entry(entry, "e")


def test_duplicate_names_are_refused(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [{"provider": "a", "name": "m"},
                                           {"provider": "a", "name": "n", "snapshots": ["m"]}]}))
    with pytest.raises(ValueError, match="a/m is listed twice"):
        load_catalogue(path)


@pytest.mark.parametrize("seen, expected", [
    ("gpt-4o-2024-08-06", "gpt-4o"), ("openai/gpt-4o-mini", "gpt-4o-mini"), ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"), ("models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("llama-3.3-70b-versatile", "llama-3.3-70b"), ("GPT-5", "gpt-5"), ("gpt-4o-minimal", None), ("unknown", None),
])
def test_names_providers_send_resolve_to_their_entry(seen, expected):
    entry = Registry([]).resolve(seen)
    assert (entry and entry["name"]) == expected


def test_a_span_s_provider_picks_the_entry_of_that_provider():
    # "azure" sorts before "openai": a bare gpt-4o must not become the project's Azure model
    registry = Registry([{"provider": "azure", "name": "gpt-4o", "snapshots": ["gpt-4o-2024-08-06"]}])
    for seen in ("gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"):
        assert registry.resolve(seen, "openai")["provider"] == "openai", seen
        assert registry.resolve(seen, "Azure")["provider"] == "azure", seen
        assert registry.resolve(seen)["provider"] == "openai", seen  # no provider: the shipped model
    # a provider without that model (an OpenAI-compatible API serving another vendor's) falls back to the name
    assert registry.resolve("mistral-small", "openai")["provider"] == "mistral"
    assert registry.resolve("openai/gpt-4o", "azure")["provider"] == "openai"  # the name's own prefix wins


def test_a_project_model_overrides_only_the_fields_it_gives():
    registry = Registry([{"provider": "openai", "name": "gpt-4o", "context_window": 64000},
                         {"provider": "acme", "name": "acme-1", "snapshots": ["acme-1-0601"]}])
    gpt = registry.get("openai", "gpt-4o")
    assert gpt["context_window"] == 64000 and gpt["capabilities"]["vision"] and gpt["source"] == "shipped+project"
    assert registry.resolve("acme-1-0601")["source"] == "project"
    # fields a project model left out take the defaults every entry has
    acme = registry.get("acme", "acme-1")
    assert acme["capabilities"] == {"tools": False, "json_output": False, "vision": False}
    assert acme["modalities"] == {"input": ["text"], "output": ["text"]} and acme["context_window"] is None
    assert registry.public(registry.get("acme", "acme-1"))["price"] is None
    priced = Registry([], [pricing.override_entry("acme", "acme-1", {"input": 1, "output": 2})])
    # a project price prices a project model; the shipped table does not
    assert Registry([{"provider": "acme", "name": "acme-1"}], priced.price_overrides).public(
        {"provider": "acme", "name": "acme-1"})["price"]["source"] == "project"
