"""Eval rules: which spans an evaluator runs on. Matching is pure so every replica decides alike."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

# Filter keys an eval rule may use, each compared with the span column of the same name.
FILTER_FIELDS = ("name", "kind", "model", "provider", "environment", "release", "status", "user_id",
                 "session_id", "prompt_name", "prompt_version", "service_name")


@dataclass(frozen=True)
class EvalRule:
    id: str
    project_id: str
    name: str
    evaluator: str
    config: dict[str, Any]
    filter: dict[str, Any]
    sampling_rate: float


def rule_matches(rule: EvalRule, span: dict[str, Any]) -> bool:
    """Filter values are a string or a list of strings (any of); ``tag`` matches one of the span's tags;
    ``root_only`` keeps root spans only. Sampling is deterministic per (rule, trace), so a redelivered
    span is sampled the same way and whole traces are kept or skipped together."""
    for key, wanted in rule.filter.items():
        options = wanted if isinstance(wanted, list) else [wanted]
        if key == "tag":
            if not set(options) & set(span.get("tags") or ()):
                return False
        elif key == "root_only":
            if wanted and span.get("parent_span_id"):
                return False
        elif key in FILTER_FIELDS:
            if str(span.get(key, "")) not in {str(o) for o in options}:
                return False
        else:
            return False  # unknown keys are refused when the rule is saved; never match silently
    if rule.sampling_rate >= 1.0:
        return True
    digest = hashlib.blake2b(f"{rule.id}:{span['trace_id']}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rule.sampling_rate
