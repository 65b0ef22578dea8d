"""Opening hours, holidays and make-up working days (调休), with the year always in the date.

Asterisk's GotoIfTime has no year, so "closed on the 2026 Spring Festival, open on
the Saturday swapped for it" cannot be said there. These pure functions take an
aware datetime from an injectable clock and are the only place hours are decided.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

from model.config import DEFAULT_TZ, Hours


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Clock = Callable[[], dt.datetime]


def system_clock(tz: str = DEFAULT_TZ) -> Clock:
    zone = ZoneInfo(tz)
    return lambda: dt.datetime.now(zone)


def local(at: dt.datetime, tz: str = DEFAULT_TZ) -> dt.datetime:
    """Naive datetimes are taken as already local to `tz`."""
    zone = ZoneInfo(tz)
    return at.replace(tzinfo=zone) if at.tzinfo is None else at.astimezone(zone)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def is_working_day(hours: Hours, day: dt.date) -> bool:
    """A make-up working day counts as a working day with Monday's hours if its own weekday has none."""
    if day in hours.workdays:
        return True
    if day in hours.holidays:
        return False
    return bool(hours.weekly.get(_DAYS[day.weekday()]))  # type: ignore[call-overload]


def ranges_for(hours: Hours, day: dt.date) -> list[str]:
    if day in hours.holidays and day not in hours.workdays:
        return []
    ranges = hours.weekly.get(_DAYS[day.weekday()], [])  # type: ignore[call-overload]
    if not ranges and day in hours.workdays:
        # 调休: a swapped Saturday/Sunday works like an ordinary weekday
        ranges = next((hours.weekly[d] for d in _DAYS[:5] if hours.weekly.get(d)), [])  # type: ignore[index]
    return list(ranges)


def is_open(hours: Hours | None, at: dt.datetime, tz: str = DEFAULT_TZ) -> bool:
    """No schedule means always open (12345 itself is 7×24)."""
    if hours is None:
        return True
    at = local(at, tz)
    now = at.hour * 60 + at.minute
    for r in ranges_for(hours, at.date()):
        start, end = r.split("-")
        if _minutes(start) <= now < _minutes(end):
            return True
    return False


def add_working_days(hours: Hours, start: dt.datetime, days: int, tz: str = DEFAULT_TZ) -> dt.datetime:
    """Deadline `days` working days after `start` (end of that day), skipping holidays, honouring 调休."""
    at = local(start, tz)
    day = at.date()
    left = days
    while left > 0:
        day += dt.timedelta(days=1)
        if is_working_day(hours, day):
            left -= 1
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=at.tzinfo)
