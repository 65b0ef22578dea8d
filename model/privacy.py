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


#: A caller or dialed number is kept in one bounded form wherever it comes from (the HotlineCall
#: UserEvent, Newchannel's CallerIDNum/Exten, the CDR's src/dst): at most NUMBER_MAX characters of
#: NUMBER_CHARS (digits, `+*#`, ASCII letters for SIP user names such as `anonymous`, and `-_.`);
#: anything else (spaces, control characters, quotes, CJK, …) is dropped and a longer number is cut.
#: E.164 numbers have at most 15 digits, so a real number is never changed.
NUMBER_MAX = 32
NUMBER_CHARS = frozenset("0123456789+*#-_.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def normalise_number(number: object) -> str:
    """The bounded form of a caller or dialed number (see NUMBER_MAX); '' for None."""
    if number is None:
        return ""
    return "".join(c for c in str(number) if c in NUMBER_CHARS)[:NUMBER_MAX]
