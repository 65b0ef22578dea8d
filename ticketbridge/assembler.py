"""AMI events → one call record per caller call (pure: no clock of its own, no I/O but log lines).

Asterisk tells a call's story across many channels and events; the ticket needs one
record per *caller call*, keyed by the caller's `Linkedid`. Our own UserEvents
(HotlineCall/Route/IVR/Survey/Transfer/SelfQuery) say what the controller decided;
the standard events (queue, agent, bridge, transfer, hangup, CDR) fill in what a call
routed by the dialplan alone (controller down, `Fallback: 1`) lacks.

Robustness rules, because the input is a live wire:
* replayed events change nothing: state events are idempotent by nature, and an
  exact duplicate of an event carrying `Timestamp`/`SequenceNumber` is dropped;
* a value that does not parse (HoldTime: "abc") is treated as missing, never raised;
* events without a Linkedid, or for calls that are not hotline calls (seat-to-seat,
  an agent's consultation leg that was never joined), produce no record;
* late events for a call already emitted (the Cdr after the Hangup) are ignored;
* events are dispatched by explicit tables (event name → handler): a UserEvent whose
  name is not in the table, or that has no name, is ignored with a log line.

Why one module: it is one state machine. The per-call state (`_Call`), the handlers that
update it and `_build`, which turns it into a record, share that private state; splitting
them would make it public for no reader's benefit. The CDR rebuild (`record_from_cdr`,
at the end) shares the CDR header normalisation with the live `Cdr` handler; it can move
next to ticketbridge.cdr once `CallRecord` has a module of its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from model.config import DEFAULT_TZ
from model.contract import CdrVar, Context
from model.contract import Event as UserEventName
from model.contract import ivr_steps
from model.privacy import normalise_number
from ticketbridge.recent_ids import RecentIds
from wire.channels import device, endpoint

log = structlog.get_logger("ticketbridge.assembler")

Event = Mapping[str, str]

OUTCOMES = ("ended_in_ivr", "abandoned_in_queue", "answered", "transferred", "forwarded", "retired", "in_progress")
#: transfer outcomes that mean the caller reached the target
TRANSFER_REACHED = {"answered", "completed", "threeway"}  # three-way: the caller talks to the target too
#: contexts our dialplan answers hotline calls in (a call seen there is a caller call)
HOTLINE_CONTEXTS = {Context.INBOUND.value}
#: finished linkedids are remembered this long (event time) to drop their late events, which come within
#: seconds; and never more than CLOSED_MEMORY of them (ticketbridge/recent_ids.py)
CLOSED_KEEP_S = 300.0
CLOSED_MEMORY = 50_000
#: AMI Cdr events carry local times without a zone: read in center.timezone (this is its default)
_CDR_ZONE = ZoneInfo(DEFAULT_TZ)
#: events that may legitimately repeat identically within a call when they carry no timestamp
_REPEATABLE = {UserEventName.IVR.value, UserEventName.SELF_QUERY.value, "DTMFBegin", "DTMFEnd", "VarSet", "Newexten"}
#: UserEvents our dialplan and IVR send that carry nothing for the ticket (known, deliberately ignored)
USER_EVENTS_WITHOUT_TICKET_DATA = (UserEventName.DIAL_FAILED, UserEventName.OVERFLOW, UserEventName.FEATURE, UserEventName.PROMPT, UserEventName.SPEECH,
                                   UserEventName.OUTBOUND_DENIED,  # the failed dial that follows is what the ticket keeps
                                   UserEventName.SUPERVISE,  # a supervisor's own channel: the audit log has it
                                   UserEventName.FOLLOWUP)  # a 回访 call: the store records its answer itself
#: how many distinct unknown UserEvent names are logged at info level (then at debug: no log flood)
_UNKNOWN_LOGGED_MAX = 256


@dataclass
class CallRecord:
    """Everything a ticket needs to know about one caller call."""

    linkedid: str
    caller: str = ""
    dialed: str = ""
    legacy_line: str | None = None
    mode: str = "unknown"
    requested_dest: str | None = None
    actual_dest: str | None = None
    category: str | None = None
    ivr_path: list[str] = field(default_factory=list)
    #: 老年人优先 (`listed` / `key`) and the language path, as the IVR's route said (issue 18)
    priority: str | None = None
    language: str | None = None
    queue: str | None = None
    queue_wait_s: float | None = None
    agent: str | None = None
    answered_at: float | None = None
    talk_s: float | None = None
    transfers: list[dict[str, Any]] = field(default_factory=list)
    participants: list[tuple[str, str]] = field(default_factory=list)
    survey_rating: int | None = None
    survey_scale: int | None = None
    handled_by: str = "controller"
    outcome: str = "in_progress"
    started_at: float | None = None
    ended_at: float | None = None
    recording: str | None = None
    transcript: str | None = None
    self_query: dict[str, Any] | None = None
    #: where the record came from: "ami" (live events) or "cdr" (rebuilt afterwards; knows less)
    source: str = "ami"
    #: live events of this call were missed (the controller joined it mid-way, or AMI was down while it
    #: went on): Asterisk's CDR knows its caller, dialed number, queue, agent and outcome better
    gap: bool = False
    #: who force-released the call (强拆: "api:张班长 (seat 9001, agent 1001)"), set by the controller; its
    #: ticket's `supervision` history row is written in the same transaction as the ticket
    released_by: str | None = None

    @property
    def complete(self) -> bool:
        return self.outcome != "in_progress"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (participants as lists): every field, its lists and dicts copied, as
        `dataclasses.asdict` gives it, without asdict's walk of every value (a dict per saved call)."""
        d = dict(self.__dict__)
        for name in _CONTAINER_FIELDS:
            d[name] = _copied(d[name])
        d["participants"] = [list(p) for p in self.participants]
        return d


