"""Enrichment: cost, tokens, derived timings and error class. One place computes each of these."""

from __future__ import annotations

from typing import Any

from core.errors_class import OTHER, classify_error
from core.pricing import Usage, compute_call_cost
from core.tokens import fill_missing_tokens


def enrich(span: dict[str, Any], overrides: list[dict] | None = None) -> dict[str, Any]:
    """Fill the derived columns of a canonical record in place and return it.

    Deterministic: the same input always yields the same row, so a redelivered span is byte-identical.
    """
    start, end = span["start_time"], span["end_time"]
    if start is not None and end is not None:
        span["duration_ms"] = max((end - start).total_seconds() * 1000.0, 0.0)
    fill_missing_tokens(span)
    if not span.get("total_tokens"):
        span["total_tokens"] = span["input_tokens"] + span["output_tokens"]
    _price(span, overrides)
    _throughput(span)
    if span["status"] == "error" and not span.get("error_class"):
        status_code = span.get("attributes", {}).get("http.response.status_code")
        try:
            http_status = int(status_code) if status_code else None
        except ValueError:
            http_status = None
        # an error span always gets a class: "other" when nothing tells which
        span["error_class"] = classify_error(span.get("error_type", ""), span.get("status_message", ""), http_status) \
            or OTHER
    return span


def _price(span: dict[str, Any], overrides: list[dict] | None) -> None:
    user_cost = span["cost"] if span.get("cost_source") == "user" else None
    model = span.get("model") or span.get("request_model")
    if user_cost is None and not model:
        return
    usage = Usage(
        input_tokens=span["input_tokens"],
        output_tokens=span["output_tokens"],
        cache_read_tokens=span["cache_read_tokens"],
        cache_creation_tokens=span["cache_creation_tokens"],
        cache_creation_1h_tokens=int(span.get("attributes", {}).get("gen_ai.usage.cache_creation.1h_input_tokens", 0) or 0),
        reasoning_tokens=span["reasoning_tokens"],
    )
    result = compute_call_cost(span.get("provider") or None, model, span.get("request_model") or None, usage,
                               user_cost=user_cost, overrides=overrides)
    span["cost"] = result.cost
    span["cost_source"] = result.source


def _throughput(span: dict[str, Any]) -> None:
    out = span["output_tokens"]
    if not out or not span["duration_ms"]:
        return
    generation_ms = span["duration_ms"] - (span["ttft_ms"] or 0.0)
    if generation_ms > 0:
        span["tokens_per_second"] = out / (generation_ms / 1000.0)
