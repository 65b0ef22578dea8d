"""The number plan: given the dialed number, the caller and the time, where does the call go first.

Pure (no I/O, no clock of its own): the adapter passes ``at`` from an injectable
clock, so date windows are testable at their edges. Asterisk's GotoIfTime has no
year, which is why "announce until 2027-02-27, then retire" is decided here.

Rules, by what was dialed:

* the center number: the greeting, then ``center.entry`` (a menu or a queue);
* a legacy line, by its mode:

  - ``merged`` (整体并入): the transition window is the half-open date range
    ``[merged_on, add_months(merged_on, transition_months))``: ``window_end`` is
    the first day *after* the window (exclusive), so three months from
    2026-09-01 announce through 2026-11-30 and 2026-12-01 is the first day after.
    Inside the window: the line's ``announcement`` (it replaces the greeting: the
    caller hears "this line has joined 12345…") then ``center.entry``, with the
    line and its category kept on the decision. After it: ``after_window:
    retire`` ends in ``HangupDest(retirement_notice)``; ``put_through`` plays the
    greeting and enters the flow. Before ``merged_on`` the call already reaches
    us, so it is put through with the greeting (status ``pending``).
  - ``dual_retained`` / ``dedicated``: the line's own ``queue`` (its overflow to
    12345 seats is rendered into the dialplan from ``queues.X.overflow``).
  - ``dual_cancelled``: ``queue`` (default ``center.general_queue``) tagged with
    the line's category.
  - ``branch_center``: a transfer to the branch center (it keeps its own seats).
  - ``forward`` (呼叫转移): dial ``forward_to``; when that is the center number
    it is the center flow, when it is another legacy line that line's rule applies.
  - ``parallel`` (并联): the center flow. The old number is still reachable
    directly elsewhere (the department's own exchange); a call that arrives
    here came to 12345, so 12345 answers it.

* anything else: the center flow with a warning. A call is never left in silence:
  every misconfiguration (missing queue, branch, announcement, retirement notice)
  degrades to the center flow and says so in ``warnings``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from model.config import Config, LegacyLine
from model.destinations import MAX_LINE_HOPS, Category, Destination, DialDest, HangupDest, QueueDest, TransferDest
from model.hours import local

__all__ = [
    "RouteDecision",
    "TransitionRow",
    "TransitionStatus",
    "add_months",
    "decide",
    "merge_window",
    "transition_calendar",
]

TransitionStatus = Literal["announcing", "retired", "put_through", "pending", "n/a"]


@dataclass(frozen=True)
class RouteDecision:
    """Where a call goes first and why; the adapter plays `announcements`, then follows `dest`."""

    dialed: str
    #: the legacy number that was dialed, None for the center number or an unknown number
    line: str | None
    #: the legacy line's mode, or "center" / "unknown"
    mode: str
    #: prompt ids to play before `dest`, in order
    announcements: list[str]
    dest: Destination
    category: Category | None = None
    #: merged lines: first day after the transition window (exclusive end)
    window_end: dt.date | None = None
    #: merged lines: announcing days left including today (0 once the window is over)
    days_left: int | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    #: merged lines: where the transition stands on the call's local date (see `merge_window`)
    status: TransitionStatus = "n/a"


@dataclass(frozen=True)
class TransitionRow:
    """One legacy line in the admin's `transitions` table."""

    line: str
    name: str
    mode: str
    merged_on: dt.date | None
    window_end: dt.date | None
    days_left: int | None
    status: TransitionStatus


def add_months(day: dt.date, n: int) -> dt.date:
    """`day` plus `n` calendar months, clamped to the month's end (Nov 30 + 3 = Feb 28, or 29 in leap years)."""
    index = day.year * 12 + (day.month - 1) + n
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def merge_window(line: LegacyLine, today: dt.date) -> tuple[TransitionStatus, dt.date | None, int | None]:
    """(status, window_end, days_left) of a line on `today`; only merged lines have a window.

    A merged line without `merged_on` counts as announcing with no end, so a
    half-configured merge still tells callers to dial 12345 (graph validation
    reports the missing date).
    """
    if line.mode != "merged":
        return "n/a", None, None
    if line.merged_on is None:
        return "announcing", None, None
    end = add_months(line.merged_on, line.transition_months)
    if today < line.merged_on:
        return "pending", end, None
    if today < end:
        return "announcing", end, (end - today).days
    return ("retired" if line.after_window == "retire" else "put_through"), end, 0


