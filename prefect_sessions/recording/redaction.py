"""Text redacted before it lands in a suite, as providers redact their transcripts: email
addresses, card numbers and phone numbers. ``record --unredacted`` keeps text as said."""

from __future__ import annotations

import re

_PATTERNS = (
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[EMAIL]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[CARD]"),
    (re.compile(r"(?:\+\d{1,3}[ -]?)?\(?\d{3}\)?[ -]\d{3}[ -]\d{4}\b"), "[PHONE]"),
)


def redact(text: str) -> str:
    """``text`` with emails, card numbers and phone numbers replaced by a marker."""
    for pattern, marker in _PATTERNS:
        text = pattern.sub(marker, text)
    return text
