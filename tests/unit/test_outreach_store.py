"""Automatic calls in the store and the scheduler, on real SQLite and PostgreSQL (a schema per test):
claims taken once among controllers sharing a database, leases, results on the ticket, 回访 answers."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from ticketbridge.outreach_store import ClaimedCall
from ticketbridge.scheduler import OutreachScheduler
from ticketbridge.store import TicketStore
from tests.unit.test_store import StoreFactory, make_store, rec  # noqa: F401 - the fixture is used by name

UTC = dt.timezone.utc
#: Monday 2026-03-02 10:00 in Beijing: within the default calling hours
DAY = dt.datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def missed(n: int, caller: str | None = None, at: dt.datetime = DAY) -> Any:
    t = (at - dt.timedelta(minutes=3)).timestamp()
    return rec(f"m.{n}", caller=caller or f"1390000{n:04d}", outcome="abandoned_in_queue", agent=None,
               answered_at=None, talk_s=None, started_at=t, ended_at=t + 30)


class FakeDialer:
    """Stands in for ticketbridge.callbacks.CallbackDialer: records each call, answers `answer` of them."""

    def __init__(self, store: TicketStore, owner: str, answer: bool = True) -> None:
        self.store, self.owner, self.answer = store, owner, answer
        self.calls: list[ClaimedCall] = []

    def lease_s(self, kind: str) -> float:
        return 90.0

    async def place(self, claimed: ClaimedCall, actor: str | None = None) -> Any:
        self.calls.append(claimed)
        await asyncio.sleep(0.05)  # the call takes a moment: the other controller looks meanwhile
        status = "done" if self.answer else "failed"
        await self.store.finish_owed(claimed.kind, claimed.id, claimed.owner, status,
                                     "answered" if self.answer else "no answer", actor=actor)
        return claimed


async def run_rounds(*schedulers: OutreachScheduler, rounds: int = 1) -> None:
    """`rounds` scheduler rounds on each controller at the same time, each waiting for the calls it started."""
    for _ in range(rounds):
        tasks: list[asyncio.Task[Any]] = []

        async def one(s: OutreachScheduler) -> None:
            await s.tick(lambda coro, name: tasks.append(asyncio.create_task(coro, name=name)))

        await asyncio.gather(*(one(s) for s in schedulers))
        await asyncio.gather(*tasks)


def scheduler(store: TicketStore, owner: str, answer: bool = True) -> tuple[OutreachScheduler, FakeDialer]:
    cfg = store.config
    dialer = FakeDialer(store, owner, answer)
    return OutreachScheduler(store, dialer, lambda: cfg, store.now), dialer


def auto_on(store: TicketStore, **rules: Any) -> None:
    auto = store.config.callbacks.auto
    auto.enabled = True
    for k, v in rules.items():
        setattr(auto, k, v)


async def test_a_claim_is_taken_once_only_from_what_was_seen_and_finished_only_by_its_owner(
        make_store: StoreFactory) -> None:
    a, b = await make_store(), await make_store()
    make_store.clock.now = DAY  # type: ignore[attr-defined]
    saved = await a.save_call(missed(1))
    [owed] = await a.owed_calls("callback", window_min=120)
    assert (owed.ticket_no, owed.attempts, owed.status, owed.number) == (saved.ticket_no, 0, "pending", "13900000001")
    got = await asyncio.gather(a.claim_owed("callback", owed.id, "ctl-a", lease_s=60, expect_attempts=0),
                               b.claim_owed("callback", owed.id, "ctl-b", lease_s=60, expect_attempts=0))
    winners = [g for g in got if g is not None]
    assert len(winners) == 1 and winners[0].attempts == 1 and winners[0].ticket_no == saved.ticket_no
    won = winners[0]
    loser = "ctl-b" if won.owner == "ctl-a" else "ctl-a"
    assert not await b.finish_owed("callback", owed.id, loser, "done", "not mine")
    assert await a.finish_owed("callback", owed.id, won.owner, "failed", "no answer")
    # seen with 0 attempts, tried since: a claim from that stale view is refused
    assert await b.claim_owed("callback", owed.id, "ctl-b", lease_s=60, expect_attempts=0) is None
    again = await b.claim_owed("callback", owed.id, "ctl-b", lease_s=60, expect_attempts=1)
    assert again is not None and again.attempts == 2
    moves = [(h.field, h.from_value, h.to_value, h.note) for h in await a.history(saved.ticket_no)
             if h.field == "callback"]
    assert moves == [("callback", "pending", "dialing", "attempt 1"),
                     ("callback", "dialing", "failed", "attempt 1: no answer"),
                     ("callback", "failed", "dialing", "attempt 2")]


async def test_a_dead_controllers_claim_lapses_with_its_lease(make_store: StoreFactory) -> None:
    st = await make_store()
    clock = make_store.clock  # type: ignore[attr-defined]
    clock.now = DAY
    await st.save_call(missed(2))
    [owed] = await st.owed_calls("callback", window_min=120)
    first = await st.claim_owed("callback", owed.id, "ctl-dead", lease_s=60)
    assert first is not None
    assert await st.claim_owed("callback", owed.id, "ctl-b", lease_s=60) is None
    clock.now = DAY + dt.timedelta(seconds=61)
    second = await st.claim_owed("callback", owed.id, "ctl-b", lease_s=60)
    assert second is not None and second.attempts == 2
    assert not await st.finish_owed("callback", owed.id, "ctl-dead", "done", "too late")  # not its claim now
    assert await st.finish_owed("callback", owed.id, "ctl-b", "done", "answered")
    cb = await st.callback_for(owed.ticket_no)
    t = await st.get_ticket(owed.ticket_no)
    assert cb is not None and cb.status == "done" and cb.attempts == 2 and t is not None and not t.callback_needed


async def test_two_controllers_on_one_database_place_each_callback_once(make_store: StoreFactory) -> None:
    a, b = await make_store(), await make_store()
    make_store.clock.now = DAY  # type: ignore[attr-defined]
    auto_on(a, max_concurrent=10)
    tickets = {(await a.save_call(missed(10 + i))).ticket_no for i in range(6)}
    sa, da = scheduler(a, "ctl-a")
    sb, db = scheduler(b, "ctl-b")
    await run_rounds(sa, sb, rounds=3)
    placed = [c.ticket_no for c in da.calls + db.calls]
    assert sorted(placed) == sorted(tickets), placed  # every one, each once
    for no in tickets:
        cb = await a.callback_for(no)
        assert cb is not None and cb.status == "done" and cb.attempts == 1


async def test_retries_are_spaced_and_stop_at_k_attempts(make_store: StoreFactory) -> None:
    st = await make_store()
    clock = make_store.clock  # type: ignore[attr-defined]
    clock.now = DAY
    auto_on(st, max_attempts=2, spacing_min=10)
    saved = await st.save_call(missed(20))
    s, dialer = scheduler(st, "ctl", answer=False)
    await run_rounds(s)
    assert len(dialer.calls) == 1
    clock.now = DAY + dt.timedelta(minutes=9)
    await run_rounds(s)
    assert len(dialer.calls) == 1  # not yet: 10 minutes between attempts
    clock.now = DAY + dt.timedelta(minutes=11)
    await run_rounds(s)
    assert [c.attempts for c in dialer.calls] == [1, 2]
    clock.now = DAY + dt.timedelta(minutes=30)
    await run_rounds(s)
    assert len(dialer.calls) == 2
    cb = await st.callback_for(saved.ticket_no)
    assert cb is not None and cb.status == "failed" and cb.attempts == 2 and "2 attempt(s)" in (cb.last_result or "")
    given_up = [h for h in await st.history(saved.ticket_no) if h.to_value == "given_up"]
    assert len(given_up) == 1 and given_up[0].actor == "scheduler"
    assert await st.owed_calls("callback", window_min=120) == []  # given up: no longer looked at


async def test_a_number_answered_meanwhile_or_refused_is_never_dialed(make_store: StoreFactory) -> None:
    st = await make_store()
    clock = make_store.clock  # type: ignore[attr-defined]
    clock.now = DAY
    auto_on(st)
    first = await st.save_call(missed(30, caller="13900000030"))
    later_t = (DAY - dt.timedelta(minutes=1)).timestamp()
    again = await st.save_call(rec("m.30b", caller="13900000030", started_at=later_t, ended_at=later_t + 30,
                                   answered_at=later_t + 5))
    abroad = await st.save_call(missed(31, caller="0044207946000"))
    s, dialer = scheduler(st, "ctl")
    await run_rounds(s)
    assert dialer.calls == []
    cb = await st.callback_for(first.ticket_no)
    assert cb is not None and cb.status == "done" and again.ticket_no in (cb.last_result or "")
    t = await st.get_ticket(first.ticket_no)
    assert t is not None and not t.callback_needed
    cb2 = await st.callback_for(abroad.ticket_no)
    assert cb2 is not None and cb2.status == "failed" and "outbound policy" in (cb2.last_result or "")


async def test_a_closed_ticket_owes_a_followup_and_the_answer_lands_on_it(make_store: StoreFactory) -> None:
    st = await make_store()
    make_store.clock.now = DAY  # type: ignore[attr-defined]
    st.config.followups.auto.enabled = True
    unhappy = await st.save_call(rec("f.1"))
    happy = await st.save_call(rec("f.2", caller="13900000002"))
    for no in (unhappy.ticket_no, happy.ticket_no):
        await st.change_state(no, "closed", actor="agent:1001", note="当场解答")
    rows = await st.followups(status="pending")
    assert {r.ticket_no for r in rows} == {unhappy.ticket_no, happy.ticket_no}
    owed = {o.ticket_no: o for o in await st.owed_calls("followup", window_min=4320)}
    assert owed[unhappy.ticket_no].since == DAY
    claimed = await st.claim_owed("followup", owed[unhappy.ticket_no].id, "ctl", lease_s=300)
    assert claimed is not None
    assert await st.followup_about(unhappy.ticket_no) == (unhappy.ticket_no, "咨询")
    out = await st.record_followup(unhappy.ticket_no, False, 5, 5)
    assert out.reopened
    t = await st.get_ticket(unhappy.ticket_no)
    assert t is not None and t.state == "supervised"
    states = [(h.from_value, h.to_value, h.note) for h in await st.history(unhappy.ticket_no) if h.field == "state"]
    assert states[-2:] == [("closed", "revisited", "回访: 未解决, 满意度 5/5 非常不满意"),
                           ("revisited", "supervised", "回访: 未解决, 满意度 5/5 非常不满意")]
    [row] = await st.followups(ticket_no=unhappy.ticket_no)
    assert (row.status, row.resolved, row.rating, row.scale, row.attempts) == ("done", False, 5, 5, 1)
    # the dialer's own result after the IVR recorded the answer changes nothing
    assert not await st.finish_owed("followup", claimed.id, "ctl", "failed", "answered, but no answer was keyed")
    await st.record_followup(happy.ticket_no, True, 1, 5)
    t2 = await st.get_ticket(happy.ticket_no)
    assert t2 is not None and t2.state == "rated"
    # an answer for a ticket someone moved meanwhile is kept, the ticket stays where they put it
    moved = await st.save_call(rec("f.4", caller="13900000004"))
    await st.change_state(moved.ticket_no, "closed", actor="agent:1001")
    await st.change_state(moved.ticket_no, "revisited", actor="supervisor:li", note="回访 by phone, by hand")
    await st.change_state(moved.ticket_no, "rated", actor="supervisor:li")
    await st.record_followup(moved.ticket_no, False, None, 5)
    t3 = await st.get_ticket(moved.ticket_no)
    assert t3 is not None and t3.state == "rated"
    [row3] = await st.followups(ticket_no=moved.ticket_no)
    assert (row3.status, row3.resolved) == ("done", False)
    assert "not moved: the ticket is rated" in ((await st.history(moved.ticket_no))[-1].note or "")
    # reopened, handled again and closed again: a new 回访 is owed
    for target in ("handling", "replied", "closed"):
        await st.change_state(unhappy.ticket_no, target, actor="dept")
    [row] = await st.followups(ticket_no=unhappy.ticket_no)
    assert (row.status, row.attempts, row.rating) == ("pending", 0, None)


async def test_a_followup_is_owed_even_when_off_but_never_dialed(make_store: StoreFactory) -> None:
    st = await make_store()
    make_store.clock.now = DAY + dt.timedelta(hours=2)  # type: ignore[attr-defined]
    saved = await st.save_call(rec("f.3"))
    await st.change_state(saved.ticket_no, "closed", actor="agent:1001")
    assert [r.ticket_no for r in await st.followups(status="pending")] == [saved.ticket_no]
    auto_on(st)  # callbacks on, 回访 off
    s, dialer = scheduler(st, "ctl")
    await run_rounds(s)
    assert dialer.calls == []
    st.config.followups.auto.enabled = True
    st.config.followups.auto.delay_min = 0
    st.config.followups.auto.hours = None
    await run_rounds(s)
    assert [(c.kind, c.ticket_no) for c in dialer.calls] == [("followup", saved.ticket_no)]
