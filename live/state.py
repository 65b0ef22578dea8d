"""The live model's values (pure): the calls up now, queue figures, members, and what one input changed.

Shared by live/reducer.py (which updates them from AMI events) and live/rebuild.py (which adopts what
Asterisk has after a restart); the API's shapes are each value's `view`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model.contract import ASTERISK_QUEUE_PREFIX, Context
from model.privacy import mask_number
from ticketbridge.recent_ids import RecentIds
from wire.channels import device, endpoint

#: GB/T 33358-2016: answer within 15 seconds
ANSWER_WITHIN_S = 15.0
HALF_HOURS = 48
#: the contexts a caller call starts in (a channel seen there makes its linkedid a hotline call)
HOTLINE_CONTEXTS = frozenset({Context.INBOUND.value, Context.ROUTE.value})
#: how long a finished call's linkedid is remembered (the model's clock: the service's wall time), so that a late event
#: or the call's ticket (`note_ticket`: saved within seconds, a CDR correction within a minute) never counts
#: it twice; a ticket saved later still is one the live events saw whole, which the live service does not
#: hand on (live/service.py `note_saved`). At a steady call rate the set is flat after this (issue 15's soak:
#: it grew with every call of the day). Their figures stay either way.
FINISHED_KEEP_S = 300.0
#: and never more than this many of them (~120 bytes each)
COUNTED_MEMORY = 500_000
#: linkedids of channels not (yet) known as hotline calls that are remembered (seat-to-seat calls, …)
PENDING_MEMORY = 20_000
PHASES = ("ivr", "queued", "talking", "after_agent", "connected")
#: Asterisk's device states (QueueMemberStatus `Status`) as words
DEVICE_STATUS = {"0": "unknown", "1": "not_in_use", "2": "in_use", "3": "busy", "4": "invalid",
                 "5": "unavailable", "6": "ringing", "7": "ring_in_use", "8": "on_hold"}


def clean(v: Any) -> str:
    v = "" if v is None else str(v).strip()
    return "" if v in ("<unknown>", "(null)") else v


def number(v: Any) -> float | None:
    try:
        f = float(clean(v))
    except ValueError:
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den > 0 else None


def queue_name(asterisk_name: str) -> str | None:
    """Our config name of an Asterisk queue (`hotline-general` → `general`); None: not one of ours."""
    q = clean(asterisk_name)
    return q[len(ASTERISK_QUEUE_PREFIX):] if q.startswith(ASTERISK_QUEUE_PREFIX) and len(q) > len(
        ASTERISK_QUEUE_PREFIX) else None


def agent_of(interface: str) -> str:
    """`PJSIP/1001` (or a channel `PJSIP/1001-0000002a`) → `1001`; a Local robot member keeps its name."""
    i = clean(interface)
    return endpoint(device(i)) if i.upper().startswith("PJSIP/") else i


@dataclass
class Call:
    """One hotline caller call that is up now."""

    linkedid: str
    started_at: float
    caller: str = ""
    dialed: str = ""
    legacy_line: str = ""
    category: str = ""
    mode: str = ""
    ivr_path: list[str] = field(default_factory=list)
    phase: str = "ivr"
    queue: str | None = None
    joined_at: float | None = None
    first_joined_at: float | None = None
    agent: str | None = None
    agent_channel: str | None = None
    answered_at: float | None = None
    ringing: set[str] = field(default_factory=set)
    caller_uid: str | None = None
    channels: set[str] = field(default_factory=set)
    #: channels that hung up: never counted alive again (Asterisk reports e.g. NewCallerid after a Hangup)
    hung: set[str] = field(default_factory=set)
    hotline: bool = False

    @property
    def line(self) -> str:
        return self.legacy_line or self.dialed or "?"

    def view(self, now: float, *, full_numbers: bool = False) -> dict[str, Any]:
        return {"linkedid": self.linkedid, "caller": self.caller if full_numbers else mask_number(self.caller),
                "dialed": self.dialed, "line": self.line, "legacy_line": self.legacy_line or None,
                "category": self.category or None, "mode": self.mode or None, "ivr_path": list(self.ivr_path),
                "phase": self.phase, "queue": self.queue, "waiting_since": self.joined_at,
                "first_queued_at": self.first_joined_at,
                "wait_s": round(max(0.0, now - self.joined_at), 1) if self.joined_at is not None and
                self.phase == "queued" else None,
                "agent": self.agent, "agent_channel": self.agent_channel, "answered_at": self.answered_at,
                "ringing": sorted(self.ringing), "started_at": self.started_at}


@dataclass
class QueueFigures:
    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0


@dataclass
class Member:
    """A queue member as Asterisk reports it (QueueMemberStatus/QueueMemberPause/QueueStatus)."""

    status: str = "unknown"
    paused: dict[str, bool] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    in_call: bool = False


@dataclass
class Changes:
    """What one input changed (ids per section); the adapter sends those parts only."""

    calls: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    lines: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    center: bool = False
    half_hours: bool = False
    day: bool = False

    def __bool__(self) -> bool:
        return bool(self.calls or self.queues or self.lines or self.agents or self.center or self.half_hours
                    or self.day)

    def update(self, other: "Changes") -> None:
        self.calls |= other.calls
        self.queues |= other.queues
        self.lines |= other.lines
        self.agents |= other.agents
        self.center |= other.center
        self.half_hours |= other.half_hours
        self.day |= other.day


@dataclass(slots=True)
class Counted:
    """Per call up now, what today's figures already hold of it (so a replay counts nothing twice); once the
    call ends it is let go and only its linkedid is remembered (`LiveModel._finished`)."""

    line: str | None = None
    offered: bool = False
    answered: bool = False
    abandoned: bool = False
    queues_offered: set[str] = field(default_factory=set)
    queues_answered: set[str] = field(default_factory=set)
    queues_abandoned: set[str] = field(default_factory=set)


#: calls a rebuild dropped whose figures are kept in case their events go on (FinishedCalls.add(…, counted))
PARKED_MEMORY = 1_000


class FinishedCalls:
    """Today's counted calls that ended: their linkedids only, each for FINISHED_KEEP_S of the model's clock and
    the oldest forgotten beyond `limit` (ticketbridge/recent_ids.py); and, for the newest PARKED_MEMORY calls a
    rebuild dropped (live/rebuild.py: not in Asterisk's channel list, which may have been taken just before
    their first events), their figures, should their events go on (`reopen`)."""

    def __init__(self, limit: int, keep_s: float = FINISHED_KEEP_S) -> None:
        self._ids = RecentIds(keep_s, limit)
        self._parked: dict[str, Counted] = {}

    def add(self, lid: str, counted: Counted | None = None, at: float | None = None) -> None:
        """`lid` ended at `at` (None: as the newest call added)."""
        self._parked.pop(lid, None)
        if counted is not None:
            self._parked[lid] = counted
            while len(self._parked) > PARKED_MEMORY:
                del self._parked[next(iter(self._parked))]
        if lid not in self._ids:
            self._ids.add(lid, at)

    def reopen(self, lid: str) -> Counted | None:
        """The figures of a call a rebuild dropped, now back (its linkedid no longer counts as ended)."""
        counted = self._parked.pop(lid, None)
        if counted is not None:
            self._ids.discard(lid)
        return counted

    def __contains__(self, lid: object) -> bool:
        return lid in self._ids

    def __len__(self) -> int:
        return len(self._ids)
