"""The ticket store: SQLAlchemy 2 async over SQLite (WAL, embedded default) or PostgreSQL (shared).

One ticket per caller call, keyed by linkedid. `save_call` is idempotent: a replayed
event stream, a restart's shutdown flush or a CDR rebuild never duplicates a ticket,
and an update may only add information (a complete record replaces an in-progress
one; a CDR-rebuilt record never overwrites one built from live events). Every change
writes an outbox row in the same transaction, so pushing to the provincial platform
can never miss a change nor send one that was rolled back.

Ticket numbers are 12 digits — the IVR self-query keys exactly 12 — `YYMMDD` (the local date in center.timezone, Asia/Shanghai by default)
+ a 6-digit daily sequence (up to 999,999 a day: Beijing takes about 65,000), taken from
`ticket_seq` with one atomic INSERT … ON CONFLICT DO UPDATE … RETURNING, so several
controllers sharing one database never hand out the same number. (The sequence row is
still keyed by the full `YYYYMMDD` day, so no schema change was needed.)

The schema is owned by the Alembic migrations in ticketbridge/migrations; `open()`
upgrades to head under a lock (BEGIN IMMEDIATE on SQLite, an advisory lock on
PostgreSQL) so controllers starting together do not race each other.

Why one module (≈900 lines): `TicketStore` is one adapter whose methods are each one
transaction over the same tables (ticketbridge/schema.py); the rules that decide
(assembler, lifecycle, KPIs, outbox policy) live in their own pure modules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Engine, create_engine, delete, event, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from model.config import DEFAULT_TZ, SelfQuery
from model.passwords import DUMMY_QUERY_HASH, check_query_password, hash_query_password, hash_salt, is_slow
from model.privacy import mask_number, normalise_number
from model.secrets import query_key
from model.ticket_state import QueryLimited, TicketState
from ticketbridge.schema import (UTC, AgentEvent, AgentHelp, AgentStateRow, ApiToken, AuditEntry, Callback, Followup,
                                 Outbox, SelfQueryFailure, Ticket, TicketHistory)
from ticketbridge import agent_writes
from ticketbridge.assembler import CallRecord
from ticketbridge.call_db import CallDb, CoreCallDb, DbapiCallDb
from ticketbridge.intake import Intake, target_state
from ticketbridge.leases import LeaseMixin
from ticketbridge.lifecycle import INITIAL, parse_state, transition
from ticketbridge.outreach_store import OutreachMixin
from ticketbridge.retention import TicketRecording
from ticketbridge.sms import SMS_ENDPOINT, Sealer, sms_payload
from ticketbridge.ticket_writes import (CallWrites, SavedTicket, TicketRules, cdr_statuses, issue_password,
                                        open_call, outbox_values, save_records, ticket_view)
from ticketbridge.transcript_store import TranscriptMixin

log = structlog.get_logger("ticketbridge.store")

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: pg_advisory_xact_lock key serializing schema upgrades across controllers ("12345" + "TB")
_PG_MIGRATION_LOCK = 1234508466
CALLBACK_STATUSES = {"pending", "dialing", "done", "failed"}
#: tickets still owed work (before 办结): the ones deadlines and reminders are about
OPEN_STATES = tuple(s.value for s in (TicketState.accepted, TicketState.dispatched, TicketState.handling,
                                      TicketState.replied, TicketState.supervised))
_RETRIES = 10


# --------------------------------------------------------------------------- small values


@dataclass(frozen=True)
class CdrStatus:
    """What the CDR replay asks of a call's ticket (ticketbridge/cdr.py): its outcome and `cdr_check`."""

    outcome: str
    cdr_check: str | None


@dataclass(frozen=True)
class SavedIntake:
    """What save_intake tells the agent: the ticket's number and state; `created` when this save made
    the ticket (the call's own record had not been written yet and will merge into it)."""

    ticket_no: str
    state: str
    created: bool


@dataclass(frozen=True)
class PendingCallback:
    id: int
    ticket_no: str
    linkedid: str
    caller: str
    attempts: int
    status: str
    at: dt.datetime


@dataclass(frozen=True)
class CallbackRow:
    """One missed call to ring back, with where its callback stands (any status)."""

    id: int
    ticket_no: str
    linkedid: str
    caller: str
    dialed: str
    outcome: str
    status: str
    attempts: int
    last_result: str | None
    at: dt.datetime
    created_at: dt.datetime
    #: the automatic scheduler's rules ended it (window over, attempts used up, number refused)
    gave_up_at: dt.datetime | None = None


#: the ticket columns KPI figures are computed from (ticketbridge.kpi), read without the ORM objects
KPI_COLUMNS = ("ticket_no", "created_at", "started_at", "dialed", "legacy_line", "mode", "queue", "agent", "outcome",
               "handled_by", "queue_wait_s", "answered_at", "talk_s", "survey_rating", "survey_scale",
               "transfers", "state", "category", "callback_needed", "priority", "language")


class TicketNotFound(LookupError):
    pass


_DUMMY_HASH = DUMMY_QUERY_HASH


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.datetime) else v


def _fit_record(record: CallRecord) -> tuple[CallRecord, list[str]]:
    """The record cut to fit its columns, and what was cut: a ticket save never fails on its content.

    Caller and dialed numbers take their bounded form (model.privacy.normalise_number, whatever
    the source); every other text loses NUL characters (PostgreSQL refuses them) and is cut to its
    column's length (PostgreSQL refuses a longer value, SQLite would keep it).
    """
    changes: dict[str, Any] = {}
    flagged: list[str] = []
    for name, limit, number in _FITTED:
        v = getattr(record, name)
        if not isinstance(v, str):
            continue
        clean = normalise_number(v) if number else v.replace("\x00", "")
        if limit and len(clean) > limit:
            clean = clean[:limit]
        if clean != v:
            changes[name] = clean
            flagged.append(f"{name} ({len(v)} chars)")
    return (replace(record, **changes) if changes else record), flagged


#: what `_fit_record` looks at: each CallRecord field, its ticket column's length (None: no limit or no
#: column), and whether it is a phone number
_FITTED = tuple((f.name, getattr(Ticket.__table__.columns[f.name].type, "length", None)
                 if f.name in Ticket.__table__.columns else None, f.name in ("caller", "dialed"))
                for f in fields(CallRecord))


def _sqlstate(e: DBAPIError) -> str:
    """The PostgreSQL error's SQLSTATE ("" for none: SQLite, or no answer from the server). asyncpg's errors
    reach us as a plain DBAPIError (or IntegrityError) whose `orig` carries it as `sqlstate`; psycopg's as the
    class of its error (DataError, OperationalError, …) whose `orig` has it as `sqlstate` too."""
    return str(getattr(e.orig, "sqlstate", "") or "")


def _refused_content(e: DBAPIError) -> bool:
    """A value the database will never take (SQLSTATE class 22, data exception), as opposed to a fault."""
    return isinstance(e, DataError) or _sqlstate(e).startswith("22")


def _worth_again(e: DBAPIError) -> bool:
    """Whether a transaction that failed so can simply be run again (`TicketStore._retrying`): another controller
    inserted the same call or took the same number (IntegrityError), PostgreSQL rolled it back for a serialization
    failure or a deadlock (SQLSTATE class 40), or SQLite stayed busy (its OperationalError). Not a PostgreSQL server
    that cannot be reached or went away (psycopg's OperationalError without a class 40 SQLSTATE; asyncpg raises
    OSError there): the records wait in ticketbridge.pending instead of in ten reconnections."""
    return (isinstance(e, IntegrityError) or _sqlstate(e).startswith("40")
            or (isinstance(e, OperationalError) and isinstance(e.orig, sqlite3.OperationalError)))


def _bare_record(record: CallRecord) -> CallRecord:
    """What is left of a record whose content the database refused: the call, its outcome and times, and who
    force-released it."""
    return CallRecord(linkedid=record.linkedid, handled_by=record.handled_by, outcome=record.outcome,
                      source=record.source, started_at=record.started_at, ended_at=record.ended_at,
                      released_by=record.released_by)


def _columns(t: Ticket) -> dict[str, Any]:
    return {col.key: getattr(t, col.key) for col in Ticket.__table__.columns}


def ticket_payload(t: Ticket, kind: str) -> dict[str, Any]:
    """The whole ticket minus the password hash (supervisors' views; the outbox keeps push_payload of it)."""
    return ticket_view(_columns(t), kind)


# --------------------------------------------------------------------------- the store


