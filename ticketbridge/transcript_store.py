"""The store's side of transcripts: writing one on its ticket, reading them for 质检 (`hotline qa`).

A mixin of ticketbridge.store.TicketStore (kept apart so store.py stays about tickets). The transcript is
the ticket's `transcript` column (JSON, ticketbridge/transcript.py); writing it adds a history row that
says a transcript arrived — never what it says. The retention rule (`hotline recordings purge`) clears
it with the recording (store.mark_recording_purged).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import func, select

from ticketbridge.schema import Ticket, TicketHistory

log = structlog.get_logger("ticketbridge.transcripts")


@dataclass(frozen=True)
class StoredTranscript:
    ticket_no: str
    agent: str | None
    started_at: dt.datetime | None
    transcript: str


class TranscriptMixin:
    # provided by TicketStore
    _sessions: Any
    _now: Any

    async def save_transcript(self, linkedid: str, transcript: str, *, note: str = "") -> str | None:
        """Put a call's transcript on its ticket; its ticket number, None when the call has no ticket or
        its recording was purged meanwhile (then the transcript is not kept either)."""
        _, write = self._sessions()
        async with write() as s, s.begin():
            q = select(Ticket).where(Ticket.linkedid == linkedid).with_for_update()
            t = (await s.execute(q)).scalars().first()
            if t is None or t.recording_purged_at is not None:
                return None
            now = self._now()
            t.transcript = transcript
            t.version += 1
            t.updated_at = now
            s.add(TicketHistory(ticket_id=t.id, at=now, actor="transcriber", field="transcript",
                                from_value=None, to_value="transcribed", note=note[:200] or None))
            return t.ticket_no

    async def transcripts(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                          agent: str | None = None, limit: int = 10000) -> list[StoredTranscript]:
        """Transcribed tickets whose call started in [since, until), oldest first."""
        read, _ = self._sessions()
        at = func.coalesce(Ticket.started_at, Ticket.created_at)
        q = select(Ticket.ticket_no, Ticket.agent, at, Ticket.transcript).where(
            Ticket.transcript.is_not(None), Ticket.transcript != "")
        if since is not None:
            q = q.where(at >= since)
        if until is not None:
            q = q.where(at < until)
        if agent is not None:
            q = q.where(Ticket.agent == agent)
        async with read() as s:
            rows = (await s.execute(q.order_by(at, Ticket.id).limit(limit))).all()
        return [StoredTranscript(no, ag, started, tr) for no, ag, started, tr in rows]
