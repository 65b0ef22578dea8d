"""Ticket lifecycle (pure): the states of 国办发〔2020〕53号's loop, their allowed moves, and deadlines.

受理 accepted → 派单 dispatched → 办理 handling → 答复 replied → (督办 supervised) → 办结 closed
→ 回访 revisited → 评价 rated.

The table is the single place a move is allowed, so the store, a CLI and an API
cannot disagree about it. Stored values are the English keys (ASCII, stable for
prompt names like `state_accepted`); `LABELS` gives the Chinese a supervisor reads,
and `parse_state` accepts either.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from model.config import DEFAULT_TZ, Deadline, Hours
from model.hours import add_working_days, local
from model.ticket_state import BY_LABEL, TicketState


INITIAL = TicketState.accepted

#: Allowed moves. Beyond the straight line: a consultation answered on the spot (当场解答) is
#: closed at once; a dispatch can be sent back (退单) for re-dispatch; a reply the center rejects,
#: or an unsatisfied follow-up (回访不满意), goes back to handling — or, when the citizen says it is not
#: resolved or is very dissatisfied, to 督办 (ticketbridge.outreach_rules); 督办 can be raised on any open
#: stage after dispatch and always returns to handling.
TRANSITIONS: dict[TicketState, frozenset[TicketState]] = {
    TicketState.accepted: frozenset({TicketState.dispatched, TicketState.handling, TicketState.closed}),
    TicketState.dispatched: frozenset({TicketState.handling, TicketState.supervised, TicketState.accepted}),
    TicketState.handling: frozenset({TicketState.replied, TicketState.supervised}),
    TicketState.replied: frozenset({TicketState.closed, TicketState.supervised, TicketState.handling}),
    TicketState.supervised: frozenset({TicketState.handling}),
    TicketState.closed: frozenset({TicketState.revisited}),
    TicketState.revisited: frozenset({TicketState.rated, TicketState.handling, TicketState.supervised}),
    TicketState.rated: frozenset(),
}


class IllegalTransition(ValueError):
    """A move the table does not allow; names both ends so the log says what was tried."""

    def __init__(self, current: Any, target: Any) -> None:
        self.current, self.target = current, target
        cur = _show(current)
        tgt = _show(target)
        super().__init__(f"illegal ticket state transition {cur} → {tgt}")


def _show(value: Any) -> str:
    try:
        s = parse_state(value)
        return f"{s.value} ({s.label})"
    except ValueError:
        return repr(value)


def parse_state(value: TicketState | str) -> TicketState:
    """`TicketState`, its English key or its Chinese label."""
    if isinstance(value, TicketState):
        return value
    v = str(value).strip()
    if v in BY_LABEL:
        return BY_LABEL[v]
    try:
        return TicketState(v)
    except ValueError:
        raise ValueError(f"unknown ticket state {value!r}") from None


def allowed(current: TicketState | str, target: TicketState | str) -> bool:
    try:
        return parse_state(target) in TRANSITIONS[parse_state(current)]
    except ValueError:
        return False


def transition(current: TicketState | str, target: TicketState | str) -> TicketState:
    """Return `target` if the move is allowed, else raise IllegalTransition naming both."""
    try:
        cur, tgt = parse_state(current), parse_state(target)
    except ValueError:
        raise IllegalTransition(current, target) from None
    if tgt not in TRANSITIONS[cur]:
        raise IllegalTransition(cur, tgt)
    return tgt


# --------------------------------------------------------------------------- deadlines

#: Used when the configuration says nothing for a category (typical city limits; see DESIGN.md).
DEFAULT_DEADLINES: dict[str, Deadline] = {
    "咨询": Deadline(working_days=2),
    "求助": Deadline(working_days=10),
    "意见建议": Deadline(working_days=10),
    "投诉举报": Deadline(working_days=15),
    "其他": Deadline(working_days=10),
    "urgent": Deadline(hours=2),
}
#: Without an office calendar: Monday to Friday, no holidays.
WEEKDAYS = Hours(weekly={d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri")})  # type: ignore[misc]


def deadline(config: Any, category: Any, urgent: bool, accepted_at: dt.datetime,
             tz: str = DEFAULT_TZ) -> dt.datetime:
    """When the ticket must be handled: working days by category on the office calendar, hours if urgent.

    `config` needs only `.deadlines` and `.hours` (a Config, or anything shaped like one).
    Naive `accepted_at` is local time in `tz`.
    """
    configured: dict[str, Deadline] = dict(getattr(config, "deadlines", None) or {})
    table = {**DEFAULT_DEADLINES, **configured}
    cat = getattr(category, "value", category) or "其他"
    start = local(accepted_at, tz)
    if urgent:
        rule = configured.get("urgent")
        hours = (rule.hours if rule and rule.hours else None) or (table.get(cat) or Deadline()).hours
        if not hours:
            hours = DEFAULT_DEADLINES["urgent"].hours or 2
        return start + dt.timedelta(hours=hours)
    rule = configured.get(cat) or configured.get("其他") or table.get(cat) or table["其他"]
    if rule.working_days:
        calendar = (getattr(config, "hours", None) or {}).get("office") or WEEKDAYS
        return add_working_days(calendar, start, rule.working_days, tz)
    if rule.hours:
        return start + dt.timedelta(hours=rule.hours)
    return add_working_days(WEEKDAYS, start, DEFAULT_DEADLINES["其他"].working_days or 10, tz)