class TicketStore(OutreachMixin, TranscriptMixin, LeaseMixin):
    """Async ticket store; one per process, shared by all calls (and safely by several processes)."""

    def __init__(self, url: str, config: Any | None = None, *, clock: Callable[[], dt.datetime] | None = None,
                 engine_options: dict[str, Any] | None = None, query_key: bytes | None = None) -> None:
        self.url = url
        self.config = config
        #: the center's zone: ticket numbers carry its local date
        self.zone = ZoneInfo(config.center.timezone if config is not None else DEFAULT_TZ)
        self._clock = clock or (lambda: dt.datetime.now(UTC))
        self._engine_options = dict(engine_options or {})
        #: the self-query hash key (model.secrets.query_key; read at open() when not given)
        self._query_key = query_key
        self.engine: AsyncEngine | None = None
        #: SQLite: the engine of this process's writes (one connection), else None (writes use `engine`)
        self._write_engine: AsyncEngine | None = None
        #: the engine the call writes' transactions run on when there is no call-writer thread
        self._write_bind: AsyncEngine | None = None
        #: SQLite file or PostgreSQL: the sync engine of the per-call writes and its thread (SQLite: one thread, one
        #: connection; PostgreSQL: PG_CALL_THREADS, a pooled connection each)
        self._call_engine: Engine | None = None
        self._call_thread: ThreadPoolExecutor | None = None
        #: SQLite file: held by a write transaction of this process, call write or ORM session
        self._write_gate: asyncio.Lock | None = None
        #: SQLite: the call-writer thread's connection, checked out of the call engine for the thread's life (used
        #: and closed in that thread only), and the adapter on it
        self._call_conn: PoolProxiedConnection | None = None
        self._call_db: DbapiCallDb | None = None
        self._read: async_sessionmaker[AsyncSession] | None = None
        self._write: async_sessionmaker[AsyncSession] | None = None
        #: set when SMS is configured (ticketbridge/sms.py): issue_password then queues the SMS notice
        self.sealer: Sealer | None = None

    # -------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        """Create the engine (SQLite: WAL, busy timeout, foreign keys) and upgrade the schema to head."""
        if self._query_key is None:
            self._query_key = query_key()
        url = make_url(self.url)
        sqlite = url.get_backend_name() == "sqlite"
        if sqlite and url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            _private_sqlite_file(Path(url.database).expanduser())
        # hide_parameters: a failed statement's message (logged with its traceback) must not carry
        # the caller's number or the query-password hash
        options: dict[str, Any] = {"hide_parameters": True, **self._engine_options}
        if url.get_backend_name() == "postgresql":
            # a server that went away (stopped, network cut) leaves dead pooled connections: test each
            # before use, and give up connecting or waiting on a statement in seconds, not minutes
            # (the controller keeps the call records meanwhile: ticketbridge.pending)
            options.setdefault("pool_pre_ping", True)
            options["connect_args"] = {"timeout": 5, "command_timeout": 20, **options.get("connect_args", {})}
            # every call's own writes run whole in call-writer threads (as on SQLite, below), with psycopg:
            # on the loop, through asyncpg and `run_sync`, they were half of a call's controller CPU (issue 15)
            # (positional parameters, as DbapiCallDb compiles them; autocommit: its transactions are its own)
            call_url, call_args = _psycopg_url(url)
            self._call_engine = create_engine(
                call_url, hide_parameters=True, pool_pre_ping=True, pool_size=PG_CALL_THREADS,
                max_overflow=0, pool_timeout=60, paramstyle="format", isolation_level="AUTOCOMMIT",
                connect_args={**_psycopg_connect_args(options["connect_args"]), **call_args})
            # a few threads, each transaction on a connection of its own: one lock wait (up to the statement
            # timeout) does not hold every other call's ticket up, as one connection would
            self._call_thread = ThreadPoolExecutor(PG_CALL_THREADS, thread_name_prefix="ticket-calls")
        engine = create_async_engine(url, **options)
        if sqlite:
            _sqlite_pragmas(engine.sync_engine)
        self.engine = engine
        write_engine = engine.execution_options(hotline_write=True)
        if sqlite and url.database not in (None, "", ":memory:") and "poolclass" not in options:
            # SQLite has one writer at a time: this process's writes queue for one pooled connection (in
            # order, at once when it is free) instead of meeting in SQLite's busy handler, whose growing
            # sleeps (up to 100 ms a try) made a burst of writes convoy: the IVR's 3 s wait to number a
            # call ran out at 20 new calls/s. Other processes on the file still meet in busy_timeout.
            self._write_engine = create_async_engine(url, **options, pool_size=1, max_overflow=0, pool_timeout=60)
            _sqlite_pragmas(self._write_engine.sync_engine)
            write_engine = self._write_engine.execution_options(hotline_write=True)
            # every call's own writes (ticketbridge/ticket_writes.py) run whole in one thread of their own on
            # the sqlite3 connection itself: aiosqlite hops threads for every statement and every fetch
            # (the engine only opens its connection, with the pragmas and the dialect's first-connect set-up;
            # the transactions are DbapiCallDb's own: SQLAlchemy's cost as much CPU as the statements)
            call_engine = create_engine(url.set(drivername="sqlite"), **options, pool_size=1, max_overflow=0,
                                        pool_timeout=60)
            _sqlite_pragmas(call_engine, begin=False)
            self._call_engine = call_engine
            self._call_thread = ThreadPoolExecutor(1, thread_name_prefix="ticket-calls")
            # the call writes and the ORM's write sessions are two connections: they take turns in this
            # process (the gate) instead of meeting in SQLite's busy handler
            self._write_gate = asyncio.Lock()
        self._write_bind = write_engine
        self._read = async_sessionmaker(engine, expire_on_commit=False)
        self._write = (async_sessionmaker(write_engine, expire_on_commit=False) if self._write_gate is None else
                       async_sessionmaker(write_engine, expire_on_commit=False, class_=_GatedSession,
                                          gate=self._write_gate))
        try:
            await self._migrate()
            if self._call_thread is not None and not sqlite:
                # the call writers' connection, tried now: a setting psycopg refuses (the URL's query, TLS) fails
                # the start with its reason, not the first call's ticket
                await asyncio.get_running_loop().run_in_executor(self._call_thread, self._try_call_engine)
        except BaseException:
            await self.close()  # its threads and engines, not left behind by a store that did not open
            raise
        log.info("ticket_store_opened", backend=url.get_backend_name())

    async def close(self) -> None:
        if self._call_thread is not None:
            # the call-writer thread's connection belongs to it: closed there, then the thread ends
            assert self._call_engine is not None
            await asyncio.get_running_loop().run_in_executor(self._call_thread, self._close_call_engine)
            self._call_thread.shutdown(wait=True)
            self._call_thread, self._call_engine = None, None
        if self._write_engine is not None:
            await self._write_engine.dispose()
            self._write_engine = None
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    async def _migrate(self) -> None:
        assert self.engine is not None
        from alembic import command
        from alembic.config import Config as AlembicConfig

        def upgrade(sync_conn: Any) -> None:
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        for attempt in range(_RETRIES):
            try:
                async with self.engine.execution_options(hotline_write=True).begin() as conn:
                    if conn.dialect.name == "postgresql":
                        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                    await conn.run_sync(upgrade)
                return
            except (OperationalError, IntegrityError):
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    def _sessions(self) -> tuple[async_sessionmaker[AsyncSession], async_sessionmaker[AsyncSession]]:
        if self._read is None or self._write is None:
            raise RuntimeError("TicketStore.open() has not been called")
        return self._read, self._write

    @property
    def rules(self) -> TicketRules:
        """Urgent categories and deadlines of new or re-categorised tickets (of the config as it is now)."""
        return TicketRules(self.config, self.zone)

    def now(self) -> dt.datetime:
        """The store's clock (aware): what its timestamps are written with."""
        return self._now()

    def _now(self) -> dt.datetime:
        now = self._clock()
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    # -------------------------------------------------------------- saving calls
    async def save_call(self, record: CallRecord) -> SavedTicket:
        """Create or enrich the ticket of one call; idempotent by linkedid, never loses information.

        Never fails on the record's content: over-long or refused values are cut (`_fit_record`), and
        content the database still refuses (DataError) is dropped for the bare call (`_bare_record`);
        either is flagged in the ticket's history (field `content`) and logged.
        """
        record, flagged = _fit_record(record)
        if flagged:
            log.warning("ticket_content_cut", linkedid=record.linkedid, fields=flagged)
        while True:
            try:
                done = await self._retrying(
                    "ticket_save_retry", lambda: self._call_tx(save_records, self.rules, [(record, flagged)],
                                                               self._now()), linkedid=record.linkedid)
                return self._committed(done, [record])[0]
            except DBAPIError as e:
                if not _refused_content(e):
                    raise
                # the database refused a value: save the call without its content rather than no ticket
                log.error("ticket_content_refused", linkedid=record.linkedid, caller=mask_number(record.caller),
                          error=type(e.orig).__name__ if e.orig is not None else type(e).__name__)
                if flagged and flagged[-1].startswith("refused"):
                    raise
                record = _bare_record(record)
                flagged.append(f"refused by the database ({type(e.orig).__name__}): saved without the call's details")

    async def save_calls(self, records: Sequence[CallRecord]) -> list[SavedTicket]:
        """`save_call` for many records in one transaction (ticketbridge.save_queue: many calls ending at
        once): one SELECT … FOR UPDATE for all their tickets, one sequence step for all new numbers, the
        history, callback and outbox rows inserted together. Same results as saving them one by one, in order (a second record of
        the same call merges into the first). Conflicts and busy retries as `save_call`; content the
        database refuses falls back to saving the records one by one (each then saved bare if it must be)."""
        if len(records) <= 1:
            return [await self.save_call(r) for r in records]
        fitted = [_fit_record(r) for r in records]
        for record, flagged in fitted:
            if flagged:
                log.warning("ticket_content_cut", linkedid=record.linkedid, fields=flagged)
        try:
            done = await self._retrying("ticket_batch_retry",
                                        lambda: self._call_tx(save_records, self.rules, fitted, self._now()),
                                        records=len(records))
        except DBAPIError as e:
            if not _refused_content(e):
                raise
            return [await self.save_call(r) for r in records]
        return self._committed(done, [r for r, _ in fitted])

    async def _retrying(self, event: str, run: Callable[[], Awaitable[T]], **context: Any) -> T:
        """`run()` again, up to _RETRIES times with a short random back-off, when another controller inserted
        the same call or took the same number, PostgreSQL found a serialization failure or deadlock, or SQLite
        was busy (`_worth_again`)."""
        for attempt in range(_RETRIES):
            try:
                return await run()
            except DBAPIError as e:
                if attempt == _RETRIES - 1 or not _worth_again(e):
                    raise
                log.info(event, attempt=attempt + 1, **context, error=type(e.orig).__name__)
                await asyncio.sleep(0.01 * (attempt + 1) + secrets.randbelow(20) / 1000)
        raise RuntimeError("unreachable")

    @staticmethod
    def _committed(done: CallWrites, records: Sequence[CallRecord]) -> list[SavedTicket]:
        """Log what a committed transaction of call writes did; its SavedTickets."""
        for ticket_no, changed in done.updated:
            log.debug("ticket_updated", ticket=ticket_no, fields=changed)  # (the controller logs ticket_saved)
        for saved, record in zip(done.saved, records, strict=True):
            if saved.created:
                log.info("ticket_created", ticket=saved.ticket_no, outcome=record.outcome,
                         handled_by=record.handled_by)
        return done.saved

    async def _call_tx(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """Run `fn(db, *args)` (ticketbridge/ticket_writes.py, agent_writes.py) in one transaction (`write`: a write
        one), in the call-writer thread (one thread hop for the whole transaction): on a SQLite file on its own
        sqlite3 connection (`DbapiCallDb`; a write holds the process's write gate until it has ended, even when
        the caller stops waiting), on PostgreSQL on a psycopg connection (`DbapiCallDb` too; no gate).
        Without that thread (SQLite in memory) as Core statements through the async engine's `run_sync`."""
        self._sessions()
        if self._call_thread is not None:
            gate = self._write_gate if write else None
            if gate is not None:
                await gate.acquire()
            try:
                job = self._call_thread.submit(self._in_call_thread, fn, args, write)
            except BaseException:
                if gate is not None:
                    gate.release()
                raise
            return await _settled(job, asyncio.get_running_loop(), gate)
        assert self._write_bind is not None
        async with (self._write_bind if write else self.engine).begin() as conn:  # type: ignore[union-attr]
            return await conn.run_sync(lambda c: fn(CoreCallDb(c), *args))

    def _in_call_thread(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        """(In the call-writer thread.) `fn(db, *args)` in one transaction of `DbapiCallDb`. PostgreSQL: on a
        psycopg connection checked out of the call engine's pool for it (pinged first, pool_pre_ping, as the async
        engine's: a server restarted between two transactions fails neither; keeping one connection checked out
        instead measured at most ~5 % less CPU a call, within the noise), closed by the pool when the transaction
        left it lost or stuck. SQLite: on the sqlite3 connection opened on first use and kept for the thread's
        life."""
        engine = self._call_engine
        assert engine is not None
        if engine.dialect.name != "sqlite":
            conn = engine.raw_connection()
            db = DbapiCallDb(conn.driver_connection, engine.dialect)
            try:
                return db.transaction(fn, args, write=write)
            finally:
                if db.in_transaction:  # lost, or its ROLLBACK failed: the pool closes it
                    conn.invalidate()
                conn.close()
        db = self._call_db
        if db is None:
            self._call_conn = engine.raw_connection()
            db = self._call_db = DbapiCallDb(self._call_conn.driver_connection, engine.dialect)
        try:
            return db.transaction(fn, args, write=write)
        finally:
            if db.in_transaction:  # its ROLLBACK failed: a fresh connection for the next transaction
                self._close_call_conn(invalidate=True)

    def _close_call_conn(self, *, invalidate: bool = False) -> None:
        """(In the call-writer thread.) Give its SQLite connection back to the engine's pool (`invalidate`: closed
        at once, as unusable)."""
        conn, self._call_conn, self._call_db = self._call_conn, None, None
        if conn is not None:
            if invalidate:
                conn.invalidate()
            conn.close()

    def _try_call_engine(self) -> None:
        """(In the call-writer thread.) Connect once and give the connection back to the pool."""
        assert self._call_engine is not None
        self._call_engine.raw_connection().close()

    def _close_call_engine(self) -> None:
        """(In the call-writer thread, at the store's close.) Its connection, then the engine's pool, closed."""
        self._close_call_conn()
        if self._call_engine is not None:
            self._call_engine.dispose()

    def _outbox(self, s: AsyncSession, t: Ticket, kind: str, now: dt.datetime) -> None:
        """One outbox row per ticket version, in the caller's transaction."""
        s.add(Outbox(**outbox_values(_columns(t), kind, now)))

    # -------------------------------------------------------------- reading
    async def get_ticket(self, ticket_no: str) -> Ticket | None:
        read, _ = self._sessions()
        async with read() as s:
            return (await s.execute(select(Ticket).where(Ticket.ticket_no == ticket_no))).scalar_one_or_none()

    async def get_by_linkedid(self, linkedid: str) -> Ticket | None:
        read, _ = self._sessions()
        async with read() as s:
            return (await s.execute(select(Ticket).where(Ticket.linkedid == linkedid))).scalar_one_or_none()

    async def cdr_statuses(self, linkedids: Sequence[str]) -> dict[str, CdrStatus]:
        """The two columns the CDR replay looks at for every ended call, for all of a round's calls in one
        read (a Core query, on SQLite in the call-writer thread: one thread hop a round, not one a call);
        a call without a ticket is absent."""
        if not linkedids:
            return {}
        found = await self._call_tx(cdr_statuses, list(linkedids), write=False)
        return {lid: CdrStatus(*st) for lid, st in found.items()}

    async def has_ticket(self, linkedid: str) -> bool:
        read, _ = self._sessions()
        async with read() as s:
            found = await s.execute(select(Ticket.id).where(Ticket.linkedid == linkedid))
            return found.first() is not None

    async def verify_query(self, ticket_no: str, password: str, caller: str | None = None) -> Ticket | None:
        """The ticket only with its right query password; the same work is done for a wrong number.

        With `caller` (the self-query in the IVR), guessing is limited across calls (model.config.SelfQuery):
        a wrong try is logged (the caller as a keyed hash), and past the limits QueryLimited is raised
        before any password is checked. An older ticket's unkeyed hash is re-hashed with the key on a
        right password (the upgrade path: no citizen's password changes). Only those older scrypt hashes
        cost tens of ms (checked off the event loop); the keyed HMAC is checked in place."""
        t = await self.get_ticket(ticket_no) if ticket_no and ticket_no.isdigit() else None
        if caller is not None:
            await self._check_guess_limits(caller, ticket_no, t)
        # a ticket without a password (never issued) costs the same work as a wrong number
        stored = (t.query_password_hash if t is not None else "") or _DUMMY_HASH
        if is_slow(stored):
            ok = await asyncio.to_thread(check_query_password, password or "", stored, self._query_key)
        else:
            ok = check_query_password(password or "", stored, self._query_key)
        if ok and t is not None:
            if is_slow(stored) and self._query_key:
                await self._rehash(t.id, password)
            return t
        if caller is not None:
            await self._log_guess(caller, ticket_no)
        return None

    def _caller_key(self, caller: str) -> str:
        return hmac.new(self._query_key or b"", normalise_number(caller).encode(), "sha256").hexdigest()[:32]

    def _guess_rules(self) -> SelfQuery:
        return self.config.self_query if self.config is not None else SelfQuery()

    async def _check_guess_limits(self, caller: str, ticket_no: str, t: Ticket | None) -> None:
        rules = self._guess_rules()
        since = self._now() - dt.timedelta(hours=rules.guess_window_h)
        read, _ = self._sessions()
        async with read() as s:
            # a withheld number has no bucket of its own: every withheld caller would share (and lock) one
            by_caller = (await s.execute(select(func.count()).select_from(SelfQueryFailure).where(
                SelfQueryFailure.at >= since, SelfQueryFailure.caller_key == self._caller_key(caller)))).scalar_one() \
                if normalise_number(caller) else 0
            if by_caller >= rules.max_failures_per_caller:
                log.warning("self_query_limited", by="caller", failures=by_caller, caller=mask_number(caller))
                raise QueryLimited("caller")
            if t is None or (normalise_number(caller) and normalise_number(caller) == t.caller):
                return  # nobody locks a citizen out of their own ticket
            on_ticket = (await s.execute(select(func.count()).select_from(SelfQueryFailure).where(
                SelfQueryFailure.at >= since, SelfQueryFailure.ticket_no == ticket_no[:20]))).scalar_one()
        if on_ticket >= rules.max_failures_per_ticket:
            log.warning("self_query_limited", by="ticket", failures=on_ticket, ticket=ticket_no)
            raise QueryLimited("ticket")

    async def _log_guess(self, caller: str, ticket_no: str) -> None:
        now = self._now()
        _, write = self._sessions()
        async with write() as s, s.begin():
            s.add(SelfQueryFailure(at=now, caller_key=self._caller_key(caller), ticket_no=(ticket_no or "")[:20]))
            # what no window looks at any more goes (the table stays as small as the window)
            await s.execute(delete(SelfQueryFailure).where(
                SelfQueryFailure.at < now - dt.timedelta(hours=self._guess_rules().guess_window_h)))

    async def _rehash(self, ticket_id: int, password: str) -> None:
        assert self._query_key
        new = hash_query_password(password, self._query_key)
        _, write = self._sessions()
        async with write() as s, s.begin():
            t = await self._locked(s, id=ticket_id)
            if t is not None and is_slow(t.query_password_hash):
                t.query_password_hash = new
        log.info("query_password_rehashed", ticket_id=ticket_id)

    async def history(self, ticket_no: str) -> list[TicketHistory]:
        read, _ = self._sessions()
        async with read() as s:
            q = (select(TicketHistory).join(Ticket, Ticket.id == TicketHistory.ticket_id)
                 .where(Ticket.ticket_no == ticket_no).order_by(TicketHistory.id))
            return list((await s.execute(q)).scalars())

    async def list_tickets(self, *, state: str | None = None, outcome: str | None = None,
                           caller: str | None = None, dialed: str | None = None, category: str | None = None,
                           handled_by: str | None = None, callback_needed: bool | None = None,
                           since: dt.datetime | None = None, until: dt.datetime | None = None,
                           limit: int = 100, offset: int = 0) -> list[Ticket]:
        """Newest first; every filter optional."""
        read, _ = self._sessions()
        q = select(Ticket)
        if state is not None:
            q = q.where(Ticket.state == parse_state(state).value)
        for col, val in ((Ticket.outcome, outcome), (Ticket.caller, caller), (Ticket.dialed, dialed),
                         (Ticket.category, category), (Ticket.handled_by, handled_by),
                         (Ticket.callback_needed, callback_needed)):
            if val is not None:
                q = q.where(col == val)
        if since is not None:
            q = q.where(Ticket.created_at >= since)
        if until is not None:
            q = q.where(Ticket.created_at < until)
        q = q.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit).offset(offset)
        async with read() as s:
            return list((await s.execute(q)).scalars())

    # -------------------------------------------------------------- changing tickets
    async def _locked(self, s: AsyncSession, **where: Any) -> Ticket | None:
        q = select(Ticket).with_for_update()
        for k, v in where.items():
            q = q.where(getattr(Ticket, k) == v)
        return (await s.execute(q)).scalar_one_or_none()

    async def set_survey(self, linkedid: str, rating: int | None, scale: int) -> Ticket | None:
        """满意度 from the survey script; None when the call has no ticket yet (the record will carry it)."""
        if rating is not None and not 1 <= rating <= scale:
            raise ValueError(f"rating {rating} outside 1..{scale}")
        _, write = self._sessions()
        async with write() as s, s.begin():
            t = await self._locked(s, linkedid=linkedid)
            if t is None:
                return None
            if (t.survey_rating, t.survey_scale) == (rating, scale):
                return t
            now = self._now()
            s.add(TicketHistory(ticket_id=t.id, at=now, actor="survey", field="survey_rating",
                                from_value=None if t.survey_rating is None else str(t.survey_rating),
                                to_value=None if rating is None else str(rating), note=f"scale {scale}"))
            t.survey_rating, t.survey_scale = rating, scale
            t.version += 1
            t.updated_at = now
            self._outbox(s, t, "survey", now)
            return t

    async def change_state(self, ticket_no: str, target: str, actor: str, note: str | None = None) -> Ticket:
        """Move a ticket along its lifecycle (IllegalTransition if the table forbids it)."""
        _, write = self._sessions()
        async with write() as s, s.begin():
            t = await self._locked(s, ticket_no=ticket_no)
            if t is None:
                raise TicketNotFound(ticket_no)
            new = transition(t.state, target)
            now = self._now()
            s.add(TicketHistory(ticket_id=t.id, at=now, actor=actor, field="state", from_value=t.state,
                                to_value=new.value, note=note))
            t.state = new.value
            t.version += 1
            t.updated_at = now
            if new.value == "closed":
                await self._owe_followup(s, t, now)
            self._outbox(s, t, "state_changed", now)
        log.info("ticket_state_changed", ticket=ticket_no, state=new.value, actor=actor)
        return t

    # -------------------------------------------------------------- the agent's intake (受理)
    async def save_intake(self, linkedid: str, intake: Intake, *, agent: str) -> SavedIntake:
        """Write the agent's intake into the call's ticket (by linkedid) and move its state.

        The ticket is created here when the call's record has not been saved yet (a save during the
        call, before the hang-up); the record then merges into it (`save_call`), and the agent's
        category is never replaced by the IVR's (`_merge`). 当场解答 moves 受理 → 办结, 派单 受理 → 派单
        (ticketbridge.intake.target_state; IllegalTransition when the ticket has moved on, e.g. a
        closed ticket marked 派单: nothing of that save is kept). Saving again replaces the text,
        category and department.
        """
        actor = f"agent:{agent}"[:64]
        t, created = await self._with_ticket(linkedid, lambda s, t: self._apply_intake(s, t, intake, agent, actor))
        log.info("ticket_intake_saved", ticket=t.ticket_no, agent=agent, state=t.state, created=created,
                 disposition=intake.disposition.value if intake.disposition else None)
        return SavedIntake(t.ticket_no, t.state, created)

    async def open_ticket(self, linkedid: str, *, caller: str = "", dialed: str = "",
                          started_at: float | None = None) -> SavedTicket:
        """The call's ticket number, its ticket created now (in progress) when its record is not saved yet:
        the IVR numbers every call as it enters (ivr/calls.py, `Var.TICKET`); the record merges into it at
        hang-up. No query password yet (`issue_password`). `ticket_of_call`: the ticket itself."""
        return (await self._open(linkedid, caller, dialed, started_at)).saved[0]

    async def ticket_of_call(self, linkedid: str) -> Ticket:
        """The call's ticket (opened as `open_ticket` does when there is none): the agent's screen pop."""
        done = await self._open(linkedid, "", "", None)
        assert done.row is not None
        return Ticket(**done.row)

    async def _open(self, linkedid: str, caller: str, dialed: str, started_at: float | None) -> CallWrites:
        if not linkedid:
            raise ValueError("a call's linkedid is needed")
        record, flagged = _fit_record(CallRecord(linkedid=linkedid, caller=caller, dialed=dialed,
                                                 started_at=started_at))
        # on a conflict the call's record inserted the ticket meanwhile: again, now finding it
        done = await self._retrying("ticket_open_retry", lambda: self._call_tx(
            open_call, self.rules, record, flagged, self._now()), linkedid=linkedid)
        if done.saved[0].created:
            log.info("ticket_opened", ticket=done.saved[0].ticket_no, dialed=record.dialed)
        return done

    async def _with_ticket(self, linkedid: str, change: Callable[[AsyncSession, Ticket], None], *,
                           record: CallRecord | None = None) -> tuple[Ticket, bool]:
        """Lock the call's ticket (inserting one from `record`, or a bare one, when there is none) and apply
        `change`, one transaction."""
        if not linkedid:
            raise ValueError("a call's linkedid is needed")
        _, write = self._sessions()
        fitted, flagged = _fit_record(record or CallRecord(linkedid=linkedid))

        async def attempt() -> tuple[Ticket, bool]:
            async with write() as s, s.begin():
                created = False
                t = await self._locked(s, linkedid=linkedid)
                if t is None:
                    await s.run_sync(lambda ss: open_call(CoreCallDb(ss.connection()), self.rules, fitted, flagged,
                                                          self._now()))
                    t = await self._locked(s, linkedid=linkedid)
                    assert t is not None
                    created = True
                change(s, t)
            return t, created

        # on a conflict the call's record inserted the ticket meanwhile: again, now merging
        return await self._retrying("ticket_open_retry", attempt, linkedid=linkedid)

    def _apply_intake(self, s: AsyncSession, t: Ticket, intake: Intake, agent: str, actor: str) -> None:
        now = self._now()
        new_state = target_state(t.state, intake.disposition)
        if new_state is not None:
            new_state = transition(t.state, new_state)  # IllegalTransition: nothing of this save is kept
        category = intake.category.value if intake.category is not None else t.category
        if category != t.category:
            s.add(TicketHistory(ticket_id=t.id, at=now, actor=actor, field="category", from_value=t.category,
                                to_value=category, note="诉求类型 chosen by the agent"))
            t.category = category
            if t.state == INITIAL.value:
                t.deadline_at = self.rules.deadline(t.category, t.urgent, t.created_at)
        t.request_text = intake.text or None
        t.department = intake.department or None
        if intake.disposition is not None:
            t.disposition = intake.disposition.value
        t.intake_agent, t.intake_at = agent[:32], now
        s.add(TicketHistory(ticket_id=t.id, at=now, actor=actor, field="intake", from_value=None,
                            to_value=intake.disposition.value if intake.disposition else "draft",
                            note=(f"{intake.department} · " if intake.department else "") + intake.text[:150]))
        if new_state is not None:
            s.add(TicketHistory(ticket_id=t.id, at=now, actor=actor, field="state", from_value=t.state,
                                to_value=new_state.value, note=intake.disposition.label if intake.disposition else None))
            t.state = new_state.value
        t.version += 1
        t.updated_at = now
        self._outbox(s, t, "intake", now)
    async def set_urgent(self, ticket_no: str, urgent: bool, actor: str, note: str | None = None) -> Ticket:
        """Mark a ticket urgent (or not): its deadline is recomputed from when it was accepted; pushed."""
        _, write = self._sessions()
        async with write() as s, s.begin():
            t = await self._locked(s, ticket_no=ticket_no)
            if t is None:
                raise TicketNotFound(ticket_no)
            if t.urgent == urgent:
                return t
            now = self._now()
            before = t.deadline_at
            t.urgent = urgent
            t.deadline_at = self.rules.deadline(t.category, urgent, t.created_at)
            s.add(TicketHistory(ticket_id=t.id, at=now, actor=actor[:64], field="urgent", from_value=str(not urgent),
                                to_value=str(urgent), note=(note or "") + f" deadline {_iso(before)} → "
                                                                         f"{_iso(t.deadline_at)}"))
            t.version += 1
            t.updated_at = now
            self._outbox(s, t, "urgent_changed", now)
        log.info("ticket_urgent_changed", ticket=ticket_no, urgent=urgent, actor=actor)
        return t

    # -------------------------------------------------------------- the caller's query password
    async def issue_password(self, ticket_no: str, *, sms: bool = True, actor: str = "ivr") -> str | None:
        """Make the ticket's query password, store only its hash, return it in clear, once.

        None when the ticket already has one (it was told before: it is never made twice, so what a
        caller heard or read stays valid). With SMS configured (`self.sealer`) and `sms`, the same
        transaction writes the SMS notice to the outbox: the password sealed, never in its payload.
        """
        password = f"{secrets.randbelow(10**6):06d}"
        assert self._query_key, "TicketStore.open() reads the query key"
        pw_hash = hash_query_password(password, self._query_key)  # keyed HMAC: microseconds, in place
        queued = sms and self.sealer is not None
        now = self._now()

        def sms_row() -> dict[str, Any]:
            assert self.sealer is not None
            key = f"{ticket_no}:{SMS_ENDPOINT}:{hash_salt(pw_hash)[:16]}"
            return {"ticket_no": ticket_no, "idempotency_key": key, "payload": sms_payload(ticket_no),
                    "endpoint": SMS_ENDPOINT, "secret": self.sealer.seal(password, key), "attempts": 0,
                    "next_attempt_at": now, "delivered_at": None, "dead_at": None, "last_error": None,
                    "created_at": now}

        # every answered call's notice: one of the call writes (ticketbridge/ticket_writes.py), no ORM
        issued = await self._call_tx(issue_password, ticket_no, pw_hash, actor, sms_row if queued else None, now)
        if issued is None:
            raise TicketNotFound(ticket_no)
        if not issued:
            return None
        log.info("ticket_password_issued", ticket=ticket_no, sms=queued, actor=actor)
        return password

    async def has_password(self, ticket_no: str) -> bool:
        t = await self.get_ticket(ticket_no)
        return bool(t is not None and t.query_password_hash)

    # -------------------------------------------------------------- deadlines
    async def due_tickets(self, within: dt.timedelta, *, limit: int = 500) -> list[Ticket]:
        """Open tickets (not yet 办结) whose deadline is within `within` from now, or past; soonest first."""
        read, _ = self._sessions()
        q = (select(Ticket).where(Ticket.state.in_(OPEN_STATES), Ticket.deadline_at.is_not(None),
                                  Ticket.deadline_at <= self._now() + within)
             .order_by(Ticket.deadline_at, Ticket.id).limit(limit))
        async with read() as s:
            return list((await s.execute(q)).scalars())

    async def write_deadline_reminders(self, before: dt.timedelta, *, limit: int = 500) -> list[str]:
        """One `deadline_reminder` outbox event per open ticket and deadline, once the deadline is `before` away.

        Safe with several controllers: the rows are locked and marked (`reminded_for`) in one transaction."""
        _, write = self._sessions()
        done: list[str] = []
        async with write() as s, s.begin():
            now = self._now()
            q = (select(Ticket).where(Ticket.state.in_(OPEN_STATES), Ticket.deadline_at.is_not(None),
                                      Ticket.deadline_at <= now + before,
                                      (Ticket.reminded_for.is_(None)) | (Ticket.reminded_for != Ticket.deadline_at))
                 .order_by(Ticket.deadline_at, Ticket.id).limit(limit).with_for_update(skip_locked=True))
            for t in (await s.execute(q)).scalars():
                t.reminded_for = t.deadline_at
                left = (t.deadline_at - now).total_seconds() / 3600 if t.deadline_at else 0.0
                s.add(TicketHistory(ticket_id=t.id, at=now, actor="system", field="reminder", from_value=None,
                                    to_value=_iso(t.deadline_at), note=f"deadline in {left:.1f} h" if left >= 0
                                    else f"deadline passed {-left:.1f} h ago"))
                self._outbox(s, t, "deadline_reminder", now)
                done.append(t.ticket_no)
        if done:
            log.info("deadline_reminders_written", tickets=len(done))
        return done

    # -------------------------------------------------------------- callbacks (漏接电话回拨)
    async def pending_callbacks(self, limit: int = 100) -> list[PendingCallback]:
        read, _ = self._sessions()
        q = (select(Callback, Ticket).join(Ticket, Ticket.id == Callback.ticket_id)
             .where(Callback.status == "pending").order_by(Callback.at, Callback.id).limit(limit))
        async with read() as s:
            return [PendingCallback(cb.id, t.ticket_no, t.linkedid, t.caller, cb.attempts, cb.status, cb.at)
                    for cb, t in (await s.execute(q)).all()]

    async def mark_callback(self, callback_id: int, status: str, result: str | None = None,
                            actor: str = "callback") -> Callback:
        """`dialing` counts an attempt; `done` clears the ticket's callback_needed (and is pushed)."""
        if status not in CALLBACK_STATUSES:
            raise ValueError(f"callback status {status!r} not in {sorted(CALLBACK_STATUSES)}")
        _, write = self._sessions()
        async with write() as s, s.begin():
            cb = (await s.execute(select(Callback).where(Callback.id == callback_id).with_for_update())
                  ).scalar_one_or_none()
            if cb is None:
                raise LookupError(f"callback {callback_id}")
            now = self._now()
            s.add(TicketHistory(ticket_id=cb.ticket_id, at=now, actor=actor, field="callback",
                                from_value=cb.status, to_value=status, note=result))
            if status == "dialing":
                cb.attempts += 1
            cb.status, cb.at = status, now
            if result is not None:
                cb.last_result = result[:200]
            if status == "done":
                t = await self._locked(s, id=cb.ticket_id)
                if t is not None and t.callback_needed:
                    t.callback_needed = False
                    t.version += 1
                    t.updated_at = now
                    self._outbox(s, t, "callback_done", now)
            return cb

    async def callbacks(self, *, status: str | None = None, ticket_no: str | None = None,
                        since: dt.datetime | None = None, until: dt.datetime | None = None,
                        limit: int = 100) -> list[CallbackRow]:
        """The callback list (漏接电话回拨) with its status; oldest missed call first."""
        if status is not None and status not in CALLBACK_STATUSES:
            raise ValueError(f"callback status {status!r} not in {sorted(CALLBACK_STATUSES)}")
        read, _ = self._sessions()
        q = select(Callback, Ticket).join(Ticket, Ticket.id == Callback.ticket_id)
        if status is not None:
            q = q.where(Callback.status == status)
        if ticket_no is not None:
            q = q.where(Ticket.ticket_no == ticket_no)
        if since is not None:
            q = q.where(Ticket.created_at >= since)
        if until is not None:
            q = q.where(Ticket.created_at < until)
        q = q.order_by(Ticket.created_at, Callback.id).limit(limit)
        async with read() as s:
            return [CallbackRow(cb.id, t.ticket_no, t.linkedid, t.caller, t.dialed, t.outcome, cb.status,
                                cb.attempts, cb.last_result, cb.at, t.created_at, cb.gave_up_at)
                    for cb, t in (await s.execute(q)).all()]

    async def callback_for(self, ticket_no: str) -> CallbackRow | None:
        rows = await self.callbacks(ticket_no=ticket_no, limit=1)
        return rows[0] if rows else None

    # -------------------------------------------------------------- recording retention
    async def unpurged_recordings(self, *, before: dt.datetime | None = None,
                                  names: Sequence[str] | None = None) -> list[TicketRecording]:
        """Tickets whose recording is not purged: of calls before `before`, or naming one of `names`."""
        read, _ = self._sessions()
        call_at = func.coalesce(Ticket.started_at, Ticket.created_at)
        q = (select(Ticket.ticket_no, Ticket.recording, Ticket.started_at, Ticket.created_at)
             .where(Ticket.recording.is_not(None), Ticket.recording != "", Ticket.recording_purged_at.is_(None)))
        if before is not None:
            q = q.where(call_at < before)
        out: list[TicketRecording] = []
        chunks = [None] if names is None else [list(names[i:i + 500]) for i in range(0, len(names), 500)]
        async with read() as s:
            for chunk in chunks:
                qq = q if chunk is None else q.where(Ticket.recording.in_(chunk))
                for no, rec, started, created in (await s.execute(qq.order_by(Ticket.id))).all():
                    out.append(TicketRecording(no, rec, started or created))
        return out

    async def mark_recording_purged(self, ticket_nos: Sequence[str], actor: str, note: str) -> int:
        """Mark tickets whose recording file is gone: `recording_purged_at`, a history row, an outbox row.
        The recording's name stays. Already marked tickets are left alone; returns how many were marked."""
        _, write = self._sessions()
        marked = 0
        for i in range(0, len(ticket_nos), 500):
            async with write() as s, s.begin():
                now = self._now()
                q = (select(Ticket).where(Ticket.ticket_no.in_(list(ticket_nos[i:i + 500])),
                                          Ticket.recording_purged_at.is_(None)).with_for_update())
                for t in (await s.execute(q)).scalars():
                    t.recording_purged_at = now
                    t.transcript = None  # the transcript is kept under the recording's retention rule
                    t.version += 1
                    t.updated_at = now
                    s.add(TicketHistory(ticket_id=t.id, at=now, actor=actor[:64], field="recording",
                                        from_value=None, to_value="purged", note=f"{t.recording}: {note}"))
                    self._outbox(s, t, "recording_purged", now)
                    marked += 1
        log.info("recordings_marked_purged", tickets=marked, actor=actor)
        return marked

    # -------------------------------------------------------------- seat agents
    async def save_agent(self, snapshot: dict[str, Any], changes: Sequence[Any] = ()) -> None:
        """Persist an agent's state (routing.agent_service.snapshot) and its StateChanged and PinRefused actions, one
        transaction (ticketbridge/agent_writes.py; as the call writes: in the call-writer thread). Not retried: a
        seat's saves are sent in order by one worker (routing/agent_service.py), which a retried save would hold
        up; a failure raises to it (logged there), as before."""
        await self._call_tx(agent_writes.save_agent, snapshot, tuple(changes), self._now())

    async def agent_states(self, *, changed_since: dt.datetime | None = None) -> dict[str, dict[str, Any]]:
        """Every saved seat's snapshot, by seat (empty: nothing saved yet, a first start); `agent_id` None: the
        seat's own agent (a row from before migration 0005). `changed_since`: only rows saved since then (the
        cluster's agent sync, routing/agent_sync.py)."""
        read, _ = self._sessions()
        q = select(AgentStateRow)
        if changed_since is not None:
            q = q.where(AgentStateRow.updated_at >= changed_since)
        async with read() as s:
            rows = (await s.execute(q)).scalars()
            return {r.agent: {"agent": r.agent, "state": r.state, "reason": r.reason, "since": r.since,
                              "queues": list(r.queues), "paused": r.paused, "agent_id": r.agent_id}
                    for r in rows}

    async def agent_events(self, *, agent: str | None = None, since: dt.datetime | None = None) -> list[AgentEvent]:
        read, _ = self._sessions()
        q = select(AgentEvent).order_by(AgentEvent.at, AgentEvent.id)
        if agent is not None:
            q = q.where(AgentEvent.agent == agent)
        if since is not None:
            q = q.where(AgentEvent.at >= since)
        async with read() as s:
            return list((await s.execute(q)).scalars())

    async def save_help(self, period: dict[str, Any]) -> None:
        """Persist a 多援一 help period (routing.agent_help.HelpPeriod.as_dict): started, or ended (as `save_agent`)."""
        await self._call_tx(agent_writes.save_help, period)

    async def help_periods(self, *, active: bool = True, limit: int = 100) -> list[dict[str, Any]]:
        """Help periods as dicts (HelpPeriod.from_dict reads them): the active ones, or the latest `limit`."""
        read, _ = self._sessions()
        q = select(AgentHelp).order_by(AgentHelp.started_at.desc())
        q = q.where(AgentHelp.ended_at.is_(None)) if active else q.limit(limit)
        async with read() as s:
            rows = (await s.execute(q)).scalars()
            return [{"id": r.id, "queue": r.queue, "agents": list(r.agents), "started": r.started_at.timestamp(),
                     "until": r.until.timestamp(), "by": r.actor, "why": r.why,
                     "ended": r.ended_at.timestamp() if r.ended_at else None, "ended_by": r.ended_by,
                     "end_why": r.end_why} for r in rows]

    # -------------------------------------------------------------- the audit log
    async def audit(self, action: str, asked: dict[str, Any], rows: int, *, uid: int, user: str) -> None:
        """Record, durably, that `uid` was shown personal data: the command, what it asked, how many rows."""
        _, write = self._sessions()
        async with write() as s, s.begin():
            s.add(AuditEntry(at=self._now(), uid=uid, user=user[:64], action=action[:64],
                             asked=json.loads(json.dumps(asked, default=str)), rows=rows))

    async def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """The audit log, newest first."""
        read, _ = self._sessions()
        async with read() as s:
            q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            return list((await s.execute(q)).scalars())

    # -------------------------------------------------------------- KPI input
    async def kpi_rows(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                       batch: int = 5000, linkedid: bool = False) -> list[dict[str, Any]]:
        """Plain dicts of KPI_COLUMNS (+ `closed_on_spot`, `callback_status`; + `linkedid` when asked: the live
        model's rebuild) for tickets created in [since, until)."""
        read, _ = self._sessions()
        cols = [getattr(Ticket, c) for c in (*KPI_COLUMNS, *(("linkedid",) if linkedid else ()))]
        on_spot = (select(TicketHistory.id).where(TicketHistory.ticket_id == Ticket.id,
                                                  TicketHistory.field == "state",
                                                  TicketHistory.from_value == "accepted",
                                                  TicketHistory.to_value == "closed")
                   .exists().label("closed_on_spot"))
        q = (select(*cols, on_spot, Callback.status.label("callback_status"))
             .outerjoin(Callback, Callback.ticket_id == Ticket.id))
        if since is not None:
            q = q.where(Ticket.created_at >= since)
        if until is not None:
            q = q.where(Ticket.created_at < until)
        q = q.order_by(Ticket.id)
        out: list[dict[str, Any]] = []
        async with read() as s:
            result = await s.stream(q.execution_options(yield_per=batch))
            async for row in result:
                out.append(dict(row._mapping))
        return out

    async def closure_rows(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                           repeat_window: dt.timedelta = dt.timedelta(days=7)) -> list[dict[str, Any]]:
        """Rows for the closure KPIs (ticketbridge/closure.py) of tickets created in [since, until), plus the
        `repeat_window` before `since` marked `in_period: False` (read only to find repeated calls)."""
        read, _ = self._sessions()
        cols = (Ticket.id, Ticket.ticket_no, Ticket.created_at, Ticket.caller, Ticket.queue, Ticket.legacy_line,
                Ticket.dialed, Ticket.category, Ticket.agent, Ticket.deadline_at,
                Followup.rating.label("followup_rating"), Followup.scale.label("followup_scale"),
                Followup.resolved.label("followup_resolved"))
        q = select(*cols).outerjoin(Followup, Followup.ticket_id == Ticket.id)
        if since is not None:
            q = q.where(Ticket.created_at >= since - repeat_window)
        if until is not None:
            q = q.where(Ticket.created_at < until)
        rows: dict[int, dict[str, Any]] = {}
        async with read() as s:
            for r in (await s.execute(q.order_by(Ticket.id))).all():
                d = dict(r._mapping)
                d["in_period"] = since is None or d["created_at"] >= since
                d.update(closed_at=None, revisited=False, revisit_out=None, closed_on_spot=False)
                rows[d.pop("id")] = d
            moves = (select(TicketHistory.ticket_id, TicketHistory.at, TicketHistory.from_value,
                            TicketHistory.to_value).where(TicketHistory.field == "state")
                     .order_by(TicketHistory.id))
            if since is not None:
                moves = moves.join(Ticket, Ticket.id == TicketHistory.ticket_id).where(
                    Ticket.created_at >= since - repeat_window)
            for tid, at, old, new in (await s.execute(moves)).all():
                d = rows.get(tid)
                if d is None:
                    continue
                if new == TicketState.closed.value and d["closed_at"] is None:
                    d["closed_at"] = at
                    d["closed_on_spot"] = old == TicketState.accepted.value
                if new == TicketState.revisited.value:
                    d["revisited"] = True
                if old == TicketState.revisited.value and d["revisit_out"] is None:
                    d["revisit_out"] = new
        return list(rows.values())

    async def outbox_list(self, *, dead: bool | None = None, delivered: bool | None = None,
                          limit: int = 100) -> list[Outbox]:
        """Outbox rows for a supervisor: `dead=True` the dead letters, `delivered=False` what is still owed."""
        read, _ = self._sessions()
        q = select(Outbox)
        if dead is not None:
            q = q.where(Outbox.dead_at.is_not(None) if dead else Outbox.dead_at.is_(None))
        if delivered is not None:
            q = q.where(Outbox.delivered_at.is_not(None) if delivered else Outbox.delivered_at.is_(None))
        q = q.order_by(Outbox.id.desc()).limit(limit)
        async with read() as s:
            return list((await s.execute(q)).scalars())

    async def outbox_retry(self, outbox_id: int) -> Outbox:
        """Give a dead letter another round (after the receiver was fixed)."""
        def f(r: Outbox, now: dt.datetime) -> None:
            r.dead_at = None
            r.attempts = 0
            r.next_attempt_at = now
        return await self._outbox_update(outbox_id, f)

    # -------------------------------------------------------------- outbox
    async def outbox_due(self, limit: int = 100) -> list[Outbox]:
        """Rows to push now, oldest first. Receivers dedupe on idempotency_key (delivery is at-least-once)."""
        read, _ = self._sessions()
        q = (select(Outbox).where(Outbox.delivered_at.is_(None), Outbox.dead_at.is_(None),
                                  Outbox.next_attempt_at <= self._now())
             .order_by(Outbox.next_attempt_at, Outbox.id).limit(limit))
        async with read() as s:
            return list((await s.execute(q)).scalars())

    async def outbox_claim(self, limit: int = 100, lease_s: float = 60.0, endpoint: str = "platform") -> list[Outbox]:
        """Take due rows for one pusher: their next attempt moves `lease_s` ahead in the same transaction.

        Several controllers sharing a database then push different rows (PostgreSQL: SKIP LOCKED;
        SQLite: writers are serialized), and a pusher killed mid-POST loses nothing: its rows fall
        due again when the lease runs out (delivery stays at-least-once; receivers dedupe on the key).
        """
        _, write = self._sessions()
        for attempt in range(_RETRIES):
            try:
                async with write() as s, s.begin():
                    now = self._now()
                    q = (select(Outbox).where(Outbox.delivered_at.is_(None), Outbox.dead_at.is_(None),
                                              Outbox.next_attempt_at <= now, Outbox.endpoint == endpoint)
                         .order_by(Outbox.next_attempt_at, Outbox.id).limit(limit)
                         .with_for_update(skip_locked=True))
                    rows = list((await s.execute(q)).scalars())
                    for r in rows:
                        r.next_attempt_at = now + dt.timedelta(seconds=lease_s)
                    return rows
            except OperationalError:
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise RuntimeError("unreachable")

    async def _outbox_update(self, outbox_id: int, fn: Callable[[Outbox, dt.datetime], None]) -> Outbox:
        _, write = self._sessions()
        async with write() as s, s.begin():
            row = (await s.execute(select(Outbox).where(Outbox.id == outbox_id).with_for_update())
                   ).scalar_one_or_none()
            if row is None:
                raise LookupError(f"outbox {outbox_id}")
            fn(row, self._now())
            return row

    async def outbox_mark_delivered(self, outbox_id: int) -> Outbox:
        """Delivered: an SMS row's sealed password is erased with it (ticketbridge/sms.py)."""
        def f(r: Outbox, now: dt.datetime) -> None:
            r.delivered_at = now
            r.attempts += 1
            r.secret = None
        return await self._outbox_update(outbox_id, f)

    async def outbox_mark_failed(self, outbox_id: int, error: str, backoff_s: float | None = None) -> Outbox:
        """Try again later: `backoff_s`, or 30 s doubling per attempt up to an hour."""
        def f(r: Outbox, now: dt.datetime) -> None:
            r.attempts += 1
            wait = backoff_s if backoff_s is not None else min(3600.0, 30.0 * 2 ** (r.attempts - 1))
            r.next_attempt_at = now + dt.timedelta(seconds=wait)
            r.last_error = error[:2000]
        return await self._outbox_update(outbox_id, f)

    async def outbox_mark_dead(self, outbox_id: int, error: str) -> Outbox:
        def f(r: Outbox, now: dt.datetime) -> None:
            r.dead_at = now
            r.last_error = error[:2000]
            r.secret = None  # an SMS given up on keeps no sealed password either (as one delivered)
        return await self._outbox_update(outbox_id, f)

    async def outbox_for(self, ticket_no: str) -> Sequence[Outbox]:
        read, _ = self._sessions()
        async with read() as s:
            q = select(Outbox).where(Outbox.ticket_no == ticket_no).order_by(Outbox.id)
            return list((await s.execute(q)).scalars())

    async def count_tickets(self) -> int:
        read, _ = self._sessions()
        async with read() as s:
            return int((await s.execute(select(func.count()).select_from(Ticket))).scalar_one())

    # -------------------------------------------------------------- live API tokens (hashes only)
    async def create_token(self, *, name: str, role: str, seat: str | None, token_hash: str,
                           created_by: str = "") -> ApiToken:
        _, write = self._sessions()
        async with write() as s, s.begin():
            row = ApiToken(name=name[:64], role=role, seat=seat, token_hash=token_hash, created_at=self._now(),
                           created_by=created_by[:64])
            s.add(row)
        return row

    async def tokens(self, *, revoked: bool = False) -> list[ApiToken]:
        """Tokens, oldest first; revoked ones too when `revoked`."""
        read, _ = self._sessions()
        q = select(ApiToken).order_by(ApiToken.id)
        if not revoked:
            q = q.where(ApiToken.revoked_at.is_(None))
        async with read() as s:
            return list((await s.execute(q)).scalars())

    async def revoke_token(self, key: str) -> list[ApiToken]:
        """Revoke the live tokens whose id or name is `key`; returns them (empty: none matched)."""
        _, write = self._sessions()
        where = ApiToken.name == key
        if key.isdigit():
            where = where | (ApiToken.id == int(key))
        async with write() as s, s.begin():
            rows = list((await s.execute(select(ApiToken).where(where, ApiToken.revoked_at.is_(None)))).scalars())
            for r in rows:
                r.revoked_at = self._now()
        return rows

    async def token_by_hash(self, token_hash: str, *, touch: bool = True) -> ApiToken | None:
        """The live (unrevoked) token with this hash; its last use noted (at most once a minute)."""
        read, write = self._sessions()
        async with read() as s:
            row = (await s.execute(select(ApiToken).where(ApiToken.token_hash == token_hash,
                                                          ApiToken.revoked_at.is_(None)))).scalar_one_or_none()
        if row is not None and touch:
            now = self._now()
            if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
                async with write() as s, s.begin():
                    live = await s.get(ApiToken, row.id)
                    if live is not None:
                        live.last_used_at = now
        return row

    async def live_token_count(self) -> int:
        """How many live API tokens are not revoked (a controller with the API off asks every few seconds: one
        read transaction of the call writer, not an ORM session)."""
        return await self._call_tx(_count_live_tokens, write=False)


_LIVE_TOKENS = select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))


