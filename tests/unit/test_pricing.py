"""Cost computation against hand-computed values (exact to 1e-9 USD) and the shipped price table."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.pricing import DEFAULT_PRICES_PATH, CostResult, PriceTable, Usage, compute_cost, price_table

EPS = 1e-9


def cost_of(model: str, provider: str = "", **tokens: int) -> CostResult:
    return compute_cost(provider, model, Usage(**tokens))


def test_openai_cached_input_and_reasoning() -> None:
    # o4-mini: $1.10 input, $0.275 cached input, $4.40 output (reasoning billed as output).
    # input 12,345 of which 4,096 cached; output 2,500 of which 1,800 reasoning.
    r = cost_of("o4-mini-2025-04-16", "openai", input_tokens=12_345, cache_read_tokens=4_096,
                output_tokens=2_500, reasoning_tokens=1_800)
    # 8,249*1.10 + 4,096*0.275 + 700*4.40 + 1,800*4.40 = 9,073.9 + 1,126.4 + 3,080 + 7,920 = 21,200.3 / 1e6
    assert r.source == "computed" and r.matched == "openai/o4-mini"
    assert abs(r.cost - 0.0212003) < EPS
    assert abs(r.details["input"] - 0.0090739) < EPS
    assert abs(r.details["cache_read"] - 0.0011264) < EPS
    assert abs(r.details["output"] - 0.00308) < EPS
    assert abs(r.details["reasoning"] - 0.00792) < EPS


def test_anthropic_cache_read_and_5m_and_1h_writes() -> None:
    # Anthropic reported input_tokens=1,000 (uncached), cache_read 50,000, cache_creation 10,000
    # (4,000 of them with the 1h TTL): canonical input_tokens = 61,000.
    r = cost_of("claude-sonnet-4-5-20250929", "anthropic", input_tokens=61_000, cache_read_tokens=50_000,
                cache_creation_tokens=10_000, cache_creation_1h_tokens=4_000, output_tokens=800)
    # 1,000*3 + 50,000*0.30 + 6,000*3.75 + 4,000*6 + 800*15 = 3,000 + 15,000 + 22,500 + 24,000 + 12,000
    assert abs(r.cost - 0.0765) < EPS
    assert r.details == pytest.approx({"input": 0.003, "cache_read": 0.015, "cache_write_5m": 0.0225,
                                       "cache_write_1h": 0.024, "output": 0.012}, abs=EPS)
    assert r.matched == "anthropic/claude-sonnet-4-5"


def test_dated_snapshots() -> None:
    # gpt-4o-2024-08-06 is priced as gpt-4o: 1,000*2.50 + 1,000*10 = 12,500 / 1e6
    r = cost_of("gpt-4o-2024-08-06", input_tokens=1_000, output_tokens=1_000)
    assert r.matched == "openai/gpt-4o" and abs(r.cost - 0.0125) < EPS
    # ...but the first gpt-4o snapshot kept its own, higher price: 1,000*5 + 1,000*15
    r = cost_of("gpt-4o-2024-05-13", input_tokens=1_000, output_tokens=1_000)
    assert r.matched == "openai/gpt-4o-2024-05-13" and abs(r.cost - 0.02) < EPS
    for name in ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet-latest", "claude-3-5-sonnet-v2@20241022"):
        assert price_table.lookup("anthropic", name).id == "anthropic/claude-3-5-sonnet", name
    assert price_table.lookup("", "claude-sonnet-4-5@20250929").id == "anthropic/claude-sonnet-4-5"
    assert price_table.lookup("", "gemini-2.5-pro-preview-06-05").id == "google/gemini-2.5-pro"
    assert price_table.lookup("", "gemini-1.5-flash-002").id == "google/gemini-1.5-flash"
    assert price_table.lookup("", "command-r-plus-08-2024").id == "cohere/command-r-plus"
    assert price_table.lookup("", "gpt-3.5-turbo-0125").id == "openai/gpt-3.5-turbo"


def test_provider_prefixed_names() -> None:
    # openai/gpt-4o-mini: 10,000*0.15 + 1,000*0.60 = 2,100 / 1e6
    r = cost_of("openai/gpt-4o-mini", input_tokens=10_000, output_tokens=1_000)
    assert r.matched == "openai/gpt-4o-mini" and abs(r.cost - 0.0021) < EPS
    # Bedrock cross-region id for Claude 3.5 Haiku: 2,000*0.80 + 300*4 = 2,800 / 1e6
    r = cost_of("us.anthropic.claude-3-5-haiku-20241022-v1:0", "aws.bedrock", input_tokens=2_000, output_tokens=300)
    assert r.matched == "anthropic/claude-3-5-haiku" and abs(r.cost - 0.0028) < EPS
    assert price_table.lookup("", "models/gemini-2.0-flash-001").id == "google/gemini-2.0-flash"
    assert price_table.lookup("", "anthropic/claude-3.5-sonnet").id == "anthropic/claude-3-5-sonnet"
    assert price_table.lookup("", "OpenAI/GPT-4o").id == "openai/gpt-4o"


@pytest.mark.parametrize(("model", "expected"), [
    ("gpt-4o-mini", "openai/gpt-4o-mini"),
    ("gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
    ("gpt-4.1-nano-2025-04-14", "openai/gpt-4.1-nano"),
    ("gpt-4.1", "openai/gpt-4.1"),
    ("gpt-4-turbo-2024-04-09", "openai/gpt-4-turbo"),
    ("gpt-4-1106-preview", "openai/gpt-4-turbo"),
    ("gpt-4-0613", "openai/gpt-4"),
    ("o3-mini-2025-01-31", "openai/o3-mini"),
    ("o3", "openai/o3"),
    ("gpt-5-mini-2025-08-07", "openai/gpt-5-mini"),
    ("gpt-5-chat-latest", "openai/gpt-5"),
    ("gpt-5.1", "openai/gpt-5.1"),
    ("claude-opus-4-5-20251101", "anthropic/claude-opus-4-5"),
    ("claude-opus-4-1-20250805", "anthropic/claude-opus-4-1"),
    ("claude-opus-4-20250514", "anthropic/claude-opus-4"),
    ("claude-sonnet-4-20250514", "anthropic/claude-sonnet-4"),
    ("claude-haiku-4-5-20251001", "anthropic/claude-haiku-4-5"),
    ("gemini-2.5-flash-lite", "google/gemini-2.5-flash-lite"),
    ("gemini-2.5-flash", "google/gemini-2.5-flash"),
    ("gemini-1.5-flash-8b", "google/gemini-1.5-flash-8b"),
    ("command-r", "cohere/command-r"),
    ("mistral-large-2411", "mistral/mistral-large"),
    ("mistral-large-latest", "mistral/mistral-large-3"),
    ("text-embedding-3-large", "openai/text-embedding-3-large"),
])
def test_most_specific_match_wins(model: str, expected: str) -> None:
    assert price_table.lookup("", model).id == expected


def test_gpt_4o_mini_is_not_priced_as_gpt_4o() -> None:
    # 1M input tokens: gpt-4o-mini $0.15, gpt-4o $2.50.
    assert abs(cost_of("gpt-4o-mini", input_tokens=1_000_000).cost - 0.15) < EPS


def test_long_context_tier_gemini_2_5_pro() -> None:
    # 250,000 input (> 200k) of which 100,000 cached, 2,000 output, all at the long-context tier:
    # 150,000*2.50 + 100,000*0.25 + 2,000*15 = 375,000 + 25,000 + 30,000 = 430,000 / 1e6
    r = cost_of("gemini-2.5-pro", "gcp.gemini", input_tokens=250_000, cache_read_tokens=100_000, output_tokens=2_000)
    assert abs(r.cost - 0.43) < EPS
    assert r.details["tier_above_input_tokens"] == 200_000
    # Exactly 200,000 is not above the threshold: 200,000*1.25 + 1,000*10 = 260,000 / 1e6
    r = cost_of("gemini-2.5-pro", input_tokens=200_000, output_tokens=1_000)
    assert abs(r.cost - 0.26) < EPS and "tier_above_input_tokens" not in r.details


def test_long_context_tier_claude_sonnet_4_counts_cached_input() -> None:
    # The 200k threshold counts cache reads: 10,000 uncached + 200,000 cached = 210,000 input.
    # 10,000*6 + 200,000*0.60 + 1,000*22.50 = 60,000 + 120,000 + 22,500 = 202,500 / 1e6
    r = cost_of("claude-sonnet-4-20250514", input_tokens=210_000, cache_read_tokens=200_000, output_tokens=1_000)
    assert abs(r.cost - 0.2025) < EPS


def test_unknown_model_is_none_and_flagged_never_zero() -> None:
    r = cost_of("my-finetuned-llama", "vllm", input_tokens=100, output_tokens=10)
    assert r == CostResult(None, "unknown_model", None, {})
    # Tokens without any model name cannot be priced either.
    assert cost_of("", input_tokens=5).source == "unknown_model"
    # A fine-tune is billed differently from its base model: unknown, not the base price.
    assert cost_of("ft:gpt-4o-mini-2024-07-18:acme::abc123", input_tokens=5).cost is None


def test_user_cost_wins() -> None:
    r = compute_cost("openai", "gpt-4o", Usage(input_tokens=1_000), user_cost=0.42)
    assert r == CostResult(0.42, "user", None, {})
    # Even for an unknown model, and even a cost of 0 reported by the user.
    assert compute_cost("x", "unknown-model", Usage(input_tokens=1), user_cost=0.0) == CostResult(0.0, "user", None, {})


def test_no_tokens_no_model() -> None:
    assert compute_cost("", "", Usage()) == CostResult(None, "", None, {})
    assert compute_cost(None, None, Usage()) == CostResult(None, "", None, {})


def test_project_overrides_take_precedence() -> None:
    overrides = [{"id": "proj/gpt-4o-contract", "provider": "openai", "model": "gpt-4o",
                  "prices": {"input": 2.0, "cache_read": 0.5, "output": 8.0, "reasoning": 12.0}}]
    # 1,000 input (200 cached), 500 output (100 reasoning):
    # 800*2 + 200*0.5 + 400*8 + 100*12 = 1,600 + 100 + 3,200 + 1,200 = 6,100 / 1e6
    r = compute_cost("openai", "gpt-4o-2024-11-20", Usage(input_tokens=1_000, cache_read_tokens=200,
                     output_tokens=500, reasoning_tokens=100), overrides=overrides)
    assert r.matched == "proj/gpt-4o-contract" and abs(r.cost - 0.0061) < EPS
    # The override does not leak onto gpt-4o-mini, which keeps the shipped price.
    r = compute_cost("openai", "gpt-4o-mini", Usage(input_tokens=1_000), overrides=overrides)
    assert r.matched == "openai/gpt-4o-mini" and abs(r.cost - 0.00015) < EPS
    # A project can price a model the shipped table does not know.
    own = [{"model": "acme-llm", "prices": {"input": 1, "output": 2}}]
    r = compute_cost("", "acme-llm-v2", Usage(input_tokens=1_000_000, output_tokens=1_000_000), overrides=own)
    assert r.matched == "override/acme-llm" and abs(r.cost - 3.0) < EPS


def test_inconsistent_usage_never_goes_negative() -> None:
    # Anthropic-style input that excludes cache reads breaks the convention; don't bill negative input.
    r = cost_of("claude-3-5-haiku", input_tokens=10, cache_read_tokens=1_000)
    assert r.cost is not None and r.cost >= 0 and "input" not in r.details


def test_lookup_is_memoised() -> None:
    table = PriceTable.from_file(DEFAULT_PRICES_PATH)
    first = table.lookup("openai", "gpt-4o-2024-08-06")
    assert table._cache[("openai", "gpt-4o-2024-08-06")] is first
    assert table.lookup("openai", "gpt-4o-2024-08-06") is first
    assert table.lookup("x", "never-heard-of-it") is None and ("x", "never-heard-of-it") in table._cache
    started = time.perf_counter()
    for _ in range(100_000):
        table.lookup("openai", "gpt-4o-2024-08-06")
    assert time.perf_counter() - started < 1.0  # ~20 ms when it is a dict hit


def test_price_file_is_versioned_and_consistent() -> None:
    doc = json.loads(DEFAULT_PRICES_PATH.read_text(), parse_float=Decimal)
    assert doc["version"] and doc["updated"]
    assert price_table.version == doc["version"]
    ids = [m["id"] for m in doc["models"]]
    assert len(ids) == len(set(ids))
    providers = {m["provider"] for m in doc["models"]}
    assert {"openai", "anthropic", "google", "mistral", "deepseek", "cohere"} <= providers
    for m in doc["models"]:
        # Claude 3 Haiku predates the multipliers: Anthropic lists $0.03 read, $0.30 write for it.
        if m["provider"] != "anthropic" or m["id"] == "anthropic/claude-3-haiku":
            continue
        for prices in [m["prices"], *(t["prices"] for t in m.get("tiers", []))]:
            # Anthropic's cache multipliers: read 0.1x, 5-minute write 1.25x, 1-hour write 2x input.
            assert prices["cache_read"] == prices["input"] * Decimal("0.1"), m["id"]
            assert prices["cache_write_5m"] == prices["input"] * Decimal("1.25"), m["id"]
            assert prices["cache_write_1h"] == prices["input"] * 2, m["id"]


def test_bad_price_entries_are_refused() -> None:
    with pytest.raises(ValueError):
        PriceTable([{"model": "x", "prices": {"output": 1}}])  # no input price
    with pytest.raises(ValueError):
        PriceTable([{"model": "x", "prices": {"input": 1, "cached": 0.5}}])  # unknown key
    with pytest.raises(ValueError):
        PriceTable([{"model": "x", "prices": {"input": 1e-12}}])  # finer than the integer unit


def _exact_cost(raw: dict, u: Usage) -> Fraction:
    """Reference implementation from the JSON text, in rationals."""
    prices = {k: Fraction(str(v)) for k, v in raw["prices"].items()}
    for tier in sorted(raw.get("tiers", []), key=lambda t: t["above_input_tokens"]):
        if u.input_tokens > tier["above_input_tokens"]:
            prices = {**{k: Fraction(str(v)) for k, v in raw["prices"].items()},
                      **{k: Fraction(str(v)) for k, v in tier["prices"].items()}}
    inp = prices["input"]
    out = prices.get("output", Fraction(0))
    w5 = prices.get("cache_write_5m", inp)
    total = (
        (u.input_tokens - u.cache_read_tokens - u.cache_creation_tokens) * inp
        + u.cache_read_tokens * prices.get("cache_read", inp)
        + (u.cache_creation_tokens - u.cache_creation_1h_tokens) * w5
        + u.cache_creation_1h_tokens * prices.get("cache_write_1h", w5)
        + (u.output_tokens - u.reasoning_tokens) * out
        + u.reasoning_tokens * prices.get("reasoning", out)
    )
    return total / 1_000_000


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    cache_read = draw(st.integers(0, 400_000))
    creation = draw(st.integers(0, 100_000))
    creation_1h = draw(st.integers(0, creation))
    uncached = draw(st.integers(0, 400_000))
    reasoning = draw(st.integers(0, 50_000))
    visible = draw(st.integers(0, 50_000))
    return Usage(uncached + cache_read + creation, visible + reasoning, cache_read, creation, creation_1h, reasoning)


@settings(max_examples=300, deadline=None)
@given(entry_index=st.integers(0, len(price_table.entries) - 1), usage=usages())
def test_cost_is_the_correctly_rounded_exact_value(entry_index: int, usage: Usage) -> None:
    entry = price_table.entries[entry_index]
    r = compute_cost(entry.provider, entry.names[0], usage)
    if usage.is_empty():
        assert r.cost is None
        return
    assert r.matched == entry.id
    assert r.cost == float(_exact_cost(entry.raw, usage))


def test_a_project_override_naming_a_provider_prices_only_that_providers_spans() -> None:
    azure = [{"id": "p/azure/gpt-4o", "provider": "Azure", "model": "gpt-4o", "prices": {"input": 1, "output": 1}}]
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert compute_cost("azure", "gpt-4o", usage, overrides=azure).matched == "p/azure/gpt-4o"
    # an OpenAI or Anthropic span of the same model keeps the shipped price
    assert compute_cost("openai", "gpt-4o", usage, overrides=azure).matched == "openai/gpt-4o"
    assert compute_cost("", "gpt-4o", usage, overrides=azure).matched == "openai/gpt-4o"
    # provider '' prices every provider's spans; a provider-specific override beats it for its provider
    both = [*azure, {"id": "p//gpt-4o", "provider": "", "model": "gpt-4o", "prices": {"input": 2, "output": 2}}]
    assert compute_cost("openai", "gpt-4o", usage, overrides=both).matched == "p//gpt-4o"
    assert compute_cost("azure", "gpt-4o", usage, overrides=both).matched == "p/azure/gpt-4o"
