"""Issue 2: a real call through a real Asterisk — greeting, queue, agent, ticket; and the fallback."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from hotline.callrobot import CallRobot, wait_ticket
from model.contract import ivr_steps
from hotline.controller import Controller, serve
from ticketbridge.store import TicketStore

pytestmark = pytest.mark.e2e


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


async def test_answered_call_leaves_one_complete_ticket(controller, ami, agents):
    await agents.add("general", talk_s=2)
    robot = await CallRobot(ami, number="12345", caller="13912345678").dial()
    await robot.wait_user_event("HotlineCall", 10, Dialed="12345")
    await robot.wait_step("menu:main", 30)
    await robot.press("1")
    join = await robot.wait_for(is_event("QueueCallerJoin"), 20)
    assert join["Queue"] == "hotline-general"
    await robot.wait_for(is_event("AgentConnect"), 20)
    # the scripted agent hangs up first: the caller is asked for a rating
    await robot.wait_for(lambda e: e.get("Event") == "Newexten" and e.get("Context") == "hotline-survey", 20)
    # the ticket notice (number and password) comes first: the rating is keyed once the survey asks for it
    await robot.wait_user_event("HotlinePrompt", 60, Prompt="survey")
    await asyncio.sleep(1.0)
    await robot.press("4")
    await robot.wait_user_event("HotlineSurvey", 20)
    await robot.hangup()
    t = await wait_ticket(controller.store, robot.linkedid, 20)
    assert t.outcome == "answered"
    assert t.handled_by == "controller"
    assert t.caller == "13912345678" and t.dialed == "12345"
    assert t.queue == "general" and t.category == "咨询"
    assert t.agent and "robot2" in t.agent
    assert 1.0 <= (t.talk_s or 0) <= 5.0
    assert t.queue_wait_s is not None and t.queue_wait_s < 15
    assert "key:1" in t.ivr_path and "menu:main" in t.ivr_path
    assert t.survey_rating == 4 and t.survey_scale == 5
    assert len(t.ticket_no) == 12
    assert len(await controller.store.list_tickets(caller="13912345678")) == 1


async def test_no_input_still_reaches_an_agent(controller, ami, agents):
    """GB/T 33358: a caller who keys nothing is not stuck in the menu."""
    await agents.add("general", talk_s=1)
    robot = await CallRobot(ami, caller="13800000001").dial()
    await robot.wait_for(is_event("AgentConnect"), 120)
    steps = [step for e in robot.user_events("HotlineIVR") for step in ivr_steps(e)]
    assert "timeout" in steps and steps[-1].startswith("route:queue:general")
    await robot.hangup()
    t = await wait_ticket(controller.store, robot.linkedid, 20)
    assert t.outcome == "answered"


async def test_controller_down_caller_still_queued_and_ticket_rebuilt(cfg, asterisk, ami, agents, store_url):
    """The dialplan never depends on the controller; the ticket comes later from Asterisk's CDR."""
    await agents.add("general", talk_s=2)
    robot = await CallRobot(ami, caller="13700000002").dial()  # no controller is running
    fb = await robot.wait_user_event("HotlineRoute", 10)
    assert fb["Fallback"] == "1"
    join = await robot.wait_for(is_event("QueueCallerJoin"), 15)
    assert join["Queue"] == "hotline-general"
    await robot.wait_for(is_event("AgentConnect"), 20)
    await robot.wait_for(is_event("AgentComplete"), 20)
    await robot.hangup()
    await robot.wait_hangup(10)
    await asyncio.sleep(1.0)  # Asterisk writes the CDR line as the channels go

    c = Controller.for_sandbox(cfg, asterisk, store_url=store_url, cdr_settle_s=0)
    await c.start()
    try:
        t = await wait_ticket(c.store, robot.linkedid, 20)
        assert t.handled_by == "fallback"
        assert t.outcome == "answered"
        assert t.caller == "13700000002" and t.dialed == "12345"
        assert t.queue == "general"
    finally:
        await c.stop()


async def test_sigterm_keeps_the_ticket_of_a_call_in_progress(cfg, asterisk, ami, agents, store_url):
    c = Controller.for_sandbox(cfg, asterisk, store_url=store_url, cdr_settle_s=0)
    stop = asyncio.Event()
    runner = asyncio.create_task(serve(c, stop))
    await c.ami.wait_connected(10)
    robot = await CallRobot(ami, caller="13600000003").dial()
    await robot.wait_step("menu:main", 30)
    await robot.press("0")  # straight to an agent; nobody is in the queue yet
    await robot.wait_for(is_event("QueueCallerJoin"), 20)
    os.kill(os.getpid(), signal.SIGTERM)  # what systemd sends on restart
    await asyncio.wait_for(runner, 20)

    probe = TicketStore(store_url, cfg)
    await probe.open()
    try:
        t = await probe.get_by_linkedid(robot.linkedid)
        assert t is not None, "the call in progress lost its ticket on SIGTERM"
        assert t.outcome == "in_progress"
    finally:
        await probe.close()

    # the caller is still in the queue without the controller; an agent answers
    await agents.add("general", talk_s=1)
    await robot.wait_for(is_event("AgentConnect"), 20)
    await robot.hangup()
    await robot.wait_hangup(10)
    await asyncio.sleep(1.0)

    c2 = Controller.for_sandbox(cfg, asterisk, store_url=store_url, cdr_settle_s=0)
    await c2.start()
    try:
        t = await wait_ticket(c2.store, robot.linkedid, 20)
        assert t.outcome == "answered"
        assert len(await c2.store.list_tickets(caller="13600000003")) == 1
        assert "agent:0" in t.ivr_path  # what the live controller saw is kept
    finally:
        await c2.stop()


async def test_answered_call_is_recorded_for_the_ticket(controller, ami, agents, asterisk):
    await agents.add("general", talk_s=2)
    robot = await CallRobot(ami, caller="13912340000").dial()
    await robot.barge("1")  # during the greeting: barge-in
    await robot.wait_for(is_event("AgentConnect"), 30)
    await robot.wait_for(is_event("AgentComplete"), 20)
    await robot.hangup()
    t = await wait_ticket(controller.store, robot.linkedid, 20)
    assert t.recording and t.recording.endswith(f"{robot.linkedid}.wav")
    f = asterisk.host_path(asterisk.layout.spool) / "monitor" / t.recording
    assert f.exists() and f.stat().st_size > 1000
    assert oct(f.stat().st_mode & 0o007) == "0o0", "recordings are personal data: not world-readable"
