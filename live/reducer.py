"""The live model (pure): AMI events in, what is happening now and today's running figures out.

One `LiveModel` per controller. `feed(event, now)` takes one AMI event (queue joins/leaves/abandons,
AgentCalled/Connect/Complete/RingNoAnswer, QueueMemberStatus/Pause, BridgeEnter/Leave, Newchannel,
Hangup, our UserEvents from model.contract) and returns the `Changes` it made, so the adapter
(live/service.py) sends only what changed. No clock of its own (every call passes `now`), no I/O.

What it holds:

* **calls now** — every hotline caller call still up, by linkedid: caller and dialed number, legacy
  line, category, IVR path, phase (`ivr` → `queued` → `talking` → `after_agent`; `connected` for a call
  put through without a queue), the queue it waits in and since when, the agent and its channel;
* **queues** — waiting now (and since when the longest waiter waits), and today: offered, answered,
  answered within 15 s (GB/T 33358), abandoned;
* **center, today** — calls, offered, answered, answered within 15 s, abandoned, and their rates, calls
  in the IVR now, waiting now, talking now; calls per half-hour (48 buckets, center.timezone);
* **lines, today** — calls per dialed line (legacy line, else the number dialed: ticketbridge.kpi.line_of);
* **members** — each queue member's device status and pause, as Asterisk reports them (agent states: agent_service).

Rates (live definitions, also in README "Live operations"): 接通率 answer_rate = answered / decided,
where decided = offered − still waiting (a caller who still waits is neither answered nor lost yet);
answered_within_rate = answered within 15 s / answered; abandon_rate = abandoned / decided.

Robust to a live wire like the assembler: a counted thing is counted once per call (a replayed event
changes nothing), a value that does not parse is missing, events without a Linkedid or of calls that
are not hotline calls change no figure, and a call whose every channel hung up leaves every "now".
Counting a call needs no event order beyond its own: a call first seen in a queue is a hotline call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from model.config import DEFAULT_TZ
from model.contract import Event as UserEventName
from model.contract import ivr_steps
from model.privacy import normalise_number
from live.state import (ANSWER_WITHIN_S, COUNTED_MEMORY, DEVICE_STATUS, HALF_HOURS, HOTLINE_CONTEXTS, PENDING_MEMORY, PHASES,
                        Call, Changes, Counted, FinishedCalls, Member, QueueFigures, number, rate, clean, agent_of,
                        queue_name)

Event = Mapping[str, str]


class LiveModel:
    def __init__(self, tz: str = DEFAULT_TZ, *, queues: Iterable[str] = (), seats: Iterable[str] = (),
                 answer_within_s: float = ANSWER_WITHIN_S, now: float | None = None) -> None:
        self.zone = ZoneInfo(tz)
        self.answer_within_s = answer_within_s
        self.calls: dict[str, Call] = {}
        #: linkedids seen whose hotline nature is not known yet (channels only), and their channels
        self._pending: dict[str, set[str]] = {}
        self.configured_queues = tuple(queues)
        #: the configured seats (agent IDs): a rebuild takes their bridged channels for agents
        self.seats = frozenset(seats)
        self.day: dt.date | None = None
        self.now: float | None = now  # the newest time the model was given (tick)
        self._reset_day(now)

    # ------------------------------------------------------------------ the day
    def _local(self, t: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, self.zone)

    def _reset_day(self, now: float | None) -> None:
        self.day = self._local(now).date() if now is not None else None
        self.queue_figures: dict[str, QueueFigures] = {q: QueueFigures() for q in self.configured_queues}
        self.lines: dict[str, int] = {}
        self.half_hours = [0] * HALF_HOURS
        self.calls_today = 0
        self.offered = self.answered = self.answered_within = self.abandoned = 0
        #: today's counted calls that are up now: what the figures hold of each (bounded by the calls up)
        self._counted: dict[str, Counted] = {}
        #: today's counted calls that ended or were counted from their ticket (bounded: live.state.FinishedCalls)
        self._finished = FinishedCalls(COUNTED_MEMORY)
        self.members: dict[str, Member] = getattr(self, "members", {})

    def counted_today(self, lid: str) -> bool:
        """Whether today's figures already count the call `lid` (up now, or finished)."""
        return lid in self._counted or lid in self._finished

    def _finish(self, lid: str) -> None:
        """The call `lid` ended (or was counted from its ticket): only its linkedid stays, never counted again."""
        if self._counted.pop(lid, None) is not None or lid not in self.calls:
            self._finished.add(lid, at=self.now)

    def end_call(self, lid: str) -> None:
        """Drop the call `lid` from the calls up now (live/rebuild.py: Asterisk no longer has it)."""
        self.calls.pop(lid, None)
        self._finished.add(lid, self._counted.pop(lid, None), at=self.now)  # figures parked: its events may go on

    def tick(self, now: float) -> Changes:
        """A new center-local day resets today's figures (calls up now stay)."""
        self.now = now if self.now is None else max(self.now, now)  # what finished calls are stamped with
        ch = Changes()
        if self.day is None or self._local(now).date() != self.day:
            had = self.day is not None
            self._reset_day(now)
            if had:
                ch.day = ch.center = ch.half_hours = True
                ch.queues |= set(self.queue_figures)
        return ch

    # ------------------------------------------------------------------ events
    def feed(self, event: Event, now: float) -> Changes:
        """Take one AMI event; never raises on what a live wire may send."""
        ch = self.tick(now)
        name = clean(event.get("Event"))
        if name in ("QueueMemberStatus", "QueueMemberPause", "QueueMember"):
            self._member(event, ch)
            return ch
        lid = clean(event.get("Linkedid"))
        if not lid:
            return ch
        ts = number(event.get("Timestamp"))
        ts = now if ts is None or ts <= 0 else ts
        uid = clean(event.get("Uniqueid"))
        call = self.calls.get(lid)
        if call is None and self._is_hotline(name, event):
            call = self._open(lid, ts, ch)
        if call is None:
            if name == "Hangup":
                chans = self._pending.get(lid)
                if chans is not None:
                    chans.discard(uid)
                    if not chans:
                        del self._pending[lid]
            elif uid:
                self._pending.setdefault(lid, set()).add(uid)
                while len(self._pending) > PENDING_MEMORY:  # stray late events of ended calls: oldest go
                    del self._pending[next(iter(self._pending))]
            return ch
        if uid and name != "Hangup" and uid not in call.hung:
            call.channels.add(uid)
        handler = self._handlers.get(name)
        if name == "UserEvent":
            handler = self._user_handlers.get(clean(event.get("UserEvent")))
        if handler is not None:
            handler(self, call, event, ts, ch)
        if name == "Hangup":
            call.channels.discard(uid)
            call.hung.add(uid)
            if not call.channels:
                self._close(call, ts, ch)
        return ch

    @staticmethod
    def _is_hotline(name: str, e: Event) -> bool:
        if name == "UserEvent":
            return clean(e.get("UserEvent")) in (UserEventName.CALL, UserEventName.ROUTE)
        if name in ("QueueCallerJoin", "AgentCalled", "AgentConnect"):
            return queue_name(clean(e.get("Queue"))) is not None
        return name == "Newchannel" and clean(e.get("Context")) in HOTLINE_CONTEXTS

    def _open(self, lid: str, ts: float, ch: Changes) -> Call:
        call = self.calls[lid] = Call(lid, ts, hotline=True)
        call.channels |= self._pending.pop(lid, set())
        ch.calls.add(lid)
        ch.center = True
        back = self._finished.reopen(lid)  # a call a rebuild dropped just before its first events
        if back is not None:
            self._counted[lid] = back
        elif not self.counted_today(lid):  # a late event of a finished call opens it again, counting nothing
            self._counted[lid] = Counted()
            self.calls_today += 1
            self.half_hours[self._half_hour(ts)] += 1
            ch.half_hours = True
        return call

    def _half_hour(self, ts: float) -> int:
        t = self._local(ts)
        if self.day is not None and t.date() != self.day:
            return 0 if t.date() < self.day else HALF_HOURS - 1
        return min(HALF_HOURS - 1, t.hour * 2 + (1 if t.minute >= 30 else 0))

    def _count_line(self, call: Call, ch: Changes) -> None:
        c = self._counted.get(call.linkedid)
        line = call.line
        if c is None or c.line == line or line == "?":
            return
        if c.line is not None:
            self.lines[c.line] -= 1
            if not self.lines[c.line]:
                del self.lines[c.line]
            ch.lines.add(c.line)
        c.line = line
        self.lines[line] = self.lines.get(line, 0) + 1
        ch.lines.add(line)

    def _figures(self, q: str) -> QueueFigures:
        f = self.queue_figures.get(q)
        if f is None:
            f = self.queue_figures[q] = QueueFigures()
        return f

    # ------------------------------------------------------------------ handlers
    def _on_newchannel(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        if clean(e.get("Context")) in HOTLINE_CONTEXTS and call.caller_uid is None:
            call.caller_uid = clean(e.get("Uniqueid")) or None
            call.caller = call.caller or normalise_number(clean(e.get("CallerIDNum")))
            call.dialed = call.dialed or normalise_number(clean(e.get("Exten")))
            self._count_line(call, ch)
            ch.calls.add(call.linkedid)

    def _on_user_call(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        """HotlineCall comes from the channel running the inbound dialplan: the caller's leg in Asterisk (a
        Local robot's ;2, a trunk's channel), which Newchannel's first guess may not be (a Local ;1)."""
        call.caller_uid = clean(e.get("Uniqueid")) or call.caller_uid
        call.caller = normalise_number(clean(e.get("Caller"))) or call.caller
        call.dialed = normalise_number(clean(e.get("Dialed"))) or call.dialed
        self._count_line(call, ch)
        ch.calls.add(call.linkedid)

    def _on_user_route(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        call.legacy_line = normalise_number(clean(e.get("Line"))) or call.legacy_line
        call.category = clean(e.get("Category"))[:32] or call.category
        call.mode = clean(e.get("Mode"))[:32] or call.mode
        self._count_line(call, ch)
        ch.calls.add(call.linkedid)

    def _on_user_ivr(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        for raw in ivr_steps(e):  # one event carries a batch of steps (Step, Step2, …)
            step = clean(raw)[:64]
            if step and len(call.ivr_path) < 64:
                call.ivr_path.append(step)
                ch.calls.add(call.linkedid)

    def _on_join(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        q = queue_name(clean(e.get("Queue")))
        if q is None or call.phase == "queued" and call.queue == q:
            return
        if call.phase == "queued" and call.queue:
            ch.queues.add(call.queue)  # left the other queue without our seeing it
        call.phase, call.queue, call.joined_at = "queued", q, ts
        call.first_joined_at = call.first_joined_at if call.first_joined_at is not None else ts
        c = self._counted.get(call.linkedid)
        if c is not None:
            self._offer(c, q)
        ch.queues.add(q)
        ch.calls.add(call.linkedid)
        ch.center = True

    def _offer(self, c: Counted, q: str) -> None:
        """Count the call offered (center-wide and to `q`) unless it already is: answered or abandoned
        implies offered, even when its QueueCallerJoin was missed."""
        if not c.offered:
            c.offered = True
            self.offered += 1
        if q not in c.queues_offered:
            c.queues_offered.add(q)
            self._figures(q).offered += 1

    def _leave_queue(self, call: Call, q: str | None, ch: Changes) -> None:
        if call.phase == "queued" and (q is None or call.queue == q):
            ch.queues.add(call.queue or "")
            call.phase, call.joined_at = ("talking" if call.agent else "ivr"), None
            call.ringing.clear()
            ch.calls.add(call.linkedid)
            ch.center = True

    def _on_leave(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        q = queue_name(clean(e.get("Queue")))
        if q is not None:
            self._leave_queue(call, q, ch)
            if call.phase == "ivr" and call.agent is None:
                call.queue = None

    def _on_abandon(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        q = queue_name(clean(e.get("Queue")))
        if q is None:
            return
        self._abandon(call, q, ch)
        self._leave_queue(call, q, ch)

    def _abandon(self, call: Call, q: str, ch: Changes) -> None:
        c = self._counted.get(call.linkedid)
        if c is None or c.answered:
            return
        self._offer(c, q)
        ch.center = True
        if q not in c.queues_abandoned:
            c.queues_abandoned.add(q)
            self._figures(q).abandoned += 1
            ch.queues.add(q)
        if not c.abandoned:
            c.abandoned = True
            self.abandoned += 1
            ch.center = True

    def _on_agent_called(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        agent = agent_of(clean(e.get("Interface")) or clean(e.get("MemberName")))
        if agent and call.phase == "queued":
            call.ringing.add(agent)
            ch.calls.add(call.linkedid)
            ch.agents.add(agent)

    def _on_ring_no_answer(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        agent = agent_of(clean(e.get("Interface")) or clean(e.get("MemberName")))
        if agent in call.ringing:
            call.ringing.discard(agent)
            ch.calls.add(call.linkedid)
            ch.agents.add(agent)

    def _on_connect(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        q = queue_name(clean(e.get("Queue")))
        agent = agent_of(clean(e.get("Interface")) or clean(e.get("MemberName")) or clean(e.get("DestChannel")))
        for a in call.ringing:
            ch.agents.add(a)
        call.ringing.clear()
        if call.phase == "queued":
            ch.queues.add(call.queue or "")
        call.phase, call.joined_at = "talking", None
        call.queue = q or call.queue
        call.agent, call.agent_channel = agent or call.agent, clean(e.get("DestChannel")) or call.agent_channel
        call.answered_at = ts
        ch.calls.add(call.linkedid)
        ch.agents.add(call.agent or "")
        ch.center = True
        c = self._counted.get(call.linkedid)
        if c is None or q is None:
            return
        self._offer(c, q)
        if c.abandoned:  # an answer after an abandon (events out of order): answered wins
            c.abandoned = False
            self.abandoned -= 1
        if q in c.queues_abandoned:
            c.queues_abandoned.discard(q)
            self._figures(q).abandoned -= 1
        hold = number(e.get("HoldTime"))
        within = hold is not None and 0 <= hold <= self.answer_within_s
        if q not in c.queues_answered:
            c.queues_answered.add(q)
            f = self._figures(q)
            f.answered += 1
            f.answered_within += within
            ch.queues.add(q)
        if not c.answered:
            c.answered = True
            self.answered += 1
            wait = ts - call.first_joined_at if call.first_joined_at is not None else hold
            self.answered_within += wait is not None and 0 <= wait <= self.answer_within_s

    def _on_complete(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        agent = agent_of(clean(e.get("Interface")) or clean(e.get("MemberName")))
        if call.agent is not None and (not agent or agent == call.agent):
            ch.agents.add(call.agent)
            call.agent, call.agent_channel = None, None
            call.phase = "after_agent"
            ch.calls.add(call.linkedid)
            ch.center = True

    def _on_bridge_enter(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        """The caller bridged with no queue agent: put through (forwarded, dialed on)."""
        if clean(e.get("Uniqueid")) == call.caller_uid and call.phase == "ivr" and call.agent is None:
            call.phase = "connected"
            ch.calls.add(call.linkedid)
            ch.center = True

    def _on_bridge_leave(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        if clean(e.get("Uniqueid")) == call.caller_uid and call.phase == "connected":
            call.phase = "ivr"
            ch.calls.add(call.linkedid)
            ch.center = True

    def _on_hangup(self, call: Call, e: Event, ts: float, ch: Changes) -> None:
        uid = clean(e.get("Uniqueid"))
        if call.agent_channel and clean(e.get("Channel")) == call.agent_channel:
            ch.agents.add(call.agent or "")
            call.agent, call.agent_channel = None, None
            if call.phase == "talking":
                call.phase = "after_agent"
            ch.calls.add(call.linkedid)
            ch.center = True
        if uid and uid == call.caller_uid and call.phase == "queued":
            self._abandon(call, call.queue or "", ch)  # an abandon we did not see (replayed, dropped)
            self._leave_queue(call, None, ch)

    def _close(self, call: Call, ts: float, ch: Changes) -> None:
        if call.phase == "queued":
            self._abandon(call, call.queue or "", ch)
            ch.queues.add(call.queue or "")
        for a in call.ringing | ({call.agent} if call.agent else set()):
            ch.agents.add(a)
        del self.calls[call.linkedid]
        self._finish(call.linkedid)
        ch.calls.add(call.linkedid)
        ch.center = True

    def _member(self, e: Event, ch: Changes) -> None:
        agent = agent_of(clean(e.get("Interface")) or clean(e.get("StateInterface")) or clean(e.get("Location")))
        q = queue_name(clean(e.get("Queue")))
        if not agent or q is None:
            return
        m = self.members.setdefault(agent, Member())
        status = DEVICE_STATUS.get(clean(e.get("Status")))
        if status:
            m.status = status
        paused = clean(e.get("Paused"))
        if paused in ("0", "1"):
            m.paused[q] = paused == "1"
            m.reason[q] = clean(e.get("PausedReason") or e.get("Reason"))[:32] if paused == "1" else ""
        if clean(e.get("InCall")) in ("0", "1"):
            m.in_call = clean(e.get("InCall")) == "1"
        ch.agents.add(agent)

    _handlers = {
        "Newchannel": _on_newchannel, "QueueCallerJoin": _on_join, "QueueCallerLeave": _on_leave,
        "QueueCallerAbandon": _on_abandon, "AgentCalled": _on_agent_called,
        "AgentRingNoAnswer": _on_ring_no_answer, "AgentConnect": _on_connect, "AgentComplete": _on_complete,
        "BridgeEnter": _on_bridge_enter, "BridgeLeave": _on_bridge_leave, "Hangup": _on_hangup,
    }
    _user_handlers = {UserEventName.CALL.value: _on_user_call, UserEventName.ROUTE.value: _on_user_route,
                      UserEventName.IVR.value: _on_user_ivr}

    # ------------------------------------------------------------------ tickets (rebuild, missed calls)
    def note_ticket(self, row: Mapping[str, Any], now: float) -> Changes:
        """A finished call's ticket (today's, at a rebuild; or one the CDR replay made for a call never seen
        live): counted into today's figures unless its linkedid already is. `row`: ticketbridge.kpi's columns
        plus `linkedid`; rows of another day or still in progress count nothing."""
        ch = self.tick(now)
        lid = clean(row.get("linkedid"))
        if not lid or self.counted_today(lid) or lid in self.calls or row.get("outcome") == "in_progress":
            return ch
        started = row.get("started_at") or row.get("created_at")
        ts = started.timestamp() if isinstance(started, dt.datetime) else number(started)
        if ts is None or self._local(ts).date() != self.day:
            return ch
        self._finish(lid)  # counted whole from its ticket: only its linkedid is kept
        self.calls_today += 1
        self.half_hours[self._half_hour(ts)] += 1
        line = clean(row.get("legacy_line")) or clean(row.get("dialed")) or "?"
        self.lines[line] = self.lines.get(line, 0) + 1
        ch.lines.add(line)
        ch.center = ch.half_hours = True
        q = clean(row.get("queue")) or None
        agent = clean(row.get("agent"))
        wait = number(row.get("queue_wait_s"))
        if q or agent:
            self.offered += 1
            f = self._figures(q) if q else None
            if f is not None:
                f.offered += 1
                ch.queues.add(q)
            if agent:
                self.answered += 1
                within = wait is not None and 0 <= wait <= self.answer_within_s
                self.answered_within += within
                if f is not None:
                    f.answered += 1
                    f.answered_within += within
            elif row.get("outcome") == "abandoned_in_queue":
                self.abandoned += 1
                if f is not None:
                    f.abandoned += 1
        return ch

    # ------------------------------------------------------------------ views
    def waiting(self, queue: str | None = None) -> list[Call]:
        return [c for c in self.calls.values() if c.phase == "queued" and (queue is None or c.queue == queue)]

    def queue_view(self, q: str, now: float) -> dict[str, Any]:
        f = self.queue_figures.get(q) or QueueFigures()
        waiting = self.waiting(q)
        oldest = min((c.joined_at for c in waiting if c.joined_at is not None), default=None)
        decided = f.offered - len(waiting)
        return {"queue": q, "waiting": len(waiting), "oldest_since": oldest,
                "longest_wait_s": round(max(0.0, now - oldest), 1) if oldest is not None else 0.0,
                "talking": sum(1 for c in self.calls.values() if c.phase == "talking" and c.queue == q),
                "offered": f.offered, "answered": f.answered, "answered_within_15s": f.answered_within,
                "abandoned": f.abandoned, "answer_rate": rate(f.answered, decided),
                "answered_within_rate": rate(f.answered_within, f.answered),
                "abandon_rate": rate(f.abandoned, decided)}

    def center_view(self, now: float) -> dict[str, Any]:
        phases = {p: 0 for p in PHASES}
        for c in self.calls.values():
            phases[c.phase] = phases.get(c.phase, 0) + 1
        decided = self.offered - phases["queued"]
        return {"day": self.day.isoformat() if self.day else None, "calls_today": self.calls_today,
                "offered": self.offered, "answered": self.answered, "answered_within_15s": self.answered_within,
                "abandoned": self.abandoned, "answer_rate": rate(self.answered, decided),
                "answered_within_rate": rate(self.answered_within, self.answered),
                "abandon_rate": rate(self.abandoned, decided),
                "calls_now": len(self.calls), "in_ivr": phases["ivr"], "waiting": phases["queued"],
                "talking": phases["talking"], "after_agent": phases["after_agent"], "connected": phases["connected"]}

    def queues(self) -> list[str]:
        return sorted(set(self.queue_figures) | {c.queue for c in self.calls.values() if c.queue})

    def agent_calls(self) -> dict[str, Call]:
        """Agent ID → the call it talks on now (or is rung for)."""
        out: dict[str, Call] = {}
        for c in self.calls.values():
            for a in c.ringing:
                out.setdefault(a, c)
            if c.agent:
                out[c.agent] = c
        return out
