"""Hostile content against the store (issue 14 items 7 and 9), on SQLite and PostgreSQL.

A ticket save never fails on its content: numbers take their bounded form at every source,
over-long values are cut and flagged, and a failed statement never puts its parameters
(the caller's number, the query-password hash) into an error message or a log.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from model.privacy import NUMBER_MAX, normalise_number
from ticketbridge.assembler import Assembler, record_from_cdr
from ticketbridge.schema import Ticket
from ticketbridge.store import TicketStore
from tests.unit.test_store import T0, make_store, rec, store  # noqa: F401 - the fixtures

LONG = "1" * 70
CALLER_CH = "PJSIP/trunk-00000001"


def test_normalise_number_is_bounded_and_keeps_real_numbers() -> None:
    assert normalise_number("+8613800138000") == "+8613800138000"
    assert normalise_number("anonymous") == "anonymous"
    assert normalise_number(LONG) == "1" * NUMBER_MAX
    assert normalise_number('138 0013\n8000"; DROP') == "13800138000DROP"
    assert normalise_number(None) == ""


def test_every_source_normalises_the_caller() -> None:
    """HotlineCall, Newchannel (a call the controller never saw) and the CDR all give the bounded form."""
    lid = "1772472600.9"
    asm = Assembler()
    asm.feed({"Event": "Newchannel", "Linkedid": lid, "Uniqueid": lid, "Channel": CALLER_CH,
              "Context": "hotline-inbound", "Exten": "9" * 50, "CallerIDNum": LONG}, now=T0)
    asm.feed({"Event": "Cdr", "Linkedid": lid, "UniqueID": lid, "Source": LONG}, now=T0 + 1)
    [r] = asm.feed({"Event": "Hangup", "Linkedid": lid, "Uniqueid": lid, "Channel": CALLER_CH}, now=T0 + 3)
    assert r.caller == "1" * NUMBER_MAX and r.dialed == "9" * NUMBER_MAX
    cdr = record_from_cdr({"linkedid": lid, "uniqueid": lid, "src": LONG + "\x00", "dst": "12345",
                           "channel": CALLER_CH, "start": T0, "end": T0 + 9, "disposition": "NO ANSWER"})
    assert cdr is not None and cdr.caller == "1" * NUMBER_MAX


async def test_seventy_digit_caller_and_long_values_still_make_a_ticket(store: TicketStore) -> None:
    """PostgreSQL raised StringDataRightTruncation on a 70-digit caller: no ticket, on every replay."""
    saved = await store.save_call(rec(caller=LONG, dialed="2" * 40, queue="q" * 100, agent="a" * 300,
                                      category="c" * 50 + "\x00", recording="r" * 600))
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.caller == "1" * NUMBER_MAX and t.dialed == "2" * NUMBER_MAX
    assert t.queue == "q" * 64 and t.agent == "a" * 128 and t.category == "c" * 32 and len(t.recording) == 500
    notes = [h.note for h in await store.history(saved.ticket_no) if h.field == "content"]
    assert len(notes) == 1 and "caller (70 chars)" in notes[0] and "queue (100 chars)" in notes[0]
    # the replay of the same call (a CDR rebuild) finds the ticket, never a second one, never an error
    again = await store.save_call(rec(caller=LONG, outcome="answered", source="cdr"))
    assert again.ticket_no == saved.ticket_no and await store.count_tickets() == 1


async def test_a_ticket_is_saved_even_when_the_database_refuses_a_value(store: TicketStore) -> None:
    """PostgreSQL refuses an integer past 32 bits (SQLSTATE 22000): the bare call is saved and flagged."""
    saved = await store.save_call(rec(survey_rating=2**40, survey_scale=5))
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.outcome == "answered"
    notes = [h.note for h in await store.history(saved.ticket_no) if h.field == "content"]
    if store.url.startswith("postgresql"):
        assert t.survey_rating is None and t.ivr_path == [] and t.started_at is not None
        assert notes and "refused by the database" in notes[0]
    else:  # SQLite takes both as they are
        assert not notes


async def test_failed_statements_hide_their_parameters(store: TicketStore) -> None:
    """The engine's error message names no parameter: no caller number, no password hash in a log."""
    saved = await store.save_call(rec(caller="13912345678"))
    assert await store.issue_password(saved.ticket_no)
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.query_password_hash
    assert store.engine is not None
    with pytest.raises(IntegrityError) as err:
        async with store.engine.begin() as c:  # the same ticket number again: a unique violation
            await c.execute(Ticket.__table__.insert().values(
                ticket_no=t.ticket_no, query_password_hash=t.query_password_hash, linkedid="x",
                caller="13912345678", dialed="12345", mode="center", handled_by="controller",
                outcome="answered", source="ami", state="accepted", urgent=False, callback_needed=False,
                version=1, created_at=t.created_at, updated_at=t.updated_at, ivr_path=[], transfers=[],
                participants=[]))
    message = str(err.value)
    assert "13912345678" not in message and t.query_password_hash not in message
    assert "hidden" in message
    async with store.engine.connect() as c:
        assert (await c.execute(text("SELECT count(*) FROM tickets"))).scalar_one() == 1
