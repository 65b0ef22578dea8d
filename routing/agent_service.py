"""The agents' AMI adapter: queue events and keys into `routing.agent`, its actions out as AMI queue-member actions.

Thin on purpose: every decision is in `routing.agent.Agent` (pure). This module
- maps AgentCalled/AgentConnect/AgentComplete/AgentRingNoAnswer (by the member's Interface, the
  Asterisk queue name without `ASTERISK_QUEUE_PREFIX`) into the machine, synchronously and in
  arrival order, and sends the resulting actions from one worker, in order, so a pause never
  overtakes the add it follows;
- sends QueueAdd with `StateInterface` (a phone busy on any call is skipped) and `MemberName`
  (the agent ID), QueueRemove, and QueuePause with a reason (no Queue: every queue of the member);
- ticks every second (after-call work ends on time);
- on `FullyBooted` (sent at every AMI login: a controller start, a reconnect, an Asterisk restart)
  puts every signed-in agent's membership back as the machine has it;
- persists every change through `save(snapshot)` and starts from `saved` snapshots; with nothing
  saved (a first start) every configured member starts signed in and ready, as the static
  `members:` of queues.conf did before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from model.config import Config
from model.contract import ASTERISK_QUEUE_PREFIX
from routing.agent import (
    Action,
    Agent,
    AgentState,
    Called,
    Completed,
    Connected,
    ExtendWrapUp,
    Input,
    QueueAdd,
    QueuePause,
    QueueRemove,
    Refused,
    RingNoAnswer,
    SetBusy,
    SetReady,
    SignIn,
    SignOut,
    StateChanged,
    Tick,
    agents_from_config,
)

log = structlog.get_logger("hotline.agents")

#: AMI queue events → the machine's input class
QUEUE_EVENTS: Mapping[str, type] = {
    "AgentCalled": Called, "AgentConnect": Connected, "AgentComplete": Completed,
    "AgentRingNoAnswer": RingNoAnswer,
}

Snapshot = dict[str, Any]
SaveFn = Callable[[Snapshot, list[Action]], Awaitable[None]]


def interface(agent_id: str) -> str:
    return f"PJSIP/{agent_id}"


def snapshot(a: Agent) -> Snapshot:
    return {"agent": a.id, "state": a.state.value, "reason": a.reason, "since": a.since,
            "queues": list(a.queues), "paused": a.paused}


def restore(a: Agent, snap: Mapping[str, Any], at: float) -> None:
    a.state, a.reason, a.since = AgentState(snap["state"]), snap.get("reason", ""), float(snap.get("since", at))
    a.queues = tuple(q for q in snap.get("queues", ()) if q in a.allowed)
    a.paused = bool(snap.get("paused", a.state in (AgentState.BUSY, AgentState.WRAP_UP)))
    if a.state is not AgentState.SIGNED_OUT and not a.queues:
        a.state, a.reason, a.paused = AgentState.SIGNED_OUT, "", False
    a.restored(at)


class AgentService:
    def __init__(self, ami: Any, config: Config, *, clock: Callable[[], float] = time.time,
                 save: SaveFn | None = None, tick_s: float = 1.0) -> None:
        self.ami, self.config, self.clock, self._save, self.tick_s = ami, config, clock, save, tick_s
        self.agents: dict[str, Agent] = agents_from_config(config)
        self._by_interface = {interface(a.id).lower(): a for a in self.agents.values()}
        self._work: asyncio.Queue[tuple[Agent, list[Action]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []

    # ---------------------------------------------------------------- life
    def attach(self) -> None:
        for name in QUEUE_EVENTS:
            self.ami.on_event(name, self._on_queue_event)
        self.ami.on_event("FullyBooted", self._on_booted)

    def start_from(self, saved: Mapping[str, Snapshot] | None) -> None:
        """Restore the saved agents; nothing saved at all: every configured member signs in, ready."""
        now = self.clock()
        for a in self.agents.values():
            if saved:
                if a.id in saved:
                    restore(a, saved[a.id], now)
                    self._queue(a, [])  # persist the restart's clean-up (ringing/talking → ready)
            else:
                self._queue(a, a.feed(SignIn(now, why="first start: configured members")))

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name="agents-worker"),
                       asyncio.create_task(self._ticker(), name="agents-tick")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []

    async def drain(self) -> None:
        """Wait until every queued action was sent (tests, and before answering a key)."""
        await self._work.join()

    # ---------------------------------------------------------------- inputs
    def _on_queue_event(self, ev: Mapping[str, str]) -> None:
        a = self._by_interface.get((ev.get("Interface") or ev.get("StateInterface") or "").lower())
        queue = ev.get("Queue", "")
        if a is None or not queue.startswith(ASTERISK_QUEUE_PREFIX):
            return
        cls = QUEUE_EVENTS[ev.get("Event", "")]
        inp = cls(self.clock(), queue[len(ASTERISK_QUEUE_PREFIX):], ev.get("Linkedid", ""))
        self._queue(a, a.feed(inp))

    def _on_booted(self, ev: Mapping[str, str]) -> None:
        """A new AMI session (start, reconnect, Asterisk restart): put every membership back."""
        for a in self.agents.values():
            if a.queues:
                self._queue(a, [*a.member_actions(), QueuePause(a.paused, a.reason if a.paused else "")])

    async def command(self, agent_id: str, inp: Input) -> list[Action]:
        """A key or an API call (a supervisor's): feed it, send what it asks, return what happened."""
        a = self.agents.get(agent_id)
        if a is None:
            raise KeyError(agent_id)
        out = a.feed(inp)
        self._queue(a, out)
        await self.drain()
        return out

    async def feature(self, agent_id: str, code: str, digit: str = "") -> list[Action]:
        """A feature code dialed on the agent's phone (`agents.feature_codes`)."""
        fc, now = self.config.agents.feature_codes, self.clock()
        reasons = self.config.agents.busy_reasons
        if code == fc.sign_in:
            inp: Input = SignIn(now)
        elif code == fc.sign_out:
            inp = SignOut(now)
        elif code == fc.busy:
            inp = SetBusy(now, reasons.get(digit) or next(iter(reasons.values())))
        elif code == fc.ready:
            inp = SetReady(now)
        elif code == fc.extend_wrapup:
            inp = ExtendWrapUp(now)
        else:
            raise ValueError(f"not an agent feature code: {code!r}")
        return await self.command(agent_id, inp)

    # ---------------------------------------------------------------- outputs
    def _queue(self, a: Agent, actions: list[Action]) -> None:
        self._work.put_nowait((a, actions))

    async def _worker(self) -> None:
        while True:
            a, actions = await self._work.get()
            try:
                for act in actions:
                    await self._send(a, act)
                if self._save is not None:
                    await self._save(snapshot(a), actions)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("agent_action_failed", agent=a.id)
            finally:
                self._work.task_done()

    async def _send(self, a: Agent, act: Action) -> None:
        iface = interface(a.id)
        if isinstance(act, QueueAdd):
            resp = await self.ami.action("QueueAdd", raise_on_error=False, Queue=ASTERISK_QUEUE_PREFIX + act.queue,
                                         Interface=iface, MemberName=a.id, StateInterface=iface,
                                         Paused="true" if act.paused else "false", Reason=act.reason, Penalty=0)
            if resp.get("Response") == "Error" and "already" not in resp.get("Message", "").lower():
                log.warning("agent_queue_add_failed", agent=a.id, queue=act.queue, message=resp.get("Message"))
        elif isinstance(act, QueueRemove):
            await self.ami.action("QueueRemove", raise_on_error=False, Queue=ASTERISK_QUEUE_PREFIX + act.queue,
                                  Interface=iface)
        elif isinstance(act, QueuePause):
            await self.ami.action("QueuePause", raise_on_error=False, Interface=iface,
                                  Paused="true" if act.paused else "false", Reason=act.reason)
        elif isinstance(act, StateChanged):
            log.info("agent_state_changed", agent=a.id, old=act.old.value, new=act.new.value, reason=act.reason,
                     seconds=round(act.seconds, 1), by=act.by, why=act.why)
        elif isinstance(act, Refused):
            log.info("agent_key_refused", agent=a.id, input=act.kind.value, state=act.state.value)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            now = self.clock()
            for a in self.agents.values():
                if a.state is AgentState.WRAP_UP:
                    out = a.feed(Tick(now))
                    if out:
                        self._queue(a, out)
