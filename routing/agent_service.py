"""The agents' AMI adapter: queue events and keys into `routing.agent`, its actions out as AMI queue-member actions.

Thin on purpose: every decision is in `routing.agent.Agent` (pure). This module
- maps AgentCalled/AgentConnect/AgentComplete/AgentRingNoAnswer (by the member's Interface, the
  Asterisk queue name without `ASTERISK_QUEUE_PREFIX`) into the machine, synchronously and in
  arrival order, and sends the resulting actions from one worker, in order, so a pause never
  overtakes the add it follows;
- turns the machine's membership actions into pauses, because the members stay static in
  queues.conf (the dialplan never depends on the controller: with no controller every configured
  seat is a ready member, as before): QueueAdd → unpause in that queue (or pause with its reason),
  QueueRemove → pause with reason 签出, QueuePause → pause/unpause in each queue the agent is in
  (those at the time the machine decided, so a later move cannot widen it). A signed-out agent is
  therefore a paused member with reason 签出, never a removed one;
- ticks every second (after-call work ends on time);
- on `FullyBooted` (sent at every AMI login: a controller start, a reconnect, an Asterisk restart,
  which resets every pause) puts every agent's pauses back as the machine has them, then asks
  `DeviceStateList` for each seat phone's reachability; afterwards `DeviceStateChange` of `PJSIP/<seat>`
  keeps it (UNAVAILABLE — unregistered, or no answer to the seat AOR's qualify — is 离线: routing/agent.py
  sets a ready agent busy 离线 and back when the phone returns). A `Reload` of app_queue keeps Asterisk 22's
  pauses (tests/e2e/test_agent_restarts.py), so nothing is re-applied then;
- every `agents.call_check_s`, when an agent has been ringing or talking that long, asks CoreShowChannels
  whether the call still exists (routing.agent.call_gone): a lost AgentComplete never leaves an agent
  in 通话 — and in a wrap-up queue, paused — for good;
- `release()` (the controller stops, or fails to start): unpauses the members Asterisk has paused for
  after-call work (reason 话后整理) or 离线 — nobody would end those pauses while the controller is away
  (Asterisk itself skips an unreachable phone: ringinuse=no). Busy and signed-out agents stay paused:
  they asked for no calls, and a static member unpaused would ring someone at lunch or gone home;
- 多援一 (routing/agent_help.py): `help_start` adds a group to another queue as dynamic members (QueueAdd
  with StateInterface and MemberName), whose pause then follows each agent's state; the ticker (or
  `help_end`) removes them (QueueRemove); periods are persisted (`save_help`) and, at each login, Asterisk's
  dynamic seat members are reconciled with the active periods (an Asterisk restart loses them; a period
  that ended while the controller was away is removed);
- persists every change through `save(snapshot)` and starts from `saved` snapshots; with nothing
  saved (a first start) every configured member starts signed in and ready (unpaused), as the
  static `members:` of queues.conf have them;
- hot-desking: checks an agent ID + PIN against `agents.roster` (salted hash, off the event loop; wrong
  PINs limited by routing.agent_login.PinGuard and recorded), signs the agent out of any other seat
  (one agent, one seat) and feeds `HotDesk` to the seat's machine. Which agent works which seat is
  part of the snapshot, so it survives restarts; tickets ask `agent_id_of(seat)`.

Why one module: it is the one adapter between the agents' machines and AMI — keys, queue events, logins,
help periods and hot-desking all send their pauses through its one worker, so none overtakes another;
split, that ordering would have to be shared across files.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog

from model.config import Config
from model.contract import ASTERISK_QUEUE_PREFIX
from model.passwords import DUMMY_HASH, check_password
from wire.channels import endpoint
from routing.agent_help import HelpError, HelpPeriod, due, helped_queues, member_pause, plan
from routing.agent import (
    OFFLINE_REASON,
    SIGNED_OUT_REASON,
    WRAP_UP_REASON,
    Action,
    Agent,
    AgentState,
    Called,
    Completed,
    Connected,
    ExtendWrapUp,
    HotDesk,
    Input,
    InputKind,
    QueueAdd,
    QueuePause,
    QueueRemove,
    Reachable,
    Refused,
    RingNoAnswer,
    SetBusy,
    SetReady,
    SignIn,
    SignOut,
    StateChanged,
    Tick,
    Unreachable,
    agents_from_config,
    call_gone,
)
from routing.agent_login import PinGuard, PinOutcome
from routing.agent_sync import Mirror, mirror, take

log = structlog.get_logger("hotline.agents")

#: AMI queue events → the machine's input class
QUEUE_EVENTS: Mapping[str, type] = {
    "AgentCalled": Called, "AgentConnect": Connected, "AgentComplete": Completed,
    "AgentRingNoAnswer": RingNoAnswer,
}

Snapshot = dict[str, Any]
SaveFn = Callable[[Snapshot, list[Action]], Awaitable[None]]
SaveHelpFn = Callable[[dict[str, Any]], Awaitable[None]]
#: one unit of the worker's work: an agent's actions (with the queues they concern), or a membership job
Job = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Asked:
    """A job a person asked for (a supervisor's 多援一): sent even while this controller stands by."""

    job: Job
#: device states of a seat phone that mean it cannot take a call (Asterisk's DeviceStateChange `State`)
UNREACHABLE_STATES = frozenset({"UNAVAILABLE", "INVALID"})
#: pauses nobody would end while the controller is away (release())
RELEASED_REASONS = frozenset({WRAP_UP_REASON, OFFLINE_REASON})


def interface(agent_id: str) -> str:
    return f"PJSIP/{agent_id}"


@dataclass(frozen=True)
class PinRefused:
    """A hot-desk sign-in refused, recorded in agent_events: cause `pin_wrong` (a wrong PIN, the `tries`-th in a
    row; `locked` when it locked the agent ID) or `pin_locked` (a try while locked: the PIN was not checked)."""
    agent: str
    seat: str
    at: float
    state: AgentState
    tries: int
    locked: bool
    cause: str = "pin_wrong"


def snapshot(a: Agent) -> Snapshot:
    """What the store keeps of a seat's machine: `agent` is the seat (the row's key), `agent_id` who works it."""
    return {"agent": a.id, "state": a.state.value, "reason": a.reason, "since": a.since,
            "queues": list(a.queues), "paused": a.paused, "agent_id": a.agent_id}


def replace_agents(p: HelpPeriod, agents: Mapping[str, Agent]) -> HelpPeriod:
    """A saved period, keeping only seats that are still agents (the configuration may have changed)."""
    return replace(p, agents=tuple(a for a in p.agents if a in agents))


def restore(a: Agent, snap: Mapping[str, Any], at: float) -> None:
    a.state, a.reason, a.since = AgentState(snap["state"]), snap.get("reason", ""), float(snap.get("since", at))
    a.agent_id = snap.get("agent_id") or a.home
    a.queues = tuple(q for q in snap.get("queues", ()) if q in a.allowed)
    a.paused = bool(snap.get("paused", a.state in (AgentState.BUSY, AgentState.WRAP_UP)))
    if a.state is not AgentState.SIGNED_OUT and not a.queues:
        a.state, a.reason, a.paused = AgentState.SIGNED_OUT, "", False
    if a.state is AgentState.SIGNED_OUT:
        a.agent_id = a.home
    a.restored(at)


class AgentService:
    def __init__(self, ami: Any, config: Config, *, clock: Callable[[], float] = time.time,
                 save: SaveFn | None = None, tick_s: float = 1.0, save_help: SaveHelpFn | None = None) -> None:
        self.ami, self.config, self.clock, self._save, self.tick_s = ami, config, clock, save, tick_s
        self._save_help = save_help
        #: active 多援一 periods by id; the (agent, helped queue) members Asterisk has, with the pause last sent
        self.help: dict[str, HelpPeriod] = {}
        self._help_members: dict[tuple[str, str], tuple[bool, str] | None] = {}
        self._ending: set[str] = set()
        self.call_check_s = config.agents.call_check_s
        self._checked_at = clock()
        #: one-off jobs (the device sweep after a login, a call check), owned: stop() ends them
        self._jobs: set[asyncio.Task[Any]] = set()
        #: start_from ran: until then a login (a start that failed early) must not act on blank machines
        self._loaded = False
        self.agents: dict[str, Agent] = agents_from_config(config)
        self._by_interface = {interface(a.id).lower(): a for a in self.agents.values()}
        self._work: asyncio.Queue[tuple[Agent, list[Any], tuple[str, ...], bool] | Job | Asked] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self.pins = PinGuard(config.agents.pin_max_tries, config.agents.pin_lock_s)
        #: whether this controller acts for the node's agents (hotline/controller.py: the `agents:<instance>`
        #: lease, several controllers on one Asterisk). Standing by, the machines still follow the queue events,
        #: but only what a person asked (a key, the API, 多援一) is sent and saved; nothing automatic (after-call
        #: work, 离线, a login's re-apply, the release at stop) — the active controller does that.
        self.active: Callable[[], bool] = lambda: True
        #: told (synchronously, no argument) each time an agent may have moved (its machine fed or restored, a
        #: cluster's state mirrored): the live view's publisher wakes on it instead of comparing every agent
        #: several times a second (live/service.py)
        self._watchers: list[Callable[[], None]] = []

    # ---------------------------------------------------------------- life
    def attach(self) -> None:
        for name in QUEUE_EVENTS:
            self.ami.on_event(name, self._on_queue_event)
        self.ami.on_event("FullyBooted", self._on_booted)
        self.ami.on_event("DeviceStateChange", self._on_device_state)

    def start_from(self, saved: Mapping[str, Snapshot] | None, help_periods: list[dict[str, Any]] | None = None) -> None:
        """Restore the saved agents (and active help periods); nothing saved at all: every configured member
        signs in, ready."""
        now = self.clock()
        self._loaded = True
        for d in help_periods or ():
            p = HelpPeriod.from_dict(d)
            if p.active and p.queue in self.config.queues:
                self.help[p.id] = replace_agents(p, self.agents)
        for a in self.agents.values():
            if saved:
                if a.id in saved:
                    restore(a, saved[a.id], now)
                    self._queue(a, [])  # persist the restart's clean-up (ringing/talking → ready)
            else:
                # nothing before this start is known (since 0): the sign-in has no previous-state duration
                self._queue(a, a.feed(SignIn(now, why="first start: configured members")))

    def take_over(self, saved: Mapping[str, Snapshot] | None, help_periods: list[dict[str, Any]] | None = None) -> None:
        """This controller now acts for the agents (the one that did stopped): their states as the other saved
        them, put back in Asterisk as at a login."""
        self.start_from(saved, help_periods)
        self._on_booted({})

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name="agents-worker"),
                       asyncio.create_task(self._ticker(), name="agents-tick")]

    async def stop(self) -> None:
        for t in [*self._tasks, *self._jobs]:
            t.cancel()
        for t in [*self._tasks, *self._jobs]:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        self._jobs.clear()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

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
        if not self._loaded:
            return
        for a in self.agents.values():
            # signed out: paused (签出) in every queue it may serve; signed in: its queues as the machine has them
            signed_out = [QueueRemove(q) for q in a.allowed if q not in a.queues]
            self._queue(a, [*signed_out, *a.member_actions()])
        self._work.put_nowait(self._reconcile_help)
        self._spawn(self._sweep_devices(), "agents-device-sweep")

    def _on_device_state(self, ev: Mapping[str, str]) -> None:
        """DeviceStateChange (and DeviceStateList's items) of a seat phone: reachable or not."""
        a = self._by_interface.get((ev.get("Device") or "").lower())
        if a is None or not self._loaded:
            return
        state = (ev.get("State") or "").upper()
        inp = Unreachable(self.clock()) if state in UNREACHABLE_STATES else Reachable(self.clock())
        out = a.feed(inp)
        if out:
            log.info("agent_phone_" + ("unreachable" if isinstance(inp, Unreachable) else "reachable"),
                     agent=a.id, device_state=state)
            self._queue(a, out)

    async def _sweep_devices(self) -> None:
        """After a login: every seat phone's reachability now (changes meanwhile arrive as events)."""
        try:
            items = await self.ami.action_list("DeviceStateList")
        except Exception:  # noqa: BLE001 - the next DeviceStateChange still marks the phone
            log.warning("agent_device_sweep_failed", exc_info=True)
            return
        for ev in items:
            self._on_device_state(ev)

    async def check_calls(self) -> None:
        """The watchdog: ask CoreShowChannels and end the call state of agents whose call is gone."""
        asked_at = self.clock()
        try:
            channels = await self.ami.action_list("CoreShowChannels")
        except Exception:  # noqa: BLE001 - asked again at the next check
            log.warning("agent_call_check_failed", exc_info=True)
            return
        self.calls_gone({c.get("Linkedid", "") for c in channels} - {""},
                        {endpoint(c.get("Channel", "")) for c in channels if c.get("Channel", "").startswith("PJSIP/")},
                        asked_at)

    async def release(self) -> int:
        """Unpause every seat member Asterisk has paused for after-call work or 离线 (the controller stops, or
        failed to start): read from Asterisk's QueueStatus, so it works before any state was loaded.
        Returns how many members were unpaused; none while standing by (the active controller keeps them)."""
        if not self.active():
            return 0
        rows = await self.ami.action_list("QueueStatus")
        n = 0
        for r in rows:
            a = self._by_interface.get((r.get("StateInterface") or r.get("Location") or "").lower())
            queue = r.get("Queue", "")
            if (r.get("Event") != "QueueMember" or a is None or r.get("Paused") != "1"
                    or r.get("PausedReason") not in RELEASED_REASONS or not queue.startswith(ASTERISK_QUEUE_PREFIX)):
                continue
            await self._pause(a, queue[len(ASTERISK_QUEUE_PREFIX):], False, "")
            log.info("agent_released", agent=a.id, queue=queue, reason=r.get("PausedReason"))
            n += 1
        return n

    def calls_gone(self, live_linkedids: set[str], agents_on_channels: set[str] | None = None,
                   asked_at: float | None = None) -> None:
        """After a (re)connect, or from the watchdog: an agent still ringing or talking on a call Asterisk
        no longer has gets the AgentComplete it missed while AMI was down (or that a full event queue
        dropped); otherwise a seat in a queue with after-call work would stay paused for good.
        `agents_on_channels`: the seats with any live channel (None: judge by the linkedid alone)."""
        now = self.clock()
        asked = now if asked_at is None else asked_at
        for a in self.agents.values():
            on = agents_on_channels if agents_on_channels is not None else set()
            if call_gone(a, live_linkedids, on, asked):
                log.info("agent_call_gone", agent=a.id, state=a.state.value)
                self._queue(a, a.feed(Completed(now, a.queue, a.linkedid)))

    async def command(self, agent_id: str, inp: Input) -> list[Action]:
        """A key or an API call (a supervisor's): feed it, send what it asks, return what happened."""
        a = self.agents.get(agent_id)
        if a is None:
            raise KeyError(agent_id)
        out = a.feed(inp)
        self._queue(a, out, asked=True)
        await self.drain()
        return out

    def mirror_saved(self, saved: Mapping[str, Snapshot]) -> int:
        """A cluster's other nodes changed these agents (their saved snapshots, by seat): take what differs
        (routing.agent_sync) and pause this node's members as it says — sent, never saved again (no loop).
        Returns how many seats changed here."""
        if not self._loaded:
            return 0
        n = 0
        for seat, snap in saved.items():
            a = self.agents.get(seat)
            m = None if a is None else mirror(a, snap)
            if a is None or m is None:
                continue
            take(a, m)
            n += 1
            log.info("agent_state_mirrored", seat=a.id, state=a.state.value, reason=a.reason,
                     pending_busy=a.pending_busy if not isinstance(m, Mirror) else None)
            if isinstance(m, Mirror):
                self._work.put_nowait(self._mirror_job(a, m))
        if n:
            self._moved()
        return n

    def _mirror_job(self, a: Agent, m: Mirror) -> Job:
        async def send() -> None:
            for queue, paused, reason in m.pauses:
                await self._pause(a, queue, paused, reason)
            await self._sync_help(a)
        return send

    # ---------------------------------------------------------------- agent IDs and hot-desking
    def agent_id_of(self, seat: str) -> str:
        """The agent ID (工号) working `seat` now (its configured one when it is no agent seat)."""
        a = self.agents.get(seat)
        return a.agent_id if a is not None else self.config.agent_id_of(seat)

    def seat_of(self, agent_or_seat: str) -> str | None:
        """The seat a supervisor means: a seat key as is, else the seat an agent ID works (signed in first)."""
        if agent_or_seat in self.agents:
            return agent_or_seat
        at = sorted((a for a in self.agents.values() if a.agent_id == agent_or_seat),
                    key=lambda a: a.state is AgentState.SIGNED_OUT)
        return at[0].id if at else None

    def recall_pin_failures(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rebuild the wrong-PIN counts after a restart from recorded events (agent, at epoch, cause), oldest first."""
        for r in rows:
            if r.get("cause") == "pin_wrong":
                self.pins.wrong(str(r.get("agent")), float(r["at"]))
            elif r.get("cause") == InputKind.HOT_DESK.value and r.get("new") == AgentState.READY.value:
                self.pins.right(str(r.get("agent")))

    async def hot_desk(self, seat: str, agent_id: str, pin: str) -> PinOutcome:
        """签入 by agent ID + PIN on `seat`'s phone: checked, limited, recorded; the seat becomes the agent's."""
        a = self.agents.get(seat)
        if a is None:
            raise KeyError(seat)
        now = self.clock()
        if self.pins.locked(agent_id, now):
            self._refused_pin(a, agent_id, now, tries=self.pins.tries(agent_id, now), locked=True, cause="pin_locked")
            await self.drain()  # recorded before the phone answers
            return PinOutcome.LOCKED
        entry = self.config.agents.roster.get(agent_id)
        ok = await asyncio.to_thread(check_password, pin, entry.pin_hash if entry is not None else DUMMY_HASH)
        if not ok or entry is None:
            tries = self.pins.wrong(agent_id, now)
            locked = tries >= self.pins.max_tries
            self._refused_pin(a, agent_id, now, tries=tries, locked=locked)
            await self.drain()
            return PinOutcome.LOCKED if locked else PinOutcome.WRONG
        self.pins.right(agent_id)
        out = a.feed(HotDesk(now, agent_id, why=f"hot-desk at seat {seat}"))
        if not any(isinstance(x, Refused) for x in out):
            for other in self.agents.values():  # one agent, one seat
                if other is not a and other.agent_id == agent_id and other.state is not AgentState.SIGNED_OUT:
                    self._queue(other, other.feed(SignOut(now, by=agent_id, why=f"hot-desk to seat {seat}")),
                                asked=True)
        self._queue(a, out, asked=True)
        await self.drain()
        return PinOutcome.REFUSED if any(isinstance(x, Refused) for x in out) else PinOutcome.SIGNED_IN

    def _refused_pin(self, a: Agent, agent_id: str, now: float, *, tries: int, locked: bool,
                     cause: str = "pin_wrong") -> None:
        known = agent_id in self.config.agents.roster
        log.warning("agent_pin_refused", seat=a.id, agent=agent_id if known else "(unknown)", tries=tries,
                    locked=locked, cause=cause)
        if known:  # an unknown ID is no agent: nothing of it goes in agent_events
            self._queue(a, [PinRefused(agent_id, a.id, now, a.state, tries, locked, cause)], asked=True)

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
    def watch(self, fn: Callable[[], None]) -> None:
        """Call `fn()` whenever an agent may have moved (see `_watchers`); it must not raise."""
        self._watchers.append(fn)

    def _queue(self, a: Agent, actions: list[Action], *, asked: bool = False) -> None:
        self._work.put_nowait((a, actions, a.queues, asked))
        self._moved()

    def _moved(self) -> None:
        for fn in self._watchers:
            try:
                fn()
            except Exception:  # noqa: BLE001 - a watcher never stops the agents' own work
                log.exception("agent_watcher_failed")

    async def _worker(self) -> None:
        """The one sender: agents' actions and help-membership jobs in order, so none overtakes another."""
        while True:
            item = await self._work.get()
            try:
                if isinstance(item, Asked):
                    await item.job()
                    continue
                if callable(item):
                    if self.active():
                        await item()
                    continue
                a, actions, queues, asked = item
                if not (asked or self.active()):
                    continue  # the active controller sends and saves it
                for act in actions:
                    await self._send(a, act, queues)
                await self._sync_help(a)
                if self._save is not None:
                    await self._save(snapshot(a), actions)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("agent_action_failed")
            finally:
                self._work.task_done()

    # ---------------------------------------------------------------- 多援一 (many help one)
    async def help_start(self, *, group: str, queue: str, minutes: float, by: str,
                         why: str) -> tuple[HelpPeriod, tuple[str, ...]]:
        """Add `group` to `queue` for `minutes` (HelpError when it cannot be): persisted first, then the
        members are added; returns the period and the seats left out (they already serve or help `queue`)."""
        period, skipped = plan(self.config, self.agents, self.help.values(), group=group, queue=queue,
                               minutes=minutes, now=self.clock(), by=by, why=why)
        if self._save_help is not None:
            await self._save_help(period.as_dict())  # a failure raises: nothing was added
        self.help[period.id] = period
        log.info("agent_help_started", id=period.id, queue=queue, agents=list(period.agents), by=by, why=why,
                 minutes=minutes)

        async def add() -> None:
            for agent_id in period.agents:
                await self._help_add(self.agents[agent_id], queue)
        self._work.put_nowait(Asked(add))
        await self.drain()
        return period, skipped

    async def help_end(self, period_id: str, *, by: str, why: str = "") -> HelpPeriod:
        """End an active period now: its members leave the queue (HelpError when there is no such period)."""
        p = self.help.pop(period_id, None)
        if p is None:
            raise HelpError(f"no active help period {period_id!r}")
        ended = p.end(self.clock(), by, why)
        log.info("agent_help_ended", id=p.id, queue=p.queue, agents=list(p.agents), by=by, why=why)
        try:
            if self._save_help is not None:
                await self._save_help(ended.as_dict())
        except Exception:  # noqa: BLE001 - the members still leave; the row is ended at the next start
            log.exception("agent_help_save_failed", id=p.id)

        async def remove() -> None:
            for agent_id in p.agents:
                await self._help_remove(agent_id, p.queue)
        self._work.put_nowait(Asked(remove))
        await self.drain()
        self._ending.discard(p.id)
        return ended

    def helping(self, agent_id: str) -> tuple[str, ...]:
        return helped_queues(self.help.values(), agent_id)

    async def _help_add(self, a: Agent, queue: str) -> None:
        paused, reason = member_pause(a)
        resp = await self.ami.action("QueueAdd", raise_on_error=False, Queue=ASTERISK_QUEUE_PREFIX + queue,
                                     Interface=interface(a.id), StateInterface=interface(a.id),
                                     MemberName=a.id, Paused="true" if paused else "false")
        if resp.get("Response") == "Error" and "already" not in str(resp.get("Message", "")).lower():
            log.warning("agent_help_add_failed", agent=a.id, queue=queue, message=resp.get("Message"))
            return
        self._help_members[(a.id, queue)] = None  # its reason is set by the pause that follows
        await self._sync_help(a)

    async def _help_remove(self, agent_id: str, queue: str) -> None:
        self._help_members.pop((agent_id, queue), None)
        resp = await self.ami.action("QueueRemove", raise_on_error=False, Queue=ASTERISK_QUEUE_PREFIX + queue,
                                     Interface=interface(agent_id))
        if resp.get("Response") == "Error":
            log.warning("agent_help_remove_failed", agent=agent_id, queue=queue, message=resp.get("Message"))

    async def _sync_help(self, a: Agent) -> None:
        """The agent's members in the queues it helps are paused as its own state has it."""
        want = member_pause(a)
        for (agent_id, queue), sent in list(self._help_members.items()):
            if agent_id == a.id and sent != want:
                await self._pause(a, queue, *want)
                self._help_members[(agent_id, queue)] = want

    async def _reconcile_help(self) -> None:
        """After a login: Asterisk's dynamic seat members = the active periods' (an Asterisk restart lost
        them; a period ended while the controller was away, or a crash between add and save, left some)."""
        try:
            rows = await self.ami.action_list("QueueStatus")
        except Exception:  # noqa: BLE001 - the next login tries again
            log.warning("agent_help_reconcile_failed", exc_info=True)
            return
        have: set[tuple[str, str]] = set()
        for r in rows:
            a = self._by_interface.get((r.get("StateInterface") or r.get("Location") or "").lower())
            queue = r.get("Queue", "")
            if (r.get("Event") == "QueueMember" and a is not None and r.get("Membership") == "dynamic"
                    and queue.startswith(ASTERISK_QUEUE_PREFIX)):
                have.add((a.id, queue[len(ASTERISK_QUEUE_PREFIX):]))
        want = {(agent_id, p.queue) for p in self.help.values() for agent_id in p.agents}
        for agent_id, queue in sorted(have - want):
            log.info("agent_help_stale_member_removed", agent=agent_id, queue=queue)
            await self._help_remove(agent_id, queue)
        for agent_id, queue in sorted(want - have):
            await self._help_add(self.agents[agent_id], queue)
        for agent_id, queue in want & have:
            self._help_members[(agent_id, queue)] = None
            await self._sync_help(self.agents[agent_id])

    async def _send(self, a: Agent, act: Action, queues: tuple[str, ...] = ()) -> None:
        if isinstance(act, QueueAdd):
            await self._pause(a, act.queue, act.paused, act.reason if act.paused else "")
        elif isinstance(act, QueueRemove):
            await self._pause(a, act.queue, True, SIGNED_OUT_REASON)
        elif isinstance(act, QueuePause):
            for q in queues:
                await self._pause(a, q, act.paused, act.reason if act.paused else "")
        elif isinstance(act, StateChanged):
            took = {} if act.seconds is None else {"seconds": round(act.seconds, 1)}  # none: no previous state
            log.info("agent_state_changed", seat=a.id, agent=act.agent, old=act.old.value, new=act.new.value,
                     reason=act.reason, by=act.by, why=act.why, **took)
        elif isinstance(act, Refused):
            log.info("agent_key_refused", agent=a.id, input=act.kind.value, state=act.state.value)

    async def _pause(self, a: Agent, queue: str, paused: bool, reason: str) -> None:
        """QueuePause of the agent's (static) member in one queue."""
        resp = await self.ami.action("QueuePause", raise_on_error=False, Queue=ASTERISK_QUEUE_PREFIX + queue,
                                     Interface=interface(a.id), Paused="true" if paused else "false", Reason=reason)
        if resp.get("Response") == "Error":
            log.warning("agent_queue_pause_failed", agent=a.id, queue=queue, paused=paused,
                        message=resp.get("Message"))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            now = self.clock()
            for a in self.agents.values():
                if a.state is AgentState.WRAP_UP:
                    out = a.feed(Tick(now))
                    if out:
                        self._queue(a, out)
            for p in due(self.help.values(), now) if self.active() else ():
                if p.id not in self._ending:
                    self._ending.add(p.id)
                    self._spawn(self.help_end(p.id, by="timer", why="help period over"), "agents-help-end")
            if now - self._checked_at >= self.call_check_s:
                self._checked_at = now
                if any(a.state in (AgentState.RINGING, AgentState.TALKING) and now - a.since >= self.call_check_s
                       for a in self.agents.values()):
                    self._spawn(self.check_calls(), "agents-call-check")
