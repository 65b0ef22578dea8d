"""The hotline's KPIs (pure): ticket rows in, figures out. No I/O, no clock.

Rows are plain mappings with the columns of `ticketbridge.store.KPI_COLUMNS` plus
`closed_on_spot` (the ticket went 受理 → 办结 directly) and `callback_status` (None when
no callback was ever needed); `TicketStore.kpi_rows()` produces them. Definitions (also
in README "Tickets and KPIs"):

* offered 进线: calls that reached a queue or an agent (a queue visit or an agent);
  calls that ended in the IVR, were forwarded by a legacy-line rule or retired are not offered.
* 接通率 answer rate = answered by an agent / offered.
* 15 秒接通率 answered within 15 s (GB/T 33358) = answered with queue_wait_s ≤ 15 / answered
  whose wait is known (a CDR-rebuilt ticket cannot split IVR from queue time: counted in
  `answered_wait_unknown`, left out of both sides).
* 放弃率 abandon rate = abandoned in queue / offered.
* 当场解答率 on-the-spot resolution = tickets closed directly from 受理 (accepted → closed)
  / answered.
* 满意率 satisfaction = satisfied / rated. Satisfied: 1–2 on the 5-level scale
  (1 非常满意, 2 满意, as the shipped survey prompt numbers them), 1 on a 3-level scale;
  rated = a rating was keyed. `survey_rate` = rated / answered.
* transfers: per outcome (completed, failed, answered, no_answer, …) and per kind.
* lines: calls per dialed line — `legacy_line` for a merged/legacy number, else the
  number dialed (12345) — so merged-line traffic stays visible.
* callbacks (漏接电话回拨): needed, done, failed, pending (incl. dialing), and
  callback_rate = done / needed.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from model.config import DEFAULT_TZ

Row = Mapping[str, Any]

#: GB/T 33358-2016: calls should be answered within 15 seconds
ANSWER_WITHIN_S = 15.0
#: days are counted in the center's zone (center.timezone); this is its default
DEFAULT_ZONE = ZoneInfo(DEFAULT_TZ)
GROUPINGS = ("day", "queue", "line")


@dataclass
class Figures:
    calls: int = 0
    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    answered_wait_known: int = 0
    answered_wait_unknown: int = 0
    abandoned: int = 0
    ended_in_ivr: int = 0
    in_progress: int = 0
    fallback: int = 0
    closed_on_spot: int = 0
    rated: int = 0
    satisfied: int = 0
    avg_wait_s: float | None = None
    avg_talk_s: float | None = None
    answer_rate: float | None = None
    answered_within_rate: float | None = None
    abandon_rate: float | None = None
    on_spot_rate: float | None = None
    satisfaction_rate: float | None = None
    survey_rate: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    transfers: dict[str, int] = field(default_factory=dict)
    transfer_kinds: dict[str, int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    callbacks_needed: int = 0
    callbacks_done: int = 0
    callbacks_failed: int = 0
    callbacks_pending: int = 0
    callback_rate: float | None = None
    #: 老年人优先: calls queued with priority (listed or by the key), and how many of them were answered
    priority_calls: int = 0
    priority_answered: int = 0
    #: calls by language path (en, nan, …; the center's own is not counted)
    languages: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def satisfied(rating: Any, scale: Any) -> bool | None:
    """True/False for a keyed rating, None when there is none (1 is best on both scales)."""
    r, sc = _num(rating), _num(scale) or 5
    if r is None:
        return None
    return r <= (1 if sc <= 3 else 2)


def is_offered(row: Row) -> bool:
    return bool(row.get("queue")) or bool(row.get("agent"))


def is_answered(row: Row) -> bool:
    return bool(row.get("agent"))


def line_of(row: Row) -> str:
    return str(row.get("legacy_line") or row.get("dialed") or "?")


def day_of(row: Row, tz: ZoneInfo = DEFAULT_ZONE) -> str:
    t = row.get("created_at") or row.get("started_at")
    if isinstance(t, (int, float)):
        t = dt.datetime.fromtimestamp(t, tz)
    if not isinstance(t, dt.datetime):
        return "?"
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(tz).date().isoformat()


def compute(rows: Iterable[Row], *, answer_within_s: float = ANSWER_WITHIN_S) -> Figures:
    f = Figures()
    outcomes: Counter[str] = Counter()
    transfers: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    waits: list[float] = []
    talks: list[float] = []
    for row in rows:
        f.calls += 1
        outcome = str(row.get("outcome") or "in_progress")
        outcomes[outcome] += 1
        lines[line_of(row)] += 1
        if row.get("priority"):
            f.priority_calls += 1
            f.priority_answered += bool(is_answered(row))
        if row.get("language"):
            languages[str(row.get("language"))] += 1
        if row.get("handled_by") == "fallback":
            f.fallback += 1
        if outcome == "ended_in_ivr":
            f.ended_in_ivr += 1
        elif outcome == "in_progress":
            f.in_progress += 1
        if is_offered(row):
            f.offered += 1
            if outcome == "abandoned_in_queue":
                f.abandoned += 1
        if is_answered(row):
            f.answered += 1
            wait = _num(row.get("queue_wait_s"))
            if wait is None:
                f.answered_wait_unknown += 1
            else:
                f.answered_wait_known += 1
                waits.append(wait)
                if wait <= answer_within_s:
                    f.answered_within += 1
            talk = _num(row.get("talk_s"))
            if talk is not None:
                talks.append(talk)
            if row.get("closed_on_spot"):
                f.closed_on_spot += 1
        sat = satisfied(row.get("survey_rating"), row.get("survey_scale"))
        if sat is not None:
            f.rated += 1
            f.satisfied += sat
        for t in row.get("transfers") or []:
            if isinstance(t, Mapping):
                transfers[str(t.get("outcome") or "unknown")] += 1
                kinds[str(t.get("kind") or t.get("mode") or "unknown")] += 1
        cb = row.get("callback_status")
        if cb is not None:
            f.callbacks_needed += 1
            if cb == "done":
                f.callbacks_done += 1
            elif cb == "failed":
                f.callbacks_failed += 1
            else:
                f.callbacks_pending += 1
    f.avg_wait_s = round(sum(waits) / len(waits), 2) if waits else None
    f.avg_talk_s = round(sum(talks) / len(talks), 2) if talks else None
    f.answer_rate = _rate(f.answered, f.offered)
    f.answered_within_rate = _rate(f.answered_within, f.answered_wait_known)
    f.abandon_rate = _rate(f.abandoned, f.offered)
    f.on_spot_rate = _rate(f.closed_on_spot, f.answered)
    f.satisfaction_rate = _rate(f.satisfied, f.rated)
    f.survey_rate = _rate(f.rated, f.answered)
    f.callback_rate = _rate(f.callbacks_done, f.callbacks_needed)
    f.outcomes = dict(sorted(outcomes.items()))
    f.transfers = dict(sorted(transfers.items()))
    f.transfer_kinds = dict(sorted(kinds.items()))
    f.lines = dict(sorted(lines.items(), key=lambda kv: (-kv[1], kv[0])))
    f.languages = dict(sorted(languages.items()))
    return f


def _key(by: str, tz: ZoneInfo) -> Callable[[Row], str]:
    if by == "day":
        return lambda r: day_of(r, tz)
    if by == "queue":
        return lambda r: str(r.get("queue") or "(none)")
    if by == "line":
        return line_of
    raise ValueError(f"unknown grouping {by!r}: one of {', '.join(GROUPINGS)}")


def grouped(rows: Iterable[Row], by: str, *, answer_within_s: float = ANSWER_WITHIN_S,
            tz: ZoneInfo = DEFAULT_ZONE) -> dict[str, Figures]:
    """Figures per day (in `tz`, the center's zone, by ticket creation), per queue (last queue) or per line."""
    key = _key(by, tz)
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return {k: compute(v, answer_within_s=answer_within_s) for k, v in sorted(groups.items())}


#: (field, label) for the text report, in reading order
REPORT = (
    ("calls", "calls 来电"),
    ("offered", "offered 进线 (queue or agent)"),
    ("answered", "answered 接通"),
    ("answer_rate", "接通率 answer rate"),
    ("answered_within_rate", "15秒接通率 answered ≤ 15 s"),
    ("abandon_rate", "放弃率 abandon rate"),
    ("on_spot_rate", "当场解答率 on-the-spot resolution"),
    ("satisfaction_rate", "满意率 satisfaction"),
    ("survey_rate", "评价率 rated / answered"),
    ("avg_wait_s", "average queue wait (s)"),
    ("avg_talk_s", "average talk (s)"),
    ("ended_in_ivr", "ended in IVR"),
    ("fallback", "handled by dialplan fallback"),
    ("callbacks_needed", "callbacks needed 漏接"),
    ("callbacks_done", "callbacks done 已回拨"),
    ("callback_rate", "回拨率 callback rate"),
    ("priority_calls", "老年人优先 priority calls"),
    ("priority_answered", "priority calls answered"),
)


def format_value(v: Any, name: str) -> str:
    if v is None:
        return "–"
    if name.endswith("_rate"):
        return f"{v * 100:.1f}%"
    return str(v)


def report_lines(f: Figures) -> list[str]:
    out = [f"  {label:<36} {format_value(getattr(f, name), name)}" for name, label in REPORT]
    for title, d in (("outcomes", f.outcomes), ("transfer outcomes", f.transfers),
                     ("transfer kinds", f.transfer_kinds), ("calls by line", f.lines),
                     ("calls by language", f.languages)):
        if d:
            out.append(f"  {title:<36} " + ", ".join(f"{k} {v}" for k, v in d.items()))
    return out
