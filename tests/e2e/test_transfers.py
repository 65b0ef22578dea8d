"""Issue 4: agents' transfers with a REAL SIP seat (baresip 1001) through Asterisk 22.

A caller reaches seat 1001 through the general queue (12358, which goes to the queue with
no menu, keeps each call short). The agent's keys are emulated on the seat's own channel
with AMI PlayDTMF Receive: Asterisk treats them exactly as DTMF received from the phone
(bridge features *2/*3 and the one-key codes fire). baresip 1.0's ctrl_tcp has no command
to send DTMF inside a call, so the phone itself cannot be made to key them.
"""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from hotline.callrobot import CallRobot, wait_ticket
from model.contract import Context
from tests.e2e.conftest import _hang_up_leftovers, call_channels, polled

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture(autouse=True)
async def _no_call_left(cfg):  # noqa: ANN001, ANN202
    """A test that fails mid-transfer leaves seat 1001 (one phone for the module) in its call: hang up what
    is left after each test, so one failure is not every following test's too."""
    yield
    left = await _hang_up_leftovers(cfg)
    if left:
        print(f"hung up {len(left)} channel(s) this test left: {left}")


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


async def keys(ami, channel: str, digits: str) -> None:
    """The agent keys `digits` on the seat phone (DTMF received on its channel)."""
    for d in digits:
        await ami.action("PlayDTMF", Channel=channel, Digit=d, Receive="yes")
        await asyncio.sleep(0.12)


async def call_to_seat(ami, caller: str) -> tuple[CallRobot, str]:
    """A caller through the general queue to seat 1001; returns the robot and the agent's channel."""
    robot = await CallRobot(ami, number="12358", caller=caller).dial()
    connect = await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 20)
    agent = connect["DestChannel"]
    assert agent.startswith("PJSIP/1001-"), agent
    await asyncio.sleep(0.5)  # both sides are in the bridge
    return robot, agent


async def settled(ami, linkedid: str, check) -> list[dict[str, str]]:  # noqa: ANN001
    """The call's channels once `check(rows)` holds (or after 8 s): Asterisk moves channels between bridges on its
    own time, not in step with the controller's HotlineTransfer."""
    return await polled(lambda: call_channels(ami, linkedid), check)


def bridged_with(rows: list[dict[str, str]], prefix_a: str, prefix_b: str) -> bool:
    """True when a channel starting with prefix_a shares a bridge with one starting with prefix_b."""
    a = {r.get("BridgeId") for r in rows if r.get("Channel", "").startswith(prefix_a) and r.get("BridgeId")}
    b = {r.get("BridgeId") for r in rows if r.get("Channel", "").startswith(prefix_b) and r.get("BridgeId")}
    return bool(a & b)


async def hang_up_and_ticket(controller, robot: CallRobot):
    await robot.hangup()
    await robot.wait_hangup(10)
    return await wait_ticket(controller.store, robot.linkedid, 20)


async def test_attended_transfer_to_branch_center_by_feature_code(controller, ami, seat):
    robot, agent = await call_to_seat(ami, "13900005001")
    await keys(ami, agent, "*71")  # the branch center's one-key code: an attended transfer starts
    reached = await robot.wait_user_event("SimTrunkReached", 15)
    assert reached["Target"] == "12366"
    await asyncio.sleep(1.0)  # the agent talks to the branch while the caller waits
    await keys(ami, agent, "*2")  # and hands the caller over
    done = await robot.wait_user_event("HotlineTransfer", 10, Outcome="completed")
    assert done["Target"] == "tax" and done["Mode"] == "attended" and done["Agent"] == "1001"

    def handed_over(rows: list[dict[str, str]]) -> bool:
        return (not any(r["Channel"].startswith("PJSIP/1001-") for r in rows)
                and bridged_with(rows, "Local/12358@hotline-inbound-", "Local/12366@branch-sim-"))

    rows = await settled(ami, robot.linkedid, handed_over)
    assert not any(r["Channel"].startswith("PJSIP/1001-") for r in rows), "the agent is free again"
    assert bridged_with(rows, "Local/12358@hotline-inbound-", "Local/12366@branch-sim-"), rows
    t = await hang_up_and_ticket(controller, robot)
    assert t.outcome == "transferred" and t.actual_dest == "transfer:tax" and t.agent == "1001"
    assert [(x["target"], x["mode"], x["outcome"]) for x in t.transfers] == [("tax", "attended", "completed")]


