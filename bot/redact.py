"""Mask personal data before anything is stored or shown to an agent.

Conservative patterns: e-mail addresses, payment card numbers (Luhn-checked, so order
numbers survive), IBANs and phone numbers. The customer's words around them are kept, so
the bot and the agent still understand the message.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_PHONE = re.compile(r"(?<![\w/])\+?\d[\d ().-]{7,}\d(?![\w/])")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")


def _mask_phone(match: re.Match[str]) -> str:
    if _DATE.fullmatch(match.group(0)):  # dates look like phone numbers to the pattern
        return match.group(0)
    digits = re.sub(r"\D", "", match.group(0))
    return "[phone]" if 8 <= len(digits) <= 15 else match.group(0)


def redact(text: str) -> str:
    """Return text with personal data replaced by [email], [card], [iban] and [phone]."""
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub(_mask_card, text)
    text = _IBAN.sub("[iban]", text)
    return _PHONE.sub(_mask_phone, text)
