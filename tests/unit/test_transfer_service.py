"""The transfer adapter against a fake AMI in-process: actions recorded, events pushed by the test."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wire.ami import AmiDisconnected, AmiError
from model.loading import parse_config
from routing.transfer_service import TransferError, TransferService

CONFIG = """
queues:
  general: {name: 综合}
seats:
  "1001": {name: 一号}
  "1002": {name: 二号}
legacy_lines:
  "12366": {name: 纳税, mode: branch_center, branch: tax}
branch_centers:
  tax: {name: 12366纳税服务分中心, dial: Local/12366@branch-sim, kind: branch_center, feature_code: "*71"}
transfer_targets:
  "110": {name: 公安报警, dial: Local/110@emergency-sim, kind: emergency, feature_code: "*810"}
  water: {name: 供水服务, dial: Local/water@emergency-sim, kind: utility, feature_code: "*831"}
transfer_timeout_s: 20
"""

AGENT = "PJSIP/1001-00000002"
AGENT2 = "PJSIP/1002-00000012"
CALLER_ID = "1700000000.1"
CALLER2_ID = "1700000000.11"


class FakeAmi:
    """Records actions; the test pushes events. `gates[name]` holds an action until released."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.handlers: list[Any] = []
        self.responses: dict[str, Any] = {}
        self.gates: dict[tuple[str, str], asyncio.Event] = {}
        self.channels: list[dict[str, str]] = []

    def on_event(self, name: str, cb: Any) -> None:
        self.handlers.append(cb)

    async def action(self, name: str, timeout: float | None = None, raise_on_error: bool = True,
                     **headers: Any) -> dict[str, str]:
        self.actions.append((name, headers))
        gate = self.gates.get((name, headers.get("Channel", "")))
        if gate is not None:
            await gate.wait()
        resp = self.responses.get(name)
        if isinstance(resp, Exception):
            raise resp
        if name == "Atxfer":
            return {"Response": "Success", "Message": "Atxfer successfully queued"}
        return resp or {"Response": "Success"}

    async def action_list(self, name: str, timeout: float | None = None, **headers: Any) -> list[dict[str, str]]:
        self.actions.append((name, headers))
        return list(self.channels)

    def push(self, **event: str) -> None:
        for cb in self.handlers:
            res = cb(dict(event))
            assert res is None  # the callback never makes the AMI dispatcher wait

    def named(self, name: str) -> list[dict[str, Any]]:
        return [h for n, h in self.actions if n == name]


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env():
    ami, clock, outcomes = FakeAmi(), Clock(), []
    async def record(outcome: dict) -> None:
        outcomes.append(outcome)

    svc = TransferService(ami, parse_config(CONFIG), record, clock=clock)
    return ami, clock, outcomes, svc


def feature(ami: FakeAmi, target: str, channel: str = AGENT, linkedid: str = CALLER_ID) -> None:
    ami.push(Event="UserEvent", UserEvent="HotlineFeature", Target=target, Channel=channel,
             Uniqueid="1700000000.2", Linkedid=linkedid, ConnectedLineNum="13800138000")


def leg(exten: str, n: int) -> str:
    return f"Local/{exten}@hotline-transfer-0000000{n};2"


def dial_begin(ami: FakeAmi, exten: str, n: int, dest: str, linkedid: str = CALLER_ID) -> None:
    ami.push(Event="DialBegin", Channel=leg(exten, n), Context="hotline-transfer", Exten=exten,
             Linkedid=linkedid, DestChannel=dest, Uniqueid=f"1700000000.{n}0")


# --------------------------------------------------------------------------- starting


async def test_feature_code_sends_atxfer_with_agent_channel_exten_and_context(env) -> None:
    ami, clock, outcomes, svc = env
    feature(ami, "110")
    await svc.drain()
    assert ami.named("Atxfer") == [{"Channel": AGENT, "Context": "hotline-transfer", "Exten": "110"}]
    [view] = svc.active()
    assert view["state"] == "requested" and view["mode"] == "threeway"  # emergency → three-way
    assert view["linkedid"] == CALLER_ID and view["agent"] == "1001" and view["caller"] == "138******00"


