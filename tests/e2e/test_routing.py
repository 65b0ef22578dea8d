"""Issue 4: every legacy number's merge mode, and queue overflow, shown by real calls through Asterisk 22.

The controller's clock is injected (a fixed aware datetime, moved between calls) so a
merged line's transition window is tested on both sides of its end. Scripted agents
(Local/<talk>@agent-robot) sit only where a test wants a call answered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

import ivr.calls
from hotline.callrobot import CallRobot, wait_ticket
from hotline.controller import Controller
from routing.numberplan import merge_window
from tests.e2e.conftest import MERGED_LINE, e2e_config

pytestmark = pytest.mark.e2e

SH = ZoneInfo("Asia/Shanghai")
# the e2e world's 12315 is in its window today (tests/e2e/conftest.py): its last minute, and just after it
_WINDOW_END = merge_window(e2e_config().legacy_lines[MERGED_LINE], dt.datetime.now(SH).date())[1]
assert _WINDOW_END is not None
LAST_DAY_OF_WINDOW = dt.datetime.combine(_WINDOW_END - dt.timedelta(days=1), dt.time(23, 59), tzinfo=SH)
FIRST_DAY_AFTER = dt.datetime.combine(_WINDOW_END, dt.time(0, 0, 30), tzinfo=SH)


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


class _LogSpy:
    """Wraps the IVR's structlog logger and remembers (level, event, fields)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seen: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str):
        def log(event: str, *args, **kw):
            self.seen.append((level, event, kw))
            return getattr(self.inner, level)(event, *args, **kw)
        return log


@pytest_asyncio.fixture
async def hotline(cfg, asterisk, store_url, monkeypatch):
    """The real controller with its clock injected (`hotline.now = …`) and its prompts recorded."""

    class Clock:
        now = LAST_DAY_OF_WINDOW

    clock = Clock()
    c = Controller.for_sandbox(cfg, asterisk, store_url=store_url, clock=lambda: clock.now)
    played: list[str] = []
    original = c.scripts._play

    async def play(s, prompt, **kw):
        played.append(prompt)
        return await original(s, prompt, **kw)

    c.scripts._play = play  # type: ignore[method-assign]
    spy = _LogSpy(ivr.calls.log)
    monkeypatch.setattr(ivr.calls, "log", spy)
    c.clock_ = clock  # type: ignore[attr-defined]
    c.played = played  # type: ignore[attr-defined]
    c.logspy = spy  # type: ignore[attr-defined]
    await c.start()
    await c.ami.wait_connected(10)
    yield c
    await c.stop()


async def through_menu_to_agent(robot: CallRobot) -> None:
    """A caller who barges in: 0 during the greeting/announcement is the main menu's "agent" key."""
    await robot.wait_user_event("HotlineCall", 10)
    await asyncio.sleep(0.8)  # the announcement has started
    await robot.press("0", gap_s=0.1)
    try:
        await robot.wait_user_event("HotlineRoute", 4)
    except TimeoutError:  # an IVR that drops digits keyed during announcements: 0 at the menu then
        await robot.press("0", gap_s=0.1)


async def test_merged_line_announces_inside_its_window_and_retires_after(hotline, ami, agents):
    """整体并入 12315: on the window's last day the announcement then the 12345 flow; the next day retired."""
    await agents.add("general", talk_s=1)
    hotline.clock_.now = LAST_DAY_OF_WINDOW
    robot = await CallRobot(ami, number="12315", caller="13900004001").dial()
    await through_menu_to_agent(robot)
    route = await robot.wait_user_event("HotlineRoute", 20)
    assert route["Line"] == "12315" and route["Mode"] == "merged"
    await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 20)
    await robot.hangup()
    t = await wait_ticket(hotline.store, robot.linkedid, 20)
    assert hotline.played[0] == "transition_12315"  # the announcement replaces the greeting
    assert "greeting" not in hotline.played
    assert t.legacy_line == "12315" and t.dialed == "12315" and t.mode == "merged"
    assert t.category == "投诉举报" and t.queue == "general" and t.outcome == "answered"
    assert "menu:main" in t.ivr_path and "agent:0" in t.ivr_path

    # one minute after midnight the window is over: notice, then the line hangs up by itself
    hotline.clock_.now = FIRST_DAY_AFTER
    hotline.played.clear()
    robot = await CallRobot(ami, number="12315", caller="13900004002").dial()
    route = await robot.wait_user_event("HotlineRoute", 20)
    assert route["Line"] == "12315" and route["Dest"] == "hangup"
    await robot.wait_hangup(30)
    t = await wait_ticket(hotline.store, robot.linkedid, 20)
    # every caller hears the 110/119/120 notice once, also on a retired line (issue 10, item 14)
    assert hotline.played == [p for p in (hotline.config.center.emergency_notice, "retired_12315") if p]
    assert t.legacy_line == "12315" and t.outcome == "retired" and t.queue is None and t.agent is None


