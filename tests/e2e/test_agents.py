"""Issue 11: seat agents' states through a real Asterisk 22 with a real baresip seat (1001).

Members stay static in queues.conf; the controller's agent machine pauses/unpauses them (QueuePause
with a reason). Seat 1002 is not registered here, so a general-queue call has only 1001 to ring.
States are driven through the controller's control socket (what `hotline agents` sends) and by the
seat phone itself dialing the feature codes (*531, *54), whose confirmation prompt is checked.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio

from hotline.callrobot import CallRobot
from hotline.control import ask
from hotline.controller import Controller

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def wrapup_controller(cfg, asterisk, store_url):
    """The controller with 5 s of after-call work on the general queue."""
    c5 = cfg.model_copy(deep=True)
    c5.queues["general"].wrapup_s = 5
    c = Controller.for_sandbox(c5, asterisk, store_url=store_url)
    await c.start()
    await c.ami.wait_connected(10)
    yield c
    await c.stop()


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


async def member(ami, queue: str, ext: str) -> dict[str, str]:
    rows = await ami.action_list("QueueStatus", Queue=f"hotline-{queue}")
    return next(r for r in rows if r.get("Event") == "QueueMember" and f"PJSIP/{ext}" in
                (r.get("Location"), r.get("StateInterface")))


async def wait_member(ami, queue: str, ext: str, paused: str, timeout: float = 5.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        m = await member(ami, queue, ext)
        if m.get("Paused") == paused or time.monotonic() > deadline:
            return m
        await asyncio.sleep(0.2)


async def control(controller, **request):
    return await ask(controller.control.path, request, timeout=10)


async def hang_up(robot: CallRobot) -> None:
    await robot.hangup()
    await robot.wait_hangup(10)


async def test_busy_keeps_queue_calls_away_and_ready_lets_them_ring(controller, ami, seat):
    r = await control(controller, op="agent", action="busy", agent="1001", reason="培训", actor="班长王")
    assert r == {"ok": True, "agent": "1001", "seat": "1001", "state": "busy", "reason": "培训"}
    m = await wait_member(ami, "general", "1001", "1")
    assert m["Paused"] == "1" and m.get("PausedReason") == "培训"
    robot = await CallRobot(ami, number="12358", caller="13900006001").dial()
    try:
        with pytest.raises(TimeoutError):  # the caller waits: 1001 is busy, 1002 not registered
            await robot.wait_for(is_event("AgentCalled"), 8)
        r = await control(controller, op="agent", action="ready", agent="1001", actor="班长王")
        assert r["state"] == "ready"
        connect = await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 20)
        assert connect["DestChannel"].startswith("PJSIP/1001-")
        deadline = time.monotonic() + 5  # the controller's own AMI link sees AgentConnect too
        while controller.agents.agents["1001"].state.value != "talking" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await controller.agents.drain()  # the state change is saved
        listed = {a["agent"]: a for a in (await control(controller, op="agents"))["agents"]}
        assert listed["1001"]["state"] == "talking" and listed["1001"]["calls_today"] == 1
    finally:
        await hang_up(robot)
    events = await controller.store.agent_events(agent="1001")
    busy = [e for e in events if e.new == "busy"]
    # who: the user of the uid that connected to the control socket (SO_PEERCRED); 班长王 only as a label
    assert busy and busy[-1].actor == "root (班长王)" and busy[-1].reason == "培训"


async def test_after_call_work_holds_the_next_call_for_wrapup_s(wrapup_controller, ami, seat):
    controller = wrapup_controller
    first = await CallRobot(ami, number="12358", caller="13900006002").dial()
    await first.wait_for(is_event("AgentConnect", Queue="hotline-general"), 20)
    await asyncio.sleep(1.0)
    await hang_up(first)
    hung_at = time.monotonic()
    m = await wait_member(ami, "general", "1001", "1", 3)
    assert m["Paused"] == "1" and m.get("PausedReason") == "话后整理"
    second = await CallRobot(ami, number="12358", caller="13900006003").dial()
    try:
        await second.wait_for(is_event("AgentConnect", Queue="hotline-general"), 25)
        waited = time.monotonic() - hung_at
        assert waited >= 4.5, f"the next call reached 1001 {waited:.1f} s after the hang-up (wrap-up 5 s)"
    finally:
        await hang_up(second)
    deadline = time.monotonic() + 5  # AgentComplete: after-call work again
    while controller.agents.agents["1001"].state.value != "wrap_up" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert controller.agents.agents["1001"].state.value == "wrap_up"
    r = await control(controller, op="agent", action="ready", agent="1001")  # ends the second wrap-up now
    assert r["state"] == "ready"
    assert (await wait_member(ami, "general", "1001", "0"))["Paused"] == "0"


async def test_feature_codes_from_the_seat_phone_confirm_with_a_prompt(controller, ami, seat):
    saved_before = set(controller.saved)  # earlier tests' calls may still be saved (CDR replay) meanwhile
    prompts: list[dict[str, str]] = []
    off = ami.on_event("UserEvent", lambda e: prompts.append(e) if e.get("UserEvent") == "HotlinePrompt" else None)
    try:
        await asyncio.to_thread(seat.dial, "*531")
        deadline = time.monotonic() + 15
        while not any(p.get("Prompt") == "agent_busy" for p in prompts) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        p = next(p for p in prompts if p.get("Prompt") == "agent_busy")
        assert p.get("Agent") == "1001" and p.get("State") == "busy"
        deadline = time.monotonic() + 5  # 已示忙 then the reason: 小休 (busy_reasons digit 1)
        while not any(p.get("Prompt") == "agent_reason/1" for p in prompts) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        said = [p.get("Prompt") for p in prompts if p.get("Prompt", "").startswith("agent_")]
        assert said[said.index("agent_busy"):][:2] == ["agent_busy", "agent_reason/1"], said
        assert controller.agents.agents["1001"].reason == "小休"
        m = await wait_member(ami, "general", "1001", "1")
        assert m["Paused"] == "1" and m.get("PausedReason") == "小休"
        await asyncio.sleep(4)  # the prompt plays, the dialplan hangs up
        await asyncio.to_thread(seat.hangup)
        await asyncio.sleep(1)
        await asyncio.to_thread(seat.dial, "*54")
        deadline = time.monotonic() + 15
        while not any(p.get("Prompt") == "agent_ready" for p in prompts) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert any(p.get("Prompt") == "agent_ready" and p.get("Agent") == "1001" for p in prompts)
        assert (await wait_member(ami, "general", "1001", "0"))["Paused"] == "0"
        await asyncio.sleep(4)
        await asyncio.to_thread(seat.hangup)
        # a feature code is no hotline call: no ticket of its own (tickets of earlier calls may land now)
        for no in [no for no in controller.saved if no not in saved_before]:
            t = await controller.store.get_ticket(no)
            assert t is not None and t.dialed and not t.dialed.startswith("*"), (no, t and t.dialed)
    finally:
        off()
        await control(controller, op="agent", action="ready", agent="1001")  # leave the seat as found