def _count_live_tokens(db: CallDb) -> int:
    row = db.first(_LIVE_TOKENS, {})
    return int(row[0]) if row is not None else 0


#: the ticket database holds every caller's number: owner read/write only, its folder owner(+group) only
DB_FILE_MODE = 0o600
DB_DIR_MODE = 0o750


class _GatedSession(AsyncSession):
    """A write session of a SQLite file's store: it holds the store's write gate from start to end, so it and the
    call writes (another connection, `TicketStore._call_tx`) take turns instead of meeting in SQLite's busy
    handler."""

    def __init__(self, *args: Any, gate: asyncio.Lock, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._gate = gate

    async def __aenter__(self) -> _GatedSession:
        await self._gate.acquire()
        try:
            return await super().__aenter__()
        except BaseException:
            self._gate.release()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            self._gate.release()


def _settled(job: Future[T], loop: asyncio.AbstractEventLoop, gate: asyncio.Lock | None) -> asyncio.Future[T]:
    """The call-writer thread's `job` as the loop's future, and `gate` (held) released once it has ended: one
    wake-up of the loop for both (`asyncio.wrap_future` and a release of its own took two). Cancelling the
    future cancels the job if it has not started; the gate waits for its end either way."""
    fut: asyncio.Future[T] = loop.create_future()

    def settle() -> None:
        if gate is not None:
            gate.release()
        if fut.cancelled():
            return
        if job.cancelled():
            fut.cancel()
        elif (exc := job.exception()) is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(job.result())

    def stop(_: asyncio.Future[T]) -> None:
        if fut.cancelled():
            job.cancel()

    def ended(_: Future[T]) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle)

    fut.add_done_callback(stop)
    job.add_done_callback(ended)
    return fut


