"""The agents' AMI adapter (routing/agent_service.py) against a fake AMI peer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from model.loading import load_config
from routing.agent import AgentState, Refused, SetBusy, SignOut
from routing.agent_service import AgentService

S = AgentState


class FakeAmi:
    def __init__(self) -> None:
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.handlers: dict[str, list[Any]] = {}

    def on_event(self, name: str, cb: Any) -> None:
        self.handlers.setdefault(name.lower(), []).append(cb)

    async def action(self, name: str, timeout: float | None = None, raise_on_error: bool = True,
                     **headers: Any) -> dict[str, str]:
        self.actions.append((name, headers))
        return {"Response": "Success"}

    def push(self, **ev: str) -> None:
        for cb in self.handlers.get(ev["Event"].lower(), []):
            assert cb(dict(ev)) is None

    def named(self, name: str) -> list[dict[str, Any]]:
        return [h for n, h in self.actions if n == name]


class Clock:
    now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cfg():
    c = load_config("config/hotline.yaml")
    c.queues["general"].wrapup_s = 20
    return c


async def service(cfg, saved=None):
    ami, clock, saves = FakeAmi(), Clock(), []

    async def save(snap, actions):
        saves.append((snap, actions))

    svc = AgentService(ami, cfg, clock=clock, save=save, tick_s=0.01)
    svc.attach()
    svc.start_from(saved)
    await svc.start()
    await svc.drain()
    return svc, ami, clock, saves


async def test_first_start_unpauses_every_configured_member_never_adds_or_removes(cfg):
    """Members are static in queues.conf (calls never depend on the controller): signing in is an unpause."""
    svc, ami, _, saves = await service(cfg)
    assert ami.named("QueueAdd") == [] and ami.named("QueueRemove") == []
    pauses = {(h["Queue"], h["Interface"], h["Paused"]) for h in ami.named("QueuePause")}
    assert pauses == {("hotline-general", "PJSIP/1001", "false"), ("hotline-general", "PJSIP/1002", "false"),
                      ("hotline-overflow", "PJSIP/1002", "false"), ("hotline-expert", "PJSIP/1003", "false"),
                      ("hotline-line_12333", "PJSIP/1003", "false"),
                      # issue 18's language and special-line seats
                      ("hotline-english", "PJSIP/1004", "false"), ("hotline-tourism", "PJSIP/1004", "false"),
                      ("hotline-minnan", "PJSIP/1005", "false"), ("hotline-campaign_flood", "PJSIP/1005", "false"),
                      ("hotline-sign", "PJSIP/1006", "false")}
    assert {s["agent"]: s["state"] for s, _ in saves} == {"1001": "ready", "1002": "ready", "1003": "ready",
                                                          "1004": "ready", "1005": "ready", "1006": "ready"}
    await svc.stop()


async def test_saved_state_is_restored_not_reset(cfg):
    saved = {"1001": {"agent": "1001", "state": "busy", "reason": "就餐", "since": 1.0, "queues": ["general"],
                      "paused": True},
             "1002": {"agent": "1002", "state": "signed_out", "reason": "", "since": 1.0, "queues": []}}
    svc, ami, _, _ = await service(cfg, saved)
    assert svc.agents["1001"].state is S.BUSY and svc.agents["1002"].state is S.SIGNED_OUT
    assert svc.agents["1003"].state is S.SIGNED_OUT  # saved agents exist: nobody is signed in by default
    assert ami.named("QueuePause") == []  # nothing sent until Asterisk says it is up
    ami.push(Event="FullyBooted")  # an Asterisk restart unpauses every static member: put the pauses back
    await svc.drain()
    assert ami.named("QueueAdd") == [] and ami.named("QueueRemove") == []
    assert {(h["Queue"], h["Interface"], h["Paused"], h["Reason"]) for h in ami.named("QueuePause")} == {
        ("hotline-general", "PJSIP/1001", "true", "就餐"),
        ("hotline-general", "PJSIP/1002", "true", "签出"), ("hotline-overflow", "PJSIP/1002", "true", "签出"),
        ("hotline-expert", "PJSIP/1003", "true", "签出"), ("hotline-line_12333", "PJSIP/1003", "true", "签出"),
        ("hotline-english", "PJSIP/1004", "true", "签出"), ("hotline-tourism", "PJSIP/1004", "true", "签出"),
        ("hotline-minnan", "PJSIP/1005", "true", "签出"), ("hotline-campaign_flood", "PJSIP/1005", "true", "签出"),
        ("hotline-sign", "PJSIP/1006", "true", "签出")}
    await svc.stop()


async def test_feature_codes_drive_the_machine_and_send_pause_with_reason(cfg):
    svc, ami, _, saves = await service(cfg)
    out = await svc.feature("1001", "*53", "2")
    assert svc.agents["1001"].state is S.BUSY and svc.agents["1001"].reason == "就餐"
    assert ami.named("QueuePause")[-1] == {"Queue": "hotline-general", "Interface": "PJSIP/1001", "Paused": "true",
                                           "Reason": "就餐"}
    await svc.feature("1001", "*54")
    assert ami.named("QueuePause")[-1]["Paused"] == "false"
    await svc.feature("1001", "*52")  # 签出: the static member stays, paused with reason 签出
    assert ami.named("QueuePause")[-1] == {"Queue": "hotline-general", "Interface": "PJSIP/1001", "Paused": "true",
                                           "Reason": "签出"}
    assert ami.named("QueueRemove") == []
    await svc.feature("1001", "*51")
    assert ami.named("QueuePause")[-1] == {"Queue": "hotline-general", "Interface": "PJSIP/1001", "Paused": "false",
                                           "Reason": ""}
    await svc.feature("1001", "*52")
    assert saves[-1][0]["state"] == "signed_out"
    out = await svc.feature("1001", "*54")
    assert isinstance(out[0], Refused)
    with pytest.raises(ValueError):
        await svc.feature("1001", "*99")
    await svc.stop()


async def test_queue_events_make_wrap_up_which_ends_by_the_timer(cfg):
    svc, ami, clock, _ = await service(cfg)
    ami.push(Event="AgentCalled", Queue="hotline-general", Interface="PJSIP/1001", Linkedid="L1")
    ami.push(Event="AgentConnect", Queue="hotline-general", Interface="PJSIP/1001", Linkedid="L1")
    await svc.drain()
    assert svc.agents["1001"].state is S.TALKING
    assert ami.named("QueuePause")[-1] == {"Queue": "hotline-general", "Interface": "PJSIP/1001", "Paused": "true",
                                           "Reason": "话后整理"}
    ami.push(Event="AgentComplete", Queue="hotline-general", Interface="PJSIP/1001", Linkedid="L1")
    await svc.drain()
    assert svc.agents["1001"].state is S.WRAP_UP
    await asyncio.sleep(0.05)
    assert svc.agents["1001"].state is S.WRAP_UP
    clock.now += 20
    for _ in range(50):
        await asyncio.sleep(0.01)
        if svc.agents["1001"].state is S.READY:
            break
    await svc.drain()
    assert svc.agents["1001"].state is S.READY and ami.named("QueuePause")[-1]["Paused"] == "false"
    await svc.stop()


async def test_ring_no_answer_counts_and_events_of_other_queues_or_phones_are_ignored(cfg):
    svc, ami, _, saves = await service(cfg)
    for _ in range(3):
        ami.push(Event="AgentCalled", Queue="hotline-general", Interface="PJSIP/1002")
        ami.push(Event="AgentRingNoAnswer", Queue="hotline-general", Interface="PJSIP/1002")
    ami.push(Event="AgentCalled", Queue="other", Interface="PJSIP/1001")
    ami.push(Event="AgentCalled", Queue="hotline-general", Interface="PJSIP/9999")
    await svc.drain()
    assert svc.agents["1002"].state is S.BUSY and svc.agents["1002"].reason == "未接"
    assert svc.agents["1001"].state is S.READY
    # 1002's pause (未接) covers both its queues
    assert {(h["Queue"], h["Reason"]) for h in ami.named("QueuePause") if h["Interface"] == "PJSIP/1002"
            and h["Paused"] == "true"} == {("hotline-general", "未接"), ("hotline-overflow", "未接")}
    await svc.stop()


async def test_a_supervisor_command_is_recorded_with_who_and_why(cfg):
    svc, ami, _, saves = await service(cfg)
    out = await svc.command("1003", SignOut(Clock.now, by="班长王", why="强制签出：培训"))
    assert out[-1].by == "班长王" and out[-1].why == "强制签出：培训"
    assert saves[-1][1][-1].by == "班长王"
    with pytest.raises(KeyError):
        await svc.command("7777", SetBusy(0, "x"))
    await svc.stop()


async def test_a_lost_agent_complete_never_leaves_the_seat_paused_for_good(cfg):
    """Review finding: with after-call work the member is paused from the answer on and only
    AgentComplete ends that. If AMI was down at hang-up (or Asterisk restarted mid-call), the
    controller's reconnect sweep tells the agent the call is gone; ready keyed while talking is refused."""
    svc, ami, clock, _ = await service(cfg)
    ami.push(Event="AgentCalled", Queue="hotline-general", Interface="PJSIP/1001", Linkedid="L1")
    ami.push(Event="AgentConnect", Queue="hotline-general", Interface="PJSIP/1001", Linkedid="L1")
    await svc.drain()
    assert svc.agents["1001"].state is S.TALKING
    out = await svc.feature("1001", "*54")  # 示闲 while on a call: said not done, never "已示闲"
    assert isinstance(out[0], Refused) and svc.agents["1001"].state is S.TALKING
    svc.calls_gone({"L2"})  # the sweep after a reconnect: Asterisk has no channel of L1 any more
    await svc.drain()
    assert svc.agents["1001"].state is S.WRAP_UP
    clock.now += cfg.queues["general"].wrapup_s + 1
    await asyncio.sleep(0.05)
    await svc.drain()
    assert svc.agents["1001"].state is S.READY
    assert ami.named("QueuePause")[-1]["Interface"] == "PJSIP/1001" and ami.named("QueuePause")[-1]["Paused"] == "false"
    svc.calls_gone(set())  # agents not on a call are left alone
    await svc.drain()
    assert svc.agents["1002"].state is S.READY
    await svc.stop()