async def test_merged_line_put_through_after_its_window(hotline, ami, agents):
    """整体并入 12369 (window ended 2025-06-01, after_window: put_through): greeting, then the 12345 flow."""
    await agents.add("general", talk_s=1)
    hotline.clock_.now = FIRST_DAY_AFTER
    robot = await CallRobot(ami, number="12369", caller="13900004003").dial()
    await through_menu_to_agent(robot)
    await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 25)
    await robot.hangup()
    t = await wait_ticket(hotline.store, robot.linkedid, 20)
    assert hotline.played[0] == "greeting" and "transition_12369" not in hotline.played
    assert t.legacy_line == "12369" and t.mode == "merged" and t.outcome == "answered"


async def test_dual_retained_line_overflows_to_general(hotline, ami, agents):
    """双号并行(保留座席) 12333: its own queue first; nobody there, so after max_wait_s (30 s) the general queue."""
    await agents.add("general", talk_s=1)  # nobody answers line_12333 (seat 1003 is not registered)
    robot = await CallRobot(ami, number="12333", caller="13900004004").dial()
    first = await robot.wait_for(is_event("QueueCallerJoin"), 20)
    assert first["Queue"] == "hotline-line_12333"
    joined = robot.events.index(first)
    over = await robot.wait_user_event("HotlineOverflow", 45, Queue="line_12333")
    assert over["To"] == "queue:general"
    await robot.wait_for(is_event("QueueCallerJoin", Queue="hotline-general"), 10)
    await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 15)
    waited = float(over["Timestamp"]) - float(robot.events[joined]["Timestamp"])
    assert 28 <= waited <= 35, waited
    await robot.hangup()
    t = await wait_ticket(hotline.store, robot.linkedid, 20)
    assert t.legacy_line == "12333" and t.mode == "dual_retained"
    assert t.requested_dest == "queue:line_12333" and t.queue == "general" and t.outcome == "answered"
    assert t.queue_wait_s is not None and t.queue_wait_s >= 28


async def test_dual_cancelled_line_reaches_general_tagged(hotline, ami, agents):
    """双号并行(取消座席) 12358: 12345 seats answer it at once (no menu), tagged 投诉举报."""
    await agents.add("general", talk_s=1)
    robot = await CallRobot(ami, number="12358", caller="13900004005").dial()
    join = await robot.wait_for(is_event("QueueCallerJoin"), 15)
    assert join["Queue"] == "hotline-general"
    await robot.wait_for(is_event("AgentConnect"), 15)
    await robot.hangup()
    t = await wait_ticket(hotline.store, robot.linkedid, 20)
    assert "greeting" not in hotline.played and not t.ivr_path
    assert t.legacy_line == "12358" and t.mode == "dual_cancelled"
    assert t.queue == "general" and t.category == "投诉举报" and t.outcome == "answered"


async def test_branch_center_line_goes_to_the_branch(hotline, ami):
    """设分中心 12366: the call goes to the tax branch center's own seats (the simulated branch answers)."""
    robot = await CallRobot(ami, number="12366", caller="13900004006").dial()
    reached = await robot.wait_user_event("SimTrunkReached", 15)
    assert reached["Target"] == "12366"
    route = robot.user_events("HotlineRoute")[0]
    assert route["Dest"] == "transfer:tax" and route["Mode"] == "branch_center"
    await robot.hangup()
    t = await wait_ticket(hotline.store, robot.linkedid, 20)
    assert t.legacy_line == "12366" and t.mode == "branch_center"
    assert t.actual_dest == "transfer:tax" and t.outcome == "transferred" and t.queue is None


async def test_forwarded_line_enters_the_12345_flow(hotline, ami, agents):
    """呼叫转移 96196 → 12345: the greeting and menu of the center, the ticket keeps the dialed line."""
    await agents.add("general", talk_s=1)
    robot = await CallRobot(ami, number="96196", caller="13900004007").dial()
    await through_menu_to_agent(robot)
    await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 25)
    await robot.hangup()
    t = await wait_ticket(hotline.store, robot.linkedid, 20)
    assert hotline.played[0] == "greeting"
    assert t.dialed == "96196" and t.legacy_line == "96196" and t.mode == "forward" and t.outcome == "answered"


async def test_unknown_number_gets_the_12345_flow_and_a_warning(hotline, ami, agents):
    await agents.add("general", talk_s=1)
    robot = await CallRobot(ami, number="12399", caller="13900004008").dial()
    await through_menu_to_agent(robot)
    await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 25)
    await robot.hangup()
    t = await wait_ticket(hotline.store, robot.linkedid, 20)
    assert t.dialed == "12399" and t.mode == "unknown" and t.legacy_line is None and t.outcome == "answered"
    warnings = [kw for level, event, kw in hotline.logspy.seen if event == "numberplan_warning"]
    assert any(w.get("dialed") == "12399" and "not in the number plan" in w.get("warning", "") for w in warnings)
