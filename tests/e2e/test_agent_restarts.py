"""Issue 11: agents' states across restarts and lost phones, through a real Asterisk 22 and a real baresip seat.

- the controller restarted while agents are signed in, busy, signed out: each keeps exactly its state
  (a ready agent still gets the next call, a busy one does not); while it is down, calls still reach the
  ready seat (static members);
- the controller stopping, or failing to start, releases after-call work (and only that: busy and
  signed-out seats stay paused);
- Asterisk restarted: the pauses are put back on FullyBooted; `hotline apply`'s Reload of app_queue keeps them;
- a seat phone that unregisters or dies is marked 离线 (busy, paused) and ready again when it is back.
Seats 1002/1003 are not registered here (so they are 离线 from the start): a general call can only ring 1001.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest
import pytest_asyncio

from hotline.callrobot import CallRobot
from hotline.control import ask
from hotline.controller import Controller
from tests.e2e.conftest import seat_phone

pytestmark = pytest.mark.e2e


@pytest.fixture
def seat(cfg, asterisk):
    """Seat 1001 for one test: a test here stops or kills its phone."""
    with seat_phone(cfg) as s:
        yield s


@pytest_asyncio.fixture
async def started(cfg, asterisk, store_url):
    """Start controllers on one store (a restart is a new Controller on the same database); stop what is left."""
    running: list[Controller] = []

    async def start(config=None) -> Controller:
        c = Controller.for_sandbox(config or cfg, asterisk, store_url=store_url)
        await c.start()
        await c.ami.wait_connected(10)
        running.append(c)
        await settle(c)
        return c

    yield start
    for c in running:
        if not c._stopping:
            await c.stop()


async def settle(c: Controller, s: float = 1.5) -> None:
    """Let the login's re-apply and device sweep run and their actions be sent."""
    await asyncio.sleep(s)
    await c.agents.drain()


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


async def members(ami, ext: str) -> dict[str, tuple[str, str]]:
    """queue → (Paused, PausedReason) of seat `ext` in every hotline queue it is a member of."""
    rows = await ami.action_list("QueueStatus")
    return {r["Queue"].removeprefix("hotline-"): (r.get("Paused", ""), r.get("PausedReason", ""))
            for r in rows if r.get("Event") == "QueueMember" and r.get("StateInterface") == f"PJSIP/{ext}"}


async def wait_members(ami, ext: str, want: dict[str, tuple[str, str]], timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = await members(ami, ext)
        if got == want or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.3)


