"""Ticket lifecycle: every move in the table, every other move refused, deadlines on the office calendar."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from model.config import Deadline, Hours
from model.loading import load_config
from model.destinations import Category
from model.ticket_state import LABELS, TicketState
from ticketbridge.lifecycle import (
    INITIAL,
    TRANSITIONS,
    IllegalTransition,
    allowed,
    deadline,
    parse_state,
    transition,
)

SH = ZoneInfo("Asia/Shanghai")
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


def test_happy_path_through_the_loop() -> None:
    s = INITIAL
    assert s is TicketState.accepted
    for nxt in ("派单", "办理", "答复", "督办", "办理", "答复", "办结", "回访", "评价"):
        s = transition(s, nxt)
    assert s is TicketState.rated


@pytest.mark.parametrize("src", list(TicketState))
@pytest.mark.parametrize("dst", list(TicketState))
def test_table_is_the_only_authority(src: TicketState, dst: TicketState) -> None:
    if dst in TRANSITIONS[src]:
        assert transition(src, dst) is dst and allowed(src, dst)
    else:
        with pytest.raises(IllegalTransition) as ei:
            transition(src, dst)
        msg = str(ei.value)
        assert src.value in msg and dst.value in msg and LABELS[src] in msg and LABELS[dst] in msg
        assert not allowed(src, dst)


def test_supervision_reachable_and_returns_to_handling() -> None:
    for src in (TicketState.dispatched, TicketState.handling, TicketState.replied):
        assert TicketState.supervised in TRANSITIONS[src]
    assert TRANSITIONS[TicketState.supervised] == {TicketState.handling}
    assert TicketState.supervised not in TRANSITIONS[TicketState.accepted]
    assert TRANSITIONS[TicketState.rated] == set()


def test_every_state_reachable_from_initial() -> None:
    seen, todo = {INITIAL}, [INITIAL]
    while todo:
        for n in TRANSITIONS[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    assert seen == set(TicketState)


def test_labels_and_unknown_states() -> None:
    assert parse_state("受理") is TicketState.accepted and parse_state("closed") is TicketState.closed
    assert TicketState.supervised.label == "督办"
    with pytest.raises(ValueError):
        parse_state("lost")
    with pytest.raises(IllegalTransition, match="'lost'"):
        transition("lost", "accepted")


# --------------------------------------------------------------------------- deadlines


@dataclass
class Cfg:
    deadlines: dict[str, Deadline] = field(default_factory=dict)
    hours: dict[str, Hours] = field(default_factory=dict)


def test_deadline_working_days_skip_spring_festival_and_honour_makeup_day() -> None:
    cfg = load_config(SHIPPED)
    # Friday 2026-02-13, 10:00: next working days are Sat 02-14 (调休), then Mon 02-23 after the holiday week
    at = dt.datetime(2026, 2, 13, 10, 0, tzinfo=SH)
    assert deadline(cfg, Category.consult, False, at) == dt.datetime(2026, 2, 23, 23, 59, 59, tzinfo=SH)
    assert deadline(cfg, "咨询", False, at) == dt.datetime(2026, 2, 23, 23, 59, 59, tzinfo=SH)


def test_deadline_urgent_uses_hours() -> None:
    cfg = load_config(SHIPPED)
    at = dt.datetime(2026, 2, 16, 23, 30, tzinfo=SH)  # a holiday, at night: urgent still counts hours
    assert deadline(cfg, "投诉举报", True, at) == at + dt.timedelta(hours=2)


def test_deadline_without_office_calendar_uses_weekdays() -> None:
    cfg = Cfg(deadlines={"投诉举报": Deadline(working_days=3)})
    fri = dt.datetime(2026, 3, 6, 9, 0)  # naive: local Beijing time
    assert deadline(cfg, "投诉举报", False, fri) == dt.datetime(2026, 3, 11, 23, 59, 59, tzinfo=SH)


def test_deadline_defaults_for_unknown_or_missing_category() -> None:
    cfg = Cfg()
    at = dt.datetime(2026, 3, 2, 9, 0, tzinfo=SH)  # Monday
    assert deadline(cfg, None, False, at) == dt.datetime(2026, 3, 16, 23, 59, 59, tzinfo=SH)  # 其他: 10
    assert deadline(cfg, "咨询", False, at) == dt.datetime(2026, 3, 4, 23, 59, 59, tzinfo=SH)
    assert deadline(cfg, None, True, at) == at + dt.timedelta(hours=2)
    cfg2 = Cfg(deadlines={"其他": Deadline(working_days=1)})
    assert deadline(cfg2, "新类别", False, at) == dt.datetime(2026, 3, 3, 23, 59, 59, tzinfo=SH)


def test_deadline_category_in_hours() -> None:
    cfg = Cfg(deadlines={"求助": Deadline(hours=4)})
    at = dt.datetime(2026, 3, 2, 9, 0, tzinfo=SH)
    assert deadline(cfg, "求助", False, at) == at + dt.timedelta(hours=4)
    # urgent with no 'urgent' rule falls back to the category's hours
    assert deadline(cfg, "求助", True, at) == at + dt.timedelta(hours=4)


def test_deadline_accepts_utc_input() -> None:
    cfg = load_config(SHIPPED)
    at = dt.datetime(2026, 3, 5, 20, 0, tzinfo=dt.timezone.utc)  # Friday 04:00 in Beijing
    assert deadline(cfg, "咨询", False, at) == dt.datetime(2026, 3, 10, 23, 59, 59, tzinfo=SH)
