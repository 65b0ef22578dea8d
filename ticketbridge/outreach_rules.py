"""When the hotline calls a citizen by itself, and what a 回访 answer does to the ticket. Pure: data in, decisions out.

Two kinds of automatic outbound call share one set of rules (config `callbacks.auto`, `followups.auto`,
model.config.AutoDialRules):

* **callback** (漏接电话回拨, 国办函〔2025〕66号): a call abandoned in the queue or ended in the IVR;
* **followup** (回访): a ticket that reached 办结.

An owed call is **due** when all of these hold (`decide`), checked in this order:

1. it is not done, and (callbacks) the same number has not called in again and been answered by an agent
   since — then it is *not needed* and is closed as done, naming that call's ticket;
2. nobody else holds a live claim on it (a `dialing` row whose lease has not run out: *wait*);
3. fewer than `max_attempts` attempts were made (manual ones count) — else *give up*;
4. the number may be dialed out (the outbound policy, routing.outbound) — else *give up*;
5. now is within [since + delay_min, since + within_min] — before: *wait*; after: *give up*;
6. at least `spacing_min` since the last attempt ended — else *wait*;
7. the calling hours are open (`hours`, a schedule of `hours:`; none configured: 08:00–20:00 daily) — else *wait*.

Which controller dials a due call is decided by the store's claim (ticketbridge.store), never here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from model.config import DEFAULT_TZ, AutoDialRules, Hours
from model.hours import is_open, local
from model.ticket_state import TicketState

#: calling hours when `auto.hours` names none: nobody is rung at night
DEFAULT_CALLING_HOURS = Hours(weekly={d: ["08:00-20:00"] for d in  # type: ignore[misc]
                                      ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})


class Verdict(str, Enum):
    DIAL = "dial"
    WAIT = "wait"
    GIVE_UP = "give_up"
    NOT_NEEDED = "not_needed"


@dataclass(frozen=True)
class Owed:
    """One automatic call owed to a citizen, as the store knows it."""

    id: int
    kind: str  # "callback" | "followup"
    ticket_no: str
    number: str
    #: the missed call (callbacks) or the closure (follow-ups)
    since: dt.datetime
    attempts: int
    status: str  # pending | dialing | done | failed
    #: when the last attempt ended (None: never tried)
    last_attempt_at: dt.datetime | None = None
    #: a claim's lease (status dialing): until then another controller is on it
    lease_until: dt.datetime | None = None
    #: the ticket of a later call from the same number that an agent answered (callbacks), if any
    answered_since: str | None = None


@dataclass(frozen=True)
class Decision:
    owed: Owed
    verdict: Verdict
    reason: str
    #: when it may be due (WAIT), if known
    not_before: dt.datetime | None = None


def decide(owed: Owed, rules: AutoDialRules, now: dt.datetime, *, refusal: Callable[[str], str | None],
           hours: Hours | None = None, tz: str = DEFAULT_TZ) -> Decision:
    """Is `owed` to be dialed now? `refusal(number)` is the outbound policy (None: allowed);
    `hours` the calling-hours schedule (None: DEFAULT_CALLING_HOURS)."""
    if owed.status == "done":
        return Decision(owed, Verdict.NOT_NEEDED, "already done")
    if owed.answered_since:
        return Decision(owed, Verdict.NOT_NEEDED,
                        f"the citizen called again and was answered (ticket {owed.answered_since})")
    if owed.status == "dialing" and owed.lease_until is not None and owed.lease_until > now:
        return Decision(owed, Verdict.WAIT, "being dialed", owed.lease_until)
    if owed.attempts >= rules.max_attempts:
        return Decision(owed, Verdict.GIVE_UP, f"{owed.attempts} attempt(s) made, the most allowed")
    if refusal(owed.number):
        # the refusal's own words name the number: never in a reason that is logged
        return Decision(owed, Verdict.GIVE_UP, "refused by the outbound policy (outbound.allow)")
    start = owed.since + dt.timedelta(minutes=rules.delay_min)
    end = owed.since + dt.timedelta(minutes=rules.within_min)
    if now > end:
        return Decision(owed, Verdict.GIVE_UP, f"not reached within {rules.within_min:g} min")
    if now < start:
        return Decision(owed, Verdict.WAIT, f"not before {rules.delay_min:g} min", start)
    if owed.last_attempt_at is not None:
        again = owed.last_attempt_at + dt.timedelta(minutes=rules.spacing_min)
        if now < again:
            return Decision(owed, Verdict.WAIT, f"{rules.spacing_min:g} min between attempts", again)
    if not is_open(hours or DEFAULT_CALLING_HOURS, local(now, tz), tz):
        return Decision(owed, Verdict.WAIT, "outside calling hours")
    return Decision(owed, Verdict.DIAL, f"attempt {owed.attempts + 1} of {rules.max_attempts}")


def plan(owed: Iterable[Owed], rules: AutoDialRules, now: dt.datetime, *, refusal: Callable[[str], str | None],
         hours: Hours | None = None, tz: str = DEFAULT_TZ, limit: int | None = None) -> list[Decision]:
    """Every decision except WAIT, oldest owed call first; at most `limit` DIALs (the rest are left waiting)."""
    out: list[Decision] = []
    dials = 0
    for o in sorted(owed, key=lambda o: (o.since, o.id)):
        d = decide(o, rules, now, refusal=refusal, hours=hours, tz=tz)
        if d.verdict is Verdict.WAIT:
            continue
        if d.verdict is Verdict.DIAL:
            if limit is not None and dials >= limit:
                continue
            dials += 1
        out.append(d)
    return out


# --------------------------------------------------------------------------- 回访 answers


@dataclass(frozen=True)
class FollowupOutcome:
    """What a 回访 answer does: the states the ticket moves through, and the note written with them."""

    states: tuple[TicketState, ...]
    note: str
    reopened: bool


RATING_WORDS = {5: {1: "非常满意", 2: "满意", 3: "基本满意", 4: "不满意", 5: "非常不满意"},
                3: {1: "满意", 2: "基本满意", 3: "不满意"}}


def followup_outcome(resolved: bool | None, rating: int | None, scale: int) -> FollowupOutcome:
    """closed → 回访 (revisited) always; then 督办 (supervised) when the citizen says the request is not
    resolved or gives the worst rating of the scale (5 非常不满意 on 5 levels, 3 不满意 on 3), else
    评价 (rated) when a rating was given; with no rating the ticket stays 已回访."""
    if scale not in RATING_WORDS:
        raise ValueError(f"scale {scale} is not 3 or 5")
    if rating is not None and not 1 <= rating <= scale:
        raise ValueError(f"rating {rating} outside 1..{scale}")
    parts = ["回访: " + {True: "已解决", False: "未解决", None: "未回答是否解决"}[resolved]]
    if rating is not None:
        parts.append(f"满意度 {rating}/{scale} {RATING_WORDS[scale][rating]}")
    else:
        parts.append("未评价")
    reopened = resolved is False or rating == scale
    if reopened:
        states: tuple[TicketState, ...] = (TicketState.revisited, TicketState.supervised)
    elif rating is not None:
        states = (TicketState.revisited, TicketState.rated)
    else:
        states = (TicketState.revisited,)
    return FollowupOutcome(states, ", ".join(parts), reopened)
