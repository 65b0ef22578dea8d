"""The agent's intake saved into the call's ticket, on SQLite and PostgreSQL (fixtures of test_store).

What a supervisor would check: the ticket of that call carries 诉求内容, 诉求类型, 承办单位 and the
state 当场解答/派单 moved it to; a save made during the call, before the hang-up writes the call's
record, is neither lost nor overwritten by that record; 当场解答率 counts it.
"""

from __future__ import annotations

import asyncio

import pytest

from ticketbridge import kpi
from ticketbridge.intake import parse_intake
from ticketbridge.lifecycle import IllegalTransition
from ticketbridge.store import TicketStore
from tests.unit.test_store import StoreFactory, make_store, rec, store  # noqa: F401 - fixtures

LINKEDID = "1772472600.1"


def intake(**kw: str) -> object:
    return parse_intake({"text": "咨询社保卡补办需要哪些材料", "category": "咨询", "disposition": "on_spot", **kw})


async def test_save_during_the_call_survives_the_record_written_at_hang_up(store: TicketStore) -> None:
    during = await store.save_intake(LINKEDID, intake(category="投诉举报", department="人社局"), agent="1001")
    assert during.created and during.state == "closed"
    # the assembler writes the call at hang-up: its IVR category (咨询) must not replace the agent's pick
    saved = await store.save_call(rec(LINKEDID, category="咨询"))
    assert not saved.created and saved.ticket_no == during.ticket_no
    t = await store.get_by_linkedid(LINKEDID)
    assert t is not None and await store.count_tickets() == 1
    assert t.request_text == "咨询社保卡补办需要哪些材料" and t.department == "人社局"
    assert t.category == "投诉举报" and t.disposition == "on_spot" and t.intake_agent == "1001"
    assert t.state == "closed" and t.outcome == "answered" and t.caller == "13800138000" and t.queue == "general"
    # and a CDR rebuild or a shutdown flush later changes nothing of it
    await store.save_call(rec(LINKEDID, category="求助", outcome="in_progress"))
    t = await store.get_by_linkedid(LINKEDID)
    assert t is not None and t.category == "投诉举报" and t.request_text == "咨询社保卡补办需要哪些材料"


async def test_on_the_spot_counts_in_the_on_spot_rate(store: TicketStore) -> None:
    await store.save_call(rec("a.1"))
    await store.save_call(rec("a.2"))
    await store.save_intake("a.1", intake(), agent="1001")
    await store.save_intake("a.2", intake(disposition="dispatch", department="税务局"), agent="1001")
    f = kpi.compute(await store.kpi_rows())
    assert f.answered == 2 and f.closed_on_spot == 1 and f.on_spot_rate == 0.5


async def test_save_after_the_record_dispatches_and_is_recorded(store: TicketStore) -> None:
    saved = await store.save_call(rec(LINKEDID, category="咨询"))
    out = await store.save_intake(LINKEDID, intake(category="求助", department="住建局", disposition="派单"),
                                  agent="1002")
    assert not out.created and out.ticket_no == saved.ticket_no and out.state == "dispatched"
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.category == "求助" and t.department == "住建局" and t.disposition == "dispatch"
    rows = [(h.actor, h.field, h.from_value, h.to_value) for h in await store.history(saved.ticket_no)]
    assert ("agent:1002", "category", "咨询", "求助") in rows
    assert ("agent:1002", "intake", None, "dispatch") in rows
    assert ("agent:1002", "state", "accepted", "dispatched") in rows
    assert (await store.outbox_for(saved.ticket_no))[-1].payload["department"] == "住建局"


async def test_a_draft_then_the_final_save(store: TicketStore) -> None:
    first = await store.save_intake(LINKEDID, parse_intake({"text": "先记一下"}), agent="1001")
    assert first.state == "accepted"
    again = await store.save_intake(LINKEDID, intake(), agent="1001")
    t = await store.get_ticket(again.ticket_no)
    assert again.ticket_no == first.ticket_no and t is not None and t.state == "closed"
    assert t.request_text == "咨询社保卡补办需要哪些材料"


async def test_a_ticket_that_moved_on_refuses_another_disposition_and_keeps_the_first(store: TicketStore) -> None:
    await store.save_intake(LINKEDID, intake(), agent="1001")
    with pytest.raises(IllegalTransition):
        await store.save_intake(LINKEDID, intake(text="改了", disposition="dispatch", department="税务局"),
                                agent="1001")
    t = await store.get_by_linkedid(LINKEDID)
    assert t is not None and t.state == "closed" and t.request_text == "咨询社保卡补办需要哪些材料"
    assert t.department is None


async def test_intake_and_record_racing_from_two_controllers_make_one_ticket(make_store: StoreFactory) -> None:
    a, b = await make_store(), await make_store()
    for n in range(6):
        lid = f"race.{n}"
        got = await asyncio.gather(a.save_intake(lid, intake(category="求助"), agent="1001"),
                                   b.save_call(rec(lid, category="咨询")))
        assert got[0].ticket_no == got[1].ticket_no
        t = await a.get_by_linkedid(lid)
        assert t is not None and t.category == "求助" and t.state == "closed" and t.outcome == "answered"
    assert await a.count_tickets() == 6


async def test_the_screen_pop_opens_the_ticket_the_record_and_the_intake_then_fill(store: TicketStore) -> None:
    opened = await store.ticket_of_call(LINKEDID)
    assert opened.state == "accepted" and opened.outcome == "in_progress" and len(opened.ticket_no) == 12
    assert (await store.open_ticket(LINKEDID)).ticket_no == opened.ticket_no  # again: the same ticket
    await store.save_intake(LINKEDID, intake(), agent="1001")
    saved = await store.save_call(rec(LINKEDID))
    assert saved.ticket_no == opened.ticket_no and await store.count_tickets() == 1
    t = await store.get_ticket(opened.ticket_no)
    assert t is not None and t.outcome == "answered" and t.state == "closed" and t.request_text
