"""The agent's screen pop (座席弹屏), pure: what the agent's page shows when a queue call rings, and who may save.

`screen_pop` puts together the live call (live/service.py's call view), this call's ticket and the
caller's earlier tickets (ticketbridge/store.py rows) into the page's JSON: caller (masked unless the
viewer may see it and asked), dialed number and legacy line, IVR path and category, queue and wait,
this call's ticket (number, state, the intake so far, and once the recording is transcribed — after the
call, during 话后处理 — the transcript's suggestion and summary) and the earlier tickets (number, date,
category, state, their intake or transcript summary: what the caller asked last time). `may_save` is the rule
for the intake form and the suggestion of a call that has ended: an agent only its own current call's
ticket or its last call's; a supervisor any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from model.config import Config
from model.destinations import Category
from model.privacy import mask_number
from model.ticket_state import TicketState
from ticketbridge.transcript import from_json, suggestion_dict, summary_dict

#: how many earlier tickets of the caller are shown
PREVIOUS = 10


def state_label(state: str | None) -> str:
    try:
        return TicketState(state).label
    except ValueError:
        return str(state or "")


def ticket_brief(t: Any, zone: ZoneInfo) -> dict[str, Any]:
    """A ticket as the screen pop shows it (no caller number, no password hash, no linkedid)."""
    created = getattr(t, "started_at", None) or t.created_at
    return {"ticket_no": t.ticket_no, "date": created.astimezone(zone).strftime("%Y-%m-%d") if created else "",
            "category": t.category, "state": t.state, "state_label": state_label(t.state),
            "request_text": getattr(t, "request_text", None), "department": getattr(t, "department", None),
            "disposition": getattr(t, "disposition", None), **suggestion(t)}


def suggestion(t: Any) -> dict[str, Any]:
    """What the call's transcript suggests (ticketbridge/categorize.py): the category, the city's
    sub-classification and department with the words heard, and the summary fields. Shown beside the intake
    form, never applied: the agent takes it into the form with one click, then saves (or not)."""
    tr = from_json(getattr(t, "transcript", None))
    if tr is None:
        return {"transcribed": False, "suggestion": None, "summary": None,
                "suggested_category": None, "suggested_by": []}
    return {"transcribed": True, "suggestion": suggestion_dict(tr.suggestion),
            "summary": summary_dict(tr.summary) if tr.summary else None,
            "suggested_category": tr.suggested_category, "suggested_by": list(tr.suggested_by)}


def departments(config: Config) -> list[str]:
    """承办单位 offered by the form: `departments:` of the config, then the legacy lines' departments."""
    out: list[str] = []
    for d in [*config.departments, *(line.department for line in config.legacy_lines.values())]:
        if d and d not in out:
            out.append(d)
    return out


def wait_s(call: Mapping[str, Any], now: float) -> float | None:
    """The caller's queue wait: from joining the (first) queue until answered, or until now while waiting."""
    joined = call.get("first_queued_at") or call.get("waiting_since")
    if joined is None:
        return call.get("wait_s")
    end = call.get("answered_at") or now
    return round(max(0.0, float(end) - float(joined)), 1)


def screen_pop(call: Mapping[str, Any], ticket: Any | None, previous: Iterable[Any], config: Config, *,
               now: float, full_numbers: bool) -> dict[str, Any]:
    """The page's JSON for one call. `call` carries the full number; it leaves masked unless `full_numbers`
    (the API decides, and audits, whether this viewer may see it)."""
    zone = ZoneInfo(config.center.timezone)
    view = dict(call)
    view["caller"] = call.get("caller") if full_numbers else mask_number(call.get("caller"))
    view["wait_s"] = wait_s(call, now)
    line = config.legacy_lines.get(str(call.get("legacy_line") or ""))
    this_no = ticket.ticket_no if ticket is not None else None
    earlier = [ticket_brief(t, zone) for t in previous if t.ticket_no != this_no][:PREVIOUS]
    return {"call": view, "line_name": line.name if line else None,
            "ticket": ticket_brief(ticket, zone) if ticket is not None else None,
            "previous": earlier, "categories": [c.value for c in Category], "departments": departments(config),
            "transcripts": config.transcripts.enabled}


def may_save(*, supervising: bool, seat: str | None, linkedid: str, current: Mapping[str, Any] | None,
             last: Sequence[str]) -> bool:
    """An agent: the call it talks on now (`current`, its live call view) or its last call (`last`: the
    linkedids it was last seen answering, newest last); a supervisor: any call."""
    if supervising:
        return True
    if not seat or not linkedid:
        return False
    if current is not None and current.get("linkedid") == linkedid and current.get("agent") == seat:
        return True
    return bool(last) and last[-1] == linkedid

