"""The two adapters of the call writes' port (ticketbridge/call_db.py) write the same rows.

The store runs every call's writes on its call-writer thread's own DB-API connection (sqlite3 on a SQLite
file, psycopg on PostgreSQL), in transactions of its own (`DbapiCallDb`, with SQLAlchemy's own type
processors); a SQLite store without its call-writer thread runs them as SQLAlchemy Core (`CoreCallDb`), as
PostgreSQL did through asyncpg. The same calls written through each, into two fresh databases, must leave
every table the same, value for value, as SQLAlchemy reads them back; and the raw adapter's transactions must
fail, lock and roll back as SQLAlchemy's did."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, create_engine, select
from sqlalchemy.exc import IntegrityError, OperationalError

from model.loading import default_config_path, load_config
from routing.agent import AgentState, StateChanged
from routing.agent_service import PinRefused
from ticketbridge.agent_writes import save_agent, save_help
from ticketbridge.assembler import CallRecord
from ticketbridge.call_db import CoreCallDb, DbapiCallDb
from ticketbridge.leases import _take
from ticketbridge.schema import (AgentEvent, AgentHelp, AgentStateRow, Callback, Lease, Outbox, Ticket,
                                   TicketHistory)
from ticketbridge.store import TicketStore, _sqlite_pragmas
from ticketbridge.ticket_writes import (CallWrites, TicketRules, cdr_statuses, issue_password, new_ticket_values,
                                        open_call, save_records)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
T0 = NOW.timestamp()


def calls(rules: TicketRules) -> list[tuple[str, Callable[[Any], CallWrites | Any]]]:
    """A day of calls' writes, in order: each step is (name, f(db))."""
    def rec(lid: str, **kw: Any) -> CallRecord:
        return CallRecord(linkedid=lid, caller="13800138000", dialed="12345", started_at=T0, **kw)

    return [
        ("open 1", lambda db: open_call(db, rules, rec("1.1"), [], NOW)),
        ("open 1 again", lambda db: open_call(db, rules, rec("1.1"), [], NOW)),
        ("1 ends in the IVR: callback owed", lambda db: save_records(
            db, rules, [(rec("1.1", outcome="ended_in_ivr", ended_at=T0 + 20, ivr_path=["menu:main"]), [])], NOW)),
        ("1 served itself after all: callback not needed", lambda db: save_records(
            db, rules, [(rec("1.1", outcome="ended_in_ivr", ended_at=T0 + 20, ivr_path=["menu:main"],
                             self_query={"ticket": "x"}), [])], NOW)),
        ("2 and 3 end together, 3 twice, 2 with content cut", lambda db: save_records(db, rules, [
            (rec("2.1", outcome="answered", queue="general", agent="1001", answered_at=T0 + 5, talk_s=30.5,
                 category="求助", transfers=[{"to": "110", "kind": "blind"}], participants=[("a", "b")],
                 survey_rating=5, survey_scale=5), ["caller (70 chars)"]),
            (rec("3.1", gap=True, outcome="ended_in_ivr"), []),
            (rec("3.1", gap=True, outcome="ended_in_ivr", ivr_path=["menu:main", "key:9"]), []),
        ], NOW)),
        ("4 force-released as it is made, 1 as it merges, 5 not ended yet", lambda db: save_records(db, rules, [
            (rec("4.1", outcome="answered", agent="1002", released_by="api:张班长 (seat 9001, agent 1002)"), []),
            (rec("1.1", outcome="ended_in_ivr", released_by="root (seat 9001, agent 1001)"), []),
            (rec("5.1", released_by="never written: the call goes on"), []),
            (rec("4.1", outcome="answered", agent="1002", released_by="api:张班长 (seat 9001, agent 1002)"), []),
        ], NOW)),
        ("4 and 1 saved again (a save reported failed after it committed): their rows are there", lambda db: (
            save_records(db, rules, [
                (rec("4.1", outcome="answered", agent="1002", released_by="api:张班长 (seat 9001, agent 1002)"), []),
                (rec("1.1", outcome="ended_in_ivr", released_by="root (seat 9001, agent 1001)"), [])], NOW))),
        ("3 corrected from the CDR", lambda db: save_records(
            db, rules, [(rec("3.1", outcome="abandoned_in_queue", queue="general", source="cdr"), [])], NOW)),
        ("password for 2, with its SMS", lambda db: issue_password(db, "261130000002", "hmac$salt$mac", "ivr",
                                                                   sms_row, NOW)),
        ("password for 2 again", lambda db: issue_password(db, "261130000002", "hmac$salt$other", "ivr", None, NOW)),
        ("password for no ticket", lambda db: issue_password(db, "261130999999", "hmac$salt$mac", "ivr", None, NOW)),
        ("cdr status of 3", lambda db: cdr_statuses(db, ["3.1"])),
        ("cdr status of 2, 3 and none", lambda db: cdr_statuses(db, ["2.1", "9.9", "3.1"])),
        ("cdr status of none", lambda db: cdr_statuses(db, ["9.9"])),
        ("seat 1001 signs in: its row made", lambda db: save_agent(db, seat("ready", T0 + 1, "8101"), [
            StateChanged("8101", AgentState.SIGNED_OUT, AgentState.READY, T0 + 1, None, seat="1001", cause="sign_in")],
            NOW)),
        ("seat 1001 busy, a PIN refused at 1002: its row updated", lambda db: save_agent(
            db, seat("busy", T0 + 30, "", reason="培训", paused=True), [
                StateChanged("8101", AgentState.READY, AgentState.BUSY, T0 + 30, 29.0, reason="培训", by="班长王",
                             why="强制示忙", queue="general", linkedid="2.1", seat="1001", cause="set_busy"),
                PinRefused("8102", "1002", T0 + 31, AgentState.SIGNED_OUT, 2, False)], NOW + dt.timedelta(seconds=30))),
        ("a help period starts", lambda db: save_help(db, help_period())),
        ("the help period ends", lambda db: save_help(db, help_period(ended=T0 + 600, ended_by="timer"))),
        ("lease taken", lambda db: _take(db, lease("ctl-a"), 30, lambda: NOW)),
        ("lease refused to another", lambda db: _take(db, lease("ctl-b"), 30, lambda: NOW)),
        ("lease renewed", lambda db: _take(db, lease("ctl-a"), 60, lambda: NOW + dt.timedelta(seconds=10))),
    ]