async def test_non_digit_target_uses_its_dialable_alias(env) -> None:
    ami, clock, outcomes, svc = env
    feature(ami, "tax")
    await svc.drain()
    assert ami.named("Atxfer")[0]["Exten"] == "12366"


async def test_feature_from_a_non_seat_channel_or_unknown_target_is_ignored(env) -> None:
    ami, clock, outcomes, svc = env
    feature(ami, "110", channel="PJSIP/trunk-00000001")
    feature(ami, "nowhere")
    await svc.drain()
    assert ami.named("Atxfer") == [] and svc.active() == []


async def test_api_start_looks_up_the_call_and_blind_uses_blindtransfer(env) -> None:
    ami, clock, outcomes, svc = env
    ami.channels = [{"Channel": AGENT, "Linkedid": CALLER_ID, "ConnectedLineNum": "13800138000"}]
    view = await svc.start(AGENT, "water", "blind")
    assert ami.named("BlindTransfer") == [{"Channel": AGENT, "Context": "hotline-transfer", "Exten": "water"}]
    assert view["state"] == "blind" and outcomes[0]["outcome"] == "blind"
    assert svc.active() == []
    with pytest.raises(TransferError):
        await svc.start(AGENT, "nowhere", "attended", linkedid=CALLER_ID)
    with pytest.raises(TransferError):
        await svc.start("PJSIP/1001-gone", "110")


async def test_refused_atxfer_is_a_failed_transfer(env) -> None:
    ami, clock, outcomes, svc = env
    ami.responses["Atxfer"] = AmiError("No attended transfer feature code found")
    feature(ami, "tax")
    await svc.drain()
    assert [o["outcome"] for o in outcomes] == ["failed"] and svc.active() == []


async def test_disconnect_during_atxfer_is_settled_by_the_setup_timeout(env) -> None:
    ami, clock, outcomes, svc = env
    ami.responses["Atxfer"] = AmiDisconnected("link dropped")
    feature(ami, "tax")
    await svc.drain()
    assert outcomes == [] and svc.active()[0]["state"] == "requested"
    clock.now += 10
    await svc.tick()
    assert [o["outcome"] for o in outcomes] == ["failed"]


# --------------------------------------------------------------------------- following a transfer


async def test_no_answer_records_outcome_work_order_and_userevent(env) -> None:
    ami, clock, outcomes, svc = env
    feature(ami, "tax")
    await svc.drain()
    clock.now += 1
    dial_begin(ami, "12366", 3, "Local/12366@branch-sim-00000004;1")
    await svc.drain()
    assert svc.active()[0]["state"] == "ringing"
    # Asterisk's atxfernoanswertimeout drops the leg and returns the caller to the agent
    clock.now += 20
    ami.push(Event="Hangup", Channel="Local/12366@hotline-transfer-00000003;1", Uniqueid="x", Linkedid=CALLER_ID)
    ami.push(Event="DialEnd", Channel=leg("12366", 3), DialStatus="CANCEL", Linkedid=CALLER_ID)
    ami.push(Event="Hangup", Channel="Local/12366@branch-sim-00000004;1", Uniqueid="y", Linkedid=CALLER_ID)
    await svc.drain()
    assert [o["outcome"] for o in outcomes] == ["no_answer"]
    assert outcomes[0]["work_order"] is True and outcomes[0]["caller"] == "13800138000"
    [ev] = ami.named("UserEvent")
    assert ev == {"UserEvent": "HotlineTransfer", "Target": "tax", "Kind": "branch_center", "Mode": "attended",
                  "Outcome": "no_answer", "Agent": "1001", "Linkedid": CALLER_ID, "TransferId": ev["TransferId"],
                  "WorkOrder": "1"}
    assert svc.active() == []


async def test_our_timeout_drops_the_ringing_leg_when_asterisk_is_silent(env) -> None:
    ami, clock, outcomes, svc = env
    feature(ami, "tax")
    dial_begin(ami, "12366", 3, "Local/12366@branch-sim-00000004;1")
    await svc.drain()
    clock.now += 26
    await svc.tick()
    assert ami.named("Hangup") == [{"Channel": "Local/12366@hotline-transfer-00000003;1"}]
    assert [o["outcome"] for o in outcomes] == ["no_answer"]