async def test_threeway_call_with_branch_center_from_the_api(controller, ami, seat):
    robot, agent = await call_to_seat(ami, "13900005002")
    view = await controller.transfers.start(agent, "tax", mode="threeway")
    assert view["mode"] == "threeway" and view["linkedid"] == robot.linkedid
    await robot.wait_user_event("SimTrunkReached", 15)
    merged = await robot.wait_user_event("HotlineTransfer", 10, Outcome="threeway")
    assert merged["Target"] == "tax"
    rows = await settled(ami, robot.linkedid, lambda rows: bridged_with(
        rows, "Local/12358@hotline-inbound-", "PJSIP/1001-") and bridged_with(rows, "PJSIP/1001-", "Local/12366@"))
    assert bridged_with(rows, "Local/12358@hotline-inbound-", "PJSIP/1001-"), rows
    assert bridged_with(rows, "PJSIP/1001-", "Local/12366@"), rows  # caller, agent and branch in one call
    await seat.ahangup()  # the agent leaves; caller and branch go on
    await robot.wait_user_event("HotlineTransfer", 10, Outcome="completed")
    t = await hang_up_and_ticket(controller, robot)
    outcomes = [(x["target"], x["mode"], x["outcome"]) for x in t.transfers]
    assert ("tax", "threeway", "threeway") in outcomes and t.outcome == "transferred"


async def test_unanswered_transfer_returns_the_caller_and_dispatches_a_work_order(controller, ami, seat):
    await ami.action("Setvar", Variable="SIM_BRANCH_NOANSWER", Value="1")  # nobody at the branch today
    try:
        robot, agent = await call_to_seat(ami, "13900005003")
        await keys(ami, agent, "*71")
        await robot.wait_user_event("SimTrunkRinging", 15)
        failed = await robot.wait_user_event("HotlineTransfer", 30, Outcome="no_answer")
        assert failed["WorkOrder"] == "1" and failed["Target"] == "tax"
        # the consultation leg rang in the agents' transfer context and its Dial gave up (never a queue). Read
        # Asterisk's own DialEnd: the controller acts on that very event and drops the leg to return the caller,
        # which may cut the dialplan's HotlineDialFailed after Dial (a diagnostic only) before it runs
        # (the Context header is where the leg's Dial ran: a leg sent on to the callers' transfer context, which
        # falls back to a queue, keeps its channel name but not its context)
        dial = await robot.wait_for(lambda e: e.get("Event") == "DialEnd" and e.get("DialStatus") != "ANSWER"
                                    and e.get("Context") == Context.AGENT_TRANSFER, 10)
        assert dial["DialStatus"] == "NOANSWER", dial
        rows = await settled(ami, robot.linkedid, lambda rows: bridged_with(rows, "Local/12358@hotline-inbound-",
                             "PJSIP/1001-") and not any("@branch-sim-" in r["Channel"] for r in rows))
        assert bridged_with(rows, "Local/12358@hotline-inbound-", "PJSIP/1001-"), rows  # back with the agent
        assert not any("@branch-sim-" in r["Channel"] for r in rows)
        assert not robot.user_events("HotlineOverflow")
        assert [e["Queue"] for e in robot.events if e.get("Event") == "QueueCallerJoin"] == ["hotline-general"]
    finally:
        await ami.action("Setvar", Variable="SIM_BRANCH_NOANSWER", Value="")
    t = await hang_up_and_ticket(controller, robot)
    assert t.outcome == "answered" and t.agent == "1001"
    assert [(x["target"], x["outcome"]) for x in t.transfers] == [("tax", "no_answer")]
    for _ in range(20):  # the work order is dispatched right after the ticket is saved
        t = await controller.store.get_by_linkedid(robot.linkedid)
        if t.state == "dispatched":
            break
        await asyncio.sleep(0.2)
    assert t.state == "dispatched"


@pytest.mark.parametrize("target,code,number,mode,outcome", [
    ("110", "*810", "110", "threeway", "threeway"),
    ("119", "*819", "119", "threeway", "threeway"),
    ("120", "*820", "120", "threeway", "threeway"),
    ("122", "*822", "122", "threeway", "threeway"),
    ("water", "*831", "water", "onekey", "completed"),
    ("power", "*832", "power", "onekey", "completed"),
    ("gas", "*833", "gas", "onekey", "completed"),
])
async def test_one_key_transfer(controller, ami, seat, target, code, number, mode, outcome):
    """一键转接: emergency lines in a three-way call (国办发〔2022〕12号), utilities handed over."""
    robot, agent = await call_to_seat(ami, "1390000600" + str(len(code) + int(code[-1])))
    await keys(ami, agent, code)
    reached = await robot.wait_user_event("SimTrunkReached", 15)
    assert reached["Target"] == number
    ev = await robot.wait_user_event("HotlineTransfer", 10, Outcome=outcome)
    assert ev["Target"] == target and ev["Mode"] == mode
    if mode == "threeway":
        await seat.ahangup()  # the agent drops out once 110 has it; caller and 110 go on
        await robot.wait_user_event("HotlineTransfer", 10, Outcome="completed")
    t = await hang_up_and_ticket(controller, robot)
    assert (target, mode, outcome) in [(x["target"], x["mode"], x["outcome"]) for x in t.transfers]
    assert t.outcome == "transferred" and t.actual_dest == f"transfer:{target}"
