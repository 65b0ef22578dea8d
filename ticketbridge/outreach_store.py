"""The store's side of automatic calls (漏接电话回拨 and 回访): owed calls, claims, results, 回访 answers.

A mixin of ticketbridge.store.TicketStore (kept apart so store.py stays about tickets): each method is one
transaction over `callbacks` / `followups` and the ticket they belong to, and every attempt writes a history
row on that ticket (field `callback` or `followup`).

**Claims.** A controller dials an owed call only after `claim_owed` moved it to `dialing` with itself as
`owner` and a lease (`lease_until`). The claim is taken atomically and only from the state the scheduler
saw (`expect_attempts`): on PostgreSQL by `SELECT … FOR UPDATE SKIP LOCKED` of the row still free, on SQLite
by one conditional `UPDATE … WHERE status free AND attempts = seen` (SQLite serialises writers) — so two
controllers sharing one database never dial the same call twice, and a controller that died mid-dial only
holds its claim until the lease runs out. `finish_owed` writes the result only while the claim is still
the finisher's own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from ticketbridge.lifecycle import allowed, transition
from ticketbridge.outreach_rules import FollowupOutcome, Owed, followup_outcome
from ticketbridge.schema import Callback, Followup, Ticket, TicketHistory

log = structlog.get_logger("ticketbridge.outreach")

#: the tables of the two kinds of owed call
OWED_TABLES: dict[str, Any] = {"callback": Callback, "followup": Followup}
#: a `dialing` row without a lease (a claim made before leases existed) is free again after this long
_LEGACY_STALE_S = 300.0
_RETRIES = 10


@dataclass(frozen=True)
class ClaimedCall:
    """A claim this controller holds: dial `number`, then `finish_owed` with the same owner."""

    kind: str
    id: int
    ticket_no: str
    number: str
    attempts: int
    owner: str
    lease_until: dt.datetime


@dataclass(frozen=True)
class FollowupRow:
    """One 回访 with where it stands, for supervisors' lists."""

    id: int
    ticket_no: str
    caller: str
    category: str | None
    status: str
    attempts: int
    last_result: str | None
    since: dt.datetime
    resolved: bool | None
    rating: int | None
    scale: int | None
    gave_up_at: dt.datetime | None


def _table(kind: str) -> Any:
    try:
        return OWED_TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown kind of owed call {kind!r} (callback or followup)") from None