async def test_standing_by_follows_the_events_but_sends_only_what_a_person_asked_until_it_takes_over(cfg):
    """Several controllers on one Asterisk (README "Several controllers"): the standby's machines follow the queue
    events, but after-call work, its timer, a login's re-apply and the release at stop are the active one's;
    a key (a person asked) is still sent. Taking over loads the saved states and puts them back in Asterisk."""
    svc, ami, clock, saves = await service(cfg)
    active = False
    svc.active = lambda: active
    ami.actions.clear()
    saves.clear()
    ami.push(Event="AgentCalled", Queue="hotline-general", Interface="PJSIP/1001", Linkedid="L1")
    ami.push(Event="AgentConnect", Queue="hotline-general", Interface="PJSIP/1001", Linkedid="L1")
    ami.push(Event="AgentComplete", Queue="hotline-general", Interface="PJSIP/1001", Linkedid="L1")
    await svc.drain()
    assert svc.agents["1001"].state is S.WRAP_UP and ami.named("QueuePause") == [] and saves == []
    ami.push(Event="FullyBooted")
    await svc.drain()
    assert ami.named("QueuePause") == [] and await svc.release() == 0
    await svc.feature("1002", cfg.agents.feature_codes.busy, "1")  # a key reached this controller: sent
    assert {h["Interface"] for h in ami.named("QueuePause")} == {"PJSIP/1002"}
    assert [s["agent"] for s, _ in saves] == ["1002"]
    ami.actions.clear()
    active = True  # the active controller died: this one took the lease
    svc.take_over({s["agent"]: s for s, _ in saves}, [])  # the states the active one saved (here: 1002 busy)
    await svc.drain()
    assert {h["Interface"] for h in ami.named("QueuePause")} >= {"PJSIP/1001", "PJSIP/1002"}
    assert any(h["Interface"] == "PJSIP/1002" and h["Paused"] == "true" for h in ami.named("QueuePause"))
    await svc.stop()


