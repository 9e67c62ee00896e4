"""PII and secret detection: emails, phone numbers, payment cards (Luhn-checked), SSNs, API keys.

The score's reason names kinds and counts with masked samples, never the full value: scores are
stored and shown to everyone with access to the project, and must not become a second leak.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from evaluators.base import Evaluator, EvaluatorConfig, Score, SpanOrTrace, subject_of
from evaluators.registry import register

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
# 13-19 digits, optionally grouped by single spaces or dashes.
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
# International (+CC ...) or North-American shapes; separators required for the local shape so
# that plain numbers (ids, amounts) are not reported.
PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}"
    r"|\d{3}[.-]\d{3}[.-]\d{4}"
    r")(?![\w])"
)
API_KEYS: dict[str, re.Pattern[str]] = {
    "anthropic_key": re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    "openai_key": re.compile(r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b"),
    "slack_token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "stripe_key": re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}"),
    "private_key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
}

Kind = Literal["email", "phone", "credit_card", "ssn", "api_key"]
ALL_KINDS: tuple[Kind, ...] = ("email", "phone", "credit_card", "ssn", "api_key")


def luhn_valid(number: str) -> bool:
    """The Luhn checksum used by payment cards. ``number`` may contain spaces or dashes."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class Finding:
    """One detected item: its kind (``api_key`` findings carry the key type in ``detail``)."""

    kind: str
    start: int
    end: int
    value: str
    detail: str = ""

    def masked(self) -> str:
        v = self.value
        return v[:4] + "…" + v[-2:] if len(v) > 8 else "…"


def find_pii(text: str, kinds: Sequence[str] = ALL_KINDS) -> list[Finding]:
    """All PII findings in ``text``, in order of position. Spans never overlap."""
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    def add(kind: str, m: re.Match[str], detail: str = "") -> None:
        if free(m.start(), m.end()):
            taken.append((m.start(), m.end()))
            found.append(Finding(kind, m.start(), m.end(), m.group(0), detail))

    # Most specific first, so a card number is not also reported as a phone number.
    if "api_key" in kinds:
        for key_type, regex in API_KEYS.items():
            for m in regex.finditer(text):
                add("api_key", m, key_type)
    if "email" in kinds:
        for m in EMAIL.finditer(text):
            add("email", m)
    if "credit_card" in kinds:
        for m in CARD.finditer(text):
            if luhn_valid(m.group(0)):
                add("credit_card", m)
    if "ssn" in kinds:
        for m in SSN.finditer(text):
            add("ssn", m)
    if "phone" in kinds:
        for m in PHONE.finditer(text):
            if 7 <= sum(c.isdigit() for c in m.group(0)) <= 15:
                add("phone", m)
    return sorted(found, key=lambda f: f.start)


SpanField = Literal["input", "output"]


def _output_only() -> list[SpanField]:
    return ["output"]


class PiiConfig(EvaluatorConfig):
    kinds: list[Kind] = Field(default_factory=lambda: list(ALL_KINDS), min_length=1)
    fields: list[SpanField] = Field(default_factory=_output_only, min_length=1)


@register
class PiiDetection(Evaluator[PiiConfig]):
    """Detects PII and secrets in the output (and/or input). True = something was found."""

    name = "pii"
    Config = PiiConfig

    def evaluate(self, span_or_trace: SpanOrTrace) -> list[Score]:
        subject = subject_of(span_or_trace)
        parts: list[str] = []
        for field_name in self.config.fields:
            findings = find_pii(getattr(subject, field_name), self.config.kinds)
            if findings:
                counts: dict[str, list[Finding]] = {}
                for f in findings:
                    counts.setdefault(f.detail or f.kind, []).append(f)
                desc = ", ".join(f"{k} x{len(v)} ({v[0].masked()})" for k, v in counts.items())
                parts.append(f"{field_name}: {desc}")
        if parts:
            return [self.score(True, "; ".join(parts))]
        return [self.score(False, "no PII found")]
