"""Closure KPIs (pure): what happened to the requests after the call. Rows in, figures out; no I/O, no clock.

Rows come from `TicketStore.closure_rows()`: a ticket's `ticket_no`, `created_at`, `caller`,
`queue`, `legacy_line`, `dialed`, `category`, `agent`, `deadline_at`, `closed_on_spot`, and from
its history `closed_at` (the first move to 办结), `revisited` (it reached 回访) and `revisit_out`
(where it went from 回访: `rated` 评价, or back to `handling`/`supervised`), from its automated 回访
call `followup_rating`/`followup_scale`/`followup_resolved` (the citizen's answer); `in_period` tells the
rows the figures are about from the earlier ones only read for repeated calls. The definitions,
written next to each figure in `hotline kpi` and the monthly report (DEFINITIONS):
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo

from model.config import DEFAULT_TZ
from ticketbridge.kpi import satisfied

Row = Mapping[str, Any]

#: a call from a number that already called within this window is a repeated call (重复来电)
REPEAT_WINDOW = dt.timedelta(days=7)
GROUPINGS = ("day", "week", "month", "queue", "line", "category")
_ZONE = ZoneInfo(DEFAULT_TZ)

#: figure → its definition, shown next to it
DEFINITIONS: dict[str, str] = {
    "requests": "诉求 = tickets an agent answered (calls that ended in the IVR or the queue are not requests)",
    "closed": "办结 = requests that reached 办结 (or later 回访/评价) by the time of the report",
    "closure_rate": "办结率 = requests closed (reached 办结, or later 回访/评价) / requests (tickets an agent answered)",
    "on_time_rate": "按时办结率 = closed at or before the ticket's deadline / closed (the deadline in force when it "
                    "was closed; tickets without a deadline are left out of both sides)",
    "revisit_rate": "回访率 = closed tickets that reached 回访 (follow-up call made) / closed",
    "revisit_satisfaction_rate": "回访满意率 = follow-ups rated satisfied (1–2 of 5, 1 of 3, and not 'not resolved') / "
                                 "follow-ups rated; a 回访 entered by hand counts by where the ticket went (→ 评价 "
                                 "satisfied, → 办理/督办 not)",
    "on_spot_rate": "当场解答率 = requests closed straight from 受理 (accepted → closed, the agent's marking) / requests",
    "repeat_rate": "重复来电率 = calls from a number that had already called within the 7 days before / calls with a "
                   "known number",
}


@dataclass
class Closure:
    tickets: int = 0
    requests: int = 0
    closed: int = 0
    closed_with_deadline: int = 0
    closed_on_time: int = 0
    revisited: int = 0
    revisit_answered: int = 0
    revisit_satisfied: int = 0
    on_spot: int = 0
    calls_with_number: int = 0
    repeat_calls: int = 0
    closure_rate: float | None = None
    on_time_rate: float | None = None
    revisit_rate: float | None = None
    revisit_satisfaction_rate: float | None = None
    on_spot_rate: float | None = None
    repeat_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _when(v: Any) -> dt.datetime | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return dt.datetime.fromtimestamp(v, dt.timezone.utc)
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)
    return None


def repeated(rows: Iterable[Row], window: dt.timedelta = REPEAT_WINDOW) -> set[str]:
    """Ticket numbers of calls whose number had called within `window` before (any row, in period or not)."""
    last: dict[str, dt.datetime] = {}
    out: set[str] = set()
    for row in sorted(rows, key=lambda r: (_when(r.get("created_at")) or dt.datetime.min.replace(
            tzinfo=dt.timezone.utc), str(r.get("ticket_no")))):
        number, at = str(row.get("caller") or ""), _when(row.get("created_at"))
        if not number or at is None:
            continue
        before = last.get(number)
        if before is not None and at - before <= window:
            out.add(str(row.get("ticket_no")))
        last[number] = at
    return out


def compute(rows: Iterable[Row], *, repeats: set[str] | None = None) -> Closure:
    """The figures of the rows `in_period` (rows without the key count); `repeats` from `repeated(all rows)`."""
    rows = list(rows)
    repeats = repeated(rows) if repeats is None else repeats
    f = Closure()
    for row in rows:
        if not row.get("in_period", True):
            continue
        f.tickets += 1
        if row.get("caller"):
            f.calls_with_number += 1
            f.repeat_calls += str(row.get("ticket_no")) in repeats
        if not row.get("agent"):
            continue
        f.requests += 1
        f.on_spot += bool(row.get("closed_on_spot"))
        closed_at = _when(row.get("closed_at"))
        if closed_at is None:
            continue
        f.closed += 1
        due = _when(row.get("deadline_at"))
        if due is not None:
            f.closed_with_deadline += 1
            f.closed_on_time += closed_at <= due
        if row.get("revisited"):
            f.revisited += 1
            sat = satisfied(row.get("followup_rating"), row.get("followup_scale"))
            if sat is not None:  # the automated 回访's answer
                f.revisit_answered += 1
                f.revisit_satisfied += sat and row.get("followup_resolved") is not False
            elif (out := row.get("revisit_out")) and row.get("followup_resolved") is None:
                f.revisit_answered += 1
                f.revisit_satisfied += out == "rated"
    f.closure_rate = _rate(f.closed, f.requests)
    f.on_time_rate = _rate(f.closed_on_time, f.closed_with_deadline)
    f.revisit_rate = _rate(f.revisited, f.closed)
    f.revisit_satisfaction_rate = _rate(f.revisit_satisfied, f.revisit_answered)
    f.on_spot_rate = _rate(f.on_spot, f.requests)
    f.repeat_rate = _rate(f.repeat_calls, f.calls_with_number)
    return f


def period_key(by: str, tz: ZoneInfo = _ZONE) -> Callable[[Row], str]:
    """A row's group: its local day / ISO week / month of creation, its queue, line or category."""
    def local(row: Row) -> dt.date | None:
        t = _when(row.get("created_at"))
        return t.astimezone(tz).date() if t is not None else None

    if by == "day":
        return lambda r: (d.isoformat() if (d := local(r)) else "?")
    if by == "week":
        return lambda r: (f"{d.isocalendar().year}-W{d.isocalendar().week:02d}" if (d := local(r)) else "?")
    if by == "month":
        return lambda r: (f"{d.year}-{d.month:02d}" if (d := local(r)) else "?")
    if by == "queue":
        return lambda r: str(r.get("queue") or "(none)")
    if by == "line":
        return lambda r: str(r.get("legacy_line") or r.get("dialed") or "?")
    if by == "category":
        return lambda r: str(r.get("category") or "(none)")
    raise ValueError(f"unknown grouping {by!r}: one of {', '.join(GROUPINGS)}")