async def test_busy_drops_the_leg_and_marks_a_work_order(env) -> None:
    ami, clock, outcomes, svc = env
    feature(ami, "tax")
    dial_begin(ami, "12366", 3, "PJSIP/tax-trunk-00000004")
    ami.push(Event="DialEnd", Channel=leg("12366", 3), DialStatus="BUSY", Linkedid=CALLER_ID)
    await svc.drain()
    assert outcomes[0]["outcome"] == "busy" and outcomes[0]["work_order"]
    assert {"Channel": "Local/12366@hotline-transfer-00000003;1"} in ami.named("Hangup")


async def test_threeway_for_110_keys_star3_then_agent_leaves(env) -> None:
    ami, clock, outcomes, svc = env
    feature(ami, "110")
    dial_begin(ami, "110", 3, "PJSIP/police-00000004")
    ami.push(Event="DialEnd", Channel=leg("110", 3), DialStatus="ANSWER", Linkedid=CALLER_ID)
    # the Local pair optimizes away after the answer: that is not the target leaving
    ami.push(Event="LocalOptimizationBegin", LocalOneChannel="Local/110@hotline-transfer-00000003;1",
             LocalTwoChannel=leg("110", 3), SourceChannel="PJSIP/police-00000004")
    ami.push(Event="Hangup", Channel="Local/110@hotline-transfer-00000003;1", Uniqueid="a", Linkedid=CALLER_ID)
    ami.push(Event="Hangup", Channel=leg("110", 3), Uniqueid="b", Linkedid=CALLER_ID)
    await svc.drain()
    assert [(h["Digit"], h["Receive"]) for h in ami.named("PlayDTMF")] == [("*", "yes"), ("3", "yes")]
    assert svc.active()[0]["state"] == "answered"
    ami.push(Event="AttendedTransfer", Result="Success", DestType="Threeway", OrigTransfererChannel=AGENT,
             SecondTransfererChannel=AGENT)
    await svc.drain()
    assert [o["outcome"] for o in outcomes] == ["threeway"] and len(svc.active()) == 1
    ami.push(Event="Hangup", Channel=AGENT, Uniqueid="1700000000.2", Linkedid=CALLER_ID)
    await svc.drain()
    assert [o["outcome"] for o in outcomes] == ["threeway", "completed"] and svc.active() == []


async def test_caller_hangup_while_ringing_is_abandoned(env) -> None:
    ami, clock, outcomes, svc = env
    feature(ami, "water")
    dial_begin(ami, "water", 3, "PJSIP/water-00000004")
    ami.push(Event="Hangup", Channel="PJSIP/caller-00000001", Uniqueid=CALLER_ID, Linkedid=CALLER_ID)
    ami.push(Event="Hangup", Channel=AGENT, Uniqueid="1700000000.2", Linkedid=CALLER_ID)  # same instant
    await svc.drain()
    assert [o["outcome"] for o in outcomes] == ["abandoned"]


# --------------------------------------------------------------------------- isolation


async def test_two_concurrent_transfers_do_not_block_each_other(env) -> None:
    ami, clock, outcomes, svc = env
    ami.gates[("Atxfer", AGENT)] = gate = asyncio.Event()  # transfer A's Atxfer hangs
    feature(ami, "tax", AGENT, CALLER_ID)
    feature(ami, "110", AGENT2, CALLER2_ID)
    for _ in range(5):
        await asyncio.sleep(0)
    dial_begin(ami, "110", 7, "PJSIP/police-00000008", linkedid=CALLER2_ID)
    ami.push(Event="DialEnd", Channel=leg("110", 7), DialStatus="NOANSWER", Linkedid=CALLER2_ID)
    await asyncio.wait_for(_until(lambda: outcomes), 2)
    assert [(o["target"], o["outcome"]) for o in outcomes] == [("110", "no_answer")]
    assert not gate.is_set()
    gate.set()
    await svc.drain()
    [a] = svc.active()
    assert a["target"] == "tax" and a["state"] == "requested"


