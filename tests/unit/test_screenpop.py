"""The agent's screen pop (pure): what the page shows of a call, masked unless allowed; who may save."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from live.screenpop import departments, may_save, screen_pop
from model.loading import load_config

CFG = load_config("config/hotline.yaml")
BJ = dt.timezone(dt.timedelta(hours=8))
CALL = {"linkedid": "1772.9", "caller": "13812345678", "dialed": "12315", "legacy_line": "12315",
        "category": "投诉举报", "ivr_path": ["line:12315", "menu:main", "key:2"], "phase": "talking",
        "queue": "general", "waiting_since": 1000.0, "answered_at": 1012.5, "agent": "1001", "ringing": []}


def ticket(no: str, day: int, state: str = "accepted", category: str | None = "咨询") -> SimpleNamespace:
    at = dt.datetime(2026, 11, day, 9, 0, tzinfo=BJ)
    return SimpleNamespace(ticket_no=no, started_at=at, created_at=at, category=category, state=state,
                           request_text=None, department=None, disposition=None)


def test_the_pop_shows_the_call_masked_its_ticket_and_the_callers_earlier_tickets() -> None:
    this = ticket("261130000007", 30)
    earlier = [this, ticket("261102000031", 2, "closed", "投诉举报"), ticket("261115000002", 15, "dispatched", None)]
    pop = screen_pop(CALL, this, earlier, CFG, now=1100.0, full_numbers=False)
    c = pop["call"]
    assert c["caller"] == "138******78" and "13812345678" not in str(pop)
    assert c["dialed"] == "12315" and pop["line_name"] == "市场监管投诉举报热线"
    assert c["wait_s"] == 12.5  # joined the queue → answered
    assert pop["ticket"]["ticket_no"] == "261130000007" and pop["ticket"]["state_label"] == "受理"
    assert [(t["ticket_no"], t["date"], t["category"], t["state_label"]) for t in pop["previous"]] == [
        ("261102000031", "2026-11-02", "投诉举报", "办结"), ("261115000002", "2026-11-15", None, "派单")]
    assert "咨询" in pop["categories"] and "市场监督管理局" in pop["departments"]


def test_full_number_only_when_asked_and_allowed_and_wait_ticks_while_ringing() -> None:
    ringing = {**CALL, "answered_at": None, "agent": None, "ringing": ["1001"]}
    pop = screen_pop(ringing, None, [], CFG, now=1009.0, full_numbers=True)
    assert pop["call"]["caller"] == "13812345678" and pop["call"]["wait_s"] == 9.0 and pop["ticket"] is None


def test_departments_from_the_config_then_the_legacy_lines_without_repeats() -> None:
    d = departments(CFG)
    assert d[0] == CFG.departments[0] and len(d) == len(set(d)) and "税务局" in d


def test_an_agent_saves_only_its_current_or_last_call() -> None:
    talking = {"linkedid": "a.1", "agent": "1001"}
    assert may_save(supervising=False, seat="1001", linkedid="a.1", current=talking, last=[])
    assert not may_save(supervising=False, seat="1002", linkedid="a.1", current=None, last=[])
    assert may_save(supervising=False, seat="1001", linkedid="a.0", current=None, last=["a.9", "a.0"])
    assert not may_save(supervising=False, seat="1001", linkedid="a.9", current=None, last=["a.9", "a.0"])
    assert not may_save(supervising=False, seat=None, linkedid="a.1", current=talking, last=["a.1"])
    assert may_save(supervising=True, seat=None, linkedid="x", current=None, last=[])