class OutreachMixin:
    """Mixed into TicketStore: uses its sessions, clock and outbox writer."""

    # provided by TicketStore
    _sessions: Any
    _now: Any
    _outbox: Any
    config: Any

    # -------------------------------------------------------------- what is owed
    async def owed_calls(self, kind: str, *, window_min: float, limit: int = 500) -> list[Owed]:
        """Callbacks / follow-ups not done and not given up whose window (`window_min` after the missed call or
        the closure) has not passed, oldest first, each with what the rules need."""
        table = _table(kind)
        read, _ = self._sessions()
        now = self._now()
        horizon = now - dt.timedelta(minutes=window_min, hours=1)
        if kind == "callback":
            since = func.coalesce(Ticket.started_at, Ticket.created_at)
            q = (select(table, Ticket.ticket_no, Ticket.caller, since.label("since"), Ticket.id)
                 .join(Ticket, Ticket.id == table.ticket_id))
        else:
            q = (select(table, Ticket.ticket_no, Ticket.caller, table.since.label("since"), Ticket.id)
                 .join(Ticket, Ticket.id == table.ticket_id))
            since = table.since
        # indexed conditions first (status; tickets.created_at, followups.since): a year of done and given-up
        # rows is never scanned
        q = q.where(table.status.in_(("pending", "failed", "dialing")), table.gave_up_at.is_(None), since >= horizon)
        if kind == "callback":
            q = q.where(Ticket.created_at >= horizon)
        q = q.order_by(since, table.id).limit(limit)
        async with read() as s:
            rows = (await s.execute(q)).all()
            out: list[Owed] = []
            for row, ticket_no, caller, at, ticket_id in rows:
                answered = await self._answered_since(s, ticket_id, caller, at) if kind == "callback" else None
                out.append(Owed(id=row.id, kind=kind, ticket_no=ticket_no, number=(caller or "").strip(),
                                since=at, attempts=row.attempts, status=row.status,
                                last_attempt_at=row.at if row.attempts else None,
                                lease_until=row.lease_until, answered_since=answered))
            return out

    @staticmethod
    async def _answered_since(s: AsyncSession, ticket_id: int, caller: str, at: dt.datetime) -> str | None:
        """A later call from the same number that an agent answered: its ticket number."""
        if not caller:
            return None
        q = (select(Ticket.ticket_no).where(Ticket.caller == caller, Ticket.id != ticket_id,
                                            Ticket.outcome == "answered",
                                            func.coalesce(Ticket.started_at, Ticket.created_at) > at)
             .order_by(Ticket.id).limit(1))
        return (await s.execute(q)).scalar_one_or_none()

    # -------------------------------------------------------------- claims
    async def claim_owed(self, kind: str, owed_id: int, owner: str, *, lease_s: float,
                         expect_attempts: int | None = None, actor: str | None = None) -> ClaimedCall | None:
        """Take the call for `owner` (one more attempt, `dialing`, a lease of `lease_s`); None when another
        controller holds it, it is done, or (with `expect_attempts`) someone tried it since it was seen."""
        table = _table(kind)
        _, write = self._sessions()
        for attempt in range(_RETRIES):
            try:
                async with write() as s, s.begin():
                    now = self._now()
                    lease_until = now + dt.timedelta(seconds=lease_s)
                    free = or_(table.status.in_(("pending", "failed")),
                               and_(table.status == "dialing",
                                    or_(table.lease_until < now,
                                        and_(table.lease_until.is_(None),
                                             table.at < now - dt.timedelta(seconds=_LEGACY_STALE_S)))))
                    cond = [table.id == owed_id, free]
                    if expect_attempts is not None:
                        cond.append(table.attempts == expect_attempts)
                    if s.get_bind().dialect.name == "postgresql":
                        row = (await s.execute(select(table).where(*cond).with_for_update(skip_locked=True))
                               ).scalar_one_or_none()
                        if row is None:
                            return None
                        before = row.status
                        row.status, row.attempts, row.owner = "dialing", row.attempts + 1, owner[:64]
                        row.lease_until, row.at = lease_until, now
                    else:
                        # BEGIN IMMEDIATE holds SQLite's write lock: the row cannot change between these two
                        before = (await s.execute(select(table.status).where(table.id == owed_id))).scalar_one_or_none()
                        done = await s.execute(update(table).where(*cond).values(
                            status="dialing", attempts=table.attempts + 1, owner=owner[:64],
                            lease_until=lease_until, at=now).execution_options(synchronize_session=False))
                        if done.rowcount != 1:
                            return None
                        row = (await s.execute(select(table).where(table.id == owed_id)
                                               .execution_options(populate_existing=True))).scalar_one()
                    t = await s.get(Ticket, row.ticket_id)
                    assert t is not None
                    s.add(TicketHistory(ticket_id=t.id, at=now, actor=(actor or owner)[:64], field=kind,
                                        from_value=before, to_value="dialing", note=f"attempt {row.attempts}"))
                    return ClaimedCall(kind, row.id, t.ticket_no, (t.caller or "").strip(), row.attempts,
                                       owner[:64], lease_until)
            except OperationalError:
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise RuntimeError("unreachable")

    async def finish_owed(self, kind: str, owed_id: int, owner: str, status: str, result: str,
                          *, actor: str | None = None) -> bool:
        """The attempt's result (`done` or `failed`), written only while `owner` still holds the claim (False:
        it lost the claim, or the 回访 answer already closed it). `done` on a callback clears callback_needed."""
        if status not in ("done", "failed"):
            raise ValueError(f"an attempt ends done or failed, not {status!r}")
        table = _table(kind)
        _, write = self._sessions()
        async with write() as s, s.begin():
            row = (await s.execute(select(table).where(table.id == owed_id).with_for_update())).scalar_one_or_none()
            if row is None or row.status != "dialing" or row.owner != owner[:64]:
                return False
            now = self._now()
            s.add(TicketHistory(ticket_id=row.ticket_id, at=now, actor=(actor or owner)[:64], field=kind,
                                from_value="dialing", to_value=status, note=f"attempt {row.attempts}: {result}"))
            row.status, row.at, row.last_result = status, now, result[:200]
            row.owner, row.lease_until = None, None
            if kind == "callback" and status == "done":
                await self._callback_settled(s, row.ticket_id, now)
            return True

    async def settle_owed(self, kind: str, owed_id: int, verdict: str, reason: str, *, actor: str = "scheduler") -> bool:
        """Close an owed call without dialing: `not_needed` (done) or `give_up` (stays failed, gave_up_at set).
        Only a row nobody is dialing; False when it changed meanwhile."""
        table = _table(kind)
        _, write = self._sessions()
        async with write() as s, s.begin():
            row = (await s.execute(select(table).where(table.id == owed_id).with_for_update())).scalar_one_or_none()
            now = self._now()
            if row is None or row.status == "done" or row.gave_up_at is not None:
                return False
            if row.status == "dialing" and (row.lease_until is None or row.lease_until >= now):
                return False
            status = "done" if verdict == "not_needed" else "failed"
            s.add(TicketHistory(ticket_id=row.ticket_id, at=now, actor=actor[:64], field=kind, from_value=row.status,
                                to_value=status if verdict == "not_needed" else "given_up", note=reason[:500]))
            row.status, row.last_result, row.at = status, reason[:200], now
            row.owner, row.lease_until = None, None
            if verdict == "not_needed":
                if kind == "callback":
                    await self._callback_settled(s, row.ticket_id, now)
            else:
                row.gave_up_at = now
            return True

    async def _callback_settled(self, s: AsyncSession, ticket_id: int, now: dt.datetime) -> None:
        t = (await s.execute(select(Ticket).where(Ticket.id == ticket_id).with_for_update())).scalar_one_or_none()
        if t is not None and t.callback_needed:
            t.callback_needed = False
            t.version += 1
            t.updated_at = now
            self._outbox(s, t, "callback_done", now)

    # -------------------------------------------------------------- 回访
    async def _owe_followup(self, s: AsyncSession, t: Ticket, now: dt.datetime) -> None:
        """In change_state's transaction: the ticket reached 办结, so a 回访 is owed (again, after a reopening).

        Owed whoever closes the ticket (a supervisor's CLI reads its own config file), whether or not the
        controller's scheduler places 回访 calls (`followups.auto.enabled`): the list then shows what staff
        still owe by hand."""
        if not (t.caller or "").strip():
            return
        row = (await s.execute(select(Followup).where(Followup.ticket_id == t.id))).scalar_one_or_none()
        if row is None:
            s.add(Followup(ticket_id=t.id, status="pending", attempts=0, since=now, at=now))
        else:
            row.status, row.attempts, row.since, row.at = "pending", 0, now, now
            row.owner = row.lease_until = row.gave_up_at = None
            row.resolved = row.rating = row.scale = row.answered_at = None
            row.last_result = None
        s.add(TicketHistory(ticket_id=t.id, at=now, actor="system", field="followup", from_value=None,
                            to_value="pending", note="回访 owed: the ticket reached 办结"))

    async def followup_about(self, ticket_no: str) -> tuple[str, str | None] | None:
        """(ticket number, category) of a 回访 being dialed, for the IVR to say; None when none is owed."""
        read, _ = self._sessions()
        q = (select(Ticket.ticket_no, Ticket.category).join(Followup, Followup.ticket_id == Ticket.id)
             .where(Ticket.ticket_no == ticket_no))
        async with read() as s:
            row = (await s.execute(q)).first()
        return None if row is None else (row[0], row[1])

    async def record_followup(self, ticket_no: str, resolved: bool | None, rating: int | None, scale: int,
                              *, actor: str = "followup") -> FollowupOutcome:
        """The citizen's 回访 answer onto the ticket: the follow-up is done, the ticket moves closed → 回访 →
        评价, or → 督办 when not resolved / the worst rating (ticketbridge.outreach_rules.followup_outcome)."""
        outcome = followup_outcome(resolved, rating, scale)
        _, write = self._sessions()
        async with write() as s, s.begin():
            t = (await s.execute(select(Ticket).where(Ticket.ticket_no == ticket_no).with_for_update())
                 ).scalar_one_or_none()
            if t is None:
                raise LookupError(f"ticket {ticket_no}")
            row = (await s.execute(select(Followup).where(Followup.ticket_id == t.id).with_for_update())
                   ).scalar_one_or_none()
            if row is None:
                raise LookupError(f"ticket {ticket_no} owes no 回访")
            now = self._now()
            s.add(TicketHistory(ticket_id=t.id, at=now, actor=actor[:64], field="followup", from_value=row.status,
                                to_value="done", note=f"attempt {row.attempts}: {outcome.note}"))
            row.status, row.at, row.last_result = "done", now, outcome.note[:200]
            row.owner, row.lease_until = None, None
            row.resolved, row.rating, row.scale, row.answered_at = resolved, rating, scale, now
            for target in outcome.states:
                if t.state == target.value:
                    continue
                if not allowed(t.state, target):
                    # moved meanwhile by someone else (reopened, 回访 entered by hand): the answer is kept,
                    # the ticket stays where that person put it
                    s.add(TicketHistory(ticket_id=t.id, at=now, actor=actor[:64], field="state", from_value=t.state,
                                        to_value=t.state, note=f"{outcome.note} (not moved: the ticket is {t.state})"))
                    break
                new = transition(t.state, target)
                s.add(TicketHistory(ticket_id=t.id, at=now, actor=actor[:64], field="state", from_value=t.state,
                                    to_value=new.value, note=outcome.note))
                t.state = new.value
            t.version += 1
            t.updated_at = now
            self._outbox(s, t, "followup", now)
        log.info("followup_recorded", ticket=ticket_no, resolved=resolved, rating=rating, scale=scale,
                 state=outcome.states[-1].value, reopened=outcome.reopened)
        return outcome

    async def followups(self, *, status: str | None = None, ticket_no: str | None = None,
                        limit: int = 100) -> list[FollowupRow]:
        """The 回访 list, oldest closure first."""
        read, _ = self._sessions()
        q = select(Followup, Ticket).join(Ticket, Ticket.id == Followup.ticket_id)
        if status is not None:
            q = q.where(Followup.status == status)
        if ticket_no is not None:
            q = q.where(Ticket.ticket_no == ticket_no)
        q = q.order_by(Followup.since, Followup.id).limit(limit)
        async with read() as s:
            return [FollowupRow(f.id, t.ticket_no, t.caller, t.category, f.status, f.attempts, f.last_result,
                                f.since, f.resolved, f.rating, f.scale, f.gave_up_at)
                    for f, t in (await s.execute(q)).all()]