def _private_sqlite_file(db: Path) -> None:
    """Create the SQLite file (and its folder) private before SQLite opens it.

    SQLite creates `-wal` and `-shm` with the database file's own mode, so a database
    created 0600 keeps its companions 0600 too; an older, looser database and its
    companions are tightened here. The folder is made 0750 when we create it, and tightened to 0750
    when it is ours and open to others (never a shared, world-writable folder such as /tmp).
    """
    parent = db.parent
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)
        os.chmod(parent, DB_DIR_MODE)
    else:
        st = parent.stat()
        if st.st_uid == os.geteuid() and st.st_mode & 0o007 and not st.st_mode & 0o002:
            os.chmod(parent, DB_DIR_MODE)
    try:
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), db.with_name(db.name + "-journal")):
        try:
            if f.stat().st_mode & 0o077:
                os.chmod(f, DB_FILE_MODE)
        except FileNotFoundError:
            pass


#: PostgreSQL: the call-writer threads, each transaction on a pooled psycopg connection of its own
PG_CALL_THREADS = 4
#: asyncpg's prepared-statement URL parameters (SQLAlchemy passes them to asyncpg.connect), set for a pooler such
#: as PgBouncer in transaction mode: psycopg's counterpart is to prepare nothing (`prepare_threshold` None)
_ASYNCPG_PREPARED_QUERY = ("prepared_statement_cache_size", "prepared_statement_name_func")
#: asyncpg's `ssl` URL values (its SSL modes) as libpq's sslmode: the same names
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _psycopg_url(url: URL) -> tuple[URL, dict[str, Any]]:
    """The store's asyncpg URL for psycopg (the call-writer threads' connections to the same server), and the
    connect arguments it implies: `ssl=` is libpq's `sslmode=`; asyncpg's prepared-statement parameters (a
    pooler) make psycopg prepare nothing; the rest is passed as libpq takes it."""
    query = dict(url.query)
    args: dict[str, Any] = {}
    if any(query.pop(k, None) is not None for k in _ASYNCPG_PREPARED_QUERY):
        args["prepare_threshold"] = None
    if "ssl" in query:
        ssl = str(query.pop("ssl")).strip().lower()
        if ssl not in _SSL_MODES:
            raise ValueError(f"store url: ssl={ssl!r}: expected one of {', '.join(_SSL_MODES)}")
        query.setdefault("sslmode", ssl)
    return url.set(drivername="postgresql+psycopg", query=query), args


