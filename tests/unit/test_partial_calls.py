"""Calls the controller saw only in part (issue 14 item 8 and the AMI-cut fault): marked, then corrected
from Asterisk's CDR; tickets kept while the store is away; callbacks left dialing by a dead controller.

Store tests run on SQLite and PostgreSQL (tests/unit/test_store.py's `make_store`).
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from ticketbridge.assembler import Assembler, CallRecord
from ticketbridge.callbacks import CallbackDialer, answered_in_cdr, callback_of
from ticketbridge.cdr import CdrReplay, Chunk
from ticketbridge.pending import PendingSaves, store_error_reason
from tests.unit.test_assembler import AGENT, CALLER, L, hangup, inbound, queue_answered
from tests.unit.test_store import T0, make_store, rec, store  # noqa: F401 - fixtures

# ------------------------------------------------------------------------------------ the assembler


def test_a_call_seen_from_its_first_channel_has_no_gap() -> None:
    asm = Assembler()
    out: list[CallRecord] = []
    for e in [*inbound(), *queue_answered(), hangup(L, L[:-1] + "2", T0 + 200, AGENT), hangup(L, L, T0 + 201, CALLER)]:
        out.extend(asm.feed(e))
    assert len(out) == 1 and out[0].outcome == "answered" and not out[0].gap


def test_a_call_joined_mid_way_is_marked() -> None:
    """The controller started while the caller waited in the queue: its first event is not the call's start."""
    asm = Assembler()
    out: list[CallRecord] = []
    for e in [*queue_answered(), hangup(L, L[:-1] + "2", T0 + 200, AGENT), hangup(L, L, T0 + 201, CALLER)]:
        out.extend(asm.feed(e))
    assert len(out) == 1 and out[0].gap


def test_an_ami_login_marks_every_call_in_progress() -> None:
    asm = Assembler()
    for e in inbound():
        asm.feed(e)
    assert asm.mark_gap() == 1
    out: list[CallRecord] = []
    for e in [*queue_answered(), hangup(L, L[:-1] + "2", T0 + 200, AGENT), hangup(L, L, T0 + 201, CALLER)]:
        out.extend(asm.feed(e))
    assert out[0].gap and out[0].ivr_path == ["menu:main", "key:1"]


# ------------------------------------------------------------------------------------ the store

#: what a controller that joined a fallback-queued call mid-way wrote (issue 14 item 8)
def joined_mid_way(**kw: Any) -> CallRecord:
    return rec(**{**dict(caller="", dialed="1001", mode="unknown", outcome="abandoned_in_queue", agent=None,
                         talk_s=None, answered_at=None, ivr_path=[], category=None, gap=True), **kw})


def from_cdr(**kw: Any) -> CallRecord:
    return rec(**{**dict(source="cdr", handled_by="fallback", mode="fallback", agent="1001", ivr_path=[],
                         category=None, queue_wait_s=None), **kw})


async def test_the_cdr_corrects_a_ticket_the_live_events_saw_in_part(store) -> None:  # noqa: F811
    first = await store.save_call(joined_mid_way())
    t = await store.get_ticket(first.ticket_no)
    assert t.cdr_check == "due" and t.caller == "" and t.callback_needed
    await store.save_call(from_cdr())
    t = await store.get_ticket(first.ticket_no)
    assert (t.caller, t.dialed, t.queue, t.outcome, t.handled_by) == ("13800138000", "12345", "general", "answered",
                                                                       "fallback")
    assert t.cdr_check == "corrected" and not t.callback_needed
    assert len(await store.list_tickets()) == 1


async def test_a_gapped_live_record_after_the_cdr_never_undoes_it(store) -> None:  # noqa: F811
    first = await store.save_call(from_cdr())
    await store.save_call(joined_mid_way(ivr_path=["menu:main"]))  # what the live side knew, saved late
    t = await store.get_ticket(first.ticket_no)
    assert (t.caller, t.dialed, t.outcome, t.handled_by) == ("13800138000", "12345", "answered", "fallback")
    assert t.ivr_path == ["menu:main"] and t.cdr_check == "corrected"


async def test_a_fully_seen_call_is_not_touched_by_the_cdr(store) -> None:  # noqa: F811
    first = await store.save_call(rec())
    await store.save_call(from_cdr(caller="13900000000", outcome="abandoned_in_queue"))
    t = await store.get_ticket(first.ticket_no)
    assert t.caller == "13800138000" and t.outcome == "answered" and t.cdr_check is None


