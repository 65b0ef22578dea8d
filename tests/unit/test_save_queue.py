"""Group commit of call records (ticketbridge/save_queue.py, TicketStore.save_calls) on SQLite and PostgreSQL.

A batch gives the same tickets as saving one by one; a save is acknowledged only once committed; a
store that fails fails every record of the batch (the controller then holds them: ticketbridge.pending).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from ticketbridge.assembler import CallRecord
from ticketbridge.save_queue import SaveInterrupted, SaveQueue
from ticketbridge.store import SavedTicket, TicketStore
from tests.unit.test_store import T0, make_store, rec  # noqa: F401 - fixture


async def test_a_batch_saves_what_one_by_one_would(make_store) -> None:  # noqa: F811
    store: TicketStore = await make_store()
    opened = await store.open_ticket("b.2", caller="13800000002", dialed="12345", started_at=T0)
    records = [rec("b.1", caller="13800000001"),
               rec("b.2", caller="13800000002"),                   # merges into the ticket opened at entry
               rec("b.3", outcome="in_progress", agent=None, answered_at=None, talk_s=None, ended_at=None),
               rec("b.3", caller="13800000003"),                   # the same call again, now complete
               rec("b.4", outcome="abandoned_in_queue", agent=None, answered_at=None, talk_s=None)]
    out = await store.save_calls(records)
    assert [s.created for s in out] == [True, False, True, False, True]
    assert out[1].ticket_no == opened.ticket_no and out[2].ticket_no == out[3].ticket_no
    numbers = [out[0].ticket_no, opened.ticket_no, out[2].ticket_no, out[4].ticket_no]
    assert len(set(numbers)) == 4 and all(len(n) == 12 for n in numbers)
    assert opened.ticket_no < out[0].ticket_no < out[2].ticket_no < out[4].ticket_no  # one step, in order
    t3 = await store.get_by_linkedid("b.3")
    assert t3.outcome == "answered" and t3.agent == "seat1001" and t3.version == 2
    t2 = await store.get_by_linkedid("b.2")
    assert t2.outcome == "answered" and t2.queue == "general"
    t4 = await store.get_by_linkedid("b.4")
    assert t4.callback_needed  # a missed call is on the callback list, as with save_call
    assert [c.ticket_no for c in await store.pending_callbacks()] == [t4.ticket_no]
    box = await store.outbox_due(limit=100)
    assert {r.ticket_no for r in box} == set(numbers)
    # saved again (a replay): nothing new, no duplicate
    again = await store.save_calls(records[:2])
    assert [s.created for s in again] == [False, False] and [s.ticket_no for s in again] == numbers[:2]
    assert len(await store.list_tickets(limit=100)) == 4


async def test_many_calls_ending_at_once_share_transactions_and_each_is_acknowledged_when_committed(
        make_store) -> None:  # noqa: F811
    store: TicketStore = await make_store()
    queue = SaveQueue(store, max_batch=50)
    records = [rec(f"q.{i}", caller=f"1380000{i:04d}") for i in range(120)]
    saved = await asyncio.gather(*(queue.save(r) for r in records))
    assert all(isinstance(s, SavedTicket) and s.created for s in saved)
    assert len({s.ticket_no for s in saved}) == 120
    assert queue.written == 120 and queue.batches < 10  # not one transaction per call
    for r, s in zip(records, saved, strict=True):  # what was acknowledged is in the database
        t = await store.get_by_linkedid(r.linkedid)
        assert t is not None and t.ticket_no == s.ticket_no and t.outcome == "answered"
    one = await queue.save(rec("q.lone"))  # a lone call: its own transaction, as before
    assert one.created and queue.written == 121


class FailingStore:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = asyncio.Event()

    async def save_call(self, record: CallRecord) -> Any:
        return await self.save_calls([record])

    async def save_calls(self, records: Sequence[CallRecord]) -> list[Any]:
        self.calls.append(len(records))
        await self.gate.wait()
        raise ConnectionRefusedError("store down")


async def test_a_failing_store_fails_every_record_of_the_batch_and_none_is_left_waiting() -> None:
    store = FailingStore()
    queue = SaveQueue(store)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(queue.save(rec(f"f.{i}"))) for i in range(5)]
    await asyncio.sleep(0.01)
    store.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    assert store.calls == [1, 4] and len(queue) == 0 and queue.written == 0


async def test_a_writer_cancelled_mid_batch_fails_its_batch_for_a_retry_and_the_rest_go_on() -> None:
    store = FailingStore()
    queue = SaveQueue(store)  # type: ignore[arg-type]
    first = asyncio.create_task(queue.save(rec("c.0")))
    await asyncio.sleep(0.01)
    others = [asyncio.create_task(queue.save(rec(f"c.{i}"))) for i in range(1, 4)]
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.sleep(0.01)
    assert store.calls == [1, 3]  # the next writer took the three waiting
    store.gate.set()
    results = await asyncio.gather(*others, return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    assert not isinstance(results[0], SaveInterrupted)