def _psycopg_connect_args(asyncpg_args: dict[str, Any]) -> dict[str, Any]:
    """The asyncpg engine's connect arguments as psycopg's (libpq's), for the call-writer thread's connection to
    the same server: `timeout` (connecting, s) is `connect_timeout`; `command_timeout` (s) a statement timeout on
    the server plus `tcp_user_timeout` and keepalive probes (a statement sent into a cut network, or to a host
    that is gone, fails then, not after the kernel's retransmissions or its 2-hour keepalive: psycopg has no
    client-side timeout of its own); `server_settings` `-c name=value` options.
    Any other asyncpg argument has no counterpart here: ValueError, rather than a connection unlike the engine's."""
    out: dict[str, Any] = {}
    settings: dict[str, str] = {}
    for key, value in asyncpg_args.items():
        if key == "timeout":
            out["connect_timeout"] = max(2, int(-(-float(value) // 1)))  # (whole seconds, libpq's least is 2)
        elif key == "command_timeout":
            if value is not None:
                ms = int(float(value) * 1000)
                settings["statement_timeout"] = str(ms)
                out["tcp_user_timeout"] = ms
                # a server that stops answering once it has the statement (its host gone, the network cut):
                # keepalive probes go unanswered and the kernel ends the connection in ~command_timeout
                probe = max(1, int(float(value)) // 4)
                out.update(keepalives=1, keepalives_idle=probe, keepalives_interval=probe, keepalives_count=3)
        elif key == "server_settings":
            settings.update({k: str(v) for k, v in value.items()})
        else:
            raise ValueError(f"the store's connect argument {key!r} has no psycopg counterpart "
                             "(the call-writer thread's connection)")
    if settings:
        out["options"] = " ".join(f"-c {k}={_libpq_option(v)}" for k, v in settings.items())
    return out


def _libpq_option(value: str) -> str:
    """A value inside libpq's `options`: backslashes and spaces escaped with a backslash."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def _sqlite_pragmas(engine: Engine, *, begin: bool = True) -> None:
    """WAL so readers never block; writers wait (busy_timeout) instead of failing; FKs on.

    pysqlite's own transaction handling is switched off so that write transactions start
    with BEGIN IMMEDIATE: a read-then-write transaction could otherwise deadlock-fail
    ("database is locked") when two controllers share one file. `begin`: the engine's
    transactions are SQLAlchemy's (not the call-writer thread's, `DbapiCallDb.transaction`).
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    if not begin:
        return

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("hotline_write") else "BEGIN")
