"""The monthly report a supervisor forwards (pure): KPI rows in, one self-contained HTML page out.

No I/O and no scripts: the figures (ticketbridge/kpi.py, ticketbridge/closure.py) with their
definitions beside them, per queue, per line and per category, and four inline-SVG charts —
calls per day, answer rate per day, calls by category, survey ratings. Every text is escaped;
no caller number is in it (the rows it reads may hold them: only counts leave this module).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from ticketbridge import closure, kpi

Row = Mapping[str, Any]

#: the call figures shown, with their definitions (README "Tickets and KPIs")
CALL_FIGURES = (
    ("calls", "calls 来电", "every call, one ticket each"),
    ("offered", "offered 进线", "calls that reached a queue or an agent"),
    ("answered", "answered 接通", "calls an agent answered"),
    ("answer_rate", "接通率", "answered / offered"),
    ("answered_within_rate", "15秒接通率", "answered with queue wait ≤ 15 s / answered with a known wait (GB/T 33358)"),
    ("abandon_rate", "放弃率", "abandoned in the queue / offered"),
    ("satisfaction_rate", "满意率", "satisfied (1–2 of 5, 1 of 3) / rated"),
    ("survey_rate", "评价率", "rated / answered"),
    ("callback_rate", "回拨率", "missed calls called back / missed calls owing a callback"),
)


def month_bounds(month: str, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """`2026-11` → [Nov 1 00:00, Dec 1 00:00) in the center's zone; ValueError naming the format."""
    try:
        first = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=tz)
    except ValueError:
        raise ValueError(f"month {month!r} is not YYYY-MM (e.g. 2026-11)") from None
    nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first, nxt


def _fmt(v: Any, name: str) -> str:
    if v is None:
        return "–"
    return f"{v * 100:.1f}%" if name.endswith("_rate") else str(v)


def _bars(title: str, items: list[tuple[str, float]], *, percent: bool = False, width: int = 640) -> str:
    """A vertical bar chart as inline SVG (labels under the bars, values above)."""
    h, top, bottom, left = 220, 24, 40, 8
    n = max(1, len(items))
    step = (width - 2 * left) / n
    peak = max((v for _, v in items), default=0) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i, (label, v) in enumerate(items):
        bh = (h - top - bottom) * (v / peak)
        x = left + i * step
        y = h - bottom - bh
        shown = f"{v * 100:.0f}%" if percent else f"{v:g}"
        parts.append(f'<rect x="{x + step * 0.15:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{bh:.1f}" '
                     f'fill="#3b6ea8"><title>{escape(label)}: {escape(shown)}</title></rect>')
        if n <= 31:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{y - 4:.1f}" font-size="9" text-anchor="middle">'
                         f'{escape(shown)}</text>')
            parts.append(f'<text x="{x + step / 2:.1f}" y="{h - bottom + 14:.1f}" font-size="9" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<line x1="{left}" y1="{h - bottom}" x2="{width - left}" y2="{h - bottom}" stroke="#444"/></svg>')
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(parts)}</figure>"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def monthly_report(month: str, kpi_rows: Iterable[Row], closure_rows: Iterable[Row], *, center: str,
                   tz: ZoneInfo) -> str:
    """The HTML page for `month` (YYYY-MM); rows as TicketStore.kpi_rows / closure_rows give them."""
    first, nxt = month_bounds(month, tz)
    calls = list(kpi_rows)
    closing = list(closure_rows)
    total, closed = kpi.compute(calls), closure.compute(closing)
    per_day = kpi.grouped(calls, "day", tz=tz)
    days = [(first + dt.timedelta(days=i)).date().isoformat() for i in range((nxt - first).days)]
    empty = kpi.Figures()
    cats = Counter(str(r.get("category") or "(none)") for r in calls)
    ratings = Counter(int(r["survey_rating"]) for r in calls if isinstance(r.get("survey_rating"), int))
    scale = max((int(r.get("survey_scale") or 5) for r in calls if r.get("survey_rating")), default=5)

    figures = [[label, _fmt(getattr(total, name), name), why] for name, label, why in CALL_FIGURES]
    figures += [[label, _fmt(getattr(closed, name), name), closure.DEFINITIONS.get(name, "")]
                for name, label in closure.REPORT]
    groups = []
    for by, title in (("queue", "by queue 按队列"), ("line", "by line 按号码 (legacy lines)"),
                      ("category", "by category 按类别")):
        call_groups = kpi.grouped(calls, by, tz=tz) if by in kpi.GROUPINGS else {
            k: kpi.compute(v) for k, v in _split(calls, closure.period_key(by, tz)).items()}
        close_groups = closure.grouped(closing, by, tz=tz)
        keys = sorted(set(call_groups) | set(close_groups))
        rows = [[k, str((call_groups.get(k) or empty).calls), _fmt((call_groups.get(k) or empty).answer_rate,
                                                                   "answer_rate"),
                 _fmt((call_groups.get(k) or empty).satisfaction_rate, "satisfaction_rate"),
                 _fmt((close_groups.get(k) or closure.Closure()).closure_rate, "closure_rate"),
                 _fmt((close_groups.get(k) or closure.Closure()).on_time_rate, "on_time_rate")] for k in keys]
        groups.append(f"<h2>{escape(title)}</h2>" + _table([by, "calls", "接通率", "满意率", "办结率", "按时办结率"],
                                                           rows))
    charts = [
        _bars("calls per day 每日来电", [(d[8:], float((per_day.get(d) or empty).calls)) for d in days]),
        _bars("answer rate per day 每日接通率", [(d[8:], (per_day.get(d) or empty).answer_rate or 0.0) for d in days],
              percent=True),
        _bars("calls by category 来电类别", [(k, float(v)) for k, v in cats.most_common(12)]),
        _bars(f"survey ratings 满意度评价 (1 best, of {scale})", [(str(i), float(ratings.get(i, 0)))
                                                              for i in range(1, scale + 1)]),
    ]
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.25em .6em;"
             "text-align:left;vertical-align:top}th{background:#eef}figure{margin:1em 0}"
             "figcaption{font-weight:bold;margin-bottom:.3em}")
    return ("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(center)} 月报 {escape(month)}</title><style>{style}</style></head><body>"
            f"<h1>{escape(center)} 月报 {escape(month)}</h1>"
            f"<p>Tickets created {escape(first.isoformat())} – {escape(nxt.isoformat())} (exclusive), "
            f"{escape(str(tz))}. Each figure is shown with its definition.</p>"
            "<h2>figures 指标</h2>" + _table(["figure 指标", "value", "definition 口径"], figures)
            + "".join(charts) + "".join(groups) + "</body></html>\n")


def _split(rows: Iterable[Row], key: Any) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return dict(sorted(out.items()))