async def test_a_transferred_call_stays_transferred_when_the_cdr_says_answered(store) -> None:  # noqa: F811
    first = await store.save_call(rec(outcome="transferred", actual_dest="transfer:tax", gap=True))
    await store.save_call(from_cdr())
    t = await store.get_ticket(first.ticket_no)
    assert t.outcome == "transferred" and t.actual_dest == "transfer:tax" and t.cdr_check == "corrected"


def test_the_replay_looks_again_at_a_call_marked_due() -> None:
    rows = [{"linkedid": "x1", "src": "13800138000", "hotline_dialed": "12345", "disposition": "ANSWERED",
             "dstchannel": "PJSIP/1001-1", "lastapp": "Queue", "lastdata": "hotline-general", "end": 1.0}]
    for due, expected in ((False, None), (True, "answered")):
        replay = CdrReplay(settle_s=0)
        replay.take(0, Chunk(consumed=1, rows=[dict(r) for r in rows]))
        assert replay.due(10.0) == ["x1"]
        got = replay.conclude("x1", "abandoned_in_queue", cdr_due=due)
        assert (got.outcome if got else None) == expected


# ------------------------------------------------------------------------------------ the store away


def test_store_errors_are_named_plainly() -> None:
    assert store_error_reason(OSError(errno.ENOSPC, "No space left on device")) == "disk full"
    full = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    assert store_error_reason(full) == "disk full"
    assert store_error_reason(ConnectionRefusedError(111, "Connect call failed")) == "unreachable"
    assert store_error_reason(OSError("[Errno 111] Connect call failed ('127.0.0.1', 5432)")) == "unreachable"
    assert store_error_reason(ValueError("odd")) == "ValueError"


async def test_records_wait_for_the_store_and_are_written_in_order_when_it_returns() -> None:
    now = [0.0]
    p = PendingSaves(limit=3, clock=lambda: now[0])
    down = ConnectionRefusedError(111, "refused")
    live = rec("a", gap=False)
    p.defer(live, down)
    p.defer(rec("a", source="cdr"), down)  # a CDR rebuild never replaces the live record held
    p.defer(rec("b"), down)
    assert p.records["a"] is live and p.reason == "unreachable" and p.down_since == 0.0
    written: list[str] = []

    async def failing(r: CallRecord) -> None:
        raise down

    assert not await p.flush(failing) and len(p) == 2 and p.delay == 2.0

    async def save(r: CallRecord) -> None:
        written.append(r.linkedid)

    now[0] = 30.0
    assert await p.flush(save) and written == ["a", "b"] and len(p) == 0
    assert p.down_since is None and p.delay == 1.0


def test_who_force_released_a_held_call_stays_with_it_whichever_record_is_kept() -> None:
    """A held record's 强拆 (CallRecord.released_by) is not lost when another record of the call replaces it, nor
    when a CDR rebuild that carries it is dropped for the live record held."""
    p = PendingSaves()
    down = ConnectionRefusedError(111, "refused")
    p.defer(rec("a", released_by="root (seat 9001, agent 1001)"), down)
    p.defer(rec("a", talk_s=31.0), down)  # a newer live record of the same call
    p.defer(rec("b"), down)
    p.defer(rec("b", source="cdr", released_by="api:张班长 (seat 9001, agent 1002)"), down)
    assert p.records["a"].talk_s == 31.0 and p.records["a"].released_by == "root (seat 9001, agent 1001)"
    assert p.records["b"].source != "cdr" and p.records["b"].released_by == "api:张班长 (seat 9001, agent 1002)"


def test_at_most_limit_records_are_held_the_oldest_left_to_the_cdr() -> None:
    p = PendingSaves(limit=2)
    for lid in "abc":
        p.defer(rec(lid), OSError(errno.ENOSPC, "full"))
    assert list(p.records) == ["b", "c"] and p.let_go == 1


# ------------------------------------------------------------------------------------ callbacks


def test_a_callback_call_names_its_ticket_and_attempt() -> None:
    assert callback_of("callback-261130000001-2-ab12cd34") == ("261130000001", 2)
    assert callback_of("robot-1234") is None and callback_of("callback-x-y") is None
    assert answered_in_cdr([{"disposition": "NO ANSWER"}, {"disposition": "ANSWERED"}])
    assert not answered_in_cdr([{"disposition": "NO ANSWER"}])


