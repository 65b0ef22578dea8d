"""The live model's adapter: AMI events in, snapshots and change streams out (thin; decisions in live/reducer.py).

- Every AMI event the controller receives is fed to the `LiveModel` synchronously, in arrival order
  (callbacks we place are left out, as the tickets leave them out).
- Agents' states are asked of routing.agent_service's `AgentService` (never tracked twice): the
  publisher compares each agent's (state, reason, since, queues, call) when the agents' service says one
  was fed (`AgentService.watch`), and every `poll_s` as a safety net, and sends what moved, together with
  what the events changed, at most `flush_s` after the event or the agent's move. While nothing is
  subscribed (no SSE stream, and no page follower: the live API is off) it builds no view, compares no
  agent and turns only every `unread_tick_s` (UNREAD_TICK_S).
- Start and every AMI login (FullyBooted): today's tickets (`today_rows`) then Asterisk's
  CoreShowChannels and QueueStatus rebuild the model (live/rebuild.py).
- Subscribers (the API's SSE streams) get `Delta`s on bounded queues; one that falls `MAX_BEHIND`
  behind is closed (its client reconnects and starts again from a snapshot), so a slow screen never
  holds up the controller.

The shapes (`snapshot`, `Delta.render`) are the API's: documented in live/openapi.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from live.rebuild import rebuild
from live.reducer import LiveModel
from live.state import FINISHED_KEEP_S, Changes, number
from live.tokens import Principal
from model.config import Config
from model.privacy import mask_number
from routing.agent import STATE_LABELS
from routing.agent_service import AgentService
from ticketbridge.callbacks import is_callback_call

log = structlog.get_logger("hotline.live")

#: a subscriber this many deltas behind is dropped (it reconnects from a snapshot)
MAX_BEHIND = 256
#: with no stream subscribed, the publisher turns only this often (a new day's reset; what changed is forgotten),
#: not at every event nor every `poll_s` (issue 15: 4-5 wake-ups a second of an idle controller)
UNREAD_TICK_S = 30.0
#: at stop, how long the live model's own tasks get to end once cancelled
STOP_WAIT_S = 5.0
TodayRows = Callable[[dt.datetime], Awaitable[list[dict[str, Any]]]]


@dataclass
class Delta:
    """One published change: the parts that moved, rendered with full numbers (masked per viewer)."""

    seq: int
    at: float
    parts: dict[str, Any]


@dataclass
class Viewer:
    """Who reads: what they may see, and whether full caller numbers are shown (audited by the API)."""

    principal: Principal | None = None
    full_numbers: bool = False
    #: the calls sent to this viewer so far (an agent is told when its calls end)
    seen_calls: set[str] = field(default_factory=set)
    #: calls up now whose full number this viewer was already shown (and that read audited): not audited again
    audited: set[str] = field(default_factory=set)

    def call(self, view: dict[str, Any] | None, lid: str) -> tuple[bool, dict[str, Any] | None]:
        """(send it?, the call as this viewer sees it)."""
        if view is None:
            return (self.principal is None or self.principal.supervising or lid in self.seen_calls), None
        if self.principal is not None and not self.principal.may_see_call(view):
            return lid in self.seen_calls, None  # no longer its call: gone from its view
        if not self.full_numbers:
            view = {**view, "caller": mask_number(view.get("caller"))}
        return True, view

    def render(self, parts: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The parts this viewer may see; and the calls whose full number it shows for the first time (to be
        audited first, then marked `audited` by the caller)."""
        out: dict[str, Any] = {}
        shown: list[str] = []
        for key, value in parts.items():
            if key == "agents":
                out[key] = {a: v for a, v in value.items()
                            if self.principal is None or self.principal.may_see_agent(a)}
            elif key == "calls":
                calls: dict[str, Any] = {}
                for lid, view in value.items():
                    send, seen = self.call(view, lid)
                    if not send:
                        continue
                    calls[lid] = seen
                    if seen is None:  # the call ended (or left this viewer's view): nothing of it kept per viewer
                        self.seen_calls.discard(lid)
                        self.audited.discard(lid)
                    else:
                        self.seen_calls.add(lid)
                        if self.full_numbers and seen.get("caller") and lid not in self.audited:
                            shown.append(lid)
                out[key] = calls
            else:
                out[key] = value
        return out, shown


