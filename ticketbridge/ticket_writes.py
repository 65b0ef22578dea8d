"""The writes every call makes, without the ORM, over one transaction's `CallDb` (ticketbridge/call_db.py).

Every caller call writes its ticket twice: opened (numbered) as it enters the IVR, and its record
merged in at hang-up, often many calls in one transaction (ticketbridge/save_queue.py). These are the
controller's hottest statements, so they run without the ORM: no identity map, no unit of work, no
attribute events. The functions run inside a transaction the store opens (`TicketStore._call_tx`), in the
store's call-writer thread (one thread hop per transaction instead of one per statement), on the DB-API
connection itself (`DbapiCallDb`: sqlite3 on a SQLite file, psycopg on PostgreSQL); on SQLite in memory as
SQLAlchemy Core through `AsyncConnection.run_sync` (`CoreCallDb`). The rules of what a record changes are pure
(ticketbridge/ticket_merge.py); what a new ticket, its history, callback and outbox rows hold is here,
used by the ORM writes of the store too (`outbox_values`, `ticket_view`), so each lives in one place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import bindparam, select

from ticketbridge.assembler import CallRecord
from ticketbridge.call_db import CallDb
from ticketbridge.lifecycle import INITIAL, deadline
from ticketbridge.outbox import push_payload
from ticketbridge.schema import Callback, Outbox, Ticket, TicketHistory
from ticketbridge.ticket_merge import merge_changes, new_cdr_check, record_values, wants_callback

log = structlog.get_logger("ticketbridge.store")

#: the daily sequence fits 6 digits, so ticket numbers stay 12 digits long
TICKET_SEQ_MAX = 999_999

_T = Ticket.__table__
_COLUMNS = tuple(c.key for c in _T.columns)
#: the ticket's columns a ticket's view (supervisors, pushes) leaves out
_HIDDEN = ("id", "query_password_hash")

_HISTORY = TicketHistory.__table__
_OUTBOX = Outbox.__table__
_CALLBACKS = Callback.__table__
#: a ticket's history row of one kind by one actor (`_note_release`: a 强拆 row is written once)
_RELEASED = (select(_HISTORY.c.id).where(_HISTORY.c.ticket_id == bindparam("ticket_id"),
                                         _HISTORY.c.field == bindparam("field"),
                                         _HISTORY.c.to_value == bindparam("to_value"),
                                         _HISTORY.c.actor == bindparam("actor")))


@dataclass(frozen=True)
class SavedTicket:
    """What save_call tells the caller. A ticket has no query password until `issue_password` makes one."""

    ticket_no: str
    created: bool


@dataclass(frozen=True)
class TicketRules:
    """The center's rules a new or re-categorised ticket needs: urgent categories and deadlines."""

    config: Any
    zone: ZoneInfo

    def urgent(self, category: str | None) -> bool:
        rules = getattr(self.config, "deadline_rules", None)
        return bool(category and rules is not None and category in rules.urgent_categories)

    def deadline(self, category: str | None, urgent: bool, since: dt.datetime) -> dt.datetime | None:
        return deadline(self.config, category, urgent, since, self.zone.key)


@dataclass
class CallWrites:
    """What one transaction of call writes did, for the store to log once it has committed."""

    saved: list[SavedTicket] = field(default_factory=list)
    #: (ticket_no, changed columns) of every merge that changed a ticket
    updated: list[tuple[str, list[str]]] = field(default_factory=list)
    #: the opened ticket's columns (`open_call`)
    row: dict[str, Any] | None = None


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.datetime) else v


def ticket_view(values: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The whole ticket minus the password hash (supervisors' views; the outbox keeps push_payload of it)."""
    out: dict[str, Any] = {"event": kind}
    for key in _COLUMNS:
        if key not in _HIDDEN:
            out[key] = _iso(values[key])
    return out


def outbox_values(values: Mapping[str, Any], kind: str, now: dt.datetime) -> dict[str, Any]:
    """One outbox row per ticket version (pushed to the provincial platform), in the caller's transaction."""
    payload = push_payload(ticket_view(values, kind))
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False,
                                       default=str).encode()).hexdigest()[:16]
    return {"ticket_no": values["ticket_no"], "idempotency_key": f"{values['ticket_no']}:{values['version']}:{digest}",
            "payload": payload, "endpoint": "platform", "secret": None, "attempts": 0, "next_attempt_at": now,
            "delivered_at": None, "dead_at": None, "last_error": None, "created_at": now}


def history_values(ticket_id: int, now: dt.datetime, field_: str, to_value: str | None,
                   note: str | None, actor: str = "system") -> dict[str, Any]:
    return {"ticket_id": ticket_id, "at": now, "actor": actor[:64], "field": field_, "from_value": None,
            "to_value": to_value, "note": note}


