"""The ticket store against real databases: SQLite (a file per test) and PostgreSQL (a schema per test).

PostgreSQL params skip with the reason when the server is unreachable, except under CI,
where a missing database is a failure, never a silent skip.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from model.loading import load_config
from ticketbridge.assembler import CallRecord, record_from_cdr
from ticketbridge.lifecycle import IllegalTransition
from ticketbridge import store as store_module
from ticketbridge.pending import PendingSaves, store_error_reason
from ticketbridge.store import TicketNotFound, TicketStore
from tests.e2e.faults import CutLink

PG_URL = os.environ.get("HOTLINE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = bool(os.environ.get("CI"))
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
UTC = dt.timezone.utc
#: 2026-03-02 17:30 UTC is already Tuesday 2026-03-03 01:30 in Beijing
NOW = dt.datetime(2026, 3, 2, 17, 30, tzinfo=UTC)
T0 = NOW.timestamp()

_pg_ok: bool | None = None
_pg_why = ""


async def _pg_reachable() -> bool:
    global _pg_ok, _pg_why
    if _pg_ok is None:
        engine = create_async_engine(PG_URL, connect_args={"timeout": 3})
        try:
            async with engine.connect() as c:
                await c.execute(text("SELECT 1"))
            _pg_ok = True
        except Exception as e:  # noqa: BLE001 - any failure means "no PostgreSQL here"
            _pg_ok, _pg_why = False, f"PostgreSQL unreachable at {PG_URL}: {type(e).__name__}: {e}"
        finally:
            await engine.dispose()
    return _pg_ok


class Clock:
    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


StoreFactory = Callable[..., Awaitable[TicketStore]]


@pytest.fixture(params=["sqlite", "pg"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A factory of opened stores sharing one database (several controllers), closed afterwards."""
    cfg = load_config(SHIPPED)
    clock = Clock()
    opened: list[TicketStore] = []
    schema = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/nested/dir/tickets.db"
        options: dict[str, Any] = {}
    else:
        if not await _pg_reachable():
            if IN_CI:
                pytest.fail(f"CI must have PostgreSQL: {_pg_why}")
            pytest.skip(_pg_why)
        url = PG_URL
        admin = create_async_engine(PG_URL)
        async with admin.begin() as c:
            await c.execute(text(f'CREATE SCHEMA "{schema}"'))
        await admin.dispose()
        options = {"connect_args": {"server_settings": {"search_path": schema}}}

    async def factory(port: int | None = None, query: dict[str, str] | None = None) -> TicketStore:
        """(`port`: PostgreSQL's, reached through another port: a relay the test can cut; `query`: added to the
        store's URL.)"""
        u = make_url(url).set(**({"port": port} if port is not None else {})).update_query_dict(query or {})
        st = TicketStore(u.render_as_string(hide_password=False), cfg, clock=clock, engine_options=options)
        await st.open()
        opened.append(st)
        return st

    factory.clock = clock  # type: ignore[attr-defined]
    try:
        yield factory
    finally:
        for st in opened:
            await st.close()
        if request.param == "pg":
            admin = create_async_engine(PG_URL)
            async with admin.begin() as c:
                await c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await admin.dispose()


@pytest.fixture
async def store(make_store: StoreFactory) -> TicketStore:
    return await make_store()


def rec(linkedid: str = "1772472600.1", **kw: Any) -> CallRecord:
    base: dict[str, Any] = dict(caller="13800138000", dialed="12345", mode="center", requested_dest="queue:general/咨询",
                                actual_dest="agent:seat1001", category="咨询", ivr_path=["menu:main", "key:1"],
                                queue="general", queue_wait_s=12.0, agent="seat1001", answered_at=T0 + 20,
                                talk_s=95.0, participants=[("caller", "PJSIP/trunk-1"), ("agent", "PJSIP/1001-2")],
                                outcome="answered", started_at=T0, ended_at=T0 + 120)
    base.update(kw)
    return CallRecord(linkedid=linkedid, **base)


# --------------------------------------------------------------------------- saving


