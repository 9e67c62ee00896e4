"""Answer extractors: the letter of a multiple-choice answer, GSM8K's final number, a yes/no.

Each returns ``None`` when the answer does not commit to one value, so a hedge ("A or B") scores 0
rather than whichever letter a loose pattern happens to see first.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

LETTERS = "ABCDEFGHIJ"

# "The answer is (B)", "Answer: B", "correct option: B", "**Answer:** B"
_ANSWER_IS = re.compile(
    r"(?:answer|option|choice)\**\s*(?:is|would be|:)?\s*(?:option|choice)?\s*[:\-]?\s*\**\s*\(?([A-J])\)?(?![A-Za-z])",
    re.I)
_LEADING = re.compile(r"^\W*\(?([A-J])[.):\]]")  # "B) Paris ...", "(C) ...", "D. ..."
_STANDALONE = re.compile(r"(?<![A-Za-z'])\(?([A-J])\)?(?![A-Za-z'])")
_ARTICLE_A = re.compile(r"(?<![A-Za-z'])A(?= [a-z])")  # "A cat": the article, not option A


def choice_letter(output_text: str, n_choices: int) -> str | None:
    """The chosen letter among the first ``n_choices`` letters, or None."""
    valid = LETTERS[:n_choices]
    text = (output_text or "").strip()
    stated = [m for m in _ANSWER_IS.findall(text) if m in valid and m.isupper()]
    if stated:
        return stated[-1]  # a model that reasons first states its final answer last
    letters = {m for m in _STANDALONE.findall(_ARTICLE_A.sub(" ", text)) if m in valid}
    if len(letters) == 1:
        return letters.pop()
    lead = _LEADING.match(text)  # several letters: an answer that opens with "B) ..." chose B
    return lead.group(1) if lead and lead.group(1) in valid else None


_FINAL = re.compile(r"(?:####|answer is|answer:)\s*\$?\s*(-?[\d,]*\.?\d+)", re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def final_number(output_text: str) -> Decimal | None:
    """GSM8K: the number after "####" / "the answer is", else the last number in the text."""
    text = output_text or ""
    stated = _FINAL.findall(text)
    candidates = stated or _NUMBER.findall(text)
    if not candidates:
        return None
    return to_number(candidates[-1])


def to_number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "").replace("$", "").strip().rstrip("."))
    except InvalidOperation:
        return None


_YES_NO = re.compile(r"\b(yes|no|true|false)\b", re.I)


def yes_no(output_text: str) -> bool | None:
    """BoolQ: the first yes/no/true/false word decides; None when there is none."""
    m = _YES_NO.search(output_text or "")
    return None if m is None else m.group(1).lower() in ("yes", "true")
