"""The ticket notice after the agent hangs up (pure): ticket number and query password, digit by digit.

"您的工单编号是 2 6 1 1 3 0 … 查询密码是 4 8 … 重听请按星号键": a generator of actions that the
survey script (ivr/calls.py) performs, as the inbound flow is driven in ivr/callflow.py. `*`
(the only key that does anything here) starts the notice again, at most `max_repeats` times;
any other key or silence goes on to the survey.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from model.caller_loop import TicketNotice


@dataclass(frozen=True)
class Say:
    """Play the prompt `prompt` (not interruptible). Answer: None."""

    prompt: str


@dataclass(frozen=True)
class SayDigits:
    """Read `digits` one at a time, `gap_s` of silence between two. Answer: None.

    `secret`: the digits are the password: the performer announces the prompt, never the digits."""

    digits: str
    gap_s: float
    secret: bool = False


@dataclass(frozen=True)
class AskRepeat:
    """Play `prompt` and wait up to `wait_s` for a key. Answer: the key, or None."""

    prompt: str
    wait_s: float


NoticeAction = Say | SayDigits | AskRepeat
#: the key that repeats the notice
REPEAT_KEY = "*"


def ticket_notice(settings: TicketNotice, ticket_no: str, password: str) -> Generator[NoticeAction, object, int]:
    """The notice as actions; returns how many times it was played."""
    played = 0
    while True:
        played += 1
        yield Say(settings.ticket_prompt)
        yield SayDigits(ticket_no, settings.digit_gap_s)
        yield Say(settings.password_prompt)
        yield SayDigits(password, settings.digit_gap_s, secret=True)
        if played > settings.max_repeats:
            return played
        key = yield AskRepeat(settings.repeat_prompt, settings.repeat_wait_s)
        if key != REPEAT_KEY:
            return played