async def wait_state(c: Controller, ext: str, state: str, reason: str | None = None, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    a = c.agents.agents[ext]
    while (a.state.value != state or (reason is not None and a.reason != reason)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await c.agents.drain()
    return a.state.value, a.reason


async def control(c: Controller, **request):
    return await ask(c.control.path, request, timeout=10)


async def rings_1001(ami, timeout: float) -> bool:
    """Place a general-queue call (12358); True when 1001 answers it within `timeout`, False when nobody was rung."""
    robot = await CallRobot(ami, number="12358", caller="13900007001").dial()
    try:
        e = await robot.wait_for(lambda e: e.get("Event") in ("AgentCalled", "AgentConnect"), timeout)
        assert e.get("DestChannel", e.get("Interface", "")).startswith("PJSIP/1001") or \
            e.get("Interface") == "PJSIP/1001", e
        await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 20)
        return True
    except TimeoutError:
        return False
    finally:
        await robot.hangup()
        await robot.wait_hangup(10)
        await asyncio.sleep(1)


ALL_OUT_1002 = {"general": ("1", "签出"), "overflow": ("1", "签出")}


async def test_controller_restart_keeps_ready_busy_and_signed_out(cfg, asterisk, ami, seat, started):
    c = await started()
    assert (await control(c, op="agent", action="signout", agent="1002", why="下班"))["state"] == "signed_out"
    assert c.agents.agents["1001"].state.value == "ready"
    await c.stop()
    # controller down: the ready seat still takes queue calls (static members), the signed-out one is still paused
    assert await wait_members(ami, "1002", ALL_OUT_1002) == ALL_OUT_1002
    assert await rings_1001(ami, 20)

    c = await started()  # restart 1: 1001 ready, 1002 signed out, exactly as they were
    assert (c.agents.agents["1001"].state.value, c.agents.agents["1002"].state.value) == ("ready", "signed_out")
    assert await members(ami, "1001") == {"general": ("0", "")}
    assert await members(ami, "1002") == ALL_OUT_1002
    assert await rings_1001(ami, 20)
    assert (await control(c, op="agent", action="busy", agent="1001", reason="会议"))["state"] == "busy"
    await c.stop()

    c = await started()  # restart 2: 1001 busy (会议) gets no call; ready again, it does
    assert (c.agents.agents["1001"].state.value, c.agents.agents["1001"].reason) == ("busy", "会议")
    assert await members(ami, "1001") == {"general": ("1", "会议")}
    assert not await rings_1001(ami, 8)
    assert (await control(c, op="agent", action="ready", agent="1001"))["state"] == "ready"
    assert await rings_1001(ami, 20)
    listed = {a["agent"]: a for a in (await control(c, op="agents"))["agents"]}
    assert listed["1002"]["state"] == "signed_out" and listed["1001"]["state"] in ("ready", "talking", "wrap_up")
    assert (await control(c, op="agent", action="signin", agent="1002"))["ok"]  # leave the world as found


async def test_stop_releases_after_call_work_but_busy_and_signed_out_stay_paused(cfg, asterisk, ami, seat, started):
    c30 = cfg.model_copy(deep=True)
    c30.queues["general"].wrapup_s = 60
    c = await started(c30)
    await control(c, op="agent", action="signout", agent="1002")
    robot = await CallRobot(ami, number="12358", caller="13900007002").dial()
    await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 20)
    await robot.hangup()
    await robot.wait_hangup(10)
    assert await wait_state(c, "1001", "wrap_up") == ("wrap_up", "话后整理")
    assert await wait_members(ami, "1001", {"general": ("1", "话后整理")}) == {"general": ("1", "话后整理")}
    await c.stop()
    # nobody would end the 60 s of after-call work with the controller gone: released; 签出 is not
    assert await members(ami, "1001") == {"general": ("0", "")}
    assert await members(ami, "1002") == ALL_OUT_1002
    assert await rings_1001(ami, 20)
    c = await started()
    await control(c, op="agent", action="signin", agent="1002")


async def test_a_start_that_fails_releases_after_call_work_left_by_a_crashed_controller(cfg, asterisk, ami, store_url):
    # what a controller killed during after-call work leaves: 1001 paused 话后整理; 1002 on a break
    await ami.action("QueuePause", Queue="hotline-general", Interface="PJSIP/1001", Paused="true", Reason="话后整理")
    await ami.action("QueuePause", Queue="hotline-general", Interface="PJSIP/1002", Paused="true", Reason="小休")
    a = cfg.asterisk.fastagi
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((a.host, a.port))  # the FastAGI port is taken: the controller cannot start
    blocker.listen()
    try:
        c = Controller.for_sandbox(cfg, asterisk, store_url=store_url)
        with pytest.raises(OSError):
            await c.start()
    finally:
        blocker.close()
    assert (await members(ami, "1001"))["general"] == ("0", "")
    assert (await members(ami, "1002"))["general"] == ("1", "小休")
    await ami.action("QueuePause", Queue="hotline-general", Interface="PJSIP/1002", Paused="false")


