"""Issue 18, shown by real calls through a real Asterisk 22 with the shipped config (access:).

- 老年人优先: a caller whose number is in the center's list (config/elderly_numbers.txt) hears no menu,
  joins the general queue with app_queue priority, and is answered before a caller who joined earlier
  without priority; the ticket says why (priority: listed);
- the English path: "For English, press 8." is played after the emergency notice; pressing 8 then plays the
  English prompts (and the English recording notice instead of the Chinese one) and joins the English queue;
  the ticket records the language.
"""

from __future__ import annotations

import asyncio

import pytest

from hotline.callrobot import CallRobot, wait_ticket
from model.contract import ASTERISK_QUEUE_PREFIX
from model.contract import Event as UserEventName

pytestmark = pytest.mark.e2e

#: in config/elderly_numbers.txt (the shipped example list); the other caller is not
LISTED = "13900000001"
NOT_LISTED = "13800018018"


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


def prompts(robot: CallRobot) -> list[str]:
    return [e.get("Prompt", "") for e in robot.user_events(UserEventName.PROMPT)]


async def test_a_listed_elderly_caller_skips_the_menu_and_is_answered_before_an_earlier_caller(
        controller, cfg, ami, agents):
    assert cfg.access.priority.listed(LISTED) and not cfg.access.priority.listed(NOT_LISTED)
    general = f"{ASTERISK_QUEUE_PREFIX}{cfg.center.general_queue}"
    earlier = await CallRobot(ami, number="12345", caller=NOT_LISTED, hold_s=90).dial()
    elderly = CallRobot(ami, number="12345", caller=LISTED, hold_s=90)
    try:
        # the earlier caller presses nothing: greeting, notice, offer, menu, wait → the general queue
        first_join = await earlier.wait_for(is_event("QueueCallerJoin", Queue=general), 40)
        await elderly.dial()
        # the elderly caller has no menu: dialed after the other one joined, both are then waiting
        late_join = await elderly.wait_for(is_event("QueueCallerJoin", Queue=general), 40)
        assert "main_menu" in prompts(earlier)
        assert "main_menu" not in prompts(elderly) and "english_offer" not in prompts(elderly)
        # the other caller is ahead in the queue by arrival: only the priority may put the elderly one first
        assert float(first_join["Timestamp"]) < float(late_join["Timestamp"]), "the elderly caller joined first"
        await asyncio.sleep(0.5)
        await agents.add(cfg.center.general_queue, talk_s=2)
        answered_elderly = await elderly.wait_for(is_event("AgentConnect"), 20)
        answered_earlier = await earlier.wait_for(is_event("AgentConnect"), 30)
        assert float(answered_elderly["Timestamp"]) < float(answered_earlier["Timestamp"])
        t = await wait_ticket(controller.store, elderly.linkedid, 40)
        assert t.priority == "listed" and t.queue == cfg.center.general_queue and t.agent
        t2 = await wait_ticket(controller.store, earlier.linkedid, 40)
        assert t2.priority is None
    finally:
        await earlier.hangup()
        await elderly.hangup()


async def test_the_english_offer_leads_to_english_prompts_and_the_english_queue(controller, cfg, ami, agents):
    english = cfg.access.languages["en"]
    robot = await CallRobot(ami, number="12345", caller="13800018019", hold_s=60).dial()
    try:
        await robot.wait_user_event(UserEventName.PROMPT, 20, Prompt=english.offer)
        await robot.press(english.key)
        join = await robot.wait_for(is_event("QueueCallerJoin"), 30)
        assert join["Queue"] == f"{ASTERISK_QUEUE_PREFIX}{english.queue}"
        heard = prompts(robot)
        assert heard[:3] == [cfg.center.greeting, cfg.center.emergency_notice, english.offer]
        assert heard[3:] == [*english.prompts, english.recording_notice]
        assert "main_menu" not in heard
        # the Chinese recording notice is not played again by the dialplan (the English one was)
        assert not any(e.get("Event") == "Newexten" and e.get("Application") == "Playback"
                       and f"hotline/{cfg.recording.notice}" in e.get("AppData", "") for e in robot.events)
        await agents.add(english.queue, talk_s=1)
        await robot.wait_for(is_event("AgentConnect"), 20)
        await robot.hangup()
        t = await wait_ticket(controller.store, robot.linkedid, 40)
        assert t.language == "en" and t.queue == english.queue and "language:en" in t.ivr_path
    finally:
        await robot.hangup()


async def test_the_dialect_seats_from_the_main_menu_and_the_ticket_records_the_dialect(controller, cfg, ami, agents):
    nan = cfg.access.languages["nan"]
    robot = await CallRobot(ami, number="12345", caller="13800018020", hold_s=60).dial()
    try:
        await robot.wait_user_event(UserEventName.PROMPT, 30, Prompt="main_menu")
        await robot.press("6")
        join = await robot.wait_for(is_event("QueueCallerJoin"), 30)
        assert join["Queue"] == f"{ASTERISK_QUEUE_PREFIX}{nan.queue}"
        # the queue's own dialplan says which language its seats speak
        await robot.wait_user_event(UserEventName.LANGUAGE, 5, Code="nan")
        await agents.add(nan.queue, talk_s=1)
        await robot.wait_for(is_event("AgentConnect"), 20)
        await robot.hangup()
        t = await wait_ticket(controller.store, robot.linkedid, 40)
        assert t.language == "nan" and t.queue == nan.queue and "key:6" in t.ivr_path
    finally:
        await robot.hangup()