def grouped(rows: Iterable[Row], by: str, *, tz: ZoneInfo = _ZONE) -> dict[str, Closure]:
    rows = list(rows)
    repeats = repeated(rows)
    key = period_key(by, tz)
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.get("in_period", True):
            groups.setdefault(key(row), []).append(row)
    return {k: compute(v, repeats=repeats) for k, v in sorted(groups.items())}


#: (field, label) in reading order; each rate's definition is in DEFINITIONS
REPORT = (
    ("requests", "requests 诉求 (answered by an agent)"),
    ("closed", "closed 办结"),
    ("closure_rate", "办结率 closure rate"),
    ("on_time_rate", "按时办结率 closed on time"),
    ("revisit_rate", "回访率 follow-up rate"),
    ("revisit_satisfaction_rate", "回访满意率 follow-up satisfaction"),
    ("on_spot_rate", "当场解答率 on-the-spot resolution"),
    ("repeat_rate", "重复来电率 repeated calls (7 days)"),
)


def report_lines(f: Closure, *, definitions: bool = True) -> list[str]:
    out = []
    for name, label in REPORT:
        v = getattr(f, name)
        shown = "–" if v is None else (f"{v * 100:.1f}%" if name.endswith("_rate") else str(v))
        out.append(f"  {label:<36} {shown:>7}" + (f"   {DEFINITIONS[name]}" if definitions and name in DEFINITIONS
                                                 else ""))
    return out