async def test_a_phone_that_unregisters_or_dies_is_marked_offline_and_back_when_it_returns(cfg, asterisk, ami, seat,
                                                                                          started):
    c = await started()
    assert c.agents.agents["1001"].state.value == "ready"
    assert c.agents.agents["1002"].reason == "离线"  # never registered in this test world
    seat.stop()  # baresip quits: it unregisters
    assert await wait_state(c, "1001", "busy", "离线", 10) == ("busy", "离线")
    assert await wait_members(ami, "1001", {"general": ("1", "离线")}) == {"general": ("1", "离线")}
    listed = {a["agent"]: a for a in (await control(c, op="agents"))["agents"]}
    assert listed["1001"]["reason"] == "离线" and listed["1001"]["offline"] is True
    refused = await control(c, op="agent", action="ready", agent="1001")
    assert refused["ok"] is False  # a supervisor cannot make an unreachable phone ready

    with seat_phone(cfg) as again:  # it registers again
        assert await wait_state(c, "1001", "ready", timeout=10) == ("ready", "")
        assert await wait_members(ami, "1001", {"general": ("0", "")}) == {"general": ("0", "")}

        os.killpg(again.proc.pid, signal.SIGKILL)  # it dies without a word: qualify (5 s here) finds it
        t0 = time.monotonic()
        assert await wait_state(c, "1001", "busy", "离线", 20) == ("busy", "离线")
        found_s = time.monotonic() - t0
        assert not await rings_1001(ami, 6)
    with seat_phone(cfg):
        assert await wait_state(c, "1001", "ready", timeout=10) == ("ready", "")
        events = [(e.old, e.new, e.reason, e.why) for e in await c.store.agent_events(agent="1001")]
        assert events.count(("ready", "busy", "离线", "话机离线")) == 2
        assert events.count(("busy", "ready", "", "话机在线")) == 2
    print(f"dead phone found unreachable after {found_s:.1f} s")


