"""The ticket store's tables (SQLAlchemy 2 ORM), owned by the Alembic migrations in ticketbridge/migrations.

Times are stored in UTC (SQLite keeps no zone) and come back aware. Changing a table here
means a new migration under ticketbridge/migrations/versions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from model.config import DEFAULT_TZ
from model.ticket_state import TicketState

UTC = dt.timezone.utc
#: the zone aware values come back in (display only: comparisons and arithmetic do not depend on it)
DISPLAY_ZONE = ZoneInfo(DEFAULT_TZ)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware (DISPLAY_ZONE) out, UTC in the database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(DISPLAY_ZONE)


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_no: Mapped[str] = mapped_column(String(20), unique=True)
    query_password_hash: Mapped[str] = mapped_column(String(200))
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    caller: Mapped[str] = mapped_column(String(64), default="", index=True)
    dialed: Mapped[str] = mapped_column(String(32), default="", index=True)
    legacy_line: Mapped[str | None] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(32), default="unknown")
    requested_dest: Mapped[str | None] = mapped_column(String(200))
    actual_dest: Mapped[str | None] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(32))
    ivr_path: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: 老年人优先: `listed` (the center's list) or `key` (pressed in the greeting); None: no priority
    priority: Mapped[str | None] = mapped_column(String(16))
    #: the language path (access.languages key: en, nan, …); None: the center's own
    language: Mapped[str | None] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(64))
    queue_wait_s: Mapped[float | None] = mapped_column(Float)
    agent: Mapped[str | None] = mapped_column(String(128))
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    talk_s: Mapped[float | None] = mapped_column(Float)
    transfers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    participants: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    survey_rating: Mapped[int | None] = mapped_column(Integer)
    survey_scale: Mapped[int | None] = mapped_column(Integer)
    self_query: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    recording: Mapped[str | None] = mapped_column(String(500))
    #: when the retention rule deleted the recording file (`recording` keeps its name: it existed)
    recording_purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    transcript: Mapped[str | None] = mapped_column(Text)
    handled_by: Mapped[str] = mapped_column(String(16), default="controller")
    outcome: Mapped[str] = mapped_column(String(32), default="in_progress", index=True)
    source: Mapped[str] = mapped_column(String(8), default="ami")
    #: the live events missed part of the call (controller joined mid-way, AMI down): None, or `due`
    #: (the CDR replay corrects caller, dialed, queue, agent and outcome from Asterisk's CDR), `corrected`
    cdr_check: Mapped[str | None] = mapped_column(String(10))
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=TicketState.accepted.value, index=True)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: the deadline a `deadline_reminder` was written for (migration 0005): one reminder per deadline
    reminded_for: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    callback_needed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    #: the agent's intake during the call (ticketbridge/intake.py, migration 0005): 诉求内容, 承办单位,
    #: on_spot (当场解答) or dispatch (派单), who saved it and when; `category` then is the agent's pick
    request_text: Mapped[str | None] = mapped_column(Text)
    department: Mapped[str | None] = mapped_column(String(64))
    disposition: Mapped[str | None] = mapped_column(String(16))
    intake_agent: Mapped[str | None] = mapped_column(String(32))
    intake_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Ticket {self.ticket_no} {self.state} {self.outcome} linkedid={self.linkedid}>"


class TicketHistory(Base):
    __tablename__ = "ticket_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(32))
    from_value: Mapped[str | None] = mapped_column(String(200))
    to_value: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)


class Callback(Base):
    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_result: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: the controller dialing it, and until when that claim holds (migration 0005)
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: the automatic scheduler's rules ended it (window over, attempts used up, number refused)
    gave_up_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Followup(Base):
    """回访: the follow-up call owed to a ticket that reached 办结, and the citizen's answer (migration 0005)."""

    __tablename__ = "followups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_result: Mapped[str | None] = mapped_column(String(200))
    #: when the ticket reached 办结 (the rules' window counts from here)
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    gave_up_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: the citizen's answer: resolved or not, satisfaction on `scale` (1 best)
    resolved: Mapped[bool | None] = mapped_column(Boolean)
    rating: Mapped[int | None] = mapped_column(Integer)
    scale: Mapped[int | None] = mapped_column(Integer)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SelfQueryFailure(Base):
    """One wrong ticket number + password in the self-query, kept for the guess limits across calls
    (model.config.SelfQuery). The caller is kept only as a keyed hash, never the number."""

    __tablename__ = "self_query_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    caller_key: Mapped[str] = mapped_column(String(64), default="", index=True)
    ticket_no: Mapped[str] = mapped_column(String(20), default="", index=True)