def _local_date(config: Config, at: dt.datetime | dt.date) -> dt.date:
    if isinstance(at, dt.datetime):
        return local(at, config.center.timezone).date()
    return at


def decide(config: Config, dialed: str, caller: str, at: dt.datetime) -> RouteDecision:
    """The first routing step of an inbound call; total: every input yields a route, never silence.

    `at` is taken in ``center.timezone`` (naive = already local; aware = converted),
    so a call at 16:30 UTC on 2026-11-30 is on 2026-12-01 in Shanghai. `caller` is
    accepted for caller-based rules and is not used yet (no blacklist/VIP routing).
    """
    del caller  # not used by any rule yet; kept so the adapter's call never changes
    today = _local_date(config, at)
    number = (dialed or "").strip()
    return _decide(config, number, today, hops=0, seen=())


def _center(config: Config, dialed: str, *, line: str | None, mode: str, reason: str,
            category: Category | None = None, warnings: list[str] | None = None,
            announcements: list[str] | None = None, window_end: dt.date | None = None,
            days_left: int | None = None, status: TransitionStatus = "n/a") -> RouteDecision:
    """The 12345 flow: greeting (unless replaced) then the center entry."""
    return RouteDecision(
        dialed=dialed,
        line=line,
        mode=mode,
        announcements=[config.center.greeting] if announcements is None else announcements,
        dest=config.center.entry,
        category=category,
        window_end=window_end,
        days_left=days_left,
        reason=reason,
        warnings=warnings or [],
        status=status,
    )


def _decide(config: Config, number: str, today: dt.date, *, hops: int, seen: tuple[str, ...]) -> RouteDecision:
    center = config.center
    if number == center.number:
        return _center(config, number, line=None, mode="center",
                       reason=f"{number} is the center number: greeting, then {center.entry.label()}.")
    line = config.legacy_lines.get(number)
    if line is None:
        shown = number or "(empty)"
        return _center(config, number, line=None, mode="unknown",
                       reason=f"{shown} is neither the center number nor a legacy line: the 12345 flow.",
                       warnings=[f"dialed number {shown} is not in the number plan; routed to the 12345 flow"])
    mode = line.mode
    cat = line.category
    general = center.general_queue

    if mode == "merged":
        return _merged(config, number, line, today)

    if mode in ("dual_retained", "dedicated"):
        what = "dual number, retained seats" if mode == "dual_retained" else "dedicated seats"
        if line.queue and line.queue in config.queues:
            return RouteDecision(number, number, mode, [], QueueDest(queue=line.queue, category=cat), cat,
                                 reason=f"{number} ({what}): its own queue {line.queue}.")
        warn = (f"legacy line {number} ({mode}) has no queue" if not line.queue
                else f"legacy line {number} ({mode}) names unknown queue {line.queue!r}")
        return RouteDecision(number, number, mode, [], QueueDest(queue=general, category=cat), cat,
                             reason=f"{number} ({what}): its queue is missing, so the general queue {general}.",
                             warnings=[warn + f"; using the general queue {general}"])

    if mode == "dual_cancelled":
        queue = line.queue or general
        warnings: list[str] = []
        if queue not in config.queues:
            warnings.append(f"legacy line {number} names unknown queue {queue!r}; using the general queue {general}")
            queue = general
        tag = f" tagged {cat.value}" if cat else ""
        return RouteDecision(number, number, mode, [], QueueDest(queue=queue, category=cat), cat,
                             reason=f"{number} (dual number, cancelled seats): 12345 seats in {queue}{tag}.",
                             warnings=warnings)

    if mode == "branch_center":
        if line.branch and line.branch in config.branch_centers:
            return RouteDecision(number, number, mode, [], TransferDest(target=line.branch), cat,
                                 reason=f"{number} (branch center): transfer to branch center {line.branch}, "
                                        "which keeps its own seats.")
        warn = (f"legacy line {number} (branch_center) has no branch" if not line.branch
                else f"legacy line {number} names unknown branch center {line.branch!r}")
        return _center(config, number, line=number, mode=mode, category=cat,
                       reason=f"{number} (branch center): the branch is missing, so the 12345 flow.",
                       warnings=[warn + "; routed to the 12345 flow"])

    if mode == "forward":
        target = (line.forward_to or "").strip()
        if not target:
            return _center(config, number, line=number, mode=mode, category=cat,
                           reason=f"{number} (call forwarding): no forward_to, so the 12345 flow.",
                           warnings=[f"legacy line {number} (forward) has no forward_to; routed to the 12345 flow"])
        if target == center.number:
            return _center(config, number, line=number, mode=mode, category=cat,
                           reason=f"{number} (call forwarding) forwards to the center number: greeting, "
                                  f"then {center.entry.label()}.")
        if target in config.legacy_lines:
            if target in seen + (number,) or hops >= MAX_LINE_HOPS:
                chain = " -> ".join(seen + (number, target))
                return _center(config, number, line=number, mode=mode, category=cat,
                               reason=f"{number} (call forwarding) loops ({chain}), so the 12345 flow.",
                               warnings=[f"forwarding loop {chain}; routed to the 12345 flow"])
            sub = _decide(config, target, today, hops=hops + 1, seen=seen + (number,))
            return RouteDecision(
                number, number, mode, sub.announcements, sub.dest, cat or sub.category,
                window_end=sub.window_end, days_left=sub.days_left,
                reason=f"{number} (call forwarding) forwards to legacy line {target}: {sub.reason}",
                warnings=sub.warnings,
            )
        return RouteDecision(number, number, mode, [], DialDest(number=target), cat,
                             reason=f"{number} (call forwarding): dial {target}.")

    # parallel (并联): the old number also rings the department directly elsewhere; here 12345 answers.
    return _center(config, number, line=number, mode=mode, category=cat,
                   reason=f"{number} (parallel): the 12345 flow; the department is still reachable "
                          "directly on its own exchange.")