def release_history(ticket_id: int, now: dt.datetime, released_by: str) -> dict[str, Any]:
    """The history row of a supervisor's force release (强拆) of the call: who, from where, on which seat."""
    return history_values(ticket_id, now, "supervision", "released", "强拆: " + released_by, released_by)


def flagged_history(ticket_id: int, now: dt.datetime, flagged: Sequence[str]) -> dict[str, Any]:
    """The history row naming what of the call's content was cut or dropped to save it."""
    return history_values(ticket_id, now, "content", "cut", "cut to fit: " + ", ".join(flagged))


def _callback_values(ticket_id: int, now: dt.datetime) -> dict[str, Any]:
    return {"ticket_id": ticket_id, "status": "pending", "attempts": 0, "last_result": None, "at": now,
            "owner": None, "lease_until": None, "gave_up_at": None}


def next_ticket_nos(db: CallDb, zone: ZoneInfo, now: dt.datetime, n: int) -> list[str]:
    """`n` numbers, each `YYMMDD` + 6-digit daily sequence = 12 digits, atomically in one step."""
    if n <= 0:
        return []
    day = now.astimezone(zone).strftime("%Y%m%d")
    last = db.seq_step(day, n)
    if last > TICKET_SEQ_MAX:
        # more than 999,999 tickets in a day (15× Beijing's volume): the number grows a digit
        # rather than wrapping onto an earlier ticket; the IVR self-query cannot key it then
        log.warning("ticket_seq_overflow", day=day, seq=last)
    return [f"{day[2:]}{seq:06d}" for seq in range(last - n + 1, last + 1)]


def new_ticket_values(rules: TicketRules, record: CallRecord, ticket_no: str, now: dt.datetime) -> dict[str, Any]:
    """Every column of the ticket first made from `record` (no id yet; no query password: "" matches none,
    one is issued when the caller is told it)."""
    v: dict[str, Any] = dict.fromkeys(_COLUMNS)
    v.update(record_values(record))
    urgent = rules.urgent(v["category"])
    v.update(ticket_no=ticket_no, query_password_hash="", linkedid=record.linkedid, cdr_check=new_cdr_check(record),
             state=INITIAL.value, urgent=urgent, deadline_at=rules.deadline(v["category"], urgent, now),
             callback_needed=wants_callback(v["outcome"], v["self_query"]), version=1,
             created_at=now, updated_at=now)
    del v["id"]
    return v


class _Batch:
    """The rows one transaction adds, written in order at the end (history and outbox rows of a ticket made
    in this transaction once it has its id)."""

    def __init__(self, db: CallDb, now: dt.datetime) -> None:
        self.db, self.now = db, now
        self.history: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        #: new tickets not inserted yet: (columns, what was cut of the record)
        self.unflushed: list[tuple[dict[str, Any], Sequence[str]]] = []

    def flush_new(self) -> None:
        """Insert the new tickets (their ids), then what every new ticket has: history, callback, outbox."""
        if not self.unflushed:
            return
        rows = [v for v, _ in self.unflushed]
        ids = self.db.insert_tickets(rows)
        for (v, flagged), ticket_id in zip(self.unflushed, ids, strict=True):
            v["id"] = ticket_id
            self.history.append(history_values(ticket_id, self.now, "state", v["state"],
                                               f"created from call ({v['outcome']}, {v['handled_by']})"))
            if flagged:
                self.history.append(flagged_history(ticket_id, self.now, flagged))
            if v["callback_needed"]:
                self.callbacks.append(_callback_values(ticket_id, self.now))
            self.outbox.append(outbox_values(v, "created", self.now))
        self.unflushed.clear()

    def write(self) -> None:
        self.flush_new()
        for table, rows in ((_HISTORY, self.history), (_CALLBACKS, self.callbacks), (_OUTBOX, self.outbox)):
            if rows:
                self.db.insert_rows(table, rows)


def _merge(batch: _Batch, rules: TicketRules, cur: dict[str, Any], record: CallRecord,
           flagged: Sequence[str]) -> list[str]:
    """Merge `record` into the ticket `cur` (its columns, updated in place); the changed columns."""
    changes = merge_changes(cur, record)
    if not changes:
        return []
    db, now = batch.db, batch.now
    changed = list(changes)
    cur.update(changes)
    if flagged:
        batch.history.append(flagged_history(cur["id"], now, flagged))
    if "category" in changes and cur["state"] == INITIAL.value:
        changes["urgent"] = cur["urgent"] = cur["urgent"] or rules.urgent(cur["category"])
        changes["deadline_at"] = cur["deadline_at"] = rules.deadline(cur["category"], cur["urgent"],
                                                                     cur["created_at"])
    want = wants_callback(cur["outcome"], cur["self_query"])
    if want != cur["callback_needed"]:
        changes["callback_needed"] = cur["callback_needed"] = want
        cb = db.callback_of(cur["id"])
        if want and cb is None:
            batch.callbacks.append(_callback_values(cur["id"], now))
        elif not want and cb is not None and cb[1] == "pending":
            db.callback_not_needed(cb[0], now)
    changes["version"] = cur["version"] = cur["version"] + 1
    changes["updated_at"] = cur["updated_at"] = now
    db.update_ticket(cur["id"], changes)
    batch.history.append(history_values(cur["id"], now, "record", cur["outcome"], "updated: " + ", ".join(changed)))
    batch.outbox.append(outbox_values(cur, "updated", now))
    return changed


