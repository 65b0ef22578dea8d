"""What keeps the agents' states true when Asterisk's news goes missing (routing/agent_service.py):
the seat phone's reachability (离线), the lost-AgentComplete watchdog, and the pauses released when the
controller stops or fails to start. Against a fake AMI peer that answers list actions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from model.loading import load_config
from routing.agent import OFFLINE_REASON, WRAP_UP_REASON, AgentState
from routing.agent_service import AgentService

S = AgentState


class FakeAmi:
    def __init__(self) -> None:
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.handlers: dict[str, list[Any]] = {}
        self.lists: dict[str, list[dict[str, str]]] = {}

    def on_event(self, name: str, cb: Any) -> None:
        self.handlers.setdefault(name.lower(), []).append(cb)

    async def action(self, name: str, timeout: float | None = None, raise_on_error: bool = True,
                     **headers: Any) -> dict[str, str]:
        self.actions.append((name, headers))
        return {"Response": "Success"}

    async def action_list(self, name: str, timeout: float | None = None, **headers: Any) -> list[dict[str, str]]:
        self.actions.append((name, headers))
        return list(self.lists.get(name, []))

    def push(self, **ev: str) -> None:
        for cb in self.handlers.get(ev["Event"].lower(), []):
            assert cb(dict(ev)) is None

    def pauses(self, ext: str) -> list[tuple[str, str, str]]:
        return [(h["Queue"], h["Paused"], h["Reason"]) for n, h in self.actions
                if n == "QueuePause" and h["Interface"] == f"PJSIP/{ext}"]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [h for n, h in self.actions if n == name]


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cfg():
    c = load_config("config/hotline.yaml")
    c.queues["general"].wrapup_s = 20
    c.agents.call_check_s = 30
    return c


async def service(cfg, saved=None, lists=None):
    ami, clock, saves = FakeAmi(), Clock(), []
    ami.lists.update(lists or {})

    async def save(snap, actions):
        saves.append((snap, actions))

    svc = AgentService(ami, cfg, clock=clock, save=save, tick_s=0.01)
    svc.attach()
    svc.start_from(saved)
    await svc.start()
    await svc.drain()
    return svc, ami, clock, saves


async def settle(svc) -> None:
    for _ in range(5):
        await asyncio.sleep(0.02)
        await svc.drain()


async def test_login_asks_each_phone_and_an_unregistered_one_is_marked_busy_offline(cfg):
    svc, ami, clock, saves = await service(cfg, lists={"DeviceStateList": [
        {"Event": "DeviceStateChange", "Device": "PJSIP/1001", "State": "NOT_INUSE"},
        {"Event": "DeviceStateChange", "Device": "PJSIP/1002", "State": "UNAVAILABLE"},
        {"Event": "DeviceStateChange", "Device": "Queue:hotline-general_pause_PJSIP/1002", "State": "INUSE"},
        {"Event": "DeviceStateChange", "Device": "PJSIP/telecom", "State": "UNAVAILABLE"}]})
    ami.push(Event="FullyBooted")
    await settle(svc)
    assert svc.agents["1001"].state is S.READY and not svc.agents["1001"].offline
    a2 = svc.agents["1002"]
    assert a2.state is S.BUSY and a2.reason == OFFLINE_REASON and a2.offline
    assert set(ami.pauses("1002")[-2:]) == {("hotline-general", "true", OFFLINE_REASON),
                                            ("hotline-overflow", "true", OFFLINE_REASON)}
    recorded = [c for snap, acts in saves if snap["agent"] == "1002" for c in acts if type(c).__name__ == "StateChanged"]
    assert recorded[-1].new is S.BUSY and recorded[-1].reason == OFFLINE_REASON and recorded[-1].why == "话机离线"
    # the phone registers again: a DeviceStateChange of PJSIP/1002 brings the agent back, unpaused and recorded
    ami.push(Event="DeviceStateChange", Device="PJSIP/1002", State="NOT_INUSE")
    await settle(svc)
    assert a2.state is S.READY and not a2.offline
    assert set(ami.pauses("1002")[-2:]) == {("hotline-general", "false", ""), ("hotline-overflow", "false", "")}
    assert saves[-1][0] == {"agent": "1002", "state": "ready", "reason": "", "since": clock.now,
                            "queues": ["general", "overflow"], "paused": False, "agent_id": "1002"}
    # in use, ringing, on hold: all reachable (no change, nothing sent)
    sent = len(ami.actions)
    for state in ("INUSE", "RINGING", "ONHOLD", "NOT_INUSE"):
        ami.push(Event="DeviceStateChange", Device="PJSIP/1002", State=state)
    await settle(svc)
    assert len(ami.actions) == sent
    await svc.stop()


async def test_device_events_before_the_states_are_loaded_change_nothing(cfg):
    """A start that failed before loading the saved states must not act on blank (signed-out) machines."""
    ami = FakeAmi()
    svc = AgentService(ami, cfg, clock=Clock())
    svc.attach()
    ami.push(Event="FullyBooted")
    ami.push(Event="DeviceStateChange", Device="PJSIP/1001", State="UNAVAILABLE")
    await asyncio.sleep(0.02)
    assert ami.actions == [] and svc.agents["1001"].state is S.SIGNED_OUT and not svc.agents["1001"].offline


async def test_the_watchdog_ends_a_call_whose_agent_complete_was_lost(cfg):
    svc, ami, clock, _ = await service(cfg)
    ami.lists["CoreShowChannels"] = [{"Channel": "PJSIP/1001-0000000a", "Linkedid": "L1"},
                                     {"Channel": "Local/12345@hotline-inbound-00000001;1", "Linkedid": "L1"}]
    for ext, lid in (("1001", "L1"), ("1002", "L2")):
        ami.push(Event="AgentCalled", Queue="hotline-general", Interface=f"PJSIP/{ext}", Linkedid=lid)
        ami.push(Event="AgentConnect", Queue="hotline-general", Interface=f"PJSIP/{ext}", Linkedid=lid)
    await settle(svc)
    assert svc.agents["1002"].state is S.TALKING
    clock.now += 10  # not yet call_check_s: nobody asks Asterisk
    await settle(svc)
    assert ami.named("CoreShowChannels") == []
    clock.now += 25  # 35 s on the call: the check runs; L2 is gone (its AgentComplete never came), L1 is up
    await settle(svc)
    assert len(ami.named("CoreShowChannels")) == 1
    assert svc.agents["1002"].state is S.WRAP_UP and svc.agents["1001"].state is S.TALKING
    clock.now += 5  # the next check waits call_check_s again
    await settle(svc)
    assert len(ami.named("CoreShowChannels")) == 1
    await svc.stop()


async def test_release_unpauses_only_after_call_work_and_offline_as_asterisk_has_them(cfg):
    rows = [
        {"Event": "QueueParams", "Queue": "hotline-general"},
        {"Event": "QueueMember", "Queue": "hotline-general", "StateInterface": "PJSIP/1001", "Paused": "1",
         "PausedReason": WRAP_UP_REASON},
        {"Event": "QueueMember", "Queue": "hotline-general", "StateInterface": "PJSIP/1002", "Paused": "1",
         "PausedReason": "就餐"},
        {"Event": "QueueMember", "Queue": "hotline-overflow", "StateInterface": "PJSIP/1002", "Paused": "1",
         "PausedReason": "签出"},
        {"Event": "QueueMember", "Queue": "hotline-expert", "StateInterface": "PJSIP/1003", "Paused": "1",
         "PausedReason": OFFLINE_REASON},
        {"Event": "QueueMember", "Queue": "hotline-general", "StateInterface": "Local/3@agent-robot/n", "Paused": "1",
         "PausedReason": WRAP_UP_REASON},
        {"Event": "QueueMember", "Queue": "other", "StateInterface": "PJSIP/1001", "Paused": "1",
         "PausedReason": WRAP_UP_REASON},
    ]
    ami = FakeAmi()
    ami.lists["QueueStatus"] = rows
    svc = AgentService(ami, cfg, clock=Clock())  # not loaded: a start that failed early releases too
    assert await svc.release() == 2
    assert [(h["Queue"], h["Interface"], h["Paused"]) for h in ami.named("QueuePause")] == [
        ("hotline-general", "PJSIP/1001", "false"), ("hotline-expert", "PJSIP/1003", "false")]


def test_seat_phones_are_qualified_so_a_dead_one_is_found(cfg):
    from tests.unit.test_carriers import rendered, sections

    aors = lambda pj, name: [s for s in sections(pj, name) if s.get("type") == "aor"][0]  # noqa: E731
    pj = rendered(cfg)["pjsip.conf"]
    assert aors(pj, "1001").get("qualify_frequency") == "30"  # asterisk.sip.seat_qualify_s, default
    cfg.asterisk.sip.seat_qualify_s = 0
    assert aors(rendered(cfg)["pjsip.conf"], "1001").get("qualify_frequency") == "0"