def _merged(config: Config, number: str, line: LegacyLine, today: dt.date) -> RouteDecision:
    status, end, left = merge_window(line, today)
    cat = line.category
    entry = config.center.entry.label()
    if status == "announcing":
        warnings: list[str] = []
        if line.merged_on is None:
            warnings.append(f"merged line {number} has no merged_on; announcing with no end date")
        if line.announcement:
            announcements = [line.announcement]
        else:
            announcements = [config.center.greeting]
            warnings.append(f"merged line {number} has no announcement; playing the greeting instead")
        until = f" until {end - dt.timedelta(days=1)} inclusive ({left} day(s) left)" if end and left else ""
        return _center(config, number, line=number, mode="merged", category=cat, announcements=announcements,
                       window_end=end, days_left=left, warnings=warnings, status=status,
                       reason=f"{number} merged into 12345; transition window{until}: announce, then {entry}.")
    if status == "pending":
        return _center(config, number, line=number, mode="merged", category=cat, window_end=end, status=status,
                       reason=f"{number} merges into 12345 on {line.merged_on}, not yet: greeting, then {entry}.")
    if status == "retired":
        if line.retirement_notice:
            return RouteDecision(number, number, "merged", [], HangupDest(prompt=line.retirement_notice), cat,
                                 window_end=end, days_left=0, status=status,
                                 reason=f"{number} was retired on {end}: retirement notice, then hang up.")
        return _center(config, number, line=number, mode="merged", category=cat, window_end=end, days_left=0, status=status,
                       reason=f"{number} was retired on {end} but has no retirement notice: the 12345 flow.",
                       warnings=[f"retired line {number} has no retirement_notice; putting through rather "
                                 "than hanging up in silence"])
    return _center(config, number, line=number, mode="merged", category=cat, window_end=end, days_left=0,
                   status=status, reason=f"{number}'s transition window ended on {end} and it is kept open: greeting, then {entry}.")


def transition_calendar(config: Config, today: dt.date | dt.datetime) -> list[TransitionRow]:
    """Every legacy line with its window on `today` (local date), merged lines first by window end."""
    day = _local_date(config, today)
    rows = []
    for number, line in config.legacy_lines.items():
        status, end, left = merge_window(line, day)
        rows.append(TransitionRow(number, line.name, line.mode, line.merged_on, end, left, status))
    rows.sort(key=lambda r: (r.mode != "merged", r.window_end or dt.date.max, r.line))
    return rows