def _note_release(batch: _Batch, cur: dict[str, Any], released_by: str) -> None:
    """The ticket's 强拆 history row, once: a record saved again (a save that committed but was reported failed,
    then retried from ticketbridge.pending or at shutdown) finds the row, written or in this batch, and adds none."""
    if "id" not in cur:
        batch.flush_new()
    row = release_history(cur["id"], batch.now, released_by)
    key = {k: row[k] for k in ("ticket_id", "field", "to_value", "actor")}
    if any(all(h[k] == v for k, v in key.items()) for h in batch.history) or batch.db.first(_RELEASED, key):
        return
    batch.history.append(row)


def save_records(db: CallDb, rules: TicketRules, fitted: Sequence[tuple[CallRecord, Sequence[str]]],
                 now: dt.datetime) -> CallWrites:
    """Create or enrich the tickets of these calls, in order (a second record of the same call merges into
    the first): one SELECT … FOR UPDATE for all their tickets, one sequence step for all new numbers, one
    multi-row INSERT each for the new tickets and the history, callback and outbox rows."""
    out = CallWrites()
    batch = _Batch(db, now)
    ids = list(dict.fromkeys(r.linkedid for r, _ in fitted))
    tickets = {row["linkedid"]: row for row in db.tickets(ids)}
    numbers = iter(next_ticket_nos(db, rules.zone, now, sum(1 for i in ids if i not in tickets)))
    for record, flagged in fitted:
        cur = tickets.get(record.linkedid)
        if cur is None:
            cur = tickets[record.linkedid] = new_ticket_values(rules, record, next(numbers), now)
            batch.unflushed.append((cur, flagged))
            out.saved.append(SavedTicket(cur["ticket_no"], True))
        else:
            if "id" not in cur:  # merging into a ticket made in this transaction
                batch.flush_new()
            changed = _merge(batch, rules, cur, record, flagged)
            if changed:
                out.updated.append((cur["ticket_no"], changed))
            out.saved.append(SavedTicket(cur["ticket_no"], False))
        if record.released_by and record.complete:
            _note_release(batch, cur, record.released_by)
    batch.write()
    return out


def open_call(db: CallDb, rules: TicketRules, record: CallRecord, flagged: Sequence[str],
              now: dt.datetime) -> CallWrites:
    """The call's ticket, inserted from `record` when there is none (`CallWrites.saved[0].created`)."""
    out = CallWrites()
    found = db.tickets([record.linkedid])
    if found:
        out.row = found[0]
        out.saved.append(SavedTicket(out.row["ticket_no"], False))
        return out
    cur = new_ticket_values(rules, record, next_ticket_nos(db, rules.zone, now, 1)[0], now)
    batch = _Batch(db, now)
    batch.unflushed.append((cur, flagged))
    batch.write()
    out.row = cur
    out.saved.append(SavedTicket(cur["ticket_no"], True))
    return out


def cdr_statuses(db: CallDb, linkedids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """The two columns the CDR replay looks at for every ended call, for a round's calls at once."""
    return db.cdr_statuses(linkedids)


def issue_password(db: CallDb, ticket_no: str, pw_hash: str, actor: str, sms: Callable[[], dict[str, Any]] | None,
                   now: dt.datetime) -> bool | None:
    """Store a new query password's hash on the ticket numbered `ticket_no`, with its history row and, when
    `sms` is given, the SMS notice's outbox row it makes (the password sealed in it, never in its payload).
    None: no such ticket; False: it has a password already (never made twice, so what a caller heard or
    read stays valid)."""
    t = db.ticket_numbered(ticket_no)
    if t is None:
        return None
    if t["query_password_hash"]:
        return False
    db.update_ticket(t["id"], {"query_password_hash": pw_hash})
    db.insert_rows(_HISTORY, [history_values(t["id"], now, "query_password", "issued",
                                             "by SMS too" if sms is not None else None, actor)])
    if sms is not None:
        db.insert_rows(_OUTBOX, [sms()])
    return True