class LiveService:
    def __init__(self, ami: Any, config: Config, agents: AgentService, *, clock: Callable[[], float] = time.time,
                 today_rows: TodayRows | None = None, flush_s: float = 0.05, poll_s: float = 2.0) -> None:
        self.ami, self.config, self.agents, self.clock = ami, config, agents, clock
        self.today_rows = today_rows
        self.flush_s, self.poll_s = flush_s, poll_s
        self.unread_tick_s = UNREAD_TICK_S
        agents.watch(self._nudge)
        self.model = LiveModel(config.center.timezone, queues=config.queues, seats=agents.agents, now=clock())
        self._dirty = Changes()
        self._wake = asyncio.Event()
        self._seq = itertools.count(1)
        self.seq = 0
        self._agent_marks: dict[str, tuple[Any, ...]] = {}
        self._subscribers: set[asyncio.Queue[Delta | None]] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._rebuild_task: asyncio.Task[Any] | None = None
        #: how many events could not be fed (a model bug; the event is dropped, the controller goes on)
        self.failures = 0

    # ------------------------------------------------------------------ life
    def attach(self) -> None:
        self.ami.on_event("*", self._on_event)
        self.ami.on_event("FullyBooted", self._on_login)

    async def start(self) -> None:
        await self._seed_from_tickets()
        self._agent_marks = self._agent_fingerprints()
        self._tasks = [asyncio.create_task(self._publisher(), name="live-publisher")]

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._rebuild_task] if self._rebuild_task else [])]
        self._tasks, self._rebuild_task = [], None
        for q in list(self._subscribers):  # first: a stream waiting on its queue ends even if a task below hangs
            self._close(q)
        for t in tasks:
            t.cancel()
        if tasks:  # their failures were logged where they ran; a task that ignores its cancellation is left
            _, stuck = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
            if stuck:
                log.error("live_task_stuck", tasks=[t.get_name() for t in stuck], seconds=STOP_WAIT_S)

    # ------------------------------------------------------------------ inputs
    def _on_event(self, event: dict[str, str]) -> None:
        if is_callback_call(event):
            return
        try:
            self._mark(self.model.feed(event, self.clock()))
        except Exception:  # noqa: BLE001 - a model bug never takes the AMI dispatcher down
            self.failures += 1
            log.exception("live_event_failed", event=str(event.get("Event"))[:40])

    def _on_login(self, event: dict[str, str]) -> None:
        if self._rebuild_task is None or self._rebuild_task.done():
            self._rebuild_task = asyncio.create_task(self.rebuild(), name="live-rebuild")

    def note_saved(self, row: Mapping[str, Any]) -> None:
        """A ticket was saved (the controller's on_saved): a call never seen live still counts today. A record
        the live events made whole (source `ami`, no gap) saved later than the model remembers its end
        (FINISHED_KEEP_S; a store that was away: ticketbridge/pending.py) is not counted again: the model saw
        it from its first event to its last (the same events, the same process)."""
        ended = number(row.get("ended_at"))
        if (row.get("source") == "ami" and not row.get("gap") and ended is not None
                and self.clock() - ended > FINISHED_KEEP_S):
            return
        if is_callback_call({"Linkedid": str(row.get("linkedid") or "")}):
            return
        self._mark(self.model.note_ticket(row, self.clock()))

    def _nudge(self) -> None:
        """Something moved (an event, an agent): wake the publisher, unless nothing reads (its next slow turn
        forgets it)."""
        if self._subscribers:
            self._wake.set()

    def _mark(self, ch: Changes) -> None:
        if ch:
            self._dirty.update(ch)
            self._nudge()

    async def _seed_from_tickets(self) -> None:
        if self.today_rows is None:
            return
        now = self.clock()
        midnight = dt.datetime.fromtimestamp(now, self.model.zone).replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            rows = await self.today_rows(midnight)
        except Exception:  # noqa: BLE001 - the live figures start from zero rather than not at all
            log.warning("live_tickets_read_failed", exc_info=True)
            return
        for r in rows:
            self._mark(self.model.note_ticket(r, now))
        log.info("live_seeded_from_tickets", tickets=len(rows), calls_today=self.model.calls_today)

    async def rebuild(self) -> None:
        """What Asterisk has now (after a start, a reconnect, an Asterisk restart)."""
        try:
            channels = await self.ami.action_list("CoreShowChannels")
            status = await self.ami.action_list("QueueStatus")
        except Exception:  # noqa: BLE001 - the events still keep the model going
            log.warning("live_rebuild_failed", exc_info=True)
            return
        self._mark(rebuild(self.model, channels, status, self.clock()))
        log.info("live_rebuilt", calls=len(self.model.calls), waiting=len(self.model.waiting()))

    # ------------------------------------------------------------------ views
    def _agent_fingerprints(self) -> dict[str, tuple[Any, ...]]:
        return {a.id: (a.state, a.reason, a.since, a.queues, a.linkedid) for a in self.agents.agents.values()}

    def agent_view(self, agent_id: str, calls: Mapping[str, Any]) -> dict[str, Any]:
        a = self.agents.agents[agent_id]
        m = self.model.members.get(agent_id)
        call = calls.get(agent_id)
        seat = self.config.seats.get(agent_id)
        return {"agent": a.id, "name": seat.name if seat else a.id, "state": a.state.value,
                "label": STATE_LABELS[a.state], "reason": a.reason, "since": a.since, "queues": list(a.queues),
                "device": m.status if m else "unknown", "paused": dict(m.paused) if m else {},
                "call": call.linkedid if call is not None and call.agent == agent_id else (a.linkedid or None),
                "ringing": call.linkedid if call is not None and agent_id in call.ringing else None}

    def _parts(self, ch: Changes | None, now: float) -> dict[str, Any]:
        """The parts `ch` changed (None: everything), rendered with full numbers."""
        m = self.model
        calls = m.agent_calls()
        parts: dict[str, Any] = {}
        if ch is None or ch.center or ch.calls or ch.queues:
            parts["center"] = m.center_view(now)
        qs = m.queues() if ch is None or ch.day else sorted(q for q in ch.queues if q)
        if qs:
            parts["queues"] = {q: m.queue_view(q, now) for q in qs}
        ids = list(self.agents.agents) if ch is None else sorted(a for a in ch.agents if a in self.agents.agents)
        if ids:
            parts["agents"] = {a: self.agent_view(a, calls) for a in ids}
        lids = list(m.calls) if ch is None else sorted(ch.calls)
        if lids or ch is None:
            parts["calls"] = {lid: (m.calls[lid].view(now, full_numbers=True) if lid in m.calls else None)
                              for lid in lids}
        if ch is None or ch.lines or ch.day:
            lines = m.lines if ch is None or ch.day else {ln: m.lines.get(ln, 0) for ln in ch.lines}
            parts["lines"] = dict(sorted(lines.items()))
        if ch is None or ch.half_hours:
            parts["half_hours"] = list(m.half_hours)
        return parts

    def snapshot(self, viewer: Viewer) -> tuple[dict[str, Any], list[str]]:
        """Everything now, as `viewer` may see it; and the calls whose full number it shows."""
        now = self.clock()
        self._mark(self.model.tick(now))  # a new day with no event yet (nobody subscribed: no turn since)
        parts, shown = viewer.render(self._parts(None, now))
        return {"seq": self.seq, "at": now, "center_name": self.config.center.name, **parts}, shown

    def call(self, linkedid: str) -> dict[str, Any] | None:
        c = self.model.calls.get(linkedid)
        return c.view(self.clock(), full_numbers=True) if c is not None else None

    def agent_call(self, agent_id: str) -> dict[str, Any] | None:
        """The call `agent_id` talks on now (None: none)."""
        c = self.model.agent_calls().get(agent_id)
        return c.view(self.clock(), full_numbers=True) if c is not None and c.agent == agent_id else None

    # ------------------------------------------------------------------ publishing
    def subscribe(self) -> asyncio.Queue[Delta | None]:
        q: asyncio.Queue[Delta | None] = asyncio.Queue(MAX_BEHIND + 1)
        if not self._subscribers:  # the first stream starts from a snapshot: what changed before it is in there
            self._dirty, self._agent_marks = Changes(), self._agent_fingerprints()
            self._wake.set()  # the publisher goes back to comparing the agents
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Delta | None]) -> None:
        self._subscribers.discard(q)

    def _close(self, q: asyncio.Queue[Delta | None]) -> None:
        self._subscribers.discard(q)
        while True:  # make room for the end marker
            try:
                q.put_nowait(None)
                return
            except asyncio.QueueFull:
                q.get_nowait()

    async def _publisher(self) -> None:
        while True:
            reading = bool(self._subscribers)
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that meets its timeout
                async with asyncio.timeout(self.poll_s if reading else self.unread_tick_s):
                    await self._wake.wait()
                if reading:
                    await asyncio.sleep(self.flush_s)  # what else arrives meanwhile goes in the same delta
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if self._subscribers:
                    self.publish()
                else:
                    self._settle()
            except Exception:  # noqa: BLE001
                log.exception("live_publish_failed")

    def _settle(self) -> None:
        """A turn with nobody subscribed: what changed is forgotten (the first stream starts from a snapshot,
        `subscribe`), the agents are not compared, no view is rendered; the day still turns (any event turns it too)."""
        self._dirty = Changes()
        self.model.tick(self.clock())

    def publish(self) -> Delta | None:
        """Send what changed since the last call (events, agents' states, a new day); None: nothing did."""
        now = self.clock()
        ch, self._dirty = self._dirty, Changes()
        ch.update(self.model.tick(now))
        marks = self._agent_fingerprints()
        ch.agents |= {a for a, mark in marks.items() if self._agent_marks.get(a) != mark}
        self._agent_marks = marks
        if not ch:
            return None
        self.seq = next(self._seq)
        delta = Delta(self.seq, now, self._parts(ch, now))
        for q in list(self._subscribers):
            try:
                q.put_nowait(delta)
            except asyncio.QueueFull:
                log.warning("live_subscriber_dropped", behind=q.qsize())
                self._close(q)
        return delta
