"""Issue 15, goal 4: what one call costs the controller, counted rather than timed.

The controller's CPU per call is measured by the benchmarks (bench/sip_capacity.py, bench/RESULTS.md) and
moves with the machine: the same code took 9-10 ms per SIP call on one session's machine and 16 ms on a
slower one. What it is made of does not move: each AGI command is one round trip (a write, then a
wake-up for Asterisk's reply), each AMI event sent to the controller's account is read and dispatched.
This test places one real call through the real Asterisk and the real controller and counts both, so a
change that adds a round trip or an event to every call fails here, on any machine, and has to say why
by changing the budget below.

The call is the common one: a caller keys 1 during the greeting (consultation, the general queue), waits
in the queue with nobody free, and hangs up; the ticket is complete. AGI commands are counted from the
test world's `sim` account (AGIExecStart, a class the controller's account never reads); the controller's
events from a second login with the controller's own account, which Asterisk filters as it filters the
controller's (model/contract.py, manager.conf's eventfilter).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from hotline.callrobot import CallRobot, wait_ticket
from model.config import Config
from model.contract import Event
from model.secrets import ami_secret
from wire.ami import AmiClient

pytestmark = pytest.mark.e2e

#: the AGI commands of the call above, by their first two words (the command and, for EXEC, the application):
#: the ticket number (SET VARIABLE, before the greeting: the agent and the dialplan read it), the greeting and
#: the emergency notice (each a HotlinePrompt and a STREAM FILE; the key cuts the greeting short),
#: HOTLINE_GREETED (SET VARIABLE), the IVR path (one HotlineIVR: the main menu, the key and the route, as
#: nobody waited in the menu), the route (HotlineRoute, then its variables in one MSet)
AGI_BUDGET = Counter({"EXEC UserEvent": 4, "STREAM FILE": 2, "SET VARIABLE": 2, "EXEC MSet": 1})

#: the events the controller's account is sent for the call: the two Local channels' Newchannel, Hangup and
#: Cdr (a SIP caller has one channel), the dialplan's HotlineCall, the IVR's HotlineIVR and HotlineRoute, the
#: queue's HotlineRecording notice (HotlinePrompt is filtered out), the queue's join/abandon/leave, and the
#: robot's own OriginateResponse (a real caller has none; Asterisk sends it to every account reading `call`)
AMI_BUDGET = Counter({"Newchannel": 2, "UserEvent": 4, "QueueCallerJoin": 1, "QueueCallerAbandon": 1,
                      "QueueCallerLeave": 1, "Hangup": 2, "Cdr": 2, "OriginateResponse": 1})


def _of_call(e: dict[str, str], linkedid: str, uids: set[str]) -> bool:
    """Whether an event belongs to the call (the Cdr event names its channel, not the call)."""
    return e.get("Linkedid") == linkedid or e.get("UniqueID") in uids or e.get("Uniqueid") in uids


async def test_one_call_costs_the_controller_its_budget_of_round_trips_and_events(cfg: Config, controller, ami):
    a = cfg.asterisk.ami
    as_controller = AmiClient(a.host, a.port, a.account_username("controller"), ami_secret(cfg, "controller"))
    sent: list[dict[str, str]] = []
    as_controller.on_event("*", sent.append)
    await as_controller.start()
    try:
        await as_controller.wait_connected(10)
        robot = await CallRobot(ami, caller="13900000151").dial()
        await robot.barge("1", after_s=1.0)
        await robot.wait_for(lambda e: e.get("Event") == "QueueCallerJoin", 20)
        await asyncio.sleep(1.0)
        await robot.hangup()
        assert robot.linkedid
        ticket = await wait_ticket(controller.store, robot.linkedid, 20)
        assert ticket.queue == "general" and ticket.category == "咨询"
        assert ticket.ivr_path[:3] == ["menu:main", "key:1", "route:queue:general/咨询"]
        await asyncio.sleep(1.0)  # the Cdr follows the Hangup; the ticket may be complete before it arrives
    finally:
        await as_controller.close()

    uids = {e.get("Uniqueid", "") for e in robot.events if e.get("Event") == "Newchannel"} - {""}
    agi = Counter(" ".join(e.get("Command", "").split()[:2]) for e in robot.events
                  if e.get("Event") == "AGIExecStart")
    events = Counter(e.get("Event", "") for e in sent if _of_call(e, robot.linkedid, uids))
    user_events = sorted(e.get("UserEvent", "") for e in sent
                         if e.get("Event") == "UserEvent" and _of_call(e, robot.linkedid, uids))
    got = (f"AGI commands: {dict(agi)} ({agi.total()}); the controller's events: {dict(events)} "
           f"({events.total()}), UserEvents {user_events}")
    print(got)
    # the controller never reads the prompt announcements: they would be parsed for nothing
    assert Event.PROMPT.value not in user_events, got
    assert user_events == sorted([Event.CALL.value, Event.IVR.value, Event.RECORDING.value, Event.ROUTE.value]), got
    assert agi == AGI_BUDGET, got
    assert events == AMI_BUDGET, got
