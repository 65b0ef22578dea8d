"""The ticket notice after the agent hangs up (pure): ticket number and query password, digit by digit.

"您的工单编号是 2 6 1 1 3 0 … 查询密码是 4 8 … 重听请按星号键": a generator of actions that the
survey script (ivr/calls.py) performs, as the inbound flow is driven in ivr/callflow.py. What
nobody can interrupt (the two prompts and the two numbers) is one `Recite`, which the performer
plays as one run (one Playback of the files back to back): a caller who hears it twice costs a
handful of AGI commands, not one per digit. `*` (the only key that does anything here) starts the
notice again, at most `max_repeats` times; any other key or silence goes on to the survey.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from model.caller_loop import TicketNotice


@dataclass(frozen=True)
class Say:
    """A part of a run: the prompt `prompt`."""

    prompt: str


@dataclass(frozen=True)
class SayDigits:
    """A part of a run: `digits` one at a time, `gap_s` of silence between two.

    `secret`: the digits are the password: the performer announces the prompts of the run, never
    the digits, and the part's repr hides them (an action logged by mistake does not leak it)."""

    digits: str
    gap_s: float
    secret: bool = False

    def __repr__(self) -> str:
        shown = "*" * len(self.digits) if self.secret else self.digits
        return f"SayDigits(digits={shown!r}, gap_s={self.gap_s!r}, secret={self.secret!r})"


Part = Say | SayDigits


@dataclass(frozen=True)
class Recite:
    """Play `parts` back to back as one run, not interruptible (a hang-up still ends it). Answer: None."""

    parts: tuple[Part, ...]


@dataclass(frozen=True)
class AskRepeat:
    """Play `prompt` and wait up to `wait_s` for a key. Answer: the key, or None."""

    prompt: str
    wait_s: float


NoticeAction = Recite | AskRepeat
#: the key that repeats the notice
REPEAT_KEY = "*"


def ticket_notice(settings: TicketNotice, ticket_no: str, password: str) -> Generator[NoticeAction, object, int]:
    """The notice as actions; returns how many times it was played."""
    told = Recite((Say(settings.ticket_prompt), SayDigits(ticket_no, settings.digit_gap_s),
                   Say(settings.password_prompt), SayDigits(password, settings.digit_gap_s, secret=True)))
    played = 0
    while True:
        played += 1
        yield told
        if played > settings.max_repeats:
            return played
        key = yield AskRepeat(settings.repeat_prompt, settings.repeat_wait_s)
        if key != REPEAT_KEY:
            return played