def lease(owner: str) -> dict[str, Any]:
    return {"name": "cdr-replay:main", "owner": owner, "rank": 0, "replacing": ""}


def seat(state: str, since: float, agent_id: str, reason: str = "", paused: bool = False) -> dict[str, Any]:
    return {"agent": "1001", "state": state, "reason": reason, "since": since, "queues": ["general", "overflow"],
            "paused": paused, "agent_id": agent_id}


def help_period(**ended: Any) -> dict[str, Any]:
    return {"id": "h1", "queue": "overflow", "agents": ["1001", "1003"], "started": T0, "until": T0 + 1800,
            "by": "root (班长王)", "why": "多援一：暴雨", "ended": None, "ended_by": "", "end_why": "", **ended}


def sms_row() -> dict[str, Any]:
    return {"ticket_no": "261130000002", "idempotency_key": "261130000002:sms:salt", "payload": {"ticket": "x"},
            "endpoint": "sms", "secret": "sealed", "attempts": 0, "next_attempt_at": NOW, "delivered_at": None,
            "dead_at": None, "last_error": None, "created_at": NOW}


TABLES = (Ticket.__table__, TicketHistory.__table__, Outbox.__table__, Callback.__table__, AgentStateRow.__table__,
          AgentEvent.__table__, AgentHelp.__table__, Lease.__table__)


