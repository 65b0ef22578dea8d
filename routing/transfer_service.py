"""Transfers over AMI: the asyncio I/O around two pure modules.

What this module holds: `TransferService` (AMI actions, the per-transfer locks, the
event-handling tasks, the tick timer, the outcome callback, and the log lines) and the
feature keys it presses (the contexts are model.contract's Context.TRANSFER / AGENT_TRANSFER).
Every decision is delegated: `routing.transfer_correlation` says which transfer an AMI
event belongs to and what it means, how to start one and what to re-attach after a
restart; `routing.transfer` (the state machine) says what happened and what to do.

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
import functools
import itertools
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

import structlog

from model.contract import Context
from model.config import Config
from model.privacy import mask_number
from routing.transfer import (
    Action,
    ActionAck,
    CompleteTransfer,
    EmitUserEvent,
    Input,
    MarkWorkOrder,
    MergeThreeway,
    Mode,
    ReturnToAgent,
    Tick,
)
from routing.transfer_correlation import (
    Correlator,
    FeatureIgnored,
    FeatureRequest,
    LiveTransfer,
    TransferError,
    dtmf_exten,
    read_feature,
    seat_channel,
)

from wire.ami import AmiDisconnected

__all__ = ["COMPLETE_KEYS", "THREEWAY_KEYS", "Ami",
           "TransferError", "TransferService"]

log = structlog.get_logger("routing.transfer_service")

#: features.conf.j2: atxferthreeway / atxfercomplete, keyed on the agent's channel as if pressed
THREEWAY_KEYS = "*3"
COMPLETE_KEYS = "*2"


class Ami(Protocol):
    """What this service needs from `wire.ami.AmiClient`."""

    async def action(self, name: str, timeout: float | None = None, raise_on_error: bool = True,
                     **headers: Any) -> dict[str, str]: ...

    async def action_list(self, name: str, timeout: float | None = None, **headers: Any) -> list[dict[str, str]]: ...

    def on_event(self, name: str, callback: Callable[[dict[str, str]], Any]) -> Any: ...


OutcomeCallback = Callable[[dict[str, Any]], Awaitable[None]]


class TransferService:
    """Starts transfers (feature codes, API), follows them through AMI events, reports outcomes.

    `await on_outcome(record)` is called once per reported outcome with the
    transfer's snapshot plus ``caller`` (unmasked, for the ticket) and ``work_order``.
    """

    def __init__(self, ami: Ami, config: Config, on_outcome: OutcomeCallback | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 mode_policy: Mapping[str, Mode | str] | None = None,
                 context: str = Context.TRANSFER, grace_s: float = 5.0, setup_timeout_s: float = 10.0,
                 tick_s: float = 1.0, is_agent_channel: Callable[[str], bool] | None = None,
                 agent_context: str | None = None) -> None:
        """`context` takes blind transfers (the caller alone: a failed dial still ends in the general
        queue); `agent_context` (default: `context`; the controller passes Context.AGENT_TRANSFER, where a
        failed dial just ends and Asterisk returns the caller to the agent) takes Atxfer consultation legs."""
        self.ami = ami
        self.config = config
        self.on_outcome = on_outcome
        self.clock = clock
        self.tick_s = tick_s
        self.is_agent_channel = is_agent_channel or functools.partial(seat_channel, config)
        self.correlator = Correlator(config, mode_policy=mode_policy, context=context,
                                     agent_context=agent_context or context, grace_s=grace_s,
                                     setup_timeout_s=setup_timeout_s)
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        ami.on_event("*", self._on_event)

    @property
    def _live(self) -> dict[str, LiveTransfer]:
        """The transfers being followed, by id (the correlator's; for introspection and tests)."""
        return self.correlator.live

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
        tid = self.correlator.by_agent.get(agent_channel)
        live = self.correlator.live.get(tid) if tid else None
        if tid is None or live is None:
            raise TransferError(f"{agent_channel} has no transfer in progress")
        async with self._locks[tid]:
            return await self._keys(live, keys, why)

    def active(self) -> list[dict[str, Any]]:
        """Transfers in progress (including three-way calls still up), for an API or the CLI."""
        return [live.view() for live in self.correlator.live.values()]

    async def tick(self, now: float | None = None) -> None:
        """Feed the clock to every transfer (each under its own lock, concurrently)."""
        at = self.clock() if now is None else now
        tids = list(self.correlator.live)
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
        reattached = abandoned = 0
        for found in self.correlator.recover(rows, self.clock(), self._new_id):
            m = found.live.machine
            self._locks[m.id] = asyncio.Lock()
            if found.attached:
                log.info("transfer_reattached", transfer=m.id, target=m.target, state=str(m.state),
                         agent=m.agent, linkedid=m.linkedid)
                reattached += 1
            else:
                log.warning("transfer_unattachable", transfer=m.id, target=m.target, linkedid=m.linkedid,
                            caller_present=found.caller_present, agent_found=found.agent_found)
                abandoned += 1
            for inp in found.inputs:
                self._spawn(self._feed(m.id, inp))
        await self.drain()
        log.info("transfer_recovered", reattached=reattached, abandoned=abandoned)
        return {"reattached": reattached, "abandoned": abandoned}

    # ------------------------------------------------------------------ starting
    def _begin(self, agent_channel: str, target: str, mode: Mode | str | None, linkedid: str,
               caller_number: str, caller_channel: str = "") -> LiveTransfer:
        """Create and index a transfer synchronously, so the very next event already finds it."""
        live = self.correlator.begin(agent_channel, target, mode, linkedid, caller_number, caller_channel,
                                     now=self.clock(), new_id=self._new_id)
        m = live.machine
        self._locks[m.id] = asyncio.Lock()
        if dtmf_exten(self.config, target) is None:
            log.warning("transfer_exten_not_dtmf", target=target)
        log.info("transfer_started", transfer=m.id, target=target, kind=m.kind, mode=str(m.mode),
                 requested_mode=str(mode or ""), agent=m.agent, linkedid=linkedid,
                 caller=mask_number(caller_number))
        return live

    async def _run_start(self, tid: str) -> None:
        """Send Atxfer (or BlindTransfer) under the transfer's lock and feed Asterisk's answer."""
        lock, live = self._locks.get(tid), self.correlator.live.get(tid)
        if lock is None or live is None:
            return
        async with lock:
            name, headers = self.correlator.start_action(live)
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
            await self._apply(live, live.machine.feed(ack))

    def _start_from_feature(self, request: FeatureRequest | FeatureIgnored) -> None:
        """UserEvent HotlineFeature (Target) raised on the agent's channel by a one-key feature code."""
        if isinstance(request, FeatureIgnored):
            log.warning("transfer_feature_ignored", reason=request.reason, **request.details)
            return
        try:
            live = self._begin(request.channel, request.target, None, request.linkedid, request.caller_number)
        except TransferError as e:
            log.warning("transfer_refused", channel=request.channel, target=request.target, reason=str(e))
            return
        self._spawn(self._run_start(live.machine.id))

    # ------------------------------------------------------------------ events
    def _on_event(self, ev: dict[str, str]) -> None:
        """AMI callback: route synchronously, handle in tasks; never raises, never awaits Asterisk."""
        name = ev.get("Event", "")
        try:
            request = read_feature(ev, self.is_agent_channel)
            if request is not None:
                self._start_from_feature(request)
                return
            for tid, inp in self.correlator.route(ev, self.clock()):
                self._spawn(self._feed(tid, inp))
        except Exception:
            log.exception("transfer_event_failed", ami_event=name)

    async def _feed(self, tid: str, inp: Input) -> None:
        """One input into one transfer, under that transfer's lock only. Failures stay inside it."""
        lock = self._locks.get(tid)
        if lock is None:
            return
        async with lock:
            live = self.correlator.live.get(tid)
            if live is None or live.machine.closed:
                return
            try:
                actions = live.machine.feed(inp)
                await self._apply(live, actions)
            except Exception:
                log.exception("transfer_handler_failed", transfer=tid, input=type(inp).__name__)

    # ------------------------------------------------------------------ actions
    async def _apply(self, live: LiveTransfer, actions: Iterable[Action]) -> None:
        """Carry out the machine's actions in order (`_EXECUTORS`); one failing never stops the next."""
        m = live.machine
        for act in actions:
            try:
                await _EXECUTORS[type(act)](self, live, act)
            except Exception:
                log.exception("transfer_action_failed", transfer=m.id, action=type(act).__name__)
        if m.closed:
            self._forget(m.id)

    async def _return_to_agent(self, live: LiveTransfer, act: ReturnToAgent) -> None:
        """Drop the target leg if it is still up; Asterisk then puts the caller back with the agent."""
        for chan in live.return_channels():
            await self._hangup(chan, live.machine.id)

    async def _merge_threeway(self, live: LiveTransfer, act: MergeThreeway) -> None:
        await self._keys(live, THREEWAY_KEYS, "threeway")

    async def _complete_transfer(self, live: LiveTransfer, act: CompleteTransfer) -> None:
        if not await self._keys(live, COMPLETE_KEYS, "complete"):
            # hanging up the transferer during the consultation completes it, too
            await self._hangup(live.agent_channel, live.machine.id)

    async def _mark_work_order(self, live: LiveTransfer, act: MarkWorkOrder) -> None:
        log.info("transfer_work_order", transfer=live.machine.id, target=act.target, reason=act.reason,
                 linkedid=live.machine.linkedid)

    async def _report(self, live: LiveTransfer, act: EmitUserEvent) -> None:
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
                await self.on_outcome(record)
            except Exception:
                log.exception("transfer_outcome_callback_failed", transfer=m.id)

    async def _keys(self, live: LiveTransfer, keys: str, why: str) -> bool:
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
        self.correlator.forget(tid)
        self._locks.pop(tid, None)  # waiters keep their reference and then see the transfer gone

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{int(time.time())}-{next(self._ids)}"

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


#: each kind of action the machine asks for → how it is carried out over AMI
_EXECUTORS: Mapping[type, Callable[[TransferService, LiveTransfer, Any], Awaitable[None]]] = {
    ReturnToAgent: TransferService._return_to_agent,
    MergeThreeway: TransferService._merge_threeway,
    CompleteTransfer: TransferService._complete_transfer,
    MarkWorkOrder: TransferService._mark_work_order,
    EmitUserEvent: TransferService._report,
}
