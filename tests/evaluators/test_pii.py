"""PII / secret detection vectors, including Luhn-valid vs Luhn-invalid card numbers."""

from __future__ import annotations

import pytest

from evaluators import get_evaluator
from evaluators.pii import find_pii, luhn_valid

from .conftest import make_span


@pytest.mark.parametrize(
    "number, valid",
    [
        ("4111 1111 1111 1111", True),  # Visa test number
        ("4111 1111 1111 1112", False),
        ("5555-5555-5555-4444", True),  # Mastercard test number
        ("378282246310005", True),  # Amex, 15 digits
        ("6011111111111117", True),  # Discover
        ("6011111111111118", False),
        ("1234567812345678", False),
        ("79927398713", True),  # the classic Luhn example
    ],
)
def test_luhn(number, valid):
    assert luhn_valid(number) is valid


def kinds(text: str) -> list[str]:
    return [f.detail or f.kind for f in find_pii(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mail me at jane.doe+tag@example.co.uk today", ["email"]),
        ("card 4111 1111 1111 1111 exp 12/29", ["credit_card"]),
        ("card 4111 1111 1111 1112 exp 12/29", []),  # fails Luhn: not a card
        ("pay with 5555-5555-5555-4444", ["credit_card"]),
        ("call +1 415-555-2671 now", ["phone"]),
        ("call (415) 555-2671", ["phone"]),
        ("call 415.555.2671", ["phone"]),
        ("ring +44 20 7946 0958", ["phone"]),
        ("ssn 123-45-6789", ["ssn"]),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz123456", ["openai_key"]),
        ("key sk-ant-api03-abcdefghijklmnopqrstuvwxyz", ["anthropic_key"]),
        ("aws AKIAIOSFODNN7EXAMPLE here", ["aws_access_key"]),
        ("token ghp_" + "a1B2c3D4e5" * 3 + "abcdef", ["github_token"]),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE...", ["private_key"]),
        # Things that look numeric or key-ish but are not PII.
        ("order 12345678 shipped on 2026-01-15, total $1,234.56", []),
        ("the task-force met; sk-short is not a key", []),
        ("version 1.2.3 build 4567", []),
    ],
)
def test_find_pii(text, expected):
    assert kinds(text) == expected


def test_evaluator_reports_kinds_and_counts_without_leaking_values():
    span = make_span("Contact bob@example.com or alice@example.org, card 4111111111111111")
    score = get_evaluator("pii", {}).evaluate(span)[0]
    assert score.value is True
    assert "email x2" in score.reason and "credit_card x1" in score.reason
    assert "bob@example.com" not in score.reason and "4111111111111111" not in score.reason


def test_evaluator_scope_by_kind_and_field():
    span = make_span("nothing here", input="my email is x@y.io")
    assert get_evaluator("pii", {}).evaluate(span)[0].value is False  # output only by default
    assert get_evaluator("pii", {"fields": ["input"]}).evaluate(span)[0].value is True
    assert get_evaluator("pii", {"fields": ["input"], "kinds": ["phone"]}).evaluate(span)[0].value is False


def test_unknown_kind_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match=r"config\.kinds\.0"):
        get_evaluator("pii", {"kinds": ["dna"]})
