"""A scripted caller: a real call into the hotline through Asterisk, driven over AMI.

It originates `Local/<number>@hotline-inbound` with the caller-robot context on the
other half, then keys DTMF (AMI PlayDTMF on its own leg) when it sees the IVR reach
a step, like a person listening. Used by the demo and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model.contract import Event as UserEventName
from model.contract import ivr_steps
from wire.ami import AmiClient

Event = dict[str, str]


@dataclass
class CallRobot:
    ami: AmiClient
    number: str = "12345"
    caller: str = "13800138000"
    hold_s: int = 120
    events: list[Event] = field(default_factory=list)
    channel: str | None = None  # our own leg (Local/...;1)
    linkedid: str | None = None
    _new: asyncio.Event = field(default_factory=asyncio.Event)
    hung_up: bool = False

    async def dial(self, timeout: float = 10.0) -> "CallRobot":
        """Place the call and wait until Asterisk created it."""
        self.ami.on_event("*", self._on_event)
        self._channel_id = f"robot-{uuid.uuid4().hex[:12]}"
        await self.ami.action(
            "Originate",
            Channel=f"Local/{self.number}@hotline-inbound",
            Context="caller-robot", Exten="s", Priority="1",
            CallerID=f'"robot" <{self.caller}>',
            Variable=f"ROBOT_PRE=0,ROBOT_HOLD={self.hold_s}",
            ChannelId=self._channel_id,
            Async="true", Timeout="10000",
        )
        await self.wait_for(lambda e: self.linkedid is not None, timeout)
        return self

    def _on_event(self, e: Event) -> None:
        if e.get("Event") == "Newchannel" and e.get("Uniqueid") == self._channel_id:
            self.channel = e.get("Channel")
            self.linkedid = e.get("Linkedid")
        if self.linkedid and e.get("Linkedid") == self.linkedid:
            self.events.append(e)
            if e.get("Event") == "Hangup" and e.get("Channel") == self.channel:
                self.hung_up = True
        self._new.set()

    async def wait_for(self, pred: Callable[[Event], bool], timeout: float = 15.0) -> Event:
        """Wait for an event of this call matching `pred` (events already seen count)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for e in self.events[seen:]:
                if pred(e):
                    return e
            seen = len(self.events)
            if self.linkedid is None and pred({}):
                return {}
            left = deadline - time.monotonic()
            if left <= 0:
                steps = [e.get("Step") or e.get("Event") for e in self.events][-25:]
                raise TimeoutError(f"call {self.linkedid}: condition not met in {timeout} s; last events: {steps}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass

    async def wait_user_event(self, name: str, timeout: float = 15.0, **headers: str) -> Event:
        return await self.wait_for(
            lambda e: e.get("Event") == "UserEvent" and e.get("UserEvent") == name
            and all(e.get(k) == v for k, v in headers.items()), timeout)

    async def wait_step(self, step: str, timeout: float = 15.0) -> Event:
        return await self.wait_user_event(UserEventName.IVR, timeout, Step=step)

    async def press(self, digits: str, gap_s: float = 0.3) -> None:
        """Key DTMF as the caller (played out of our leg into the IVR's)."""
        assert self.channel, "dial() first"
        for d in digits:
            await self.ami.action("PlayDTMF", Channel=self.channel, Digit=d, Duration="120")
            await asyncio.sleep(gap_s)

    async def barge(self, digits: str, prompt: str = "greeting", after_s: float = 0.6) -> None:
        """Key `digits` during `prompt` (barge-in) instead of listening to it to the end. The prompt's own
        HotlinePrompt is waited for, not the call's start: a key that reaches the channel before the controller
        plays anything is dropped, and a slow start must not turn a barge-in into no input."""
        await self.wait_user_event(UserEventName.PROMPT, 20, Prompt=prompt)
        await asyncio.sleep(after_s)
        await self.press(digits)

    async def hangup(self) -> None:
        if self.channel and not self.hung_up:
            try:
                await self.ami.action("Hangup", Channel=self.channel)
            except Exception:  # noqa: BLE001 - already gone
                pass

    async def wait_hangup(self, timeout: float = 30.0) -> None:
        await self.wait_for(lambda e: self.hung_up, timeout)

    def user_events(self, name: str) -> list[Event]:
        return [e for e in self.events if e.get("Event") == "UserEvent" and e.get("UserEvent") == name]

    def played(self) -> list[str]:
        """Sound files Asterisk reports playing on this call (from Newexten/Playback data is not enough)."""
        return [step for e in self.user_events(UserEventName.IVR) for step in ivr_steps(e)]


async def abandoned_call(ami: AmiClient, caller: str, *, number: str = "12345", keys: str = "0",
                         in_ivr: bool = False) -> CallRobot:
    """A caller who gives up, for the callback list: reaches the queue (keying `keys` during the greeting;
    "" for a line that queues at once) with nobody to answer, or (`in_ivr`) stays in the greeting; then,
    a second later, hangs up. The robot, hung up."""
    robot = await CallRobot(ami, number=number, caller=caller).dial()
    if in_ivr:
        await robot.wait_user_event(UserEventName.CALL, 10)
    else:
        if keys:
            await robot.barge(keys)
        await robot.wait_for(lambda e: e.get("Event") == "QueueCallerJoin", 20)
    await asyncio.sleep(1.0)
    await robot.hangup()
    return robot


async def wait_ticket(store: Any, linkedid: str, timeout: float = 20.0, complete: bool = True) -> Any:
    """Poll the store until the call's ticket exists (and is no longer in progress)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = await store.get_by_linkedid(linkedid)
        if t is not None and (not complete or t.outcome != "in_progress"):
            return t
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no {'complete ' if complete else ''}ticket for call {linkedid} within {timeout} s")
