"""Issue 18, shown by real calls through a real Asterisk 22 with the shipped config (access:).

- 老年人优先: a caller whose number is in the center's list (config/elderly_numbers.txt) hears no menu,
  joins the general queue with app_queue priority, and is answered before a caller who joined earlier
  without priority; the ticket says why (priority: listed);
- the English path: "For English, press 8." is played after the emergency notice; pressing 8 then plays the
  English prompts (and the English recording notice instead of the Chinese one) and joins the English queue;
  the ticket records the language;
- the dialect seats from the main menu (key 6) and by an agent's transfer (*841), the ticket records 闽南话;
- the special lines: 12301 reaches its tourism queue, 961017 the 12345 seats tagged 求助;
- the campaign 专席 is offered and reached inside its dates and not outside (the controller's injected clock);
- `hotline kpi` counts the priority callers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import sys
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from hotline.callrobot import CallRobot, wait_ticket
from hotline.sipseat import BaresipSeat
from model.secrets import seat_secret
from tests.conftest import require
from tests.e2e.conftest import ROOT
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
        # (the ticket notice and the survey after the agent's hang-up take ~40 s under load: not waited for)
        await elderly.hangup()
        await earlier.hangup()
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


# ------------------------------------------------------------------ special lines, campaigns, KPIs, transfers


async def test_the_special_lines_reach_where_the_config_says(controller, cfg, ami, agents):
    """12301 (旅游服务热线, dedicated) → its own tourism queue; 961017 (防返贫, dual_cancelled) → the 12345 seats, 求助."""
    tourism, poverty = cfg.legacy_lines["12301"], cfg.legacy_lines["961017"]
    assert (tourism.mode, tourism.queue) == ("dedicated", "tourism")
    assert (poverty.mode, poverty.queue, poverty.category) == ("dual_cancelled", cfg.center.general_queue, "求助")
    await agents.add(tourism.queue, talk_s=1)
    await agents.add(poverty.queue, talk_s=1)
    for number, line, queue in (("12301", tourism, "tourism"), ("961017", poverty, cfg.center.general_queue)):
        robot = await CallRobot(ami, number=number, caller="13800018021", hold_s=60).dial()
        try:
            join = await robot.wait_for(is_event("QueueCallerJoin"), 40)
            assert join["Queue"] == f"{ASTERISK_QUEUE_PREFIX}{queue}", (number, join["Queue"])
            await robot.wait_for(is_event("AgentConnect"), 20)
            await robot.hangup()
            t = await wait_ticket(controller.store, robot.linkedid, 40)
            assert (t.dialed, t.legacy_line, t.mode, t.queue) == (number, number, line.mode, queue)
            if number == "961017":
                assert t.category == "求助"
        finally:
            await robot.hangup()


@pytest_asyncio.fixture
async def dated_controller(cfg, asterisk, store_url):
    """The controller on a clock the test sets (the campaign's dates are judged by it, no sleeping)."""
    from hotline.controller import Controller

    class Clock:
        now = dt.datetime(2026, 7, 15, 10, 0, tzinfo=ZoneInfo(cfg.center.timezone))

    clock = Clock()
    c = Controller.for_sandbox(cfg, asterisk, store_url=store_url, clock=lambda: clock.now)
    await c.start()
    await c.ami.wait_connected(10)
    c.test_clock = clock
    yield c
    await c.stop()


async def test_the_campaign_queue_is_offered_inside_its_dates_and_not_outside(dated_controller, cfg, ami):
    flood = cfg.access.campaigns["flood"]
    zone = ZoneInfo(cfg.center.timezone)
    assert flood.start <= dated_controller.test_clock.now.date() <= flood.end
    robot = await CallRobot(ami, number="12345", caller="13800018022", hold_s=60).dial()
    try:
        await robot.wait_user_event(UserEventName.PROMPT, 30, Prompt=flood.offer)
        await robot.press(flood.key)
        join = await robot.wait_for(is_event("QueueCallerJoin"), 30)
        assert join["Queue"] == f"{ASTERISK_QUEUE_PREFIX}{flood.queue}"
        await robot.hangup()
        t = await wait_ticket(dated_controller.store, robot.linkedid, 40)
        assert t.queue == flood.queue and "campaign:flood" in t.ivr_path
    finally:
        await robot.hangup()
    # the admin's dates are over (the day after `end`): not offered, the key reaches no campaign queue
    dated_controller.test_clock.now = dt.datetime.combine(flood.end + dt.timedelta(days=1), dt.time(10, 0), zone)
    robot = await CallRobot(ami, number="12345", caller="13800018023", hold_s=60).dial()
    try:
        await robot.wait_user_event(UserEventName.PROMPT, 30, Prompt=cfg.access.languages["en"].offer)
        await robot.press(flood.key)
        join = await robot.wait_for(is_event("QueueCallerJoin"), 40)
        assert join["Queue"] == f"{ASTERISK_QUEUE_PREFIX}{flood.otherwise}"
        assert flood.offer not in prompts(robot)
        await robot.hangup()
        t = await wait_ticket(dated_controller.store, robot.linkedid, 40)
        assert t.queue == flood.otherwise and not any(p.startswith("campaign:") for p in t.ivr_path)
    finally:
        await robot.hangup()


async def test_the_kpis_count_the_priority_callers(controller, cfg, ami, agents, store_url):
    """`hotline kpi` counts 老年人优先 calls (listed and by the key) and how many were answered."""
    await agents.add(cfg.center.general_queue, talk_s=1)
    listed = await CallRobot(ami, number="12345", caller=LISTED, hold_s=60).dial()
    keyed = await CallRobot(ami, number="12345", caller="13800018024", hold_s=60).dial()
    plain = await CallRobot(ami, number="12358", caller="13800018025", hold_s=60).dial()
    try:
        # the key is not spoken (printed notices publish it): pressed while the offers are played
        await keyed.wait_user_event(UserEventName.PROMPT, 30, Prompt=cfg.access.languages["en"].offer)
        await keyed.press(cfg.access.priority.key)
        for robot in (listed, keyed, plain):
            await robot.wait_for(is_event("AgentConnect"), 60)
            await robot.hangup()  # answered: the notice and the survey after it are not what is counted
        tickets = [await wait_ticket(controller.store, r.linkedid, 40) for r in (listed, keyed, plain)]
        assert [t.priority for t in tickets] == ["listed", "key", None]
    finally:
        for robot in (listed, keyed, plain):
            await robot.hangup()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "kpi", "--store", store_url, "--json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    total = json.loads(out)["total"]
    assert (total["priority_calls"], total["priority_answered"]) == (2, 2), total
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "kpi", "--store", store_url,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    line = next(x for x in out.decode().splitlines() if "老年人优先" in x)
    assert "2" in line, out.decode()


@pytest.fixture
def agent_seat(cfg, asterisk):
    """Seat 1001 on a real SIP phone (baresip), for the agent's transfer."""
    require(shutil.which("baresip") is not None, "baresip is missing: apt-get install baresip")
    s = BaresipSeat("1001", seat_secret("1001", cfg.seats["1001"]), sip_port=cfg.asterisk.sip.port)
    s.start()
    s.wait_registered(10)
    yield s
    s.stop()


async def test_an_agent_sends_a_caller_to_the_dialect_seats_and_the_ticket_records_the_dialect(
        controller, cfg, ami, agents, agent_seat):
    target = cfg.transfer_targets["minnan"]
    nan = cfg.access.languages["nan"]
    assert target.feature_code == "*841" and target.dial.endswith(f"queue-{nan.queue}")
    await agents.add(nan.queue, talk_s=30)
    # 12358 reaches the general queue with no menu: seat 1001 (the only phone up) answers
    robot = await CallRobot(ami, number="12358", caller="13800018026", hold_s=60).dial()
    try:
        connect = await robot.wait_for(is_event("AgentConnect", Queue=f"{ASTERISK_QUEUE_PREFIX}general"), 40)
        agent = connect["DestChannel"]
        assert agent.startswith("PJSIP/1001-"), agent
        await asyncio.sleep(0.5)
        await keys(ami, agent, target.feature_code)  # the agent hears 闽南话 and keys *841
        await robot.wait_for(is_event("AgentConnect", Queue=f"{ASTERISK_QUEUE_PREFIX}{nan.queue}"), 30)
        await robot.wait_user_event(UserEventName.LANGUAGE, 5, Code="nan")
        await asyncio.sleep(0.5)
        await keys(ami, agent, "*2")  # and hands the caller over to the dialect seat
        done = await robot.wait_user_event(UserEventName.TRANSFER, 15, Outcome="completed")
        assert done["Target"] == "minnan"
        await robot.hangup()
        t = await wait_ticket(controller.store, robot.linkedid, 40)
        assert t.language == "nan" and t.agent == "robot30"  # the dialect seat took the call over
        assert [(x["target"], x["outcome"]) for x in t.transfers] == [("minnan", "completed")]
    finally:
        await robot.hangup()


async def keys(ami, channel: str, digits: str) -> None:
    """The agent keys `digits` on the seat phone (DTMF received on its channel, as test_transfers.py does)."""
    for d in digits:
        await ami.action("PlayDTMF", Channel=channel, Digit=d, Receive="yes")
        await asyncio.sleep(0.12)