@dataclass
class _Cb:
    id: int
    status: str
    attempts: int
    lease_live: bool = False


class _Store:
    """The store's owed-call API as settle_from_cdr uses it (ticketbridge.outreach_store)."""

    def __init__(self, cb: _Cb) -> None:
        self.cb = cb
        self.settled: list[tuple[str, str]] = []

    async def callback_for(self, ticket_no: str) -> _Cb:
        return self.cb

    async def settle_owed(self, kind: str, owed_id: int, verdict: str, reason: str, *, actor: str = "") -> bool:
        if self.cb.status == "done" or (self.cb.status == "dialing" and self.cb.lease_live):
            return False
        self.settled.append((verdict, actor))
        self.cb.status = "done"
        return True


class _Settings:
    queue = "general"


LID = "callback-261130000001-1-ab12cd34"


async def test_an_answered_callback_of_a_dead_controller_is_settled_from_its_cdr_once() -> None:
    store = _Store(_Cb(1, "dialing", 1))
    d = CallbackDialer(store, None, _Settings())
    assert await d.settle_from_cdr("callback-261130000001-2-ffff0000", [{"disposition": "ANSWERED"}])  # not this try
    assert store.settled == []
    assert await d.settle_from_cdr(LID, [{"disposition": "ANSWERED"}])
    assert await d.settle_from_cdr(LID, [{"disposition": "ANSWERED"}])  # done already: nothing more
    assert store.settled == [("not_needed", "cdr")]


async def test_while_the_dead_claims_lease_runs_the_rows_are_looked_at_again() -> None:
    store = _Store(_Cb(1, "dialing", 1, lease_live=True))
    d = CallbackDialer(store, None, _Settings())
    assert not await d.settle_from_cdr(LID, [{"disposition": "ANSWERED"}])
    store.cb.lease_live = False
    assert await d.settle_from_cdr(LID, [{"disposition": "ANSWERED"}]) and store.settled


async def test_an_unanswered_or_own_callback_is_left_alone() -> None:
    store = _Store(_Cb(1, "dialing", 1))
    d = CallbackDialer(store, None, _Settings())
    assert await d.settle_from_cdr(LID, [{"disposition": "NO ANSWER"}])  # the scheduler's rules try again
    d.in_flight.add(LID)
    assert await d.settle_from_cdr(LID, [{"disposition": "ANSWERED"}])  # this process writes its own result
    assert store.settled == []


def test_a_call_joined_mid_way_takes_the_callers_number_from_the_callers_channel() -> None:
    """Issue 14 item 8: the first event seen is the agent's channel; its number is not the caller's."""
    from tests.unit.test_assembler import ev, newchannel

    auid = L[:-1] + "2"
    asm = Assembler()
    out: list[CallRecord] = []
    for e in [newchannel(L, auid, T0, AGENT, cid="1001", exten="s", context="hotline-seats"),
              ev("AgentConnect", L, L, T0 + 1, Channel=CALLER, CallerIDNum="13800138000", Queue="general",
                 MemberName="seat1001", Interface="PJSIP/1001", HoldTime="5", DestChannel=AGENT,
                 DestUniqueid=auid, DestLinkedid=L),
              hangup(L, auid, T0 + 30, AGENT), hangup(L, L, T0 + 31, CALLER)]:
        out.extend(asm.feed(e))
    assert len(out) == 1 and out[0].gap and out[0].caller == "13800138000" and out[0].dialed != "s"


def test_a_call_joined_mid_way_takes_the_caller_from_a_cdr_event() -> None:
    """Nothing of the caller's channel seen, but Asterisk's Cdr event names the source."""
    from model.contract import CdrVar

    chan = L + "9"
    asm = Assembler()
    out: list[CallRecord] = []
    for e in [{"Event": "QueueCallerJoin", "Linkedid": L, "Uniqueid": chan, "Channel": CALLER, "Queue": "general"},
              {"Event": "Cdr", "Linkedid": L, "UniqueID": chan, "Source": "13800138000", "Destination": "s",
               CdrVar.DIALED.ami_header: "12345"},
              {"Event": "Hangup", "Linkedid": L, "Uniqueid": chan, "Channel": CALLER}]:
        out.extend(asm.feed(e, T0))
    assert len(out) == 1 and out[0].gap
    assert (out[0].caller, out[0].dialed) == ("13800138000", "12345")
