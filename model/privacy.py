"""Personal data stays out of logs: caller numbers are masked before any log line is written."""

from __future__ import annotations


def mask_number(number: str | None) -> str:
    """Keep the first 3 and last 2 digits of a phone number: 138******00."""
    if not number:
        return ""
    n = str(number)
    if len(n) <= 5:
        return n[:1] + "*" * (len(n) - 1) if len(n) > 1 else n
    return n[:3] + "*" * (len(n) - 5) + n[-2:]