async def test_a_cluster_nodes_mirror_sends_the_pauses_but_saves_nothing(cfg):
    """routing/agent_sync.py's adapter side: another node's busy is paused here and never saved again (no loop)."""
    svc, ami, clock, saves = await service(cfg)
    ami.actions.clear()
    saves.clear()
    row = {"agent": "1002", "state": "busy", "reason": "就餐", "since": clock.now + 1, "queues": ["general", "overflow"],
           "paused": True, "agent_id": "1002"}
    assert svc.mirror_saved({"1002": row, "9999": row}) == 1
    await svc.drain()
    assert {(h["Queue"], h["Paused"], h["Reason"]) for h in ami.named("QueuePause")} == {
        ("hotline-general", "true", "就餐"), ("hotline-overflow", "true", "就餐")}
    assert saves == [] and svc.agents["1002"].state is S.BUSY
    assert svc.mirror_saved({"1002": row}) == 0  # read again at the next look: nothing to do
    await svc.stop()


async def test_a_watcher_that_fails_never_stops_the_agents_own_work(cfg):
    svc, ami, clock, saves = await service(cfg)
    told: list[int] = []
    svc.watch(lambda: 1 / 0)  # type: ignore[func-returns-value]
    svc.watch(lambda: told.append(1))
    ami.actions.clear()
    await svc.command("1001", SetBusy(clock(), "就餐"))
    assert svc.agents["1001"].state is S.BUSY and told  # the next watcher was told too
    assert any(h["Interface"] == "PJSIP/1001" and h["Paused"] == "true" for h in ami.named("QueuePause"))
    await svc.stop()