#: CallRecord's fields that hold lists or dicts (to_dict copies them): read off their annotations, so that a
#: field added later is copied too instead of shared with the record; participants apart (to_dict makes
#: its pairs lists itself)
_CONTAINER_FIELDS = tuple(f.name for f in fields(CallRecord) if f.name != "participants"
                          and str(f.type).replace("typing.", "").startswith(("list[", "dict[", "tuple[")))


def _copied(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copied(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return type(v)(_copied(x) for x in v)
    return v


# --------------------------------------------------------------------------- parsing helpers


def _num(value: Any) -> float | None:
    """A number from a header, or None: Asterisk sends '', '<unknown>', garbage on odd paths."""
    if value is None:
        return None
    try:
        f = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    if f != f or f in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return f


def _int(value: Any) -> int | None:
    f = _num(value)
    return int(f) if f is not None else None


def _s(value: Any) -> str:
    v = "" if value is None else str(value).strip()
    return "" if v in ("<unknown>", "(null)") else v


def _epoch(value: Any, tz: ZoneInfo = _CDR_ZONE) -> float | None:
    """CDR times come as epoch floats (our JSON) or 'YYYY-MM-DD HH:MM:SS' local (AMI Cdr)."""
    f = _num(value)
    if f is not None:
        return f if f > 0 else None
    v = _s(value)
    if not v:
        return None
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.timestamp()


# --------------------------------------------------------------------------- per-call state


@dataclass
class _QueueVisit:
    queue: str
    joined_at: float | None
    left_at: float | None = None
    wait_s: float | None = None
    open: bool = True


@dataclass
class _Call:
    """What we know so far about one linkedid; turned into a CallRecord on demand."""

    linkedid: str
    hotline: bool = False
    #: the language code of a language queue the call entered (HotlineLanguage)
    language: str | None = None
    caller: str = ""
    dialed: str = ""
    caller_uid: str | None = None
    caller_channel: str | None = None
    first_channel_cid: str = ""
    first_channel_exten: str = ""
    known: set[str] = field(default_factory=set)
    hung: set[str] = field(default_factory=set)
    channel_of: dict[str, str] = field(default_factory=dict)
    fingerprints: set[int] = field(default_factory=set)
    routes: list[dict[str, str]] = field(default_factory=list)
    ivr_path: list[str] = field(default_factory=list)
    visits: list[_QueueVisit] = field(default_factory=list)
    agent: str | None = None
    agent_uid: str | None = None
    answered_at: float | None = None
    agent_hungup_at: float | None = None
    bridged_at: float | None = None
    talk_s: float | None = None
    transfers: list[dict[str, Any]] = field(default_factory=list)
    std_transfers: list[dict[str, Any]] = field(default_factory=list)
    participants: list[tuple[str, str]] = field(default_factory=list)
    survey_rating: int | None = None
    survey_scale: int | None = None
    self_query: dict[str, Any] | None = None
    cdr_fallback: bool = False
    recording: str | None = None
    #: the caller reached a queue's context (its HotlineRecording event, before the recording notice)
    queue_entered: bool = False
    started_at: float | None = None
    last_at: float | None = None
    ended_at: float | None = None
    gap: bool = False

    @property
    def alive(self) -> set[str]:
        return self.known - self.hung

    def add_participant(self, role: str, channel: str) -> None:
        channel = _s(channel)
        if channel and (role, channel) not in self.participants:
            self.participants.append((role, channel))

    def absorb(self, other: "_Call") -> None:
        """Join another linkedid's call into this one (attended transfer across calls)."""
        self.known |= other.known
        self.hung |= other.hung
        self.channel_of.update(other.channel_of)
        self.fingerprints |= other.fingerprints
        for p in other.participants:
            self.add_participant(*p)
        self.std_transfers.extend(other.std_transfers)
        self.transfers.extend(other.transfers)
        if other.started_at is not None and (self.started_at is None or other.started_at < self.started_at):
            self.started_at = other.started_at
        if other.last_at is not None and (self.last_at is None or other.last_at > self.last_at):
            self.last_at = other.last_at


# --------------------------------------------------------------------------- the assembler

#: an event handler: (the call, the event, its time) → None; it updates the call in place
_Handler = Callable[[_Call, Event, float | None], None]


class Assembler:
    """Feeds on AMI events; hands back each caller call's record once all its channels are gone."""

    def __init__(self, tz: str = DEFAULT_TZ, agent_id_of: Callable[[str], str | None] | None = None) -> None:
        """`agent_id_of(seat)`: the agent ID (工号) working a seat (PJSIP endpoint) at the moment it answers, None
        when it is no seat; the ticket names the agent by it (without: the queue member's name)."""
        #: the zone Asterisk writes local CDR times in (center.timezone); the JSON CDR file uses epochs
        self.zone = ZoneInfo(tz)
        self.agent_id_of = agent_id_of
        self._calls: dict[str, _Call] = {}
        self._alias: dict[str, str] = {}  # second linkedid of an attended transfer → the caller's
        self._closed = RecentIds(CLOSED_KEEP_S, CLOSED_MEMORY)
        self._unknown_logged: set[str] = set()
        #: standard AMI events that change a call's record (any other event only tracks channels)
        self.event_handlers: dict[str, _Handler] = {
            "Newchannel": self._on_newchannel,
            "Hangup": self._on_hangup,
            "QueueCallerJoin": self._on_queue_caller_join,
            "QueueCallerAbandon": self._on_queue_caller_abandon,
            "QueueCallerLeave": self._on_queue_caller_leave,
            "AgentConnect": self._on_agent_connect,
            "AgentComplete": self._on_agent_complete,
            "BridgeEnter": self._on_bridge_enter,
            "Cdr": self._on_cdr,
        }
        #: our UserEvents (header `UserEvent`) → handler; a name missing here is logged and ignored
        self.user_event_handlers: dict[str, _Handler] = {
            UserEventName.CALL: self._user_call,
            UserEventName.ROUTE: self._user_route,
            UserEventName.IVR: self._user_ivr,
            UserEventName.SURVEY: self._user_survey,
            UserEventName.TRANSFER: self._user_transfer,
            UserEventName.SELF_QUERY: self._user_self_query,
            UserEventName.RECORDING: self._user_recording,
            UserEventName.LANGUAGE: self._user_language,
            **{name: self._user_ignored for name in USER_EVENTS_WITHOUT_TICKET_DATA},
        }

    # -------------------------------------------------------------- public API
    def feed(self, event: Event, now: float | None = None) -> list[CallRecord]:
        """Take one event; return the records of calls that just ended (usually none)."""
        name = _s(event.get("Event"))
        if name in ("AttendedTransfer", "BlindTransfer"):
            return self._on_transfer_event(name, event, now)
        lid = _s(event.get("Linkedid")) or _s(event.get("linkedid"))
        if not lid:
            return []
        lid = self._alias.get(lid, lid)
        if lid in self._closed:
            return []
        ts = _num(event.get("Timestamp"))
        if ts is None:
            ts = now
        call = self._calls.get(lid)
        if call is None:
            # a call begins with its first channel (Uniqueid = Linkedid): anything else means its start
            # was missed (the controller started, or its AMI link came back, while the call was up)
            first = name == "Newchannel" and _s(event.get("Uniqueid")) == lid
            call = self._calls[lid] = _Call(lid, gap=not first)
        if self._is_replay(call, event):
            return []
        if ts is not None:
            if call.started_at is None or ts < call.started_at:
                call.started_at = ts
            call.last_at = ts if call.last_at is None else max(call.last_at, ts)
        self._track_channels(call, event, lid)
        if call.gap and not call.first_channel_cid and _s(event.get("Uniqueid")) == lid:
            # joined mid-way: the caller's number from any later event of the caller's own channel
            call.first_channel_cid = normalise_number(_s(event.get("CallerIDNum")))
        handler = self._user_handler(event) if name == "UserEvent" else self.event_handlers.get(name)
        if handler is not None:
            handler(call, event, ts)
        if name == "Hangup" and not call.alive:
            return self._close(call, ts)
        return []

    def expire(self, live: set[str], before: float) -> list[CallRecord]:
        """Close calls whose channels Asterisk no longer has (their Hangup was missed while AMI was down,
        or dropped on a saturated box).

        `live` holds the Uniqueids Asterisk reports now; only calls last heard of before
        `before` (when that list was asked for) are judged, so a call that began since is safe.
        A call some of whose channels are gone keeps going with those counted as hung up (else its
        own last Hangup would never close it); it missed events, so it is marked as gapped, and its
        ticket is checked against the CDR.
        """
        out: list[CallRecord] = []
        for call in list(self._calls.values()):
            if call.last_at is not None and call.last_at >= before:
                continue
            gone = call.alive - live
            if not gone:
                continue
            call.hung |= gone
            call.gap = True
            if not call.alive:
                out.extend(self._close(call, before))
        return out

    def mark_gap(self) -> int:
        """AMI (re)connected: every call still open may have missed events meanwhile; returns how many."""
        for call in self._calls.values():
            call.gap = True
        return len(self._calls)

    def open_count(self) -> int:
        """How many hotline calls are in progress (no record is built)."""
        return sum(1 for c in self._calls.values() if c.hotline)

    def open_linkedids(self) -> set[str]:
        """The linkedids of the hotline calls in progress (the CDR replay leaves them to the live path)."""
        return {c.linkedid for c in self._calls.values() if c.hotline}

    def open_records(self) -> list[CallRecord]:
        """Snapshot of hotline calls still in progress (outcome 'in_progress'), for a shutdown flush."""
        return [self._build(c, final=False) for c in self._calls.values() if c.hotline]

    def record_from_cdr(self, rows: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> CallRecord | None:
        """Rebuild a call the controller never saw from its CDR row(s) (one linkedid)."""
        return record_from_cdr(rows, self.zone)

    # -------------------------------------------------------------- bookkeeping
    def _user_handler(self, event: Event) -> _Handler | None:
        """The handler of a UserEvent by its name; None when the name is unknown or missing, which is
        logged (once per name at info, then at debug, so a chatty sender cannot flood the log)."""
        name = _s(event.get("UserEvent"))
        handler = self.user_event_handlers.get(name)
        if handler is not None:
            return handler
        name = name[:64]
        first = name not in self._unknown_logged and len(self._unknown_logged) < _UNKNOWN_LOGGED_MAX
        if first:
            self._unknown_logged.add(name)
        emit = log.info if first else log.debug
        if name:
            emit("assembler_user_event_unknown", user_event=name)
        else:
            emit("assembler_user_event_malformed", reason="no UserEvent name")
        return None

    @staticmethod
    def _is_replay(call: _Call, event: Event) -> bool:
        """An exact duplicate is a replay when the event is unique in time (Timestamp/SequenceNumber) or
        happens once per channel anyway; an untimed HotlineIVR step may legitimately repeat ("timeout")."""
        kind = _s(event.get("UserEvent")) if event.get("Event") == "UserEvent" else _s(event.get("Event"))
        if not (event.get("Timestamp") or event.get("SequenceNumber")) and kind in _REPEATABLE:
            return False
        # Python's own hash of the headers (64 bits, any order): duplicates are looked for within one
        # call only, where a chance collision among a few dozen events is out of reach; no digest per event
        try:
            fp = hash(frozenset(event.items()))
        except TypeError:  # a value that is no string (never from the wire): its text then
            fp = hash(repr(sorted(map(repr, event.items()))))
        if fp in call.fingerprints:
            return True
        call.fingerprints.add(fp)
        return False

    @staticmethod
    def _track_channels(call: _Call, event: Event, lid: str) -> None:
        uid = _s(event.get("Uniqueid"))
        if uid:
            call.known.add(uid)
            ch = _s(event.get("Channel"))
            if ch:
                call.channel_of.setdefault(uid, ch)
        duid = _s(event.get("DestUniqueid"))
        dlid = _s(event.get("DestLinkedid"))
        if duid and (not dlid or dlid == lid or dlid == call.linkedid):
            call.known.add(duid)
            dch = _s(event.get("DestChannel"))
            if dch:
                call.channel_of.setdefault(duid, dch)
        ctx = _s(event.get("Context"))
        if ctx in HOTLINE_CONTEXTS:
            call.hotline = True

    def _close(self, call: _Call, ts: float | None) -> list[CallRecord]:
        del self._calls[call.linkedid]
        call.ended_at = ts if ts is not None else call.last_at
        self._closed.add(call.linkedid, call.ended_at)
        for k in [k for k, v in self._alias.items() if v == call.linkedid]:
            self._closed.add(k, call.ended_at)
            del self._alias[k]
        if not call.hotline:
            return []
        return [self._build(call, final=True)]

    # -------------------------------------------------------------- standard events
    def _on_newchannel(self, call: _Call, e: Event, ts: float | None) -> None:
        # the caller's channel is the call's first (Uniqueid = Linkedid); a call joined mid-way first
        # shows the agent's, whose number and extension are not the caller's nor the dialed number
        if not call.first_channel_cid and (not call.gap or _s(e.get("Uniqueid")) == call.linkedid):
            call.first_channel_cid = normalise_number(_s(e.get("CallerIDNum")))
            call.first_channel_exten = normalise_number(_s(e.get("Exten")))
        if _s(e.get("Context")) == "caller-robot":
            call.add_participant("robot", _s(e.get("Channel")))

    def _on_hangup(self, call: _Call, e: Event, ts: float | None) -> None:
        uid = _s(e.get("Uniqueid"))
        if uid:
            call.hung.add(uid)
        if uid and uid == call.agent_uid and call.agent_hungup_at is None:
            call.agent_hungup_at = ts

    def _on_queue_caller_join(self, call: _Call, e: Event, ts: float | None) -> None:
        q = _s(e.get("Queue"))
        if not q:
            return
        if call.visits and call.visits[-1].open and call.visits[-1].queue == q:
            return  # the same visit, reported again
        call.visits.append(_QueueVisit(q, ts))

    def _visit(self, call: _Call, queue: str) -> _QueueVisit:
        for v in reversed(call.visits):
            if v.queue == queue or not queue:
                return v
        # joined before we were listening
        v = _QueueVisit(queue, None)
        call.visits.append(v)
        return v

    def _leave(self, call: _Call, e: Event, ts: float | None, hold: float | None) -> _QueueVisit:
        v = self._visit(call, _s(e.get("Queue")))
        if v.open:
            v.open = False
            v.left_at = ts
        if hold is not None and hold >= 0:
            v.wait_s = hold
        elif v.wait_s is None and v.joined_at is not None and v.left_at is not None:
            v.wait_s = max(0.0, v.left_at - v.joined_at)
        return v

    def _on_queue_caller_abandon(self, call: _Call, e: Event, ts: float | None) -> None:
        self._leave(call, e, ts, _num(e.get("HoldTime")))

    def _on_queue_caller_leave(self, call: _Call, e: Event, ts: float | None) -> None:
        self._leave(call, e, ts, None)

    def _agent(self, e: Event) -> str:
        """Who answered: the agent ID working the seat (`agent_id_of`), else the member's name or interface."""
        iface = _s(e.get("Interface")) or device(_s(e.get("DestChannel")))
        if self.agent_id_of is not None and iface.upper().startswith("PJSIP/"):
            aid = self.agent_id_of(endpoint(iface))
            if aid:
                return aid
        return _s(e.get("MemberName")) or iface

    def _on_agent_connect(self, call: _Call, e: Event, ts: float | None) -> None:
        self._leave(call, e, ts, _num(e.get("HoldTime")))
        agent = self._agent(e)
        if call.answered_at is None or call.agent is None:
            call.answered_at = ts
        call.agent = agent or call.agent
        call.agent_uid = _s(e.get("DestUniqueid")) or call.agent_uid
        call.add_participant("agent", _s(e.get("DestChannel")) or _s(e.get("Interface")))
        call.hotline = True

    def _on_agent_complete(self, call: _Call, e: Event, ts: float | None) -> None:
        talk = _num(e.get("TalkTime"))
        if talk is not None and talk >= 0:
            call.talk_s = talk
        if call.agent is None:
            call.agent = self._agent(e) or None
        v = self._visit(call, _s(e.get("Queue"))) if call.visits else None
        hold = _num(e.get("HoldTime"))
        if v is not None and v.wait_s is None and hold is not None and hold >= 0:
            v.wait_s = hold
        if call.agent_hungup_at is None:
            call.agent_hungup_at = ts

    def _on_bridge_enter(self, call: _Call, e: Event, ts: float | None) -> None:
        """A forwarded call (Dial) has no AgentConnect: the caller entering a bridge is its answer."""
        uid = _s(e.get("Uniqueid"))
        if uid and uid == call.caller_uid and call.bridged_at is None:
            call.bridged_at = ts

    def _on_cdr(self, call: _Call, e: Event, ts: float | None) -> None:
        row = _normalise_cdr(e)
        if not call.caller and not call.first_channel_cid and _s(row.get("linkedid")) in ("", call.linkedid):
            call.first_channel_cid = normalise_number(_s(row.get("src")))
        if _s(row.get(CdrVar.FALLBACK)) == "1" or "fallback" in _s(row.get("userfield")).lower():
            call.cdr_fallback = True
        if not call.dialed and normalise_number(_s(row.get(CdrVar.DIALED))):
            call.dialed = normalise_number(_s(row.get(CdrVar.DIALED)))
            call.hotline = True

    def _on_transfer_event(self, name: str, e: Event, now: float | None) -> list[CallRecord]:
        """Attended/blind transfers: join the legs' linkedids onto the caller's record and note it."""
        ts = _num(e.get("Timestamp"))
        ts = now if ts is None else ts
        if name == "BlindTransfer":
            lids = [_s(e.get("TransfereeLinkedid")), _s(e.get("TransfererLinkedid"))]
        else:
            lids = [_s(e.get(k)) for k in ("TransfereeLinkedid", "OrigTransfererLinkedid",
                                           "SecondTransfererLinkedid", "TransferTargetLinkedid")]
        ids = []
        for lid in lids:
            lid = self._alias.get(lid, lid)
            if lid and lid not in ids and lid not in self._closed:
                ids.append(lid)
        if not ids:
            return []
        calls = [self._calls.setdefault(lid, _Call(lid)) for lid in ids]
        primary = next((c for c in calls if c.hotline), calls[0])
        if not self._is_replay(primary, e):
            for other in calls:
                if other is primary or other.hotline:
                    continue
                primary.absorb(other)
                del self._calls[other.linkedid]
                self._alias[other.linkedid] = primary.linkedid
                for k, v in list(self._alias.items()):
                    if v == other.linkedid:
                        self._alias[k] = primary.linkedid
            ok = _s(e.get("Result")).lower() == "success"
            if name == "BlindTransfer":
                target = _s(e.get("Extension"))
                mode = "blind"
            else:
                target = (_s(e.get("TransferTargetCallerIDNum")) or _s(e.get("SecondTransfererConnectedLineNum"))
                          or _s(e.get("SecondTransfererExten")) or _s(e.get("DestApp")))
                mode = "threeway" if _s(e.get("DestType")).lower() == "threeway" else "attended"
                uid = _s(e.get("TransferTargetUniqueid"))
                if uid:
                    primary.known.add(uid)
                primary.add_participant("transfer_target", _s(e.get("TransferTargetChannel")))
            primary.std_transfers.append({"target": target, "kind": None, "mode": mode,
                                          "outcome": "completed" if ok else "failed", "agent": None, "at": ts})
            if ts is not None:
                primary.last_at = ts if primary.last_at is None else max(primary.last_at, ts)
        return []

    # -------------------------------------------------------------- our UserEvents
    def _user_call(self, call: _Call, e: Event, ts: float | None) -> None:
        call.hotline = True
        call.dialed = normalise_number(_s(e.get("Dialed"))) or call.dialed
        call.caller = normalise_number(_s(e.get("Caller"))) or call.caller
        uid, ch = _s(e.get("Uniqueid")), _s(e.get("Channel"))
        if uid and call.caller_uid is None:
            call.caller_uid = uid
            ch = ch or call.channel_of.get(uid, "")
        if ch and call.caller_channel is None:
            call.caller_channel = ch
            call.add_participant("caller", ch)
            if ch.startswith("Local/") and ch.endswith(";2"):
                # a call placed by the call robot: the other half of the Local channel is its "phone"
                call.add_participant("robot", ch[:-1] + "1")

    def _user_route(self, call: _Call, e: Event, ts: float | None) -> None:
        call.hotline = True
        route = {k: _s(e.get(k)) for k in ("Line", "Mode", "Dest", "Category", "Fallback", "AccessPriority",
                                                "AccessLanguage")}
        if route not in call.routes:
            call.routes.append(route)

    def _user_language(self, call: _Call, e: Event, ts: float | None) -> None:
        call.language = _s(e.get("Code")) or call.language

    def _user_ivr(self, call: _Call, e: Event, ts: float | None) -> None:
        for step in ivr_steps(e):  # one event carries a batch of steps (Step, Step2, …)
            step = _s(step)
            if step:
                call.ivr_path.append(step)

    def _user_survey(self, call: _Call, e: Event, ts: float | None) -> None:
        scale = _int(e.get("Scale"))
        rating = _int(e.get("Rating"))
        if scale is not None and scale > 0:
            call.survey_scale = scale
        if rating is not None and 1 <= rating <= (call.survey_scale or 5):
            call.survey_rating = rating

    def _user_transfer(self, call: _Call, e: Event, ts: float | None) -> None:
        t = {"target": _s(e.get("Target")), "kind": _s(e.get("Kind")) or None, "mode": _s(e.get("Mode")) or None,
             "outcome": _s(e.get("Outcome")) or None, "agent": _s(e.get("Agent")) or None, "at": ts}
        for old in reversed(call.transfers):
            if old["target"] == t["target"] and old["mode"] == t["mode"]:
                if old["outcome"] == t["outcome"]:
                    return  # the same report again
                if old["outcome"] in (None, "ringing", "answered") and t["outcome"] not in (None, "ringing"):
                    old.update({k: v for k, v in t.items() if v is not None and k != "at"})
                    return
                break
        call.transfers.append(t)

    def _user_self_query(self, call: _Call, e: Event, ts: float | None) -> None:
        sq = call.self_query or {"attempts": 0, "tickets": [], "result": None}
        result = _s(e.get("Result"))
        if result != "locked":  # "locked" closes the query; it is not another try
            sq["attempts"] += 1
        ticket = _s(e.get("Ticket"))
        if ticket and ticket not in sq["tickets"]:
            sq["tickets"].append(ticket)
        sq["result"] = result or sq["result"]
        call.self_query = sq

    def _user_recording(self, call: _Call, e: Event, ts: float | None) -> None:
        call.recording = _s(e.get("File")) or call.recording
        call.queue_entered = True

    def _user_ignored(self, call: _Call, e: Event, ts: float | None) -> None:
        """A UserEvent of ours that carries nothing for the ticket (its channel is still tracked)."""

    # -------------------------------------------------------------- building the record
    def _build(self, call: _Call, *, final: bool) -> CallRecord:
        r = CallRecord(linkedid=call.linkedid, gap=call.gap)
        r.caller = call.caller or call.first_channel_cid
        r.dialed = call.dialed or call.first_channel_exten
        controller_routes = [x for x in call.routes if x["Fallback"] != "1"]
        fallback = any(x["Fallback"] == "1" for x in call.routes) or call.cdr_fallback
        first = call.routes[0] if call.routes else None
        last = (controller_routes or call.routes or [None])[-1]
        # the dialplan routed alone when it said so (Fallback: 1) and the controller never did
        r.handled_by = "fallback" if fallback and not controller_routes else "controller"
        if first:
            r.requested_dest = first["Dest"] or None
        if last:
            r.legacy_line = last["Line"] or None
            r.mode = last["Mode"] or "unknown"
            r.category = last["Category"] or None
            r.priority = last.get("AccessPriority") or None
            r.language = last.get("AccessLanguage") or None
        if r.handled_by == "fallback" and r.mode == "unknown":
            r.mode = "fallback"
        r.ivr_path = list(call.ivr_path)
        # the language's queue was entered (a menu, an agent's transfer) even when the IVR named none
        r.language = r.language or call.language
        route_dest = (last["Dest"] if last else "") or ""
        if not call.visits and call.queue_entered and route_dest.startswith("queue:"):
            # routed to a queue and gone before Queue() ran (during the recording notice): a caller who
            # waited for an agent, as Asterisk's CDR counts it (its queue variable is set by then)
            r.queue = route_dest[len("queue:"):].split("/", 1)[0] or None
        if call.visits:
            r.queue = call.visits[-1].queue
            waits = [v.wait_s for v in call.visits if v.wait_s is not None]
            if waits:
                r.queue_wait_s = round(sum(waits), 3)
            elif final and call.visits[-1].joined_at is not None and call.ended_at is not None:
                r.queue_wait_s = round(max(0.0, call.ended_at - call.visits[-1].joined_at), 3)
        r.agent = call.agent
        r.answered_at = call.answered_at
        if r.answered_at is None and route_dest.startswith("dial:"):
            r.answered_at = call.bridged_at
        r.talk_s = call.talk_s
        if r.talk_s is None and call.answered_at is not None and final:
            end = call.agent_hungup_at or call.ended_at
            if end is not None:
                r.talk_s = round(max(0.0, end - call.answered_at), 3)
        r.transfers = [dict(t) for t in (call.transfers or call.std_transfers)]
        r.participants = list(call.participants)
        r.survey_rating = call.survey_rating
        r.survey_scale = call.survey_scale
        r.self_query = dict(call.self_query) if call.self_query else None
        r.recording = call.recording
        r.started_at = call.started_at
        r.ended_at = call.ended_at if final else None
        reached = next((t for t in reversed(r.transfers) if t.get("outcome") in TRANSFER_REACHED), None)
        if reached:
            r.actual_dest = f"transfer:{reached['target']}"
        elif r.agent:
            r.actual_dest = f"agent:{r.agent}"
        elif r.queue:
            r.actual_dest = f"queue:{r.queue}"
        elif route_dest.split(":", 1)[0] in ("dial", "transfer", "hangup"):
            r.actual_dest = route_dest
        else:
            r.actual_dest = "ivr"
        if not final:
            r.outcome = "in_progress"
        elif reached:
            r.outcome = "transferred"
        elif r.agent:
            r.outcome = "answered"
        elif r.queue:
            r.outcome = "abandoned_in_queue"
        elif route_dest == "hangup" or r.mode == "retired":
            r.outcome = "retired"
        elif route_dest.startswith("dial:"):
            r.outcome = "forwarded"
        elif route_dest.startswith("transfer:"):
            r.outcome = "transferred"
        else:
            r.outcome = "ended_in_ivr"
        return r


# --------------------------------------------------------------------------- CDR


#: AMI `Cdr` event header → the column name of our JSON CDR lines (cdr_custom.conf).
_CDR_AMI = {
    "UniqueID": "uniqueid", "Uniqueid": "uniqueid", "Linkedid": "linkedid", "LinkedID": "linkedid",
    "Source": "src", "Destination": "dst", "DestinationContext": "dcontext", "CallerID": "clid",
    "Channel": "channel", "DestinationChannel": "dstchannel", "LastApplication": "lastapp",
    "LastData": "lastdata", "StartTime": "start", "AnswerTime": "answer", "EndTime": "end",
    "Duration": "duration", "BillableSeconds": "billsec", "Disposition": "disposition",
    "UserField": "userfield", **{c.ami_header: c.value for c in CdrVar},
}


def _normalise_cdr(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        out[_CDR_AMI.get(k, k.lower())] = v
    return out


def record_from_cdr(rows: Mapping[str, Any] | Iterable[Mapping[str, Any]],
                    zone: ZoneInfo = _CDR_ZONE) -> CallRecord | None:
    """A record for a call seen only in CDR (controller was down); None when the rows say nothing usable.

    Accepts one row or all rows of one linkedid, as AMI `Cdr` events or our JSON lines.
    CDR knows no IVR path, survey or transfer outcome: those stay empty.
    """
    raw = [rows] if isinstance(rows, Mapping) else list(rows)
    norm = [_normalise_cdr(r) for r in raw if isinstance(r, Mapping)]
    norm = [r for r in norm if _s(r.get("linkedid")) or _s(r.get("uniqueid"))]
    if not norm:
        return None
    lid = next((_s(r.get("linkedid")) for r in norm if _s(r.get("linkedid"))), _s(norm[0].get("uniqueid")))
    norm.sort(key=lambda r: _epoch(r.get("start"), zone) or 0.0)
    entry = next((r for r in norm if _s(r.get(CdrVar.DIALED))), norm[0])
    rec = CallRecord(linkedid=lid, source="cdr")
    rec.caller = normalise_number(_s(entry.get("src")))
    rec.dialed = normalise_number(_s(entry.get(CdrVar.DIALED)) or _s(entry.get("dst")))
    fallback = any(_s(r.get(CdrVar.FALLBACK)) == "1" or "fallback" in _s(r.get("userfield")).lower()
                   for r in norm)
    rec.handled_by = "fallback" if fallback else "controller"
    rec.mode = "fallback" if fallback else "unknown"
    queue = next((_s(r.get(CdrVar.QUEUE)) for r in reversed(norm) if _s(r.get(CdrVar.QUEUE))), "")
    if not queue:
        q = next((r for r in norm if _s(r.get("lastapp")).lower() == "queue"), None)
        if q is not None:
            queue = _s(q.get("lastdata")).split(",")[0]
    rec.queue = queue or None
    if rec.queue:
        rec.requested_dest = f"queue:{rec.queue}"
    starts = [t for t in (_epoch(r.get("start"), zone) for r in norm) if t is not None]
    ends = [t for t in (_epoch(r.get("end"), zone) for r in norm) if t is not None]
    rec.started_at = min(starts) if starts else None
    rec.ended_at = max(ends) if ends else None
    answered = [r for r in norm if _s(r.get("disposition")).upper() == "ANSWERED" and _s(r.get("dstchannel"))]
    by_queue = [r for r in answered if _s(r.get("lastapp")).lower() == "queue"]
    by_dial = [r for r in answered if _s(r.get("lastapp")).lower() == "dial"]
    if by_queue:
        a = by_queue[0]
        rec.agent = device(_s(a.get("dstchannel")))
        rec.answered_at = _epoch(a.get("answer"), zone)
        rec.talk_s = _num(a.get("billsec"))
        rec.participants.append(("agent", _s(a.get("dstchannel"))))
        rec.outcome = "answered"
        rec.actual_dest = f"agent:{rec.agent}"
        if rec.answered_at is not None and rec.started_at is not None:
            rec.queue_wait_s = None  # CDR cannot split IVR time from queue time
    elif rec.queue:
        rec.outcome = "abandoned_in_queue"
        rec.actual_dest = f"queue:{rec.queue}"
    elif by_dial:
        rec.outcome = "forwarded"
        rec.actual_dest = f"dial:{_s(by_dial[0].get('dst')) or _s(by_dial[0].get('lastdata'))}"
    else:
        rec.outcome = "ended_in_ivr"
        rec.actual_dest = "ivr"
    caller_ch = _s(entry.get("channel"))
    if caller_ch:
        rec.participants.insert(0, ("caller", caller_ch))
    return rec
