"""Issue 15, goal 4: what one call costs the controller, counted rather than timed.

The controller's CPU per call is measured by the benchmarks (bench/sip_capacity.py, bench/RESULTS.md) and
moves with the machine: the same code took about 10 ms per SIP call on two sessions' machines and 13-16 ms
on a slower one. What a call is made of does not move with the machine: each AGI command is one round
trip (a write, then a wake-up for Asterisk's reply), each AMI event sent to the controller's account is read
and dispatched. These tests place real calls through the real Asterisk and the real controller and count
both, so a change that adds a round trip or an event to these calls fails here, on any machine, and has to
say why by changing a budget below. (The counts are Asterisk 22's: another Asterisk may send other events.)

The calls are Local-channel robots (two channels per call, and the robot's own Originate), not SIP callers:
the events of the robot alone are named as such. Two shapes:
- a caller who keys 1 during the greeting (barge-in), and
- a caller who listens to the greeting and the menu and keys 1 at the menu's question;
each then waits in the general queue with nobody free and hangs up, and the ticket is complete.
AGI commands are counted from the test world's `sim` account (AGIExecStart, a class the controller's account
never reads); the controller's events from a second login with the controller's own account, which Asterisk
filters as it filters the controller's (model/contract.py, manager.conf's eventfilter).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from hotline.callrobot import CallRobot, wait_ticket
from model.config import Config
from model.contract import Event
from tests.e2e.conftest import _ami_as, until

pytestmark = pytest.mark.e2e

#: the AGI commands both calls share, by their first two words (the command and, for EXEC, the application):
#: the ticket number (SET VARIABLE, before the greeting: the agent and the dialplan read it), the greeting and
#: the emergency notice (each a HotlinePrompt and a STREAM FILE), HOTLINE_GREETED (SET VARIABLE), the route
#: (HotlineRoute, then its variables in one MSet)
_SHARED = Counter({"EXEC UserEvent": 3, "STREAM FILE": 2, "SET VARIABLE": 2, "EXEC MSet": 1})

AGI_BUDGET = {
    # the IVR path as one HotlineIVR (the main menu, the key, the route: nobody waited in the menu)
    "barge-in": _SHARED + Counter({"EXEC UserEvent": 1}),
    # the access offer ("For English, press 8": a HotlinePrompt and a STREAM FILE, skipped by a key pressed
    # ahead), the IVR path before the menu's question (HotlineIVR), its HotlinePrompt and GET DATA, then the key
    # and the route (HotlineIVR): as many round trips as bench/sip_capacity.py's SIP call, which keys nothing
    # (the menu's timeout, one more step in the second HotlineIVR, takes it to the general queue)
    "menu": _SHARED + Counter({"EXEC UserEvent": 4, "STREAM FILE": 1, "GET DATA": 1}),
}

#: the events the controller's account is sent for either call: the two Local channels' Newchannel, Hangup
#: and Cdr (a SIP caller has one channel), the dialplan's HotlineCall, the IVR's HotlineIVR and HotlineRoute,
#: the queue's HotlineRecording notice (HotlinePrompt is filtered out: the controller reads none), the queue's
#: join/abandon/leave; and the robot's own Originate: its OriginateResponse, DialBegin and DialEnd (a real
#: caller has none of them)
AMI_BUDGET = {
    "barge-in": Counter({"Newchannel": 2, "UserEvent": 4, "QueueCallerJoin": 1, "QueueCallerAbandon": 1,
                         "QueueCallerLeave": 1, "Hangup": 2, "Cdr": 2,
                         "OriginateResponse": 1, "DialBegin": 1, "DialEnd": 1}),
}
AMI_BUDGET["menu"] = AMI_BUDGET["barge-in"] + Counter({"UserEvent": 1})  # the second HotlineIVR

USER_EVENTS = {"barge-in": sorted([Event.CALL.value, Event.IVR.value, Event.RECORDING.value, Event.ROUTE.value])}
USER_EVENTS["menu"] = sorted([*USER_EVENTS["barge-in"], Event.IVR.value])


def _of_call(e: dict[str, str], linkedid: str, uids: set[str]) -> bool:
    """Whether an event belongs to the call: by its linkedid, or by a channel's uniqueid (OriginateResponse
    names only the channel; DialBegin/DialEnd of an Originate name only the destination, `Dest*`)."""
    return (linkedid in (e.get("Linkedid"), e.get("DestLinkedid"))
            or bool(uids & {e.get("Uniqueid"), e.get("UniqueID"), e.get("DestUniqueid")}))


@pytest.mark.parametrize("shape", ["barge-in", "menu"])
async def test_one_call_costs_the_controller_its_budget_of_round_trips_and_events(cfg: Config, controller, ami,
                                                                                  shape: str):
    as_controller = await _ami_as(cfg, "controller")
    sent: list[dict[str, str]] = []
    try:
        await asyncio.sleep(0.5)
        as_controller.on_event("*", sent.append)  # from here on: the login's own events are over
        robot = await CallRobot(ami, caller="13900000151").dial()
        if shape == "barge-in":
            await robot.barge("1", prompt=cfg.center.greeting, after_s=0.3)
        else:
            await robot.wait_user_event(Event.PROMPT, 60, Prompt="main_menu")
            await asyncio.sleep(0.5)
            await robot.press("1")
        await robot.wait_for(lambda e: e.get("Event") == "QueueCallerJoin", 20)
        await asyncio.sleep(1.0)
        await robot.hangup()
        assert robot.linkedid
        ticket = await wait_ticket(controller.store, robot.linkedid, 20)
        assert ticket.queue == "general" and ticket.category == "咨询"
        assert ticket.ivr_path[-3:] == ["menu:main", "key:1", "route:queue:general/咨询"]
        # both Local channels' Cdr may follow the ticket's completion
        await until(lambda: sum(e.get("Event") == "Cdr" and e.get("Linkedid") == robot.linkedid for e in sent) >= 2,
                    15, "both channels' Cdr events")
        await asyncio.sleep(0.5)
    finally:
        await as_controller.close()

    lid = robot.linkedid
    uids = {e.get("Uniqueid", "") for e in robot.events if e.get("Event") == "Newchannel"} - {""}
    agi = Counter(" ".join(e.get("Command", "").split()[:2]) for e in robot.events
                  if e.get("Event") == "AGIExecStart")
    ours = [e for e in sent if _of_call(e, lid, uids)]
    events = Counter(e.get("Event", "") for e in ours)
    user_events = sorted(e.get("UserEvent", "") for e in ours if e.get("Event") == "UserEvent")
    others = Counter(e.get("Event", "") for e in sent if not _of_call(e, lid, uids))
    got = (f"{shape}: AGI commands {dict(agi)} ({agi.total()}); the controller's events {dict(events)} "
           f"({events.total()}), UserEvents {user_events}; not of the call: {dict(others)}")
    print(got)
    # no other call was up: an event the controller was sent that is not the call's would escape the budget
    assert not others, got
    # the controller never reads the prompt announcements: they would be parsed for nothing
    assert Event.PROMPT.value not in user_events, got
    assert user_events == USER_EVENTS[shape], got
    assert agi == AGI_BUDGET[shape], got
    assert events == AMI_BUDGET[shape], got
