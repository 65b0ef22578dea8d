"""The agent's intake (受理), pure part: what a form may send, and where the ticket's state goes."""

from __future__ import annotations

import pytest

from model.destinations import Category
from model.ticket_state import TicketState
from ticketbridge.intake import MAX_TEXT, Disposition, IntakeError, parse_intake, target_state


def test_a_full_intake_is_parsed() -> None:
    i = parse_intake({"text": " 小区噪音扰民，夜间施工 ", "category": "投诉举报", "department": "生态环境局",
                      "disposition": "dispatch"})
    assert i.text == "小区噪音扰民，夜间施工" and i.category is Category.complaint
    assert i.department == "生态环境局" and i.disposition is Disposition.dispatch


def test_chinese_labels_of_the_disposition_are_accepted() -> None:
    assert parse_intake({"text": "x", "category": "咨询", "disposition": "当场解答"}).disposition is Disposition.on_spot
    assert parse_intake({"text": "x", "category": "咨询", "department": "税务局",
                         "disposition": "派单"}).disposition is Disposition.dispatch


def test_a_draft_needs_nothing() -> None:
    i = parse_intake({"text": "先记一下"})
    assert i.disposition is None and i.category is None and i.department == ""


@pytest.mark.parametrize("data, field", [
    ([], "body"),
    ({"text": 5}, "text"),
    ({"text": "x" * (MAX_TEXT + 1)}, "text"),
    ({"text": "x", "category": "闲聊"}, "category"),
    ({"text": "x", "category": "咨询", "disposition": "maybe"}, "disposition"),
    ({"text": "", "category": "咨询", "disposition": "on_spot"}, "text"),
    ({"text": "x", "disposition": "on_spot"}, "category"),
    ({"text": "x", "category": "求助", "disposition": "dispatch"}, "department"),
    ({"text": "x", "department": "局" * 65}, "department"),
    ({"text": "x", "caller": "13800138000"}, "caller"),
])
def test_bad_input_names_its_field(data: object, field: str) -> None:
    with pytest.raises(IntakeError) as e:
        parse_intake(data)
    assert e.value.field == field and str(e.value).startswith(field + ":")


def test_control_characters_are_dropped_but_lines_kept() -> None:
    assert parse_intake({"text": "第一行\n第二\x00行\x1b"}).text == "第一行\n第二行"


def test_target_states() -> None:
    assert target_state(TicketState.accepted, Disposition.on_spot) is TicketState.closed
    assert target_state("accepted", Disposition.dispatch) is TicketState.dispatched
    assert target_state("closed", Disposition.on_spot) is None  # saved again: stays
    assert target_state("accepted", None) is None
    # a move the lifecycle forbids is still proposed here; ticketbridge.lifecycle.transition refuses it
    assert target_state("closed", Disposition.dispatch) is TicketState.dispatched