async def test_an_exception_in_one_transfer_does_not_affect_another(env) -> None:
    ami, clock, outcomes, svc = env
    feature(ami, "tax", AGENT, CALLER_ID)
    feature(ami, "110", AGENT2, CALLER2_ID)
    await svc.drain()
    broken = next(v for v in svc._live.values() if v.machine.target == "tax")

    def boom(_inp):
        raise RuntimeError("bug in one transfer")

    broken.machine.feed = boom  # type: ignore[method-assign]
    dial_begin(ami, "12366", 3, "PJSIP/tax-00000004")
    dial_begin(ami, "110", 7, "PJSIP/police-00000008", linkedid=CALLER2_ID)
    ami.push(Event="DialEnd", Channel=leg("110", 7), DialStatus="BUSY", Linkedid=CALLER2_ID)
    await svc.drain()
    assert [(o["target"], o["outcome"]) for o in outcomes] == [("110", "busy")]
    assert [v["target"] for v in svc.active()] == ["tax"]


async def test_a_failing_outcome_callback_or_userevent_does_not_stop_others(env) -> None:
    ami, clock, _, _svc = env
    seen = []

    async def callback(record):
        seen.append(record["target"])
        if record["target"] == "tax":
            raise RuntimeError("ticket store down")

    svc = TransferService(ami, parse_config(CONFIG), callback, clock=clock)
    ami.handlers = [svc._on_event]
    ami.responses["UserEvent"] = AmiDisconnected("down")
    feature(ami, "tax", AGENT, CALLER_ID)
    feature(ami, "110", AGENT2, CALLER2_ID)
    ami.push(Event="Hangup", Channel="c1", Uniqueid=CALLER_ID, Linkedid=CALLER_ID)
    ami.push(Event="Hangup", Channel="c2", Uniqueid=CALLER2_ID, Linkedid=CALLER2_ID)
    await svc.drain()
    assert sorted(seen) == ["110", "tax"] and svc.active() == []


# --------------------------------------------------------------------------- restart safety


async def test_recover_reattaches_a_ringing_leg_and_records_a_stranded_one(env) -> None:
    ami, clock, outcomes, svc = env
    ami.channels = [
        # call 1: caller, agent and a ringing transfer leg → re-attached
        {"Channel": "PJSIP/caller-00000001", "Uniqueid": CALLER_ID, "Linkedid": CALLER_ID, "BridgeId": "b1",
         "ConnectedLineNum": "1001"},
        {"Channel": AGENT, "Uniqueid": "1700000000.2", "Linkedid": CALLER_ID, "BridgeId": "b2",
         "ConnectedLineNum": "13800138000"},
        {"Channel": "Local/12366@hotline-transfer-00000003;1", "Uniqueid": "3", "Linkedid": CALLER_ID,
         "BridgeId": "b2", "ChannelStateDesc": "Ringing"},
        {"Channel": leg("12366", 3), "Uniqueid": "4", "Linkedid": CALLER_ID, "Context": "hotline-transfer",
         "Exten": "12366", "ChannelStateDesc": "Ring", "Duration": "00:00:05"},
        # call 2: the caller is gone, only the leg is left → abandoned
        {"Channel": leg("110", 9), "Uniqueid": "9", "Linkedid": CALLER2_ID, "Context": "hotline-transfer",
         "Exten": "110", "ChannelStateDesc": "Up", "Duration": "00:01:00"},
        # not a transfer
        {"Channel": "PJSIP/other-00000010", "Uniqueid": "10", "Linkedid": "10"},
    ]
    counts = await svc.recover()
    assert counts == {"reattached": 1, "abandoned": 1}
    assert [(o["target"], o["outcome"]) for o in outcomes] == [("110", "abandoned")]
    [live] = svc.active()
    assert live["target"] == "tax" and live["state"] == "ringing" and live["recovered"]
    assert live["agent_channel"] == AGENT
    # the re-attached transfer is followed like any other
    ami.push(Event="DialEnd", Channel=leg("12366", 3), DialStatus="NOANSWER", Linkedid=CALLER_ID)
    await svc.drain()
    assert [o["outcome"] for o in outcomes] == ["abandoned", "no_answer"] and svc.active() == []


async def _until(cond) -> None:
    while not cond():
        await asyncio.sleep(0.001)