async def test_asterisk_restart_puts_the_pauses_back_and_apply_s_reload_keeps_them(cfg, asterisk, ami, apply_ami,
                                                                                   seat, started):
    c = await started()
    await control(c, op="agent", action="busy", agent="1001", reason="小休")
    await control(c, op="agent", action="signout", agent="1002")
    busy = {"general": ("1", "小休")}
    assert await wait_members(ami, "1001", busy) == busy
    await apply_ami.action("Reload", Module="app_queue.so")  # what `hotline apply` does after queues.conf changed
    await asyncio.sleep(1)
    assert await members(ami, "1001") == busy and await members(ami, "1002") == ALL_OUT_1002

    asterisk.stop()
    deadline = time.monotonic() + 10
    while (ami.connected.is_set() or c.ami.connected.is_set()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # both links have seen Asterisk go
    assert not c.ami.connected.is_set()
    asterisk.start(sip_port=cfg.asterisk.sip.port)
    await ami.wait_connected(30)  # every AMI client reconnects by itself
    await c.ami.wait_connected(30)  # the controller's login: FullyBooted re-applies
    assert await wait_members(ami, "1001", busy, 20) == busy
    assert await wait_members(ami, "1002", ALL_OUT_1002) == ALL_OUT_1002
    assert (c.agents.agents["1001"].state.value, c.agents.agents["1001"].reason) == ("busy", "小休")
    # the seat's contact comes back from Asterisk's database and answers qualify: reachable again
    t0 = time.monotonic()
    while c.agents.agents["1001"].offline and time.monotonic() - t0 < 40:
        await asyncio.sleep(0.5)
    print(f"seat reachable {time.monotonic() - t0:.1f} s after Asterisk's restart")
    assert not c.agents.agents["1001"].offline
    assert (c.agents.agents["1001"].state.value, c.agents.agents["1001"].reason) == ("busy", "小休")
    await control(c, op="agent", action="signin", agent="1002")
    r = await control(c, op="agent", action="ready", agent="1001")
    assert r["ok"], r
    assert await wait_members(ami, "1001", {"general": ("0", "")}) == {"general": ("0", "")}


async def test_many_help_one_brings_a_seat_into_another_queue_for_a_while(cfg, asterisk, ami, apply_ami, seat,
                                                                        started):
    """多援一: 1001 (general only) helps line_12333 (12333's own seats: 1003, 离线 here). During the help period a
    12333 call rings 1001 from line_12333; the period survives a controller restart; after it, it does not."""
    c = await started()
    assert "line_12333" not in c.agents.agents["1001"].allowed
    r = await control(c, op="help", action="start", group="1001", queue="line_12333", minutes=10,
                      why="12333 排队超过 50 人", actor="班长王")
    assert r["ok"], r
    pid = r["period"]["id"]
    assert await members(ami, "1001") == {"general": ("0", ""), "line_12333": ("0", "")}
    await c.stop()  # the period is persisted with its end time: a restart neither forgets nor ends it

    c = await started()
    assert list(c.agents.help) == [pid]
    assert await members(ami, "1001") == {"general": ("0", ""), "line_12333": ("0", "")}
    listed = {a["agent"]: a for a in (await control(c, op="agents"))["agents"]}
    assert listed["1001"]["helping"] == ["line_12333"]
    await apply_ami.action("Reload", Module="app_queue.so")  # `hotline apply` keeps the helpers too
    await asyncio.sleep(1)
    assert await members(ami, "1001") == {"general": ("0", ""), "line_12333": ("0", "")}
    robot = await CallRobot(ami, number="12333", caller="13900007003").dial()
    try:
        called = await robot.wait_for(is_event("AgentCalled", Queue="hotline-line_12333"), 30)
        assert called["Interface"] == "PJSIP/1001"
        await robot.wait_for(is_event("AgentConnect", Queue="hotline-line_12333"), 20)
    finally:
        await robot.hangup()
        await robot.wait_hangup(10)
    # the helper's own state reaches the helped queue: busy there too
    await control(c, op="agent", action="busy", agent="1001", reason="小休")
    want = {"general": ("1", "小休"), "line_12333": ("1", "小休")}
    assert await wait_members(ami, "1001", want) == want
    await control(c, op="agent", action="ready", agent="1001")

    ended = await control(c, op="help", action="end", id=pid, why="排队已缓解")
    assert ended["ok"] and ended["ended"][0]["ended_by"].startswith("root")
    assert await wait_members(ami, "1001", {"general": ("0", "")}) == {"general": ("0", "")}
    robot = await CallRobot(ami, number="12333", caller="13900007004").dial()
    try:
        with pytest.raises(TimeoutError):  # 12333's own queue no longer rings 1001 (it would overflow later)
            await robot.wait_for(is_event("AgentCalled", Queue="hotline-line_12333"), 12)
    finally:
        await robot.hangup()
        await robot.wait_hangup(10)
    rows = await c.store.help_periods(active=False)
    assert rows[0]["id"] == pid and rows[0]["by"] == "root (班长王)" and rows[0]["why"] == "12333 排队超过 50 人"
    assert rows[0]["end_why"] == "排队已缓解"

    # a short period ends by itself: the member leaves when the time is up
    r = await control(c, op="help", action="start", group="general", queue="line_12333", minutes=0.1, why="演练")
    assert r["period"]["agents"] == ["1001", "1002"]
    assert (await members(ami, "1001")).get("line_12333") == ("0", "")
    assert (await members(ami, "1002")).get("line_12333") == ("1", "离线")  # its own state: the phone is away
    assert await wait_members(ami, "1001", {"general": ("0", "")}, 15) == {"general": ("0", "")}
    assert "line_12333" not in await members(ami, "1002") and c.agents.help == {}


async def test_the_watchdog_ends_a_call_whose_agent_complete_was_lost(cfg, asterisk, ami, seat, started):
    """AgentComplete never reaches the agents' machine (as when an event is dropped): the periodic
    CoreShowChannels check finds the call gone and ends 通话 (here: after-call work, then ready)."""
    quick = cfg.model_copy(deep=True)
    quick.agents.call_check_s = 5
    quick.queues["general"].wrapup_s = 2
    c = await started(quick)
    robot = await CallRobot(ami, number="12358", caller="13900007005").dial()
    await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 20)
    assert await wait_state(c, "1001", "talking") == ("talking", "")
    deaf = c.agents._by_interface.pop("pjsip/1001")  # the machine hears nothing of 1001's queue events now
    await robot.hangup()
    await robot.wait_for(is_event("AgentComplete", Queue="hotline-general"), 10)
    await asyncio.sleep(1)
    assert c.agents.agents["1001"].state.value == "talking"  # the lost AgentComplete
    c.agents._by_interface["pjsip/1001"] = deaf
    t0 = time.monotonic()
    assert await wait_state(c, "1001", "ready", timeout=20) == ("ready", "")
    print(f"watchdog ended the call state {time.monotonic() - t0:.1f} s after the hang-up was missed")
    assert await members(ami, "1001") == {"general": ("0", "")}
