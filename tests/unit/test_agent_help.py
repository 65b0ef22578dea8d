"""多援一 (many help one): routing/agent_help.py decisions, the adapter's QueueAdd/QueuePause/QueueRemove
(routing/agent_service.py, fake AMI), persistence across a controller restart (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from model.loading import load_config
from routing.agent import SetBusy, SignOut
from routing.agent_help import HelpError, HelpPeriod, due, member_pause, plan, resolve_group
from routing.agent_service import AgentService
from tests.unit.test_agent_watch import Clock, FakeAmi, settle
from tests.unit.test_store import make_store  # noqa: F401 - the SQLite/PostgreSQL store factory


@pytest.fixture
def cfg():
    return load_config("config/hotline.yaml")


async def service(cfg, saved=None, help_periods=None, saves=None):
    ami, clock = FakeAmi(), Clock()

    async def save_help(d):
        if saves is not None:
            saves.append(d)

    svc = AgentService(ami, cfg, clock=clock, tick_s=0.01, save_help=save_help)
    svc.attach()
    svc.start_from(saved, help_periods)
    await svc.start()
    await svc.drain()
    return svc, ami, clock


def adds(ami):
    return [(h["Queue"], h["Interface"], h["StateInterface"], h["MemberName"], h["Paused"]) for h in ami.named("QueueAdd")]


def test_groups_are_seats_or_a_skill_and_bad_requests_are_said(cfg):
    svc = AgentService(FakeAmi(), cfg)
    agents = svc.agents
    assert resolve_group(cfg, agents, "1001, 1003") == ("1001", "1003")
    assert resolve_group(cfg, agents, "hrss") == ("1003",)
    assert resolve_group(cfg, agents, "general") == ("1001", "1002")
    for group, said in (("", "empty"), ("nobody", "neither a seat nor a skill"), ("1001,9999", "not an agent: 9999")):
        with pytest.raises(HelpError, match=said):
            resolve_group(cfg, agents, group)
    ok = dict(group="general", queue="line_12333", minutes=30, now=100.0, by="li", why="12333 排队")
    p, skipped = plan(cfg, agents, [], **ok)
    assert p.agents == ("1001", "1002") and p.until == 100.0 + 1800 and skipped == () and p.active
    for change, said in ((dict(queue="nope"), "no queue"), (dict(minutes=0), "minutes"),
                         (dict(minutes=721), "minutes"), (dict(why="  "), "why")):
        with pytest.raises(HelpError, match=said):
            plan(cfg, agents, [], **{**ok, **change})
    # a seat already serving the queue (its own skill), or already helping it, is left out
    p2, skipped = plan(cfg, agents, [p], **{**ok, "group": "1002,1003", "queue": "overflow"})
    assert p2.agents == ("1003",) and skipped == ("1002",)
    with pytest.raises(HelpError, match="already serves or helps"):
        plan(cfg, agents, [p], **{**ok, "group": "1001,1002,1003"})
    assert due([p], 100.0 + 1799) == [] and due([p], 100.0 + 1800) == [p]
    assert due([p.end(150.0, "li", "")], 1e9) == []
    assert HelpPeriod.from_dict(p.as_dict()) == p


def test_a_helper_s_member_is_paused_as_its_own_state_has_it(cfg):
    svc = AgentService(FakeAmi(), cfg)
    a = svc.agents["1001"]
    assert member_pause(a) == (True, "签出")
    a.feed(__import__("routing.agent", fromlist=["SignIn"]).SignIn(1.0))
    assert member_pause(a) == (False, "")
    a.feed(SetBusy(2.0, "就餐"))
    assert member_pause(a) == (True, "就餐")


async def test_help_adds_with_state_interface_follows_the_agent_and_ends_by_time(cfg):
    saves: list[dict] = []
    svc, ami, clock = await service(cfg, saves=saves)
    await svc.command("1002", SetBusy(clock.now, "小休"))
    period, skipped = await svc.help_start(group="1001,1002", queue="line_12333", minutes=10, by="root (班长王)",
                                           why="12333 排队超过 50 人")
    assert skipped == ()
    assert adds(ami) == [("hotline-line_12333", "PJSIP/1001", "PJSIP/1001", "1001", "false"),
                         ("hotline-line_12333", "PJSIP/1002", "PJSIP/1002", "1002", "true")]
    assert ("hotline-line_12333", "true", "小休") in ami.pauses("1002")  # its own reason on the helped queue
    assert saves[-1]["by"] == "root (班长王)" and saves[-1]["ended"] is None
    assert svc.helping("1001") == ("line_12333",)
    # the helper's state changes: its member in the helped queue follows
    await svc.command("1001", SetBusy(clock.now, "会议"))
    assert ("hotline-line_12333", "true", "会议") in ami.pauses("1001")
    await svc.command("1001", SignOut(clock.now))
    assert ami.pauses("1001")[-1] == ("hotline-line_12333", "true", "签出")
    # a queue event of the helped queue drives the machine like any other
    await svc.command("1002", __import__("routing.agent", fromlist=["SetReady"]).SetReady(clock.now))
    ami.push(Event="AgentCalled", Queue="hotline-line_12333", Interface="PJSIP/1002", Linkedid="L9")
    await settle(svc)
    assert svc.agents["1002"].state.value == "ringing" and svc.agents["1002"].queue == "line_12333"
    # the time is up: removed, recorded as ended by the timer
    clock.now = period.until
    await settle(svc)
    await asyncio.sleep(0.05)
    await svc.drain()
    assert {(h["Queue"], h["Interface"]) for h in ami.named("QueueRemove")} == {
        ("hotline-line_12333", "PJSIP/1001"), ("hotline-line_12333", "PJSIP/1002")}
    assert svc.help == {} and svc.helping("1001") == ()
    assert saves[-1]["id"] == period.id and saves[-1]["ended"] == period.until and saves[-1]["ended_by"] == "timer"
    await svc.stop()


async def test_end_now_and_a_refused_save_adds_nobody(cfg):
    svc, ami, clock = await service(cfg)
    p, _ = await svc.help_start(group="hrss", queue="general", minutes=5, by="li", why="x")
    ended = await svc.help_end(p.id, by="wang", why="queue short again")
    assert ended.ended_by == "wang" and ended.end_why == "queue short again"
    assert [(h["Queue"], h["Interface"]) for h in ami.named("QueueRemove")] == [("hotline-general", "PJSIP/1003")]
    with pytest.raises(HelpError, match="no active help period"):
        await svc.help_end(p.id, by="wang")

    async def refuse(d):
        raise OSError("database is read-only")

    svc._save_help = refuse
    with pytest.raises(OSError):
        await svc.help_start(group="hrss", queue="general", minutes=5, by="li", why="x")
    assert len(ami.named("QueueAdd")) == 1 and svc.help == {}
    await svc.stop()


async def test_login_reconciles_asterisk_s_dynamic_members_with_the_active_periods(cfg):
    """After an Asterisk restart the helpers are gone (persistentmembers = no): added back; a member left by a
    period that ended while the controller was away is removed; Local robots and static members are not ours."""
    active = HelpPeriod("h1", "overflow", ("1001",), 4000.0, 9000.0, "li", "暴雨")
    svc, ami, clock = await service(cfg, saved={"1001": {"agent": "1001", "state": "busy", "reason": "就餐",
                                                          "since": 1.0, "queues": ["general"], "paused": True}},
                                     help_periods=[active.as_dict()])
    ami.lists["QueueStatus"] = [
        {"Event": "QueueMember", "Queue": "hotline-line_12333", "StateInterface": "PJSIP/1002", "Membership": "dynamic"},
        {"Event": "QueueMember", "Queue": "hotline-general", "StateInterface": "PJSIP/1002", "Membership": "static"},
        {"Event": "QueueMember", "Queue": "hotline-general", "StateInterface": "Local/3@agent-robot/n",
         "Membership": "dynamic"}]
    ami.push(Event="FullyBooted")
    await settle(svc)
    assert [(h["Queue"], h["Interface"]) for h in ami.named("QueueRemove")] == [("hotline-line_12333", "PJSIP/1002")]
    assert adds(ami) == [("hotline-overflow", "PJSIP/1001", "PJSIP/1001", "1001", "true")]
    assert ("hotline-overflow", "true", "就餐") in ami.pauses("1001")
    await svc.stop()


async def test_help_periods_persist_and_restart_without_forgetting_or_prolonging(cfg, make_store):  # noqa: F811
    store = await make_store()
    svc, ami, clock = await service(cfg)
    svc._save_help = store.save_help
    p, _ = await svc.help_start(group="1001", queue="overflow", minutes=30, by="root (班长王)", why="多援一：暴雨")
    await svc.stop()
    active = await store.help_periods()
    assert [HelpPeriod.from_dict(d) for d in active] == [p]
    # a restart after the end time: the period is restored and ended at the first tick, not prolonged
    svc2, ami2, clock2 = await service(cfg, help_periods=active)
    svc2._save_help = store.save_help
    clock2.now = p.until + 5
    await settle(svc2)
    await asyncio.sleep(0.05)
    await svc2.drain()
    assert svc2.help == {} and [(h["Queue"], h["Interface"]) for h in ami2.named("QueueRemove")] == [
        ("hotline-overflow", "PJSIP/1001")]
    assert await store.help_periods() == []
    recent = await store.help_periods(active=False)
    assert recent[0]["ended_by"] == "timer" and recent[0]["by"] == "root (班长王)" and recent[0]["why"] == "多援一：暴雨"
    await svc2.stop()


async def test_the_control_op_names_the_socket_peer_and_answers_errors_in_words(cfg):
    from hotline.agent_help_op import help_request

    class Store:
        async def help_periods(self, active=True, limit=100):
            return [{"id": "h0", "ended": 5.0}, {"id": "h1", "ended": None}]

    svc, ami, clock = await service(cfg)
    peer = {"uid": 0, "user": "root"}
    r = await help_request(svc, Store(), {"op": "help", "action": "start", "group": "1003", "queue": "general",
                                          "minutes": "15", "why": "演练", "actor": "班长王", "peer": peer})
    assert r["ok"] and r["period"]["by"] == "root (班长王)" and r["period"]["agents"] == ["1003"]
    bad = await help_request(svc, Store(), {"action": "start", "group": "1003", "queue": "general",
                                            "minutes": "soon", "why": "x", "peer": peer})
    assert bad["ok"] is False and "soon" in bad["error"]
    listed = await help_request(svc, Store(), {"action": "list", "peer": peer})
    assert [p["id"] for p in listed["active"]] == [r["period"]["id"]] and [p["id"] for p in listed["recent"]] == ["h0"]
    ended = await help_request(svc, Store(), {"action": "end", "queue": "general", "peer": peer})
    assert ended["ok"] and ended["ended"][0]["ended_by"] == "root" and ended["ended"][0]["end_why"]
    none = await help_request(svc, Store(), {"action": "end", "peer": peer})
    assert none == {"ok": False, "error": "no active help period"}
    assert (await help_request(svc, Store(), {"action": "boom"}))["ok"] is False
    await svc.stop()