async def test_save_creates_ticket_with_number_password_deadline(store: TicketStore) -> None:
    saved = await store.save_call(rec())
    assert saved.created
    assert saved.ticket_no == "260303000001"  # Beijing date, not UTC's
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.state == "accepted" and t.outcome == "answered"
    assert t.query_password_hash == ""  # no password until one is issued (told to the caller)
    password = await store.issue_password(saved.ticket_no)
    assert password is not None and len(password) == 6 and password.isdigit()
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.query_password_hash.startswith("hmac$") and password not in t.query_password_hash
    assert t.ivr_path == ["menu:main", "key:1"] and t.participants[0] == ["caller", "PJSIP/trunk-1"]
    assert t.answered_at is not None and abs(t.answered_at.timestamp() - (T0 + 20)) < 1e-3
    # 咨询: 2 working days on the office calendar from Tue 03-03 → Thu 03-05 end of day
    assert t.deadline_at == dt.datetime(2026, 3, 5, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert t.callback_needed is False
    assert (await store.get_by_linkedid("1772472600.1")).ticket_no == saved.ticket_no  # type: ignore[union-attr]


async def test_cdr_statuses_are_what_the_cdr_replay_reads(store: TicketStore) -> None:
    """The CDR replay's lookup of a round's calls (two columns, no ORM object, one read) says what
    get_by_linkedid would; a call without a ticket is absent."""
    assert await store.cdr_statuses(["nope.1"]) == {} and await store.cdr_statuses([]) == {}
    await store.save_call(rec())
    await store.save_call(rec("1772472600.2", gap=True, outcome="abandoned_in_queue"))
    found = await store.cdr_statuses(["1772472600.1", "nope.1", "1772472600.2"])
    assert set(found) == {"1772472600.1", "1772472600.2"}
    assert (found["1772472600.1"].outcome, found["1772472600.1"].cdr_check) == ("answered", None)
    t = await store.get_by_linkedid("1772472600.2")
    st = found["1772472600.2"]
    assert t is not None and (st.outcome, st.cdr_check) == (t.outcome, t.cdr_check) == ("abandoned_in_queue", "due")
    # more calls than one statement takes, and every size of statement: each call found once
    for i in range(3, 603):
        await store.save_call(rec(f"1772472600.{i}", outcome="ended_in_ivr"))
    lids = [f"1772472600.{i}" for i in range(1, 603)]
    for n in (1, 3, 7, 130, 600, 602):
        assert set(await store.cdr_statuses(lids[:n] + ["nope.2"])) == set(lids[:n])


async def test_idempotent_replay(store: TicketStore) -> None:
    results = [await store.save_call(rec()) for _ in range(3)]
    assert len({r.ticket_no for r in results}) == 1
    assert [r.created for r in results] == [True, False, False]
    assert await store.count_tickets() == 1
    assert len(await store.outbox_for(results[0].ticket_no)) == 1  # a replay changes nothing, pushes nothing


async def test_concurrent_replays_of_one_call(make_store: StoreFactory) -> None:
    a, b = await make_store(), await make_store()
    results = await asyncio.gather(*[(a if i % 2 else b).save_call(rec()) for i in range(10)])
    assert len({r.ticket_no for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert await a.count_tickets() == 1


async def test_in_progress_then_complete(store: TicketStore) -> None:
    partial = rec(outcome="in_progress", agent=None, actual_dest=None, talk_s=None, answered_at=None,
                  ended_at=None, survey_rating=None, ivr_path=["menu:main"], category=None)
    first = await store.save_call(partial)
    t = await store.get_ticket(first.ticket_no)
    assert t is not None and t.outcome == "in_progress" and t.version == 1
    again = await store.save_call(rec(survey_rating=5, survey_scale=5))
    assert again.ticket_no == first.ticket_no and not again.created
    t = await store.get_ticket(first.ticket_no)
    assert t is not None and t.outcome == "answered" and t.agent == "seat1001" and t.talk_s == 95
    assert t.ivr_path == ["menu:main", "key:1"] and t.category == "咨询" and t.survey_rating == 5
    assert t.version == 2
    # a stale in-progress flush afterwards changes nothing
    await store.save_call(partial)
    t2 = await store.get_ticket(first.ticket_no)
    assert t2 is not None and t2.outcome == "answered" and t2.version == 2
    assert len(await store.outbox_for(first.ticket_no)) == 2
    hist = await store.history(first.ticket_no)
    assert [h.field for h in hist] == ["state", "record"] and "outcome" in (hist[1].note or "")


async def test_fallback_cdr_never_overwrites_complete(store: TicketStore) -> None:
    saved = await store.save_call(rec())
    cdr = record_from_cdr({"linkedid": "1772472600.1", "uniqueid": "1772472600.1", "src": "13800138000",
                           "hotline_dialed": "12345", "hotline_fallback": "1", "hotline_queue": "general",
                           "lastapp": "Queue", "disposition": "NO ANSWER", "start": T0, "end": T0 + 50})
    assert cdr is not None and cdr.handled_by == "fallback" and cdr.outcome == "abandoned_in_queue"
    again = await store.save_call(cdr)
    assert again.ticket_no == saved.ticket_no and not again.created
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.outcome == "answered" and t.handled_by == "controller" and t.source == "ami"
    assert t.version == 1 and t.callback_needed is False


async def test_cdr_first_then_live_record_upgrades(store: TicketStore) -> None:
    cdr = record_from_cdr({"linkedid": "9.1", "src": "13900000000", "hotline_dialed": "12345",
                           "hotline_fallback": "1", "hotline_queue": "general", "lastapp": "Queue",
                           "disposition": "NO ANSWER", "start": T0, "end": T0 + 50})
    assert cdr is not None
    saved = await store.save_call(cdr)
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.callback_needed and t.source == "cdr"
    assert [c.ticket_no for c in await store.pending_callbacks()] == [saved.ticket_no]
    await store.save_call(rec("9.1", caller="13900000000"))
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.outcome == "answered" and t.source == "ami" and t.callback_needed is False
    assert await store.pending_callbacks() == []


async def test_fifty_concurrent_calls_get_distinct_numbers(make_store: StoreFactory) -> None:
    """Two controllers sharing one database, 50 calls ending at once."""
    a, b = await make_store(), await make_store()
    results = await asyncio.gather(*[(a if i % 2 else b).save_call(rec(f"1772472600.{100 + i}"))
                                     for i in range(50)])
    numbers = sorted(r.ticket_no for r in results)
    assert len(set(numbers)) == 50 and all(r.created for r in results)
    assert numbers == [f"260303{i:06d}" for i in range(1, 51)]
    assert await a.count_tickets() == 50


async def test_sequence_restarts_each_beijing_day(make_store: StoreFactory) -> None:
    st = await make_store()
    clock = make_store.clock  # type: ignore[attr-defined]
    assert (await st.save_call(rec("d.1"))).ticket_no == "260303000001"
    assert (await st.save_call(rec("d.2"))).ticket_no == "260303000002"
    clock.now = NOW + dt.timedelta(days=1)
    assert (await st.save_call(rec("d.3"))).ticket_no == "260304000001"


async def test_open_twice_and_reopen_keeps_data(make_store: StoreFactory) -> None:
    a = await make_store()
    saved = await a.save_call(rec())
    b = await make_store()  # migrations at head already: nothing to do, nothing lost
    assert (await b.get_ticket(saved.ticket_no)) is not None


# --------------------------------------------------------------------------- self-query


async def test_verify_query_password(store: TicketStore) -> None:
    saved = await store.save_call(rec())
    assert await store.verify_query(saved.ticket_no, "") is None  # no password issued: nothing matches
    password = await store.issue_password(saved.ticket_no)
    assert password is not None
    t = await store.verify_query(saved.ticket_no, password)
    assert t is not None and t.ticket_no == saved.ticket_no
    wrong = f"{(int(password) + 1) % 10**6:06d}"
    assert await store.verify_query(saved.ticket_no, wrong) is None
    assert await store.verify_query(saved.ticket_no, "") is None
    assert await store.verify_query("990101000001", password) is None
    assert await store.verify_query("12ab", password) is None


# --------------------------------------------------------------------------- lifecycle


async def test_state_transitions_with_history_and_outbox(store: TicketStore) -> None:
    saved = await store.save_call(rec())
    for target, actor in (("派单", "agent:1001"), ("handling", "dept:tax"), ("督办", "supervisor:li"),
                          ("handling", "dept:tax"), ("replied", "dept:tax"), ("closed", "agent:1001")):
        t = await store.change_state(saved.ticket_no, target, actor, note=f"to {target}")
    assert t.state == "closed"
    hist = await store.history(saved.ticket_no)
    moves = [(h.from_value, h.to_value, h.actor) for h in hist if h.field == "state"]
    assert moves[0] == (None, "accepted", "system")
    assert moves[1:] == [("accepted", "dispatched", "agent:1001"), ("dispatched", "handling", "dept:tax"),
                         ("handling", "supervised", "supervisor:li"), ("supervised", "handling", "dept:tax"),
                         ("handling", "replied", "dept:tax"), ("replied", "closed", "agent:1001")]
    box = await store.outbox_for(saved.ticket_no)
    assert len(box) == 7 and len({o.idempotency_key for o in box}) == 7
    assert box[-1].payload["state"] == "closed" and box[-1].payload["event"] == "state_changed"
    assert "query_password_hash" not in box[-1].payload

    with pytest.raises(IllegalTransition, match="closed.*rated"):
        await store.change_state(saved.ticket_no, "评价", "agent:1001")
    assert len(await store.outbox_for(saved.ticket_no)) == 7
    t2 = await store.get_ticket(saved.ticket_no)
    assert t2 is not None and t2.state == "closed"
    with pytest.raises(TicketNotFound):
        await store.change_state("990101000001", "closed", "x")


async def test_set_survey(store: TicketStore) -> None:
    saved = await store.save_call(rec())
    t = await store.set_survey("1772472600.1", 4, 5)
    assert t is not None and t.survey_rating == 4 and t.survey_scale == 5
    assert await store.set_survey("nope", 4, 5) is None
    with pytest.raises(ValueError):
        await store.set_survey("1772472600.1", 6, 5)
    # a later replay of the call record (which had no rating) keeps the survey
    await store.save_call(rec())
    t = await store.get_ticket(saved.ticket_no)
    assert t is not None and t.survey_rating == 4
    assert [o.payload["event"] for o in await store.outbox_for(saved.ticket_no)] == ["created", "survey"]


async def test_list_tickets(store: TicketStore) -> None:
    await store.save_call(rec("l.1"))
    await store.save_call(rec("l.2", outcome="abandoned_in_queue", agent=None, caller="13911112222"))
    await store.save_call(rec("l.3", outcome="ended_in_ivr", handled_by="fallback", agent=None))
    assert len(await store.list_tickets()) == 3
    assert [t.linkedid for t in await store.list_tickets(outcome="abandoned_in_queue")] == ["l.2"]
    assert [t.linkedid for t in await store.list_tickets(caller="13911112222")] == ["l.2"]
    assert [t.linkedid for t in await store.list_tickets(handled_by="fallback")] == ["l.3"]
    assert {t.linkedid for t in await store.list_tickets(callback_needed=True)} == {"l.2", "l.3"}
    assert len(await store.list_tickets(state="受理")) == 3
    assert len(await store.list_tickets(limit=2)) == 2
    assert await store.list_tickets(since=NOW + dt.timedelta(hours=1)) == []


# --------------------------------------------------------------------------- callbacks and outbox


async def test_callbacks_for_missed_calls(store: TicketStore) -> None:
    missed = await store.save_call(rec("c.1", outcome="abandoned_in_queue", agent=None))
    await store.save_call(rec("c.2", outcome="ended_in_ivr", agent=None, self_query={"result": "found"}))
    await store.save_call(rec("c.3"))
    pending = await store.pending_callbacks()
    assert [(p.ticket_no, p.caller, p.attempts) for p in pending] == [(missed.ticket_no, "13800138000", 0)]
    cb = await store.mark_callback(pending[0].id, "dialing")
    assert cb.attempts == 1 and await store.pending_callbacks() == []
    await store.mark_callback(pending[0].id, "done", "reached caller")
    t = await store.get_ticket(missed.ticket_no)
    assert t is not None and t.callback_needed is False
    with pytest.raises(ValueError):
        await store.mark_callback(pending[0].id, "whatever")


async def test_outbox_delivery_cycle(make_store: StoreFactory) -> None:
    st = await make_store()
    clock = make_store.clock  # type: ignore[attr-defined]
    a = await st.save_call(rec("o.1"))
    b = await st.save_call(rec("o.2"))
    due = await st.outbox_due(10)
    assert [o.ticket_no for o in due] == [a.ticket_no, b.ticket_no]
    assert due[0].payload["ticket_no"] == a.ticket_no and due[0].idempotency_key.startswith(a.ticket_no + ":1:")
    await st.outbox_mark_delivered(due[0].id)
    failed = await st.outbox_mark_failed(due[1].id, "HTTP 503")
    assert failed.attempts == 1 and failed.last_error == "HTTP 503"
    assert await st.outbox_due(10) == []  # backing off
    clock.now = NOW + dt.timedelta(seconds=31)
    [retry] = await st.outbox_due(10)
    assert retry.id == due[1].id
    await st.outbox_mark_failed(retry.id, "HTTP 503", backoff_s=5)
    clock.now += dt.timedelta(seconds=6)
    await st.outbox_mark_dead(retry.id, "gave up")
    assert await st.outbox_due(10) == []


async def test_ticket_number_stays_12_digits_at_beijing_scale(make_store: StoreFactory) -> None:
    """YYMMDD + 6-digit daily sequence: Beijing's ~65,000 calls a day still key 12 digits in the IVR."""
    from ticketbridge.schema import TicketSeq

    st = await make_store()
    assert st.engine is not None
    async with st.engine.begin() as c:
        await c.execute(TicketSeq.__table__.insert().values(day="20260303", last=64_999))
    no = (await st.save_call(rec("big.1"))).ticket_no
    assert no == "260303065000" and len(no) == 12
    async with st.engine.begin() as c:
        await c.execute(TicketSeq.__table__.update().values(last=999_998))
    assert (await st.save_call(rec("big.2"))).ticket_no == "260303999999"
    # past a million a day the number grows a digit rather than wrapping onto an earlier ticket
    assert (await st.save_call(rec("big.3"))).ticket_no == "2603031000000"


async def test_sqlite_database_wal_shm_and_folder_are_private(tmp_path: Path) -> None:
    """Item 8: the database holds every caller's number; no other local user may read it."""
    os.umask(0o022)  # the usual umask: files 0644, folders 0755 unless the store says otherwise
    existing = tmp_path / "state"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    for folder in (tmp_path / "fresh" / "db", existing):
        db = folder / "tickets.db"
        store = TicketStore(f"sqlite+aiosqlite:///{db}", load_config(SHIPPED))
        await store.open()
        try:
            rec = CallRecord(linkedid=f"priv-{folder.name}", caller="13800138000", dialed="12345",
                             started_at=T0, ended_at=T0 + 5, outcome="answered")
            await store.save_call(rec)
            files = [db, db.with_name("tickets.db-wal"), db.with_name("tickets.db-shm")]
            for f in files:
                assert f.exists(), f"{f.name} missing: WAL not in use?"
                assert f.stat().st_mode & 0o777 == 0o600, f"{f} is {oct(f.stat().st_mode & 0o777)}"
            assert folder.stat().st_mode & 0o777 == 0o750, f"{folder} is {oct(folder.stat().st_mode & 0o777)}"
        finally:
            await store.close()
    # an older database created 0644 (with its WAL) is tightened on open
    old = tmp_path / "old"
    old.mkdir()
    db = old / "tickets.db"
    store = TicketStore(f"sqlite+aiosqlite:///{db}", load_config(SHIPPED))
    await store.open()
    await store.close()
    for f in old.iterdir():
        f.chmod(0o644)
    store = TicketStore(f"sqlite+aiosqlite:///{db}", load_config(SHIPPED))
    await store.open()
    try:
        for f in old.iterdir():
            assert f.stat().st_mode & 0o077 == 0, f"{f} is {oct(f.stat().st_mode & 0o777)}"
    finally:
        await store.close()


# --------------------------------------------------------------------------- the call-writer thread


async def test_a_calls_own_writes_run_in_the_call_writer_thread_not_on_the_event_loop(
        store: TicketStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: the ticket opened at IVR entry, the password, the hang-up save and the CDR replay's lookup run in
    the store's call-writer thread, on SQLite and on PostgreSQL alike: the loop only hands them over."""
    seen: dict[str, set[str]] = {}
    for name in ("open_call", "issue_password", "save_records", "cdr_statuses"):
        real = getattr(store_module, name)

        def spy(*args: Any, _real: Any = real, _name: str = name) -> Any:
            seen.setdefault(_name, set()).add(threading.current_thread().name)
            return _real(*args)

        monkeypatch.setattr(store_module, name, spy)
    loop_thread = threading.current_thread().name
    no = (await store.open_ticket("1772472600.1", caller="13800138000", dialed="12345")).ticket_no
    assert await store.issue_password(no)
    assert (await store.save_call(rec())).ticket_no == no
    assert (await store.cdr_statuses(["1772472600.1"]))["1772472600.1"].outcome == "answered"
    assert set(seen) == {"open_call", "issue_password", "save_records", "cdr_statuses"}
    for name, threads in seen.items():
        assert len(threads) == 1 and next(iter(threads)).startswith("ticket-calls"), (name, threads)
        assert loop_thread not in threads


def _failing_first(monkeypatch: pytest.MonkeyPatch, sqlstate: str) -> list[int]:
    """`save_records` whose first run makes PostgreSQL raise an error of this SQLSTATE (a real server error,
    through the driver); the list counts the runs."""
    real, runs = store_module.save_records, []

    def save_records(db: Any, *args: Any) -> Any:
        runs.append(1)
        if len(runs) == 1:
            db._run(f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$", ())
        return real(db, *args)

    monkeypatch.setattr(store_module, "save_records", save_records)
    return runs


@pytest.mark.parametrize("make_store", ["pg"], indirect=True)
@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])  # serialization failure, deadlock
async def test_a_postgresql_transaction_rolled_back_for_a_conflict_is_run_again(
        store: TicketStore, monkeypatch: pytest.MonkeyPatch, sqlstate: str) -> None:
    runs = _failing_first(monkeypatch, sqlstate)
    saved = await store.save_call(rec())
    assert saved.created and len(runs) == 2
    assert (await store.count_tickets()) == 1


@pytest.mark.parametrize("make_store", ["pg"], indirect=True)
async def test_a_postgresql_statement_cancelled_is_raised_at_once_with_its_sqlstate(
        store: TicketStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement past the statement timeout (57014, query_canceled) is not a conflict: raised to the caller
    (the controller keeps the record: ticketbridge.pending), not run ten times; nothing of it is kept."""
    runs = _failing_first(monkeypatch, "57014")
    with pytest.raises(DBAPIError) as caught:
        await store.save_call(rec())
    assert getattr(caught.value.orig, "sqlstate", None) == "57014" and len(runs) == 1
    assert await store.count_tickets() == 0


@pytest.mark.parametrize("make_store", ["pg"], indirect=True)
async def test_postgresql_away_fails_a_call_write_at_once_and_the_held_record_is_written_when_it_is_back(
        make_store: StoreFactory) -> None:
    """PostgreSQL behind a link that is cut: the hang-up save fails in seconds as `unreachable` (no ten retries),
    the record is held (ticketbridge.pending) and written once the link is back; the IVR's next ticket opens
    without a failure (the pool pings the call-writer thread's connection before reusing it)."""
    pg = make_url(PG_URL)
    link = await CutLink(pg.host or "127.0.0.1", pg.port or 5432).open()
    try:
        st = await make_store(link.port)
        assert (await st.open_ticket("1772472600.1", caller="13800138000", dialed="12345")).created
        await link.cut()
        pending = PendingSaves()
        t0 = time.monotonic()
        with pytest.raises(Exception) as caught:
            await st.save_call(rec())
        assert time.monotonic() - t0 < 5 and store_error_reason(caught.value) == "unreachable"
        pending.defer(rec(), caught.value)
        assert not await pending.flush(st.save_call)
        await link.restore()
        assert await pending.flush(st.save_call) and len(pending) == 0
        t = await st.get_by_linkedid("1772472600.1")
        assert t is not None and t.outcome == "answered" and t.agent == "seat1001"
        assert (await st.open_ticket("1772472600.2", caller="13800138000", dialed="12345")).created
    finally:
        await link.close()


@pytest.mark.parametrize("make_store", ["pg"], indirect=True)
async def test_the_call_writer_connection_has_the_engines_timeouts_and_settings(store: TicketStore) -> None:
    """The psycopg connection of the call writes gives up as the asyncpg engine does (a statement after 20 s,
    connecting after 5 s) and sees the same schema (the engine's server settings: here the test's search_path)."""
    shown = await store._call_tx(lambda db: [db.raw.execute(f"SHOW {p}").fetchone()[0]
                                             for p in ("statement_timeout", "search_path")], write=False)
    assert shown[0] == "20s" and shown[1].startswith("t_")
    assert store._call_engine is not None
    assert store._call_engine.url.drivername == "postgresql+psycopg"


def test_the_asyncpg_connect_arguments_in_psycopgs_words() -> None:
    args = store_module._psycopg_connect_args({"timeout": 1.5, "command_timeout": 20,
                                               "server_settings": {"application_name": "hot line"}})
    assert args == {"connect_timeout": 2, "tcp_user_timeout": 20000,
                    "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 5, "keepalives_count": 3,
                    "options": "-c statement_timeout=20000 -c application_name=hot\\ line"}
    with pytest.raises(ValueError, match="'ssl' has no psycopg counterpart"):
        store_module._psycopg_connect_args({"ssl": True})


def test_the_store_urls_asyncpg_query_in_psycopgs_words() -> None:
    """`ssl=` (asyncpg's) is libpq's `sslmode=`; libpq's own parameters pass; asyncpg-only ones are refused by name."""
    url = make_url("postgresql+asyncpg://u@db:5432/hotline?ssl=require&application_name=hl")
    out, args = store_module._psycopg_url(url)
    assert out.drivername == "postgresql+psycopg" and out.host == "db" and out.database == "hotline"
    assert dict(out.query) == {"sslmode": "require", "application_name": "hl"} and args == {}
    out, _ = store_module._psycopg_url(make_url("postgresql+asyncpg://u@db/h?ssl=verify-full"))
    assert dict(out.query) == {"sslmode": "verify-full"}
    # behind PgBouncer in transaction mode: asyncpg told to keep no prepared statements, psycopg to prepare none
    out, args = store_module._psycopg_url(make_url("postgresql+asyncpg://u@pgb/h?prepared_statement_cache_size=0"))
    assert dict(out.query) == {} and args == {"prepare_threshold": None}
    with pytest.raises(ValueError, match="ssl='true'"):  # asyncpg refuses it in a URL too
        store_module._psycopg_url(make_url("postgresql+asyncpg://u@db/h?ssl=true"))


@pytest.mark.parametrize("make_store", ["pg"], indirect=True)
async def test_a_postgresql_url_with_ssl_disable_opens_and_writes_calls(make_store: StoreFactory) -> None:
    """The same URL serves asyncpg (ORM, migrations) and psycopg (the call writes): a ticket is opened and saved."""
    st = await make_store(query={"ssl": "disable"})
    assert st._call_engine is not None and dict(st._call_engine.url.query) == {"sslmode": "disable"}
    assert (await st.open_ticket("1772472600.9", caller="13800138000", dialed="12345")).created
    await st.save_call(rec(linkedid="1772472600.9"))
    t = await st.get_by_linkedid("1772472600.9")
    assert t is not None and t.outcome == "answered"



@pytest.mark.parametrize("make_store", ["pg"], indirect=True)
async def test_a_call_write_waiting_on_a_lock_does_not_hold_up_another_calls_ticket(store: TicketStore) -> None:
    """PostgreSQL: the call writes run in several threads, each on a connection of its own, so a hang-up save
    that waits on a row another session holds (another controller, an agent's edit) does not keep the next
    caller's IVR from its ticket number."""
    assert (await store.open_ticket("1772472600.1", caller="13800138000", dialed="12345")).created
    assert store.engine is not None
    async with store.engine.connect() as other:
        tx = await other.begin()
        await other.execute(text("SELECT id FROM tickets WHERE linkedid = '1772472600.1' FOR UPDATE"))
        save = asyncio.ensure_future(store.save_call(rec()))
        await asyncio.sleep(0.5)
        assert not save.done()  # it waits on the row
        t0 = time.monotonic()
        assert (await store.open_ticket("1772472600.2", caller="13900139000", dialed="12345")).created
        assert time.monotonic() - t0 < 2
        assert not save.done()
        await tx.rollback()
    await asyncio.wait_for(save, 10)
    t = await store.get_by_linkedid("1772472600.1")
    assert t is not None and t.outcome == "answered"
