"""Per-agent KPIs by day (pure): agent_events, the agents' current states and tickets in; figures out. No I/O.

`hotline kpi --by agent` prints these, one row per agent (agent ID, 工号) per day (in the center's zone).
Definitions (also in README "Tickets and KPIs" and the command's --help):

* **signed-in time 签入时长**: time in any state but 签出 (ready, ringing, talking, after-call work, busy).
* **ready time 示闲时长**: time in 示闲 (ready, waiting for a call).
* **busy time 示忙时长**, in total and **by reason** (小休, 就餐, … and 未接 when misses set the agent busy).
* **after-call work 话后整理**: time in after-call work (from the end of a call until ready).
* **talking 通话 (state)**: time in the talking state (answer to hang-up as the agent machine saw them).
* **calls answered 接听**: tickets naming the agent (the agent ID of whoever answered), by the day answered.
* **average handling time 平均处理时长 (AHT)**: (talk seconds of those tickets + after-call-work time of the
  day) / calls answered; None with no call.
* **calls missed 未接**: queue calls that rang the agent and were not answered (Asterisk's AgentRingNoAnswer;
  the event's cause `ring_no_answer`). Rows written before migration 0005 have no cause: there a ringing
  that ended in ready, or in busy with reason 未接, counts as a miss.

Time comes from agent_events: each row says the agent spent `seconds` in `old` (with `old_reason`) up to
`at`, so the interval [at - seconds, at) is credited to the agent named on the row, split at midnight and
cut to the period asked. The state an agent is in now (agent_states: since → now) is counted too, so today's
figures include the current stretch. Tickets written before agent IDs name the device (`PJSIP/1001`): they
count for the seat's key (1001), which was every seat's agent ID then.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from model.config import DEFAULT_TZ
from wire.channels import endpoint
from routing.agent import MISSED_REASON  # the busy reason the agent machine sets after too many misses

Row = Mapping[str, Any]

SIGNED_OUT = "signed_out"
SIGNED_IN_STATES = ("ready", "ringing", "talking", "wrap_up", "busy")
#: agent_events rows of refused hot-desk PINs (routing.agent_service.PinRefused): no state was left. Other
#: rows with old = new (the phone marked 离线 or back while signed out or busy) split the time in the state.
PIN_CAUSES = frozenset({"pin_wrong", "pin_locked"})


@dataclass
class AgentDay:
    day: str
    agent: str
    signed_in_s: float = 0.0
    ready_s: float = 0.0
    ringing_s: float = 0.0
    talking_s: float = 0.0
    wrap_up_s: float = 0.0
    busy_s: float = 0.0
    busy_by_reason: dict[str, float] = field(default_factory=dict)
    answered: int = 0
    ticket_talk_s: float = 0.0
    aht_s: float | None = None
    missed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _epoch(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).timestamp()
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _day(t: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(t, tz).date().isoformat()


def split_by_day(start: float, end: float, tz: ZoneInfo) -> list[tuple[str, float]]:
    """[start, end) as (day, seconds) pieces, cut at each midnight of `tz`."""
    out: list[tuple[str, float]] = []
    while start < end:
        local = dt.datetime.fromtimestamp(start, tz)
        midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tz).timestamp()
        piece_end = min(end, midnight)
        out.append((local.date().isoformat(), piece_end - start))
        start = piece_end
    return out


def ticket_agent(value: Any) -> str:
    """The agent a ticket names: an agent ID; an old ticket's device (`PJSIP/1001`) → the seat's key."""
    v = str(value or "")
    return endpoint(v) if v.upper().startswith("PJSIP/") else v


def is_miss(e: Row) -> bool:
    cause = str(e.get("cause") or "")
    if cause:
        return cause == "ring_no_answer"
    new, reason = str(e.get("new")), str(e.get("reason") or "")
    return e.get("old") == "ringing" and (new == "ready" or (new == "busy" and reason == MISSED_REASON))


def compute(events: Iterable[Row], tickets: Iterable[Row], *, current: Iterable[Row] = (),
            since: dt.datetime | None = None, until: dt.datetime | None = None, now: dt.datetime | None = None,
            tz: ZoneInfo = ZoneInfo(DEFAULT_TZ)) -> list[AgentDay]:
    """Per-agent, per-day figures for [since, until) (None: unbounded), sorted by day then agent.

    `events`: agent_events rows (agent, at, old, new, reason, old_reason, seconds, cause); `current`: each
    seat's state now (agent_id, state, reason, since epoch), counted up to `now`; `tickets`: KPI rows
    (agent, answered_at, created_at, talk_s)."""
    lo, hi = _epoch(since), _epoch(until)
    end_now = _epoch(now)
    days: dict[tuple[str, str], AgentDay] = {}

    def fig(day: str, agent: str) -> AgentDay:
        return days.setdefault((day, agent), AgentDay(day, agent))

    def credit(agent: str, state: str, reason: str, start: float, end: float) -> None:
        if state not in SIGNED_IN_STATES or not agent:
            return
        start, end = max(start, lo) if lo is not None else start, min(end, hi) if hi is not None else end
        for day, secs in split_by_day(start, end, tz):
            f = fig(day, agent)
            f.signed_in_s += secs
            if state == "busy":
                f.busy_s += secs
                f.busy_by_reason[reason or "?"] = f.busy_by_reason.get(reason or "?", 0.0) + secs
            else:
                setattr(f, f"{state}_s", getattr(f, f"{state}_s") + secs)

    def inside(t: float) -> bool:
        return (lo is None or t >= lo) and (hi is None or t < hi)

    for e in events:
        at, secs = _epoch(e.get("at")), _epoch(e.get("seconds")) or 0.0
        if at is None:
            continue
        agent = str(e.get("agent") or "")
        if e.get("cause") not in PIN_CAUSES:  # a refused hot-desk PIN spends no time (its old = new)
            credit(agent, str(e.get("old")), str(e.get("old_reason") or ""), at - secs, at)
        if is_miss(e) and inside(at):
            fig(_day(at, tz), agent).missed += 1
    if end_now is not None:
        for c in current:
            start = _epoch(c.get("since"))
            if start:
                credit(str(c.get("agent_id") or c.get("agent") or ""), str(c.get("state")), str(c.get("reason") or ""),
                       start, end_now)
    for t in tickets:
        agent = ticket_agent(t.get("agent"))
        when = _epoch(t.get("answered_at")) or _epoch(t.get("created_at"))
        if not agent or when is None or not inside(when):
            continue
        f = fig(_day(when, tz), agent)
        f.answered += 1
        f.ticket_talk_s += _epoch(t.get("talk_s")) or 0.0
    out = []
    for key in sorted(days):
        f = days[key]
        if f.answered:
            f.aht_s = round((f.ticket_talk_s + f.wrap_up_s) / f.answered, 1)
        for name in ("signed_in_s", "ready_s", "ringing_s", "talking_s", "wrap_up_s", "busy_s", "ticket_talk_s"):
            setattr(f, name, round(getattr(f, name), 1))
        f.busy_by_reason = {k: round(v, 1) for k, v in sorted(f.busy_by_reason.items())}
        out.append(f)
    return out


def hms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


#: the text report's columns: (heading, how a row is shown)
HEADINGS = ("day", "agent", "signed-in", "ready", "busy", "after-call", "answered", "AHT", "missed", "busy by reason")


def report_lines(rows: Iterable[AgentDay]) -> list[str]:
    out = [f"{HEADINGS[0]:<11}{HEADINGS[1]:<10}{HEADINGS[2]:>10}{HEADINGS[3]:>10}{HEADINGS[4]:>10}{HEADINGS[5]:>11}"
           f"{HEADINGS[6]:>9}{HEADINGS[7]:>9}{HEADINGS[8]:>7}  {HEADINGS[9]}"]
    for f in rows:
        reasons = ", ".join(f"{k} {hms(v)}" for k, v in f.busy_by_reason.items()) or "-"
        out.append(f"{f.day:<11}{f.agent:<10}{hms(f.signed_in_s):>10}{hms(f.ready_s):>10}{hms(f.busy_s):>10}"
                   f"{hms(f.wrap_up_s):>11}{f.answered:>9}{hms(f.aht_s):>9}{f.missed:>7}  {reasons}")
    return out