def dump(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table in TABLES:
        out[table.name] = [dict(r._mapping) for r in conn.execute(select(table).order_by(*table.primary_key))]
    return out


@pytest.mark.parametrize("adapter", [CoreCallDb, DbapiCallDb])
def test_each_adapter_runs_the_day(tmp_path: Path, adapter: Any) -> None:
    """Sanity of each alone: the numbers, merges, callback and the CDR status come out as the rules say."""
    results, tables = _run(tmp_path, adapter)
    assert results["open 1"].saved[0].created and not results["open 1 again"].saved[0].created
    assert results["open 1"].saved[0].ticket_no == "261130000001"
    assert [s.created for s in results["2 and 3 end together, 3 twice, 2 with content cut"].saved] == [True, True, False]
    assert results["cdr status of 3"] == {"3.1": ("abandoned_in_queue", "corrected")}
    assert results["cdr status of 2, 3 and none"] == {"2.1": ("answered", None), "3.1": ("abandoned_in_queue", "corrected")}
    assert results["cdr status of none"] == {}
    assert [results[f"password for {k}"] for k in ("2, with its SMS", "2 again", "no ticket")] == [True, False, None]
    t = {r["linkedid"]: r for r in tables["tickets"]}
    assert t["2.1"]["outcome"] == "answered" and t["2.1"]["talk_s"] == 30.5 and t["2.1"]["survey_rating"] == 5
    assert t["2.1"]["transfers"] == [{"to": "110", "kind": "blind"}] and t["2.1"]["participants"] == [["a", "b"]]
    assert t["2.1"]["answered_at"] == dt.datetime.fromtimestamp(T0 + 5, UTC)
    assert t["1.1"]["version"] == 3 and t["1.1"]["callback_needed"] is False
    cb = tables["callbacks"]
    assert [(c["ticket_id"], c["status"]) for c in cb if c["ticket_id"] == t["1.1"]["id"]] == [(t["1.1"]["id"], "done")]
    assert any(h["field"] == "content" and "caller" in (h["note"] or "") for h in tables["ticket_history"])
    assert t["2.1"]["query_password_hash"] == "hmac$salt$mac"
    released = [(h["ticket_id"], h["actor"], h["to_value"], h["note"]) for h in tables["ticket_history"]
                if h["field"] == "supervision"]
    assert released == [
        (t["4.1"]["id"], "api:张班长 (seat 9001, agent 1002)", "released", "强拆: api:张班长 (seat 9001, agent 1002)"),
        (t["1.1"]["id"], "root (seat 9001, agent 1001)", "released", "强拆: root (seat 9001, agent 1001)")]
    assert [(o["endpoint"], o["secret"]) for o in tables["outbox"] if o["endpoint"] == "sms"] == [("sms", "sealed")]
    assert tables["agent_states"] == [{
        "agent": "1001", "state": "busy", "reason": "培训", "since": T0 + 30, "queues": ["general", "overflow"],
        "paused": True, "updated_at": NOW + dt.timedelta(seconds=30), "agent_id": None}]
    assert [(e["agent"], e["old"], e["new"], e["seconds"], e["actor"], e["cause"]) for e in tables["agent_events"]] == [
        ("8101", "signed_out", "ready", 0.0, None, "sign_in"), ("8101", "ready", "busy", 29.0, "班长王", "set_busy"),
        ("8102", "signed_out", "signed_out", 0.0, "8102", "pin_wrong")]
    assert [(h["agents"], h["until"], h["ended_at"], h["ended_by"]) for h in tables["agent_help"]] == [
        (["1001", "1003"], dt.datetime.fromtimestamp(T0 + 1800, UTC), dt.datetime.fromtimestamp(T0 + 600, UTC),
         "timer")]
    assert [results[k] for k in ("lease taken", "lease refused to another", "lease renewed")] == ["ctl-a", None, "ctl-a"]
    assert [(r["owner"], r["since"], r["until"]) for r in tables["leases"]] == [
        ("ctl-a", NOW, NOW + dt.timedelta(seconds=70))]


def test_both_adapters_leave_the_same_rows(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "raw").mkdir()
    core = _run(tmp_path / "core", CoreCallDb)
    raw = _run(tmp_path / "raw", DbapiCallDb)
    assert raw[0] == core[0]
    for table, rows in core[1].items():
        assert raw[1][table] == rows, table
    # and the very values stored (text forms of times and JSON included), not only what they read back as
    for t in TABLES:
        stored = []
        order = ", ".join(c.name for c in t.primary_key)
        for side in ("core", "raw"):
            with sqlite3.connect(tmp_path / side / "t.db") as db:
                stored.append(db.execute(f"SELECT * FROM {t.name} ORDER BY {order}").fetchall())  # noqa: S608
        assert stored[0] == stored[1] and stored[0], t.name


def test_a_conflict_is_sqlalchemys_integrity_error_on_both(tmp_path: Path) -> None:
    """The store's retries catch SQLAlchemy's exceptions (another controller took the call or the number):
    the raw adapter raises the same class, with the parameters hidden (personal data)."""
    rules = TicketRules(load_config(default_config_path()), ZoneInfo("Asia/Shanghai"))
    row = new_ticket_values(rules, CallRecord(linkedid="1.1", caller="13800138000", started_at=T0), "261130000001", NOW)
    for adapter in (CoreCallDb, DbapiCallDb):
        engine = _engine(tmp_path / adapter.__name__)
        try:
            with _transactions(engine, adapter) as tx:
                tx(lambda db: db.insert_tickets([row]))
                with pytest.raises(IntegrityError) as caught:
                    tx(lambda db: db.insert_tickets([{**row, "linkedid": "2.1"}]))  # the same number again
                assert "13800138000" not in str(caught.value)
                assert tx(lambda db: db.tickets(["1.1", "2.1"]))[0]["linkedid"] == "1.1"
        finally:
            engine.dispose()


def test_a_write_transaction_takes_the_write_lock_at_once_and_a_read_one_does_not(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE for writes (a read-then-write cannot fail half-way on another controller's write), BEGIN for
    reads: another connection can still write while a read transaction is under way."""
    engine = _engine(tmp_path)
    try:
        with _raw(engine) as db, _other(tmp_path) as other:
            def try_to_write(_: DbapiCallDb) -> bool:
                try:
                    other.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as e:
                    assert "locked" in str(e)
                    return False
                other.execute("ROLLBACK")
                return True

            assert db.transaction(try_to_write, write=True) is False
            assert db.transaction(try_to_write, write=False) is True
            assert not db.raw.in_transaction
    finally:
        engine.dispose()


def test_another_writer_holding_the_lock_past_the_busy_timeout_is_sqlalchemys_operational_error(tmp_path: Path) -> None:
    """SQLite busy at BEGIN IMMEDIATE (another controller writing past busy_timeout) raises what SQLAlchemy raised
    (OperationalError), so the store's retries catch it; nothing of the transaction ran, and the connection is
    usable again once the other writer is done."""
    engine = _engine(tmp_path)
    try:
        with _raw(engine) as db, _other(tmp_path) as other:
            db.raw.execute("PRAGMA busy_timeout = 50")  # (the store's is 30 s)
            ran = []
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError) as caught:
                db.transaction(lambda d: ran.append(d.seq_step("20261130", 1)), write=True)
            assert isinstance(caught.value.orig, sqlite3.OperationalError) and "locked" in str(caught.value.orig)
            assert ran == [] and not db.raw.in_transaction
            assert db.transaction(lambda d: d.cdr_statuses(["1.1"]), write=False) == {}  # reads go on
            other.execute("ROLLBACK")
            assert db.transaction(lambda d: d.seq_step("20261130", 1), write=True) == 1
    finally:
        engine.dispose()


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    """A step that raises rolls back what it wrote (its own exception raised); a COMMIT that fails (here a foreign
    key checked at commit) raises SQLAlchemy's exception and rolls back too."""
    engine = _engine(tmp_path)
    try:
        with _raw(engine) as db:
            def step_then_fail(d: DbapiCallDb) -> None:
                d.seq_step("20261130", 5)
                raise ValueError("the rules refused")

            with pytest.raises(ValueError, match="the rules refused"):
                db.transaction(step_then_fail)
            assert not db.raw.in_transaction

            def orphan_callback(d: DbapiCallDb) -> None:
                d.raw.execute("PRAGMA defer_foreign_keys = ON")
                d.seq_step("20261130", 7)
                d.insert_rows(Callback.__table__, [{"ticket_id": 999, "status": "pending", "attempts": 0, "at": NOW}])

            with pytest.raises(IntegrityError) as caught:
                db.transaction(orphan_callback)
            assert "FOREIGN KEY" in str(caught.value.orig) and "COMMIT" in str(caught.value)
            assert not db.raw.in_transaction
            assert db.transaction(lambda d: d.seq_step("20261130", 1)) == 1  # neither 5 nor 7 was kept
            assert db.raw.execute("SELECT count(*) FROM callbacks").fetchone() == (0,)
    finally:
        engine.dispose()


async def test_the_call_writer_connection_is_the_stores_own_and_closes_with_it(tmp_path: Path) -> None:
    """The call-writer thread's sqlite3 connection has the store's pragmas (as every engine connection of the store),
    and closing the store closes it: SQLite then checkpoints the WAL and removes it."""
    st = TicketStore(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    await st.open()
    try:
        assert (await st.open_ticket("1.1", caller="13800138000", dialed="12345")).ticket_no.endswith("000001")
        pragmas = await st._call_tx(lambda db: (db.raw.isolation_level, *(
            db.raw.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("busy_timeout", "journal_mode", "synchronous", "foreign_keys"))), write=False)
        assert pragmas == (None, 30000, "wal", 1, 1)  # (synchronous 1: NORMAL)
        assert (tmp_path / "t.db-wal").exists()
    finally:
        await st.close()
    assert not (tmp_path / "t.db-wal").exists()
    with sqlite3.connect(tmp_path / "t.db") as db:
        assert db.execute("SELECT linkedid FROM tickets").fetchall() == [("1.1",)]


async def test_a_call_write_whose_caller_stops_waiting_holds_the_write_gate_to_its_end(tmp_path: Path) -> None:
    """Cancelling the caller of a call write under way does not release the write gate (the transaction goes on in
    the call-writer thread and commits): the next write waits for its end, then runs."""
    st = TicketStore(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    await st.open()
    try:
        inside, go_on = threading.Event(), threading.Event()

        def slow(db: DbapiCallDb) -> int:
            inside.set()
            assert go_on.wait(5)
            return db.seq_step("20261130", 1)

        first = asyncio.ensure_future(st._call_tx(slow))
        await asyncio.get_running_loop().run_in_executor(None, inside.wait, 5)
        first.cancel()
        second = asyncio.ensure_future(st._call_tx(lambda db: db.seq_step("20261130", 1)))
        await asyncio.sleep(0.1)
        assert st._write_gate is not None and st._write_gate.locked() and not second.done()
        go_on.set()
        assert await asyncio.wait_for(second, 5) == 2  # after the first, which committed
        assert first.cancelled() and not st._write_gate.locked()
    finally:
        await st.close()


def _engine(folder: Path) -> Any:
    folder.mkdir(parents=True, exist_ok=True)

    async def make() -> None:  # the schema, as the store makes it
        st = TicketStore(f"sqlite+aiosqlite:///{folder}/t.db")
        await st.open()
        await st.close()

    asyncio.run(make())
    engine = create_engine(f"sqlite:///{folder}/t.db", hide_parameters=True)  # as the store's engines
    _sqlite_pragmas(engine)
    return engine


@contextmanager
def _raw(engine: Engine) -> Iterator[DbapiCallDb]:
    """The raw adapter on a connection of its own, as the store's call-writer thread has."""
    conn = engine.raw_connection()
    try:
        yield DbapiCallDb(conn.driver_connection, engine.dialect)
    finally:
        conn.close()


@contextmanager
def _transactions(engine: Engine, adapter: Any) -> Iterator[Callable[[Callable[[Any], Any]], Any]]:
    """`tx(step)`: `step(db)` in a write transaction of its own, as the store runs it with this adapter (Core: under
    SQLAlchemy's transaction; raw: under the adapter's own)."""
    if adapter is CoreCallDb:
        def tx(step: Callable[[Any], Any]) -> Any:
            with engine.execution_options(hotline_write=True).begin() as conn:
                return step(CoreCallDb(conn))

        yield tx
    else:
        with _raw(engine) as db:
            yield lambda step: db.transaction(step, write=True)


@contextmanager
def _other(folder: Path) -> Iterator[sqlite3.Connection]:
    """Another controller's connection to the file (no busy wait)."""
    other = sqlite3.connect(folder / "t.db", isolation_level=None, timeout=0)
    try:
        yield other
    finally:
        other.close()


def _run(folder: Path, adapter: Any) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    engine = _engine(folder)
    rules = TicketRules(load_config(default_config_path()), ZoneInfo("Asia/Shanghai"))
    results = {}
    try:
        with _transactions(engine, adapter) as tx:
            for name, step in calls(rules):
                results[name] = tx(step)
        with engine.connect() as conn:
            return results, dump(conn)
    finally:
        engine.dispose()


async def test_the_call_writes_and_the_orm_writes_of_one_sqlite_store_take_turns(tmp_path: Path) -> None:
    """Two connections write one SQLite file in one process (the call-writer thread's and the ORM sessions'): they
    take turns at the store's write gate instead of meeting in SQLite's busy handler (review of issue 15)."""
    st = TicketStore(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    await st.open()
    try:
        _, write = st._sessions()
        async with write() as s, s.begin():  # an ORM write under way (a lease, an intake, …)
            await st._locked(s, linkedid="none")
            opening = asyncio.ensure_future(st.open_ticket("1.1", caller="13800138000", dialed="12345"))
            await asyncio.sleep(0.2)
            # the call write waits at the gate: the call-writer thread is not inside a statement (its BEGIN
            # IMMEDIATE, waiting in SQLite's busy handler)
            assert not opening.done() and not _executing("ticket-calls")
        assert (await asyncio.wait_for(opening, 5)).ticket_no.endswith("000001")
        assert "1.1" in await st.cdr_statuses(["1.1"])  # a read takes no turn
        async with write() as s, s.begin():
            assert "1.1" in await asyncio.wait_for(st.cdr_statuses(["1.1"]), 5)
    finally:
        await st.close()


def _executing(thread_prefix: str) -> bool:
    """Whether a thread named `thread_prefix…` is inside a database statement now (its stack)."""
    import sys
    import threading
    import traceback

    frames = sys._current_frames()
    for t in threading.enumerate():
        if t.name.startswith(thread_prefix) and t.ident in frames:
            if any(f.name in ("do_execute", "_run") for f in traceback.extract_stack(frames[t.ident])):
                return True
    return False


async def test_on_postgresql_the_call_writer_thread_writes_the_rows_the_core_statements_wrote(tmp_path: Path) -> None:
    """PostgreSQL's call writes moved from SQLAlchemy Core on the loop (asyncpg, `run_sync`) to `DbapiCallDb` on
    psycopg in the call-writer thread: the same day of calls, into two fresh schemas, one each way, gives the same
    results and the same rows, value for value (times, JSON, floats), as SQLAlchemy reads them back."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.conftest import PG_URL, require

    rules = TicketRules(load_config(default_config_path()), ZoneInfo("Asia/Shanghai"))
    admin = create_async_engine(PG_URL, connect_args={"timeout": 3})
    schemas = {side: f"t_{side}_{uuid.uuid4().hex[:8]}" for side in ("core", "dbapi")}
    try:
        async with admin.begin() as c:
            for schema in schemas.values():
                await c.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        await admin.dispose()
        require(False, f"PostgreSQL unreachable at {PG_URL}: {e}")
    out = {}
    try:
        for side, schema in schemas.items():
            st = TicketStore(PG_URL, engine_options={"connect_args": {"server_settings": {"search_path": schema}}})
            await st.open()
            try:
                assert st.engine is not None
                results = {}
                for name, step in calls(rules):
                    if side == "dbapi":
                        results[name] = await st._call_tx(lambda db, step=step: (type(db).__name__, step(db)))
                    else:  # what the store did before: Core through the async engine
                        async with st.engine.begin() as conn:
                            results[name] = await conn.run_sync(lambda c, step=step: ("CoreCallDb",
                                                                                      step(CoreCallDb(c))))
                async with st.engine.connect() as conn:
                    out[side] = ({k: v[1] for k, v in results.items()}, {v[0] for v in results.values()},
                                 await conn.run_sync(dump))
            finally:
                await st.close()
    finally:
        async with admin.begin() as c:
            for schema in schemas.values():
                await c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()
    assert out["core"][1] == {"CoreCallDb"} and out["dbapi"][1] == {"DbapiCallDb"}
    assert out["dbapi"][0] == out["core"][0]
    for table, rows in out["core"][2].items():
        assert out["dbapi"][2][table] == rows and rows, table
