"""The statements a call's ticket writes need (ticketbridge/ticket_writes.py), and the seat agents' state saves
(ticketbridge/agent_writes.py, 2-3 per answered call), behind one small port, `CallDb`, with two adapters:

- `CoreCallDb`: SQLAlchemy Core on a sync `Connection`: through the async engine's `run_sync` when the store has
  no call-writer thread (SQLite in memory), and inside an ORM session's transaction (`TicketStore._with_ticket`);
- `DbapiCallDb`: the same statements, compiled once by SQLAlchemy for the connection's dialect, run on the
  store's call-writer thread's own DB-API connection: on a SQLite file its sqlite3 connection (opened once
  for the thread's life), on PostgreSQL a psycopg connection (checked out of the pool for each
  transaction), with each column's own bind and result processors (`TypeEngine.bind_processor` /
  `result_processor`), so the values written and read are the ones SQLAlchemy writes and reads.
  SQLAlchemy's per-statement execution (execution context, cache-key lookup, events, result objects) cost
  about 0.1 ms a statement on SQLite, several times SQLite's own work (bench/RESULTS.md, issue 15), and its
  transaction (pool checkout, Connection, the `begin` event's BEGIN, commit, pool checkin) about as much
  again per transaction (bench/call_writer.py); on psycopg Core cost the writer thread ~3.2-4.0 ms a call
  (open + save) against this adapter's ~2.2-2.5 ms (bench/call_writer.py --backend pg). The transaction is
  this adapter's own too (`DbapiCallDb.transaction`: BEGIN IMMEDIATE or BEGIN, COMMIT, ROLLBACK). Errors
  are raised as SQLAlchemy's (`DBAPIError.instance`), BEGIN's and COMMIT's included (SQLITE_BUSY after the
  busy timeout: OperationalError; psycopg's classes with their SQLSTATE), so the store's retries and
  fallbacks see the same exceptions on either adapter.

`CoreCallDb`'s transaction is SQLAlchemy's (`Engine.begin`, the store's `begin` listener issuing BEGIN
IMMEDIATE on SQLite).
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Table, bindparam, insert, select, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import TextClause

from ticketbridge.schema import Callback, Ticket

T = TypeVar("T")

_T = Ticket.__table__
_CB = Callback.__table__

#: the daily sequence's atomic step, the same SQL on SQLite (3.35+) and PostgreSQL; text, because the
#: dialects' `on_conflict_do_update` constructs have no cache key and were compiled anew every call
_SEQ_STEP = text("INSERT INTO ticket_seq (day, last) VALUES (:day, :n) "
                 "ON CONFLICT (day) DO UPDATE SET last = ticket_seq.last + :n RETURNING last")
_CDR_STATUSES = (select(_T.c.linkedid, _T.c.outcome, _T.c.cdr_check)
                 .where(_T.c.linkedid.in_(bindparam("ids", expanding=True))))
#: at most this many calls' statuses in one statement (SQLite's parameter limit is far above)
CDR_STATUS_CHUNK = 512
_CALLBACK_OF = select(_CB.c.id, _CB.c.status).where(_CB.c.ticket_id == bindparam("ticket_id"))
_CALLBACK_NOT_NEEDED = update(_CB).where(_CB.c.id == bindparam("cb_id")).values(
    status="done", last_result="not needed any more", at=bindparam("cb_at"))
_NUMBERED = select(_T).where(_T.c.ticket_no == bindparam("ticket_no")).with_for_update()
#: the changed columns are the parameters' other keys
_UPDATE_TICKET = update(_T).where(_T.c.id == bindparam("ticket_id_"))


@functools.cache
def _upsert(table: Table) -> TextClause:
    """INSERT of every column of `table`, or, when its primary key is taken, UPDATE of every other column: one
    statement, the same SQL on SQLite (3.24+) and PostgreSQL (as `_SEQ_STEP`); each parameter typed as its
    column, so values are bound as the ORM binds them (JSON, UTCDateTime, Boolean)."""
    cols = [c.name for c in table.columns]
    key = {c.name for c in table.primary_key}
    names = ", ".join(f'"{c}"' for c in cols)
    values = ", ".join(f":{c}" for c in cols)
    conflict = ", ".join(f'"{c}"' for c in cols if c in key)
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in cols if c not in key)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({values}) ON CONFLICT ({conflict}) DO UPDATE SET {sets}'
    return text(sql).bindparams(*[bindparam(c.name, type_=c.type) for c in table.columns])


class CallDb(Protocol):
    """What the call writes ask of the database, inside one transaction."""

    def tickets(self, linkedids: Sequence[str]) -> list[dict[str, Any]]:
        """The tickets of these calls, every column, oldest first, locked for this transaction."""

    def ticket_numbered(self, ticket_no: str) -> dict[str, Any] | None:
        """The ticket of this number, every column, locked for this transaction."""

    def seq_step(self, day: str, n: int) -> int:
        """Add `n` to the day's ticket sequence; its new last value."""

    def insert_tickets(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert new tickets (every column but id); their ids, in order."""

    def update_ticket(self, ticket_id: int, changes: Mapping[str, Any]) -> None: ...

    def insert_rows(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows that all have the same keys."""

    def upsert(self, table: Table, row: Mapping[str, Any]) -> None:
        """Insert `row` (every column of `table`), or update the row of its primary key to it."""

    def callback_of(self, ticket_id: int) -> tuple[int, str] | None:
        """The ticket's callback: its id and status."""

    def callback_not_needed(self, callback_id: int, at: dt.datetime) -> None: ...

    def cdr_statuses(self, linkedids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """The outcome and `cdr_check` of these calls' tickets, by linkedid (a call without one is absent)."""

    def first(self, stmt: ClauseElement, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of `stmt`, a module-level constant of the caller (compiled once per dialect and kept).
        For columns of strings and numbers only: `DbapiCallDb` gives the driver's values (no result processors),
        `CoreCallDb` SQLAlchemy's, and only for those two kinds do they agree."""


class CoreCallDb:
    """`CallDb` as SQLAlchemy Core statements on a sync Connection."""

    _BY_LINKEDIDS = (select(_T).where(_T.c.linkedid.in_(bindparam("ids", expanding=True)))
                     .order_by(_T.c.id).with_for_update())
    _INSERT_TICKET = insert(_T).returning(_T.c.id, sort_by_parameter_order=True)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def tickets(self, linkedids: Sequence[str]) -> list[dict[str, Any]]:
        return [dict(row._mapping) for row in self.conn.execute(self._BY_LINKEDIDS, {"ids": list(linkedids)})]

    def ticket_numbered(self, ticket_no: str) -> dict[str, Any] | None:
        row = self.conn.execute(_NUMBERED, {"ticket_no": ticket_no}).first()
        return None if row is None else dict(row._mapping)

    def seq_step(self, day: str, n: int) -> int:
        return int(self.conn.execute(_SEQ_STEP, {"day": day, "n": n}).scalar_one())

    def insert_tickets(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        return list(self.conn.execute(self._INSERT_TICKET, list(rows)).scalars().all())

    def update_ticket(self, ticket_id: int, changes: Mapping[str, Any]) -> None:
        self.conn.execute(_UPDATE_TICKET, {"ticket_id_": ticket_id, **changes})

    def insert_rows(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        self.conn.execute(insert(table), list(rows))

    def upsert(self, table: Table, row: Mapping[str, Any]) -> None:
        self.conn.execute(_upsert(table), dict(row))

    def callback_of(self, ticket_id: int) -> tuple[int, str] | None:
        row = self.conn.execute(_CALLBACK_OF, {"ticket_id": ticket_id}).first()
        return None if row is None else (row.id, row.status)

    def callback_not_needed(self, callback_id: int, at: dt.datetime) -> None:
        self.conn.execute(_CALLBACK_NOT_NEEDED, {"cb_id": callback_id, "cb_at": at})

    def cdr_statuses(self, linkedids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        out: dict[str, tuple[str, str | None]] = {}
        for chunk in _chunks(linkedids):
            for row in self.conn.execute(_CDR_STATUSES, {"ids": list(chunk)}):
                out[row.linkedid] = (row.outcome, row.cdr_check)
        return out

    def first(self, stmt: ClauseElement, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        row = self.conn.execute(stmt, dict(params)).first()  # type: ignore[call-overload]
        return None if row is None else tuple(row)


Processor = Callable[[Any], Any] | None


class _Compiled:
    """A statement compiled once for a dialect (SQLite's, or PostgreSQL's for psycopg): its SQL, and each positional
    parameter's name and bind processor; for a SELECT, each result column's name and result processor."""

    def __init__(self, stmt: ClauseElement, dialect: Dialect, keys: Sequence[str] | None = None,
                 columns: Sequence[Any] = ()) -> None:
        c = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None,
                         compile_kwargs={"render_postcompile": True})
        self.sql = c.string
        # (the dialect's own form of each type, e.g. SQLite's DATETIME and JSON, under our TypeDecorators)
        # (a value the statement itself gives, such as `.values(status="done")`, is its bind's own value; a
        # bind without one must be given: None marks it)
        self.binds: list[tuple[str, Processor, Any]] = [
            (n, c.binds[n].type.dialect_impl(dialect).bind_processor(dialect),
             None if c.binds[n].required else (c.binds[n].value,))
            for n in (c.positiontup or ())]
        self._dialect = dialect
        self._result_columns = list(columns)
        #: each result column's name and result processor, made for the first result (`rows`)
        self.columns: list[tuple[str, Processor]] | None = None
        #: each bind's name and processor when every bind must be given (else None: `params` looks for the
        #: statement's own values): a ticket's ~45 parameters without a test and a branch each
        self._given_all = (None if any(g is not None for _, _, g in self.binds) else
                           [(n, p) for n, p, _ in self.binds])

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        if self._given_all is not None:
            try:
                return tuple([values[n] if p is None else p(values[n]) for n, p in self._given_all])
            except KeyError:
                pass  # (the loop below names the missing parameter)
        out = []
        for n, p, given in self.binds:
            if n in values:
                v = values[n]
            elif given is not None:
                v = given[0]
            else:
                raise KeyError(f"no value for the statement's parameter {n!r}")
            out.append(p(v) if p is not None else v)
        return tuple(out)

    def rows(self, cur: Any) -> list[dict[str, Any]]:
        """The rows of the statement's result `cur`, each value through its column's result processor. The
        processors are made for the first result's column types (`cursor.description`: psycopg's numeric
        processors depend on the server's type; sqlite3 has none)."""
        if self.columns is None:
            d = self._dialect
            self.columns = [(col.key, col.type.dialect_impl(d).result_processor(d, desc[1]))
                            for col, desc in zip(self._result_columns, cur.description, strict=True)]
        cols = self.columns
        return [{k: p(v) if p is not None else v for (k, p), v in zip(cols, raw, strict=True)}
                for raw in cur.fetchall()]


#: how a transaction of `DbapiCallDb` starts, by dialect and `write`: on SQLite a write one takes the write lock at
#: once (BEGIN IMMEDIATE), so a read-then-write transaction cannot fail half-way ("database is locked") when two
#: controllers share one file; PostgreSQL locks rows (FOR UPDATE) as it goes
_BEGIN = {"sqlite": {True: "BEGIN IMMEDIATE", False: "BEGIN"}, "postgresql": {True: "BEGIN", False: "BEGIN"}}


class DbapiCallDb:
    """`CallDb` on a DB-API connection of its own in autocommit mode (`transaction` issues BEGIN and COMMIT): the
    store's call-writer thread's sqlite3 connection (`isolation_level` None, the store's pragmas set), or on
    PostgreSQL a psycopg connection (`autocommit` on) checked out for the transaction. The statements are
    compiled for the connection's dialect, with positional parameters (sqlite3's qmark, psycopg's format)."""

    #: compiled statements by (dialect, what, shape), shared by every instance
    _cache: dict[tuple[Any, ...], _Compiled] = {}

    def __init__(self, raw: Any, dialect: Dialect) -> None:
        self.raw = raw
        #: the dialect the statements are compiled for and errors translated by (an engine's: initialized)
        self.dialect = dialect
        self._errors: type[Exception] = dialect.loaded_dbapi.Error
        self._begin = _BEGIN[dialect.name]

    @property
    def in_transaction(self) -> bool:
        """Whether the connection is inside a transaction, or (psycopg) in no known state: a lost connection."""
        if isinstance(self.raw, sqlite3.Connection):
            return self.raw.in_transaction
        return int(self.raw.info.transaction_status) != 0  # (psycopg: pq.TransactionStatus.IDLE)

    def transaction(self, fn: Callable[..., T], args: Sequence[Any] = (), *, write: bool = True) -> T:
        """`fn(self, *args)` in one transaction (`write`: BEGIN IMMEDIATE, else BEGIN), committed when it returns,
        rolled back when it raises (its exception raised). A failed BEGIN or COMMIT raises as a statement does
        (SQLAlchemy's exception: OperationalError when SQLite stayed busy past the busy timeout). A ROLLBACK that
        fails leaves the connection in its transaction (`in_transaction`): the owner replaces it."""
        self._run(self._begin[write], ())
        try:
            out = fn(self, *args)
            self._run("COMMIT", ())
        except BaseException:
            if self.in_transaction:  # (SQLite ended it itself after some errors)
                try:
                    self.raw.execute("ROLLBACK")
                except self._errors:
                    pass  # the error that made us roll back is the one to raise
            raise
        return out

    def _compiled(self, key: tuple[Any, ...], make: Callable[[], _Compiled]) -> _Compiled:
        key = (self.dialect.name, self.dialect.paramstyle, *key)
        c = self._cache.get(key)
        if c is None:
            c = self._cache[key] = make()
        return c

    def _run(self, sql: str, params: Any, *, many: bool = False) -> Any:
        """`sql` with `params` (a list of them: `many`), the driver's errors raised as SQLAlchemy's."""
        try:
            if not many:
                return self.raw.execute(sql, params)
            cur = self.raw.cursor()  # (psycopg's connection has no executemany)
            cur.executemany(sql, params)
            return cur
        except self._errors as e:
            raise DBAPIError.instance(sql, params, e, self._errors, hide_parameters=True,
                                      dialect=self.dialect) from e

    def tickets(self, linkedids: Sequence[str]) -> list[dict[str, Any]]:
        if not linkedids:
            return []
        n, ids = _bucketed(linkedids)
        c = self._compiled(("tickets", n), lambda: _Compiled(
            select(_T).where(_T.c.linkedid.in_([bindparam(f"id{i}") for i in range(n)])).order_by(_T.c.id)
            .with_for_update(), self.dialect, columns=list(_T.columns)))
        return c.rows(self._run(c.sql, ids))

    def ticket_numbered(self, ticket_no: str) -> dict[str, Any] | None:
        c = self._compiled(("numbered",), lambda: _Compiled(_NUMBERED, self.dialect, columns=list(_T.columns)))
        found = c.rows(self._run(c.sql, c.params({"ticket_no": ticket_no})))
        return found[0] if found else None

    def seq_step(self, day: str, n: int) -> int:
        c = self._compiled(("seq",), lambda: _Compiled(_SEQ_STEP, self.dialect))
        return int(self._run(c.sql, c.params({"day": day, "n": n})).fetchone()[0])

    def insert_tickets(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        ids = []
        for row in rows:
            keys = tuple(row)
            c = self._compiled(("insert_ticket", keys), lambda: _Compiled(
                insert(_T).returning(_T.c.id), self.dialect, keys))
            ids.append(int(self._run(c.sql, c.params(row)).fetchone()[0]))
        return ids

    def update_ticket(self, ticket_id: int, changes: Mapping[str, Any]) -> None:
        keys = tuple(changes)
        c = self._compiled(("update_ticket", keys), lambda: _Compiled(_UPDATE_TICKET, self.dialect,
                                                                      [*keys, "ticket_id_"]))
        self._run(c.sql, c.params({"ticket_id_": ticket_id, **changes}))

    def insert_rows(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        keys = tuple(rows[0])
        if any(tuple(r) != keys for r in rows):
            raise ValueError(f"rows for {table.name} must all have the same keys")
        c = self._compiled(("insert", table.name, keys), lambda: _Compiled(insert(table), self.dialect, keys))
        self._run(c.sql, [c.params(r) for r in rows], many=True)

    def upsert(self, table: Table, row: Mapping[str, Any]) -> None:
        c = self._compiled(("upsert", table.name), lambda: _Compiled(_upsert(table), self.dialect))
        self._run(c.sql, c.params(row))

    def callback_of(self, ticket_id: int) -> tuple[int, str] | None:
        c = self._compiled(("callback_of",), lambda: _Compiled(_CALLBACK_OF, self.dialect))
        raw = self._run(c.sql, c.params({"ticket_id": ticket_id})).fetchone()
        return None if raw is None else (int(raw[0]), str(raw[1]))

    def callback_not_needed(self, callback_id: int, at: dt.datetime) -> None:
        c = self._compiled(("callback_not_needed",), lambda: _Compiled(_CALLBACK_NOT_NEEDED, self.dialect))
        self._run(c.sql, c.params({"cb_id": callback_id, "cb_at": at}))

    def cdr_statuses(self, linkedids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        out: dict[str, tuple[str, str | None]] = {}
        for chunk in _chunks(linkedids):
            n, ids = _bucketed(chunk)
            c = self._compiled(("cdr_statuses", n), lambda: _Compiled(
                select(_T.c.linkedid, _T.c.outcome, _T.c.cdr_check)
                .where(_T.c.linkedid.in_([bindparam(f"id{k}") for k in range(n)])), self.dialect))
            for raw in self._run(c.sql, ids).fetchall():
                out[raw[0]] = (raw[1], raw[2])
        return out

    def first(self, stmt: ClauseElement, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        c = self._compiled(("first", stmt), lambda: _Compiled(stmt, self.dialect))
        raw = self._run(c.sql, c.params(params)).fetchone()
        return None if raw is None else tuple(raw)


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    """`ids` in pieces of at most CDR_STATUS_CHUNK (one statement each)."""
    return [ids[i:i + CDR_STATUS_CHUNK] for i in range(0, len(ids), CDR_STATUS_CHUNK)]


def _bucketed(ids: Sequence[str]) -> tuple[int, tuple[str, ...]]:
    """An IN list's size rounded up to a power of two, the last id repeated to fill it (the same rows come
    back): a few statement sizes, so the compiled statements cached per size stay few (issue 15's soak saw
    one per batch size a save had, filling in for the whole run)."""
    n = 1 << (len(ids) - 1).bit_length()
    return n, (*ids, *ids[-1:] * (n - len(ids)))