class Outbox(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_no: Mapped[str] = mapped_column(String(20), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: who receives the row (migration 0005): `platform` (ticket changes) or `sms` (the ticket notice)
    endpoint: Mapped[str] = mapped_column(String(16), default="platform", server_default="platform", index=True)
    #: an SMS row's query password sealed with the SMS key (ticketbridge/sms.py); erased once delivered
    secret: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    dead_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class TicketSeq(Base):
    __tablename__ = "ticket_seq"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class AgentStateRow(Base):
    """A seat's agent machine's current state (routing/agent.py), one row per seat: restored at controller start.
    `agent` is the seat's key (historic name); `agent_id` the agent ID working it (migration 0005; NULL: the
    seat's own)."""

    __tablename__ = "agent_states"

    agent: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32), default="")
    since: Mapped[float] = mapped_column(Float)
    queues: Mapped[list[str]] = mapped_column(JSON)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    agent_id: Mapped[str | None] = mapped_column(String(32))


class AgentEvent(Base):
    """Every agent state change: who, when, why, and the seconds spent in the state left (per-agent KPIs).
    `agent` is the agent ID (工号); `seat` the seat it worked and `cause` what moved it (the machine's input
    kind: connected = a call answered, ring_no_answer = a miss; pin_wrong/pin_locked: a refused hot-desk PIN,
    old = new) — both from migration 0005, "" on older rows."""

    __tablename__ = "agent_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    old: Mapped[str] = mapped_column(String(16))
    new: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32), default="")
    old_reason: Mapped[str] = mapped_column(String(32), default="")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    actor: Mapped[str | None] = mapped_column(String(64))
    why: Mapped[str] = mapped_column(String(200), default="")
    queue: Mapped[str] = mapped_column(String(64), default="")
    linkedid: Mapped[str] = mapped_column(String(64), default="")
    seat: Mapped[str] = mapped_column(String(32), default="")
    cause: Mapped[str] = mapped_column(String(24), default="")


class AgentHelp(Base):
    """A 多援一 help period (routing/agent_help.py): agents added to another queue until `until` (migration 0005)."""

    __tablename__ = "agent_help"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    queue: Mapped[str] = mapped_column(String(64))
    agents: Mapped[list[str]] = mapped_column(JSON)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64), default="")
    why: Mapped[str] = mapped_column(String(200), default="")
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    ended_by: Mapped[str] = mapped_column(String(64), default="")
    end_why: Mapped[str] = mapped_column(String(200), default="")


class AuditEntry(Base):
    """Who was shown personal data (caller numbers): the real uid, what was asked, how many rows (migration 0004)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    uid: Mapped[int] = mapped_column(Integer)
    user: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64))
    asked: Mapped[dict[str, Any]] = mapped_column(JSON)
    rows: Mapped[int] = mapped_column(Integer, default=0)


class ApiToken(Base):
    """A bearer token of the live API (live/api.py): only its SHA-256 is kept; role agent|supervisor|admin,
    an agent's token bound to its seat (migration 0005)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    seat: Mapped[str | None] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Lease(Base):
    """A job only one controller runs at a time (ticketbridge/leases.py): held by `owner` until `until`, taken
    over by another controller once that has passed (migration 0013)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: when the current owner took it (not renewed by each renewal): how long it has held the job
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: the holder's place in asterisk.fastagi.controllers: a controller of lower rank takes the job over
    rank: Mapped[int] = mapped_column(Integer, default=0)
