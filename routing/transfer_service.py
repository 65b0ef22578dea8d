"""Transfers over AMI: a thin asyncio adapter around the pure machine in `routing.transfer`.

Why this shape:

* Asterisk's own attended-transfer machinery does the call handling (``Atxfer``,
  ``atxfernoanswertimeout`` returning the caller, ``atxferthreeway``); this service
  starts it, watches AMI events, feeds them to one `Transfer` machine per transfer and
  carries out what the machine decides. A controller crash therefore never drops a call.
* One ``asyncio.Lock`` per transfer, never one for the process: a slow AMI answer for
  one transfer never holds up another, and one transfer's events are handled in order.
* The AMI event callback never awaits an action: it routes the event (synchronously,
  so legs registered by one event are known to the next) and hands the work to a task.
  The AMI client's dispatcher is therefore never blocked by our round trips.
* Restart safety: `recover()` asks Asterisk which transfer legs exist and re-attaches
  them or records them as abandoned; call it at start and after every AMI reconnect
  (pending actions are never replayed by the client).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from model.config import Config
from model.privacy import mask_number
from routing.transfer import (
    Action,
    ActionAck,
    AttendedTransferDone,
    BlindTransferDone,
    CallerHangup,
    CompleteTransfer,
    DialEnd,
    EmitUserEvent,
    Input,
    Lost,
    MarkWorkOrder,
    MergeThreeway,
    Mode,
    ReturnToAgent,
    State,
    TargetDialing,
    TargetHangup,
    Tick,
    Transfer,
    TransfererHangup,
    resolve_mode,
)

try:  # the real client; a stand-in keeps this module importable on its own
    from wire.ami import AmiDisconnected
except ImportError:  # pragma: no cover
    class AmiDisconnected(ConnectionError):  # type: ignore[no-redef]
        pass

log = structlog.get_logger("routing.transfer_service")

#: the dialplan context that holds the transfer targets for a caller sent there (blind transfer):
#: a failed dial still ends in the general queue (dialplans/templates/extensions.conf.j2)
TRANSFER_CONTEXT = "hotline-transfer"
#: the context of an agent's consultation leg (Atxfer, *2): a failed dial just ends, so Asterisk
#: returns the caller to the agent; it is also every hotline call's TRANSFER_CONTEXT
AGENT_TRANSFER_CONTEXT = "hotline-agent-transfer"
#: features.conf.j2: atxferthreeway / atxfercomplete, keyed on the agent's channel as if pressed
THREEWAY_KEYS = "*3"
COMPLETE_KEYS = "*2"
DTMF = set("0123456789*#")


class Ami(Protocol):
    """What this service needs from `wire.ami.AmiClient`."""

    async def action(self, name: str, timeout: float | None = None, raise_on_error: bool = True,
                     **headers: Any) -> dict[str, str]: ...

    async def action_list(self, name: str, timeout: float | None = None, **headers: Any) -> list[dict[str, str]]: ...

    def on_event(self, name: str, callback: Callable[[dict[str, str]], Any]) -> Any: ...


class TransferError(ValueError):
    """A transfer that cannot start (unknown target, agent already transferring, no such channel)."""


@dataclass
class _Live:
    """One transfer plus what only the adapter knows: channel names."""

    machine: Transfer
    agent_channel: str
    caller_channel: str = ""
    caller_number: str = ""
    exten: str = ""
    #: Local/<exten>@hotline-transfer-…;1/;2 — Asterisk's leg towards the target
    legs: set[str] = field(default_factory=set)
    #: the real target channel(s) the Local leg dialed (DialBegin DestChannel)
    dests: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    optimized: set[str] = field(default_factory=set)
    recovered: bool = False

    @property
    def first_leg(self) -> str | None:
        """The transferer-facing Local ;1: hanging it up makes Asterisk return the caller."""
        for leg in sorted(self.legs):
            if leg.endswith(";1"):
                return leg
        return None

    def view(self) -> dict[str, Any]:
        d = self.machine.snapshot()
        d.update(agent_channel=self.agent_channel, caller=mask_number(self.caller_number),
                 legs=sorted(self.legs), dests=sorted(self.dests), recovered=self.recovered)
        return d


OutcomeCallback = Callable[[dict[str, Any]], Any]


class TransferService:
    """Starts transfers (feature codes, API), follows them through AMI events, reports outcomes.

    `on_outcome(record)` is called (sync or async) once per reported outcome with the
    transfer's snapshot plus ``caller`` (unmasked, for the ticket) and ``work_order``.
    """

    def __init__(self, ami: Ami, config: Config, on_outcome: OutcomeCallback | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 mode_policy: Mapping[str, Mode | str] | None = None,
                 context: str = TRANSFER_CONTEXT, grace_s: float = 5.0, setup_timeout_s: float = 10.0,
                 tick_s: float = 1.0, is_agent_channel: Callable[[str], bool] | None = None,
                 agent_context: str | None = None) -> None:
        """`context` takes blind transfers (the caller alone); `agent_context` (default: `context`)
        takes Atxfer consultation legs, whose failure must return the caller to the agent."""
        self.ami = ami
        self.config = config
        self.on_outcome = on_outcome
        self.clock = clock
        self.mode_policy = dict(mode_policy or {})
        self.context = context
        self.agent_context = agent_context or context
        self.grace_s = grace_s
        self.setup_timeout_s = setup_timeout_s
        self.tick_s = tick_s
        self.is_agent_channel = is_agent_channel or self._seat_channel
        self._live: dict[str, _Live] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._by_agent: dict[str, str] = {}
        self._by_linkedid: dict[str, str] = {}
        self._by_channel: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        ami.on_event("*", self._on_event)

    # ------------------------------------------------------------------ public API
    async def start(self, agent_channel: str, target: str, mode: Mode | str | None = None, *,
                    linkedid: str | None = None, caller_number: str | None = None) -> dict[str, Any]:
        """Start a transfer of the agent's current caller to `target` (a key of transfer_targets/branch_centers).

        Returns the transfer's view; its outcome comes later through `on_outcome`.
        Without `linkedid`, Asterisk is asked (CoreShowChannels) for the agent channel's call.
        """
        caller_channel = ""
        if linkedid is None:
            row = await self._channel_row(agent_channel)
            if row is None:
                raise TransferError(f"no such channel: {agent_channel}")
            linkedid = row.get("Linkedid", "")
            caller_number = caller_number or row.get("ConnectedLineNum", "")
        live = self._begin(agent_channel, target, mode, linkedid or "", caller_number or "", caller_channel)
        await self._run_start(live.machine.id)
        return live.view()

    async def complete(self, agent_channel: str) -> bool:
        """The agent hands the caller over (the atxfercomplete key on the agent's channel), e.g. from an API."""
        return await self._keys_for(agent_channel, COMPLETE_KEYS, "complete")

    async def merge(self, agent_channel: str) -> bool:
        """Turn the agent's consultation into a three-way call (the atxferthreeway key)."""
        return await self._keys_for(agent_channel, THREEWAY_KEYS, "threeway")

    async def _keys_for(self, agent_channel: str, keys: str, why: str) -> bool:
        tid = self._by_agent.get(agent_channel)
        live = self._live.get(tid) if tid else None
        if live is None:
            raise TransferError(f"{agent_channel} has no transfer in progress")
        async with self._locks[tid]:
            return await self._keys(live, keys, why)

    def active(self) -> list[dict[str, Any]]:
        """Transfers in progress (including three-way calls still up), for an API or the CLI."""
        return [live.view() for live in self._live.values()]

    async def tick(self, now: float | None = None) -> None:
        """Feed the clock to every transfer (each under its own lock, concurrently)."""
        at = self.clock() if now is None else now
        tids = list(self._live)
        if tids:
            await asyncio.gather(*(self._feed(tid, Tick(at)) for tid in tids))

    def start_timer(self) -> None:
        """Tick every `tick_s` seconds so a transfer never waits forever for an event that was lost."""
        if self._timer is None:
            self._timer = asyncio.create_task(self._timer_loop(), name="transfer-timer")

    async def close(self) -> None:
        if self._timer:
            self._timer.cancel()
            try:
                await self._timer
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
            self._timer = None
        await self.drain()

    async def drain(self) -> None:
        """Wait until all event handling started so far has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def recover(self) -> dict[str, int]:
        """Find transfer legs Asterisk still has and re-attach them, or record them as abandoned.

        Asterisk keeps running a transfer while the controller is away, so nothing is hung
        up here; the point is that every transfer ends with a recorded outcome.
        """
        try:
            rows = await self.ami.action_list("CoreShowChannels")
        except Exception as e:  # noqa: BLE001 - recovery is best effort and retried on reconnect
            log.warning("transfer_recover_failed", error=str(e))
            return {"reattached": 0, "abandoned": 0}
        now = self.clock()
        groups: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            groups.setdefault(row.get("Linkedid", ""), []).append(row)
        reattached = abandoned = 0
        for linkedid, group in groups.items():
            legs = [r for r in group if self._is_leg(r)]
            if not legs or not linkedid or linkedid in self._by_linkedid:
                continue
            live = self._reattach(linkedid, group, legs, now)
            if live.machine.state is State.REQUESTED:  # could not tell who is who
                self._spawn(self._feed(live.machine.id, Lost(now)))
                abandoned += 1
            else:
                reattached += 1
        await self.drain()
        log.info("transfer_recovered", reattached=reattached, abandoned=abandoned)
        return {"reattached": reattached, "abandoned": abandoned}

    # ------------------------------------------------------------------ starting
    def _begin(self, agent_channel: str, target: str, mode: Mode | str | None, linkedid: str,
               caller_number: str, caller_channel: str = "") -> _Live:
        """Create and index a transfer synchronously, so the very next event already finds it."""
        trunk = self.config.trunk(target)
        if trunk is None:
            raise TransferError(f"unknown transfer target {target!r}")
        if agent_channel in self._by_agent:
            raise TransferError(f"{agent_channel} is already transferring ({self._by_agent[agent_channel]})")
        if linkedid and linkedid in self._by_linkedid:
            raise TransferError(f"call {linkedid} is already being transferred ({self._by_linkedid[linkedid]})")
        policy = dict(self.mode_policy)
        own = getattr(trunk, "transfer_mode", None)  # a per-target override, if the config grows one
        if own:
            policy[trunk.kind] = own
        effective = resolve_mode(mode, trunk.kind, policy)
        tid = f"x{int(time.time())}-{next(self._ids)}"
        machine = Transfer(id=tid, target=target, kind=trunk.kind, mode=effective, agent=_agent_name(agent_channel),
                           started_at=self.clock(), timeout_s=float(self.config.transfer_timeout_s),
                           grace_s=self.grace_s, setup_timeout_s=self.setup_timeout_s, linkedid=linkedid)
        live = _Live(machine, agent_channel, caller_channel, caller_number, exten=self._exten(target))
        self._live[tid] = live
        self._locks[tid] = asyncio.Lock()
        self._by_agent[agent_channel] = tid
        if linkedid:
            self._by_linkedid[linkedid] = tid
        log.info("transfer_started", transfer=tid, target=target, kind=trunk.kind, mode=str(effective),
                 requested_mode=str(mode or ""), agent=machine.agent, linkedid=linkedid,
                 caller=mask_number(caller_number))
        return live

    async def _run_start(self, tid: str) -> None:
        """Send Atxfer (or BlindTransfer) under the transfer's lock and feed Asterisk's answer."""
        lock, live = self._locks.get(tid), self._live.get(tid)
        if lock is None or live is None:
            return
        async with lock:
            m = live.machine
            if m.mode is Mode.BLIND:
                name, headers = "BlindTransfer", {"Channel": live.agent_channel, "Context": self.context,
                                                  "Exten": m.target}
            else:
                # Atxfer keys the extension as DTMF on the agent's channel: it must be dialable digits
                name, headers = "Atxfer", {"Channel": live.agent_channel, "Context": self.agent_context,
                                           "Exten": live.exten}
            try:
                resp = await self.ami.action(name, **headers)
                # "Atxfer successfully queued" only means the keys were queued; events tell the rest
                ack = ActionAck(True, self.clock(), resp.get("Message", ""))
            except AmiDisconnected as e:
                # unknown whether Asterisk got it; the setup timeout or recover() settles it
                log.warning("transfer_action_unknown", transfer=tid, action=name, error=str(e))
                return
            except Exception as e:  # noqa: BLE001 - AmiError/AmiTimeout: Asterisk refused or never said
                ack = ActionAck(False, self.clock(), str(e))
            log.info("transfer_action_sent", transfer=tid, action=name, ok=ack.ok, message=ack.message)
            await self._apply(live, m.feed(ack))

    def _start_from_feature(self, ev: Mapping[str, str]) -> None:
        """UserEvent HotlineFeature (Target) raised on the agent's channel by a one-key feature code."""
        channel, target = ev.get("Channel", ""), ev.get("Target", "").strip()
        if not channel or not target:
            log.warning("transfer_feature_ignored", reason="missing Channel or Target")
            return
        if not self.is_agent_channel(channel):
            log.warning("transfer_feature_ignored", reason="not a seat channel", channel=channel, target=target)
            return
        try:
            live = self._begin(channel, target, None, ev.get("Linkedid", ""), ev.get("ConnectedLineNum", ""))
        except TransferError as e:
            log.warning("transfer_refused", channel=channel, target=target, reason=str(e))
            return
        self._spawn(self._run_start(live.machine.id))

    # ------------------------------------------------------------------ events
    def _on_event(self, ev: dict[str, str]) -> None:
        """AMI callback: route synchronously, handle in tasks; never raises, never awaits Asterisk."""
        name = ev.get("Event", "")
        try:
            if name == "UserEvent" and ev.get("UserEvent") == "HotlineFeature":
                self._start_from_feature(ev)
                return
            for tid, inp in self._route(name, ev):
                self._spawn(self._feed(tid, inp))
        except Exception:
            log.exception("transfer_event_failed", ami_event=name)

    def _route(self, name: str, ev: Mapping[str, str]) -> list[tuple[str, Input]]:
        now = self.clock()
        if name == "DialBegin":
            tid = self._by_linkedid.get(ev.get("Linkedid", ""))
            live = self._live.get(tid) if tid else None
            chan = ev.get("Channel", "")
            if live is None or not (ev.get("Context") in (self.context, self.agent_context) or self._is_leg(ev)):
                return []
            if chan.startswith("Local/"):
                self._add_leg(tid, live, chan)
                dest = ev.get("DestChannel", "")
                if dest:
                    live.dests.add(dest)
                    self._by_channel[dest] = tid
            return [(tid, TargetDialing(now))]
        if name == "DialEnd":
            chan = ev.get("Channel", "")
            tid = self._by_channel.get(chan)
            if tid and chan in self._live[tid].legs:
                return [(tid, DialEnd(ev.get("DialStatus", ""), now))]
            return []
        if name == "Hangup":
            return self._route_hangup(ev, now)
        if name == "AttendedTransfer":
            tid = (self._by_agent.get(ev.get("OrigTransfererChannel", ""))
                   or self._by_agent.get(ev.get("SecondTransfererChannel", ""))
                   or self._by_linkedid.get(ev.get("OrigTransfererLinkedid", "")))
            if tid:
                return [(tid, AttendedTransferDone(ev.get("Result", ""), ev.get("DestType", ""), now))]
            return []
        if name == "BlindTransfer":
            tid = self._by_agent.get(ev.get("TransfererChannel", ""))
            return [(tid, BlindTransferDone(ev.get("Result", ""), now))] if tid else []
        if name == "LocalOptimizationBegin":
            # the Local leg is swapped out of the way: its hang-up is not the target leaving
            for key in ("LocalOneChannel", "LocalTwoChannel"):
                chan = ev.get(key, "")
                tid = self._by_channel.get(chan)
                if tid:
                    live = self._live[tid]
                    live.optimized.add(chan)
                    src = ev.get("SourceChannel", "")
                    if src and src not in (live.agent_channel, live.caller_channel) and chan in live.dests:
                        live.dests.add(src)
                        self._by_channel[src] = tid
            return []
        return []

    def _route_hangup(self, ev: Mapping[str, str], now: float) -> list[tuple[str, Input]]:
        chan, uid = ev.get("Channel", ""), ev.get("Uniqueid", "")
        out: list[tuple[str, Input]] = []
        tid = self._by_agent.get(chan)
        if tid:
            out.append((tid, TransfererHangup(now)))
        tid = self._by_linkedid.get(ev.get("Linkedid", ""))
        if tid and (uid == ev.get("Linkedid") or chan == self._live[tid].caller_channel):
            out.append((tid, CallerHangup(now)))
        tid = self._by_channel.get(chan)
        if tid:
            live = self._live[tid]
            live.gone.add(chan)
            if chan in live.optimized:
                pass
            elif chan in live.dests:
                out.append((tid, TargetHangup(now)))
            elif chan in live.legs and not (live.dests - live.gone - live.optimized) and live.machine.answered_at is None:
                out.append((tid, TargetHangup(now)))
        return out

    async def _feed(self, tid: str, inp: Input) -> None:
        """One input into one transfer, under that transfer's lock only. Failures stay inside it."""
        lock = self._locks.get(tid)
        if lock is None:
            return
        async with lock:
            live = self._live.get(tid)
            if live is None or live.machine.closed:
                return
            try:
                actions = live.machine.feed(inp)
                await self._apply(live, actions)
            except Exception:
                log.exception("transfer_handler_failed", transfer=tid, input=type(inp).__name__)

    # ------------------------------------------------------------------ actions
    async def _apply(self, live: _Live, actions: Iterable[Action]) -> None:
        m = live.machine
        for act in actions:
            try:
                if isinstance(act, ReturnToAgent):
                    await self._return_to_agent(live)
                elif isinstance(act, MergeThreeway):
                    await self._keys(live, THREEWAY_KEYS, "threeway")
                elif isinstance(act, CompleteTransfer):
                    if not await self._keys(live, COMPLETE_KEYS, "complete"):
                        # hanging up the transferer during the consultation completes it, too
                        await self._hangup(live.agent_channel, m.id)
                elif isinstance(act, MarkWorkOrder):
                    log.info("transfer_work_order", transfer=m.id, target=act.target, reason=act.reason,
                             linkedid=m.linkedid)
                elif isinstance(act, EmitUserEvent):
                    await self._report(live, act)
            except Exception:
                log.exception("transfer_action_failed", transfer=m.id, action=type(act).__name__)
        if m.closed:
            self._forget(m.id)

    async def _report(self, live: _Live, act: EmitUserEvent) -> None:
        m = live.machine
        headers = act.as_dict()
        log.info("transfer_outcome", transfer=m.id, outcome=headers["Outcome"], target=m.target, kind=m.kind,
                 mode=str(m.mode), agent=m.agent, linkedid=m.linkedid, work_order=m.work_order,
                 caller=mask_number(live.caller_number), seconds=round((m.ended_at or self.clock()) - m.started_at, 1))
        try:
            await self.ami.action("UserEvent", UserEvent=act.name, **headers)
        except Exception as e:  # noqa: BLE001 - the in-process callback below still gets the outcome
            log.warning("transfer_event_not_sent", transfer=m.id, error=str(e))
        if self.on_outcome is not None:
            record = {**live.view(), "outcome": headers["Outcome"], "caller": live.caller_number}
            try:
                res = self.on_outcome(record)
                if inspect.isawaitable(res):
                    await res
            except Exception:
                log.exception("transfer_outcome_callback_failed", transfer=m.id)

    async def _return_to_agent(self, live: _Live) -> None:
        """Drop the target leg if it is still up; Asterisk then puts the caller back with the agent."""
        leg = live.first_leg
        candidates = [leg] if leg and leg not in live.gone else sorted(live.dests - live.gone)
        for chan in candidates:
            await self._hangup(chan, live.machine.id)

    async def _keys(self, live: _Live, keys: str, why: str) -> bool:
        """Key a features.conf code on the agent's channel as if the agent pressed it (PlayDTMF Receive)."""
        try:
            for digit in keys:
                await self.ami.action("PlayDTMF", Channel=live.agent_channel, Digit=digit, Receive="yes")
        except Exception as e:  # noqa: BLE001
            log.warning("transfer_keys_failed", transfer=live.machine.id, keys=why, error=str(e))
            return False
        log.info("transfer_keys_sent", transfer=live.machine.id, keys=why)
        return True

    async def _hangup(self, channel: str, tid: str) -> None:
        try:
            await self.ami.action("Hangup", Channel=channel)
            log.info("transfer_leg_dropped", transfer=tid, channel=channel)
        except Exception as e:  # noqa: BLE001 - already gone is fine
            log.info("transfer_leg_drop_skipped", transfer=tid, channel=channel, error=str(e))

    # ------------------------------------------------------------------ helpers
    def _forget(self, tid: str) -> None:
        live = self._live.pop(tid, None)
        self._locks.pop(tid, None)  # waiters keep their reference and then see the transfer gone
        if live is None:
            return
        for index in (self._by_agent, self._by_linkedid, self._by_channel):
            for key in [k for k, v in index.items() if v == tid]:
                del index[key]

    def _add_leg(self, tid: str, live: _Live, chan: str) -> None:
        for leg in {chan, _other_half(chan)}:
            if leg:
                live.legs.add(leg)
                self._by_channel[leg] = tid

    def _is_leg(self, row: Mapping[str, str]) -> bool:
        chan = row.get("Channel", "")
        if not chan.startswith("Local/"):
            return False
        return any(f"@{ctx}-" in chan or row.get("Context") == ctx for ctx in {self.context, self.agent_context})

    def _exten(self, target: str) -> str:
        """A DTMF-dialable extension for the target: its key if digits, its `exten`, else a legacy number aliased to it."""
        if target and set(target) <= DTMF:
            return target
        trunk = self.config.trunk(target)
        own = getattr(trunk, "exten", None) if trunk else None
        if own and set(own) <= DTMF:
            return own
        for number, line in self.config.legacy_lines.items():
            if line.mode == "branch_center" and line.branch == target and set(number) <= DTMF:
                return number
        log.warning("transfer_exten_not_dtmf", target=target)
        return target

    def _seat_channel(self, channel: str) -> bool:
        if not self.config.seats:
            return True
        return _agent_name(channel) in self.config.seats

    def _reattach(self, linkedid: str, group: list[dict[str, str]], legs: list[dict[str, str]], now: float) -> _Live:
        two = next((r for r in legs if r.get("Channel", "").endswith(";2")), legs[0])
        one = next((r for r in legs if r.get("Channel", "").endswith(";1")), None)
        exten = two.get("Exten", "") or _exten_of(two.get("Channel", ""))
        target = self._target_for_exten(exten)
        caller = next((r for r in group if r.get("Uniqueid") == linkedid), None)
        leg_names = {r.get("Channel", "") for r in legs}
        others = [r for r in group if r.get("Channel") not in leg_names and r is not caller]
        dest_bridge = two.get("BridgeId", "")
        dests = [r for r in others if dest_bridge and r.get("BridgeId") == dest_bridge]
        others = [r for r in others if r not in dests]
        agent_bridge = (one or {}).get("BridgeId", "")
        agents = [r for r in others if agent_bridge and r.get("BridgeId") == agent_bridge] or others
        agent = agents[0] if len(agents) == 1 else None
        agent_channel = agent["Channel"] if agent else f"unknown:{linkedid}"
        kind = (self.config.trunk(target).kind if self.config.trunk(target) else "branch_center")
        mode = resolve_mode(None, kind, self.mode_policy)
        duration = _seconds(two.get("Duration", ""))
        tid = f"r{int(time.time())}-{next(self._ids)}"
        machine = Transfer(id=tid, target=target, kind=kind, mode=mode, agent=_agent_name(agent_channel),
                           started_at=now - duration, timeout_s=float(self.config.transfer_timeout_s),
                           grace_s=self.grace_s, setup_timeout_s=self.setup_timeout_s, linkedid=linkedid)
        live = _Live(machine, agent_channel, caller.get("Channel", "") if caller else "",
                     (agent or {}).get("ConnectedLineNum", ""), exten=exten, recovered=True)
        self._live[tid] = live
        self._locks[tid] = asyncio.Lock()
        self._by_linkedid[linkedid] = tid
        for r in legs:
            self._add_leg(tid, live, r.get("Channel", ""))
        for r in dests:
            live.dests.add(r["Channel"])
            self._by_channel[r["Channel"]] = tid
        if agent and caller:
            self._by_agent[agent_channel] = tid
            machine.state, machine.ringing_at = State.RINGING, now - duration
            if two.get("ChannelStateDesc", "").lower() == "up":
                machine.state, machine.answered_at = State.ANSWERED, now
            log.info("transfer_reattached", transfer=tid, target=target, state=str(machine.state),
                     agent=machine.agent, linkedid=linkedid)
        else:
            log.warning("transfer_unattachable", transfer=tid, target=target, linkedid=linkedid,
                        caller_present=caller is not None, agent_found=agent is not None)
        return live

    def _target_for_exten(self, exten: str) -> str:
        if self.config.trunk(exten):
            return exten
        for key, trunk in list(self.config.transfer_targets.items()) + list(self.config.branch_centers.items()):
            if getattr(trunk, "exten", None) == exten:
                return key
        line = self.config.legacy_lines.get(exten)
        if line and line.branch:
            return line.branch
        return exten

    async def _channel_row(self, channel: str) -> dict[str, str] | None:
        try:
            rows = await self.ami.action_list("CoreShowChannels")
        except Exception as e:  # noqa: BLE001
            raise TransferError(f"cannot look up {channel}: {e}") from e
        return next((r for r in rows if r.get("Channel") == channel), None)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("transfer_task_failed", error=repr(task.exception()))

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.tick()
            except Exception:
                log.exception("transfer_tick_failed")


def _agent_name(channel: str) -> str:
    """PJSIP/1001-0000000a → 1001 (the seat), for the ticket's Agent."""
    if "/" not in channel:
        return channel
    rest = channel.split("/", 1)[1]
    return rest.rsplit("-", 1)[0] if "-" in rest else rest


def _other_half(chan: str) -> str:
    if chan.endswith(";1"):
        return chan[:-1] + "2"
    if chan.endswith(";2"):
        return chan[:-1] + "1"
    return ""


def _exten_of(chan: str) -> str:
    """Local/110@hotline-transfer-00000003;2 → 110."""
    return chan.split("/", 1)[-1].split("@", 1)[0]


def _seconds(duration: str) -> float:
    """CoreShowChannel Duration is HH:MM:SS."""
    try:
        h, m, s = (int(x) for x in duration.split(":"))
        return float(h * 3600 + m * 60 + s)
    except ValueError:
        return 0.0
