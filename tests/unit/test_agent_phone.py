"""The seat phone's feature codes (ivr/agent_phone.py) and hot-desking (routing/agent_service.py + agent_login.py),
driven through a fake AGI session against a real AgentService (fake AMI peer)."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from ivr.agent_phone import AgentPhone
from model.config import Config, RosterAgent
from model.contract import Event
from model.loading import load_config
from model.passwords import hash_password
from routing.agent import AgentState, Called, Connected, HotDesk, SignOut
from routing.agent_login import PinGuard, PinOutcome
from routing.agent_service import AgentService, restore, snapshot
from tests.unit.test_agent_service import Clock, FakeAmi

S = AgentState
PIN = "2468"
PIN_HASH = hash_password(PIN)


class Phone:
    """The AGI session of a seat phone that dialed a feature code; `keys` answer GET DATA in order."""

    def __init__(self, seat: str, *args: str, keys: tuple[str | None, ...] = ()) -> None:
        self.env = {"agi_channel": f"PJSIP/{seat}-0000002a"}
        self.args = list(args)
        self.keys: deque[str | None] = deque(keys)
        self.log: list[tuple[str, Any]] = []

    async def answer(self) -> None:
        self.log.append(("answer", None))

    async def user_event(self, name: str, **headers: Any) -> None:
        self.log.append(("event", (name, headers)))

    async def stream_file(self, name: str, escape: str = "") -> None:
        self.log.append(("play", name))

    async def get_data(self, name: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        self.log.append(("ask", name))
        key = self.keys.popleft() if self.keys else None
        return ("", True) if key is None else (key, False)

    def played(self) -> list[str]:
        return [v.removeprefix("hotline/") for k, v in self.log if k == "play"]

    def announced(self) -> list[dict[str, Any]]:
        return [h for k, (n, h) in ((k, v) for k, v in self.log if k == "event") if n == Event.PROMPT]


def config() -> Config:
    c = load_config("config/hotline.yaml")
    c.seats["1001"].agent_id = "8101"
    c.agents.roster = {"8001": RosterAgent(name="张三", pin_hash=PIN_HASH)}
    return c


@pytest.fixture
async def svc():
    clock = Clock()
    saves: list[tuple[dict[str, Any], list[Any]]] = []

    async def save(snap: dict[str, Any], actions: list[Any]) -> None:
        saves.append((snap, list(actions)))

    s = AgentService(FakeAmi(), config(), clock=clock, save=save, tick_s=3600)
    s.attach()
    s.start_from(None)
    await s.start()
    await s.drain()
    s.saves, s.clock_ = saves, clock  # type: ignore[attr-defined]
    yield s
    await s.stop()


async def dial(svc: AgentService, seat: str, *args: str, keys: tuple[str | None, ...] = ()) -> Phone:
    p = Phone(seat, *args, keys=keys)
    await AgentPhone(svc).script(p)
    return p


async def test_busy_is_confirmed_with_its_reason_every_configured_reason_spoken(svc):
    p = await dial(svc, "1001", "*53", "1")
    assert p.played() == ["agent_busy", "agent_reason/1"]  # 已示忙：小休
    assert svc.agents["1001"].reason == "小休"
    assert [h["Prompt"] for h in p.announced()] == ["agent_busy", "agent_reason/1"]
    assert p.announced()[0] == {"Prompt": "agent_busy", "Agent": "8101", "Seat": "1001", "State": "busy"}
    for digit, word in svc.config.agents.busy_reasons.items():
        assert (await dial(svc, "1001", "*53", digit)).played() == ["agent_busy", f"agent_reason/{digit}"]
        assert svc.agents["1001"].reason == word


async def test_each_code_says_its_new_state_and_what_cannot_apply_is_refused(svc):
    assert (await dial(svc, "1001", "*52")).played() == ["agent_signed_out"]
    assert (await dial(svc, "1001", "*54")).played() == ["agent_refused"]  # ready while signed out
    assert (await dial(svc, "1001", "*51")).played() == ["agent_signed_in"]
    assert (await dial(svc, "1001", "*55")).played() == ["agent_refused"]  # extend outside after-call work
    assert (await dial(svc, "1001", "*54")).played() == ["agent_ready"]
    assert (await dial(svc, "9999", "*51")).played() == ["agent_refused"]  # no agent seat
    assert (await dial(svc, "1001", "*59")).played() == ["agent_refused"]  # no such code
    assert all(k != "ask" for p in [await dial(svc, "1001", "*52")] for k, _ in p.log)


async def test_hot_desk_asks_id_then_pin_and_the_seat_becomes_the_agents(svc):
    p = await dial(svc, "1001", "*56", keys=("8001", PIN))
    assert [v for k, v in p.log if k == "ask"] == ["hotline/agent_enter_id", "hotline/agent_enter_pin"]
    assert p.played() == ["agent_signed_in"]
    a = svc.agents["1001"]
    assert (a.agent_id, a.state) == ("8001", S.READY) and svc.agent_id_of("1001") == "8001"
    assert PIN not in repr(p.announced())  # the keys are never announced
    moves = [(c.agent, c.old.value, c.new.value, c.cause) for _, acts in svc.saves for c in acts
             if type(c).__name__ == "StateChanged" and c.cause == "hot_desk"]
    assert moves == [("8101", "ready", "signed_out", "hot_desk"), ("8001", "signed_out", "ready", "hot_desk")]
    assert svc.saves[-1][0]["agent_id"] == "8001"
    assert (await dial(svc, "1001", "*52")).played() == ["agent_signed_out"]
    assert a.agent_id == "8101"  # signing out gives the seat back to its own agent


async def test_wrong_pins_are_limited_and_recorded_unknown_ids_too(svc):
    for expected in ("agent_pin_wrong", "agent_pin_wrong", "agent_locked"):
        assert (await dial(svc, "1001", "*56", keys=("8001", "0000"))).played() == [expected]
    assert (await dial(svc, "1001", "*56", keys=("8001", PIN))).played() == ["agent_locked"]  # right PIN, locked
    assert svc.agents["1001"].agent_id == "8101"
    refused = [(c.agent, c.seat, c.tries, c.cause) for _, acts in svc.saves for c in acts
               if type(c).__name__ == "PinRefused"]
    assert refused == [("8001", "1001", 1, "pin_wrong"), ("8001", "1001", 2, "pin_wrong"),
                       ("8001", "1001", 3, "pin_wrong"), ("8001", "1001", 3, "pin_locked")]
    svc.clock_.now += svc.config.agents.pin_lock_s  # the lock ends by itself
    assert (await dial(svc, "1001", "*56", keys=("8001", PIN))).played() == ["agent_signed_in"]
    # an ID nobody has: the same answer, nothing of it recorded; no ID keyed at all: wrong
    before = len(svc.saves)
    assert (await dial(svc, "1002", "*56", keys=("7777", PIN))).played() == ["agent_pin_wrong"]
    assert (await dial(svc, "1002", "*56", keys=(None,))).played() == ["agent_pin_wrong"]
    assert not any(type(c).__name__ == "PinRefused" for _, acts in svc.saves[before:] for c in acts)


async def test_one_agent_one_seat_and_no_hand_over_during_a_call(svc):
    assert await svc.hot_desk("1001", "8001", PIN) is PinOutcome.SIGNED_IN
    assert await svc.hot_desk("1002", "8001", PIN) is PinOutcome.SIGNED_IN
    assert (svc.agents["1001"].state, svc.agents["1001"].agent_id) == (S.SIGNED_OUT, "8101")
    assert svc.agents["1002"].agent_id == "8001" and svc.seat_of("8001") == "1002"
    await svc.command("1003", Called(svc.clock(), "expert", "L1"))
    await svc.command("1003", Connected(svc.clock(), "expert", "L1"))
    assert await svc.hot_desk("1003", "8001", PIN) is PinOutcome.REFUSED
    assert svc.agents["1002"].agent_id == "8001"  # refused: the agent stays where it was
    with pytest.raises(KeyError):
        await svc.hot_desk("9999", "8001", PIN)


async def test_who_works_a_seat_and_the_pin_count_survive_a_restart(svc):
    await svc.hot_desk("1002", "8001", PIN)
    snap = snapshot(svc.agents["1002"])
    fresh = AgentService(FakeAmi(), config(), clock=Clock())
    restore(fresh.agents["1002"], snap, Clock.now)
    assert fresh.agents["1002"].agent_id == "8001" and fresh.agent_id_of("1002") == "8001"
    restore(fresh.agents["1001"], {**snapshot(svc.agents["1001"]), "agent_id": None}, Clock.now)
    assert fresh.agents["1001"].agent_id == "8101"
    fresh.recall_pin_failures([{"agent": "8001", "at": Clock.now - 10, "cause": "pin_wrong"}] * 3)
    assert fresh.pins.locked("8001", Clock.now)
    fresh.recall_pin_failures([{"agent": "8001", "at": Clock.now, "cause": "hot_desk", "new": "ready"}])
    assert not fresh.pins.locked("8001", Clock.now)


def test_pin_guard_counts_in_a_row_and_forgets_after_the_lock():
    g = PinGuard(max_tries=2, lock_s=60)
    assert g.wrong("8001", 0) == 1 and not g.locked("8001", 1)
    g.right("8001")
    assert g.wrong("8001", 2) == 1 and g.wrong("8001", 3) == 2 and g.locked("8001", 4)
    assert not g.locked("8002", 4) and g.locked("8001", 62) and not g.locked("8001", 63)


def test_the_machine_hands_the_seat_over_and_back():
    from routing.agent import Agent, StateChanged

    a = Agent("1001", ("general",), home="8101")
    first = a.feed(HotDesk(1000.0, "8001"))
    moved = [x for x in first if isinstance(x, StateChanged)]
    assert [(m.agent, m.seat, m.seconds) for m in moved] == [("8001", "1001", None)]  # no previous state: no duration
    again = a.feed(HotDesk(1010.0, "8001"))
    assert not any(isinstance(x, StateChanged) for x in again) and a.agent_id == "8001"
    out = a.feed(SignOut(1070.0))
    assert [(m.agent, m.seconds) for m in out if isinstance(m, StateChanged)] == [("8001", 70.0)]
    assert a.agent_id == "8101"


def test_config_refuses_shared_agent_ids_clear_pins_and_non_digit_ids():
    base = {"queues": {"general": {"name": "g", "members": ["1001", "1002"]}},
            "seats": {"1001": {"name": "a", "agent_id": "8101"}, "1002": {"name": "b"}}}
    c = Config.model_validate(base)
    assert (c.agent_id_of("1001"), c.agent_id_of("1002")) == ("8101", "1002")
    with pytest.raises(ValueError, match="both have agent ID 8101"):
        Config.model_validate({**base, "seats": {"1001": {"name": "a", "agent_id": "8101"},
                                                 "1002": {"name": "b", "agent_id": "8101"}}})
    with pytest.raises(ValueError, match="never the PIN"):
        RosterAgent(pin_hash="2468")
    with pytest.raises(ValueError, match="1-16 digits"):
        Config.model_validate({**base, "agents": {"roster": {"zhang": {"pin_hash": PIN_HASH}}}})



def test_the_shipped_config_says_every_prompt_the_phone_plays():
    from ivr.agent_phone import PROMPT_IDS
    from ivr.prompts import all_prompt_texts

    texts = all_prompt_texts(load_config("config/hotline.yaml"))
    assert [pid for pid in PROMPT_IDS if pid not in texts] == []
    assert texts["agent_reason/1"] == "小休" and texts["agent_reason/9"] == "其他"
