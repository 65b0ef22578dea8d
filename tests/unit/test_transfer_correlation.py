"""Event correlation for transfers, pure: AMI event dicts in, (transfer id, machine input) decisions out."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from model.loading import parse_config
from routing.transfer import (
    AttendedTransferDone,
    BlindTransferDone,
    CallerHangup,
    DialEnd,
    Lost,
    Mode,
    State,
    TargetDialing,
    TargetHangup,
    TransfererHangup,
)
from routing.transfer_correlation import (
    Correlator,
    FeatureIgnored,
    FeatureRequest,
    LiveTransfer,
    TransferError,
    dtmf_exten,
    read_feature,
    seat_channel,
    seconds,
)
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
NOW = 5000.0
L1 = "Local/12366@hotline-transfer-00000003;1"
L2 = "Local/12366@hotline-transfer-00000003;2"
DEST = "PJSIP/tax-trunk-00000004"
CFG = parse_config(CONFIG)


class Ids:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, prefix: str) -> str:
        self.asked.append(prefix)
        return f"{prefix}{len(self.asked)}"


@pytest.fixture
def corr() -> Correlator:
    return Correlator(CFG, context="hotline-transfer", agent_context="hotline-agent-transfer")


_ids = itertools.count(100)


def started(corr: Correlator, target: str = "tax", agent: str = AGENT, linkedid: str = CALLER_ID,
            mode: Mode | str | None = None) -> LiveTransfer:
    return corr.begin(agent, target, mode, linkedid, "13800138000", "", now=NOW,
                      new_id=lambda prefix: f"{prefix}{next(_ids)}")


def ringing(corr: Correlator) -> tuple[str, LiveTransfer]:
    live = started(corr)
    corr.route({"Event": "DialBegin", "Channel": L2, "Context": "hotline-transfer", "Linkedid": CALLER_ID,
                "DestChannel": DEST}, NOW + 1)
    return live.machine.id, live


# --------------------------------------------------------------------------- starting


def test_begin_resolves_mode_and_extension_and_indexes_the_transfer(corr: Correlator) -> None:
    ids = Ids()
    live = corr.begin(AGENT, "tax", None, CALLER_ID, "13800138000", "", now=NOW, new_id=ids)
    m = live.machine
    assert (m.id, m.target, m.kind, m.mode, m.agent) == ("x1", "tax", "branch_center", Mode.ATTENDED, "1001")
    assert (m.started_at, m.timeout_s, m.linkedid, m.state) == (NOW, 20.0, CALLER_ID, State.REQUESTED)
    assert live.exten == "12366"  # "tax" is not dialable as DTMF; its legacy number is
    assert corr.by_agent == {AGENT: "x1"} and corr.by_linkedid == {CALLER_ID: "x1"} and corr.live == {"x1": live}
    assert ids.asked == ["x"]
    emergency = started(corr, "110", AGENT2, CALLER2_ID)
    assert emergency.machine.mode is Mode.THREEWAY and emergency.exten == "110"


def test_begin_refuses_without_using_an_id(corr: Correlator) -> None:
    started(corr)
    ids = Ids()
    for agent, target, linkedid, why in [(AGENT2, "nowhere", CALLER2_ID, "unknown transfer target"),
                                         (AGENT, "110", CALLER2_ID, "already transferring"),
                                         (AGENT2, "110", CALLER_ID, "already being transferred")]:
        with pytest.raises(TransferError, match=why):
            corr.begin(agent, target, None, linkedid, "", "", now=NOW, new_id=ids)
    assert ids.asked == [] and len(corr.live) == 1


def test_start_action_is_atxfer_with_the_dialable_exten_or_blindtransfer(corr: Correlator) -> None:
    live = started(corr)
    assert corr.start_action(live) == ("Atxfer", {"Channel": AGENT, "Context": "hotline-agent-transfer",
                                                  "Exten": "12366"})
    blind = started(corr, "water", AGENT2, CALLER2_ID, mode="blind")
    assert corr.start_action(blind) == ("BlindTransfer", {"Channel": AGENT2, "Context": "hotline-transfer",
                                                          "Exten": "water"})


def test_read_feature() -> None:
    seat = lambda chan: chan.startswith("PJSIP/100")  # noqa: E731
    base = {"Event": "UserEvent", "UserEvent": "HotlineFeature", "Channel": AGENT, "Target": " 110 ",
            "Linkedid": CALLER_ID, "ConnectedLineNum": "13800138000"}
    assert read_feature(base, seat) == FeatureRequest(AGENT, "110", CALLER_ID, "13800138000")
    assert read_feature({**base, "UserEvent": "HotlineTransfer"}, seat) is None
    assert read_feature({"Event": "Hangup", "Channel": AGENT}, seat) is None
    assert read_feature({**base, "Target": "  "}, seat) == FeatureIgnored("missing Channel or Target")
    assert read_feature({**base, "Channel": "PJSIP/trunk-1"}, seat) == FeatureIgnored(
        "not a seat channel", {"channel": "PJSIP/trunk-1", "target": "110"})


# --------------------------------------------------------------------------- following


def test_dial_begin_of_the_calls_leg_means_target_dialing(corr: Correlator) -> None:
    tid, live = ringing(corr)
    assert live.legs == {L1, L2} and live.dests == {DEST}
    assert {corr.by_channel[c] for c in (L1, L2, DEST)} == {tid}


@pytest.mark.parametrize("event", [
    {"Event": "DialBegin", "Channel": L2, "Context": "hotline-transfer", "Linkedid": "other", "DestChannel": DEST},
    {"Event": "DialBegin", "Channel": "PJSIP/x-1", "Context": "from-internal", "Linkedid": CALLER_ID},
    {"Event": "DialEnd", "Channel": "PJSIP/x-1", "DialStatus": "ANSWER"},
    {"Event": "Hangup", "Channel": "PJSIP/someone-1", "Uniqueid": "9", "Linkedid": "9"},
    {"Event": "AttendedTransfer", "Result": "Success", "OrigTransfererChannel": "PJSIP/x-1"},
    {"Event": "BlindTransfer", "Result": "Success", "TransfererChannel": "PJSIP/x-1"},
    {"Event": "Newstate", "Channel": AGENT},
    {},
])
def test_events_of_other_calls_mean_nothing(corr: Correlator, event: dict[str, str]) -> None:
    live = started(corr)
    assert corr.route(event, NOW) == [] and live.legs == set() and live.gone == set()


def test_dial_begin_from_a_non_local_channel_registers_no_leg(corr: Correlator) -> None:
    live = started(corr)
    [(tid, inp)] = corr.route({"Event": "DialBegin", "Channel": "PJSIP/1001-00000002", "Context": "hotline-transfer",
                               "Linkedid": CALLER_ID, "DestChannel": DEST}, NOW)
    assert inp == TargetDialing(NOW) and live.legs == set() and live.dests == set()


def test_dial_end_on_the_leg(corr: Correlator) -> None:
    tid, _ = ringing(corr)
    assert corr.route({"Event": "DialEnd", "Channel": L2, "DialStatus": "BUSY"}, NOW + 2) == [(tid, DialEnd("BUSY", NOW + 2))]
    assert corr.route({"Event": "DialEnd", "Channel": DEST, "DialStatus": "ANSWER"}, NOW + 2) == []  # not a leg


def test_hangups_tell_agent_caller_and_target_apart(corr: Correlator) -> None:
    tid, live = ringing(corr)
    assert corr.route({"Event": "Hangup", "Channel": AGENT, "Uniqueid": "u2", "Linkedid": CALLER_ID}, NOW) == [
        (tid, TransfererHangup(NOW))]
    assert corr.route({"Event": "Hangup", "Channel": "PJSIP/caller-1", "Uniqueid": CALLER_ID,
                       "Linkedid": CALLER_ID}, NOW) == [(tid, CallerHangup(NOW))]
    # the Local ;1 going while the real target is still up is not the target leaving
    assert corr.route({"Event": "Hangup", "Channel": L1, "Uniqueid": "a", "Linkedid": CALLER_ID}, NOW) == []
    assert corr.route({"Event": "Hangup", "Channel": DEST, "Uniqueid": "b", "Linkedid": CALLER_ID}, NOW) == [
        (tid, TargetHangup(NOW))]
    assert live.gone == {L1, DEST}


def test_leg_hangup_is_the_target_leaving_when_no_target_channel_is_left(corr: Correlator) -> None:
    live = started(corr)
    corr.route({"Event": "DialBegin", "Channel": L2, "Context": "hotline-transfer", "Linkedid": CALLER_ID}, NOW)
    assert corr.route({"Event": "Hangup", "Channel": L2, "Uniqueid": "a", "Linkedid": CALLER_ID}, NOW) == [
        (live.machine.id, TargetHangup(NOW))]
    live.machine.answered_at = NOW  # after an answer, a leg going away is Local plumbing
    assert corr.route({"Event": "Hangup", "Channel": L1, "Uniqueid": "b", "Linkedid": CALLER_ID}, NOW) == []


def test_agent_and_caller_at_once_is_two_inputs(corr: Correlator) -> None:
    """The agent's channel carries the call's Uniqueid (agent-originated call): both hang-ups are reported."""
    tid, _ = ringing(corr)
    routed = corr.route({"Event": "Hangup", "Channel": AGENT, "Uniqueid": CALLER_ID, "Linkedid": CALLER_ID}, NOW)
    assert routed == [(tid, TransfererHangup(NOW)), (tid, CallerHangup(NOW))]


def test_local_optimization_is_not_the_target_leaving(corr: Correlator) -> None:
    tid, live = ringing(corr)
    real = "PJSIP/tax-trunk-00000009"
    live.dests.add(L2)  # as when the Local ;2 itself was the DestChannel
    corr.route({"Event": "LocalOptimizationBegin", "LocalOneChannel": L1, "LocalTwoChannel": L2,
                "SourceChannel": real}, NOW)
    assert live.optimized == {L1, L2} and real in live.dests and corr.by_channel[real] == tid
    assert corr.route({"Event": "Hangup", "Channel": L2, "Uniqueid": "a", "Linkedid": CALLER_ID}, NOW) == []
    assert corr.route({"Event": "Hangup", "Channel": real, "Uniqueid": "b", "Linkedid": CALLER_ID}, NOW) == [
        (tid, TargetHangup(NOW))]


def test_attended_and_blind_transfer_events(corr: Correlator) -> None:
    tid, _ = ringing(corr)
    for key, value in [("OrigTransfererChannel", AGENT), ("SecondTransfererChannel", AGENT),
                       ("OrigTransfererLinkedid", CALLER_ID)]:
        ev = {"Event": "AttendedTransfer", "Result": "Success", "DestType": "Threeway", key: value}
        assert corr.route(ev, NOW) == [(tid, AttendedTransferDone("Success", "Threeway", NOW))]
    blind = started(corr, "water", AGENT2, CALLER2_ID, mode="blind")
    assert corr.route({"Event": "BlindTransfer", "Result": "Fail", "TransfererChannel": AGENT2}, NOW) == [
        (blind.machine.id, BlindTransferDone("Fail", NOW))]


def test_forget_drops_every_index_entry(corr: Correlator) -> None:
    tid, live = ringing(corr)
    other = started(corr, "110", AGENT2, CALLER2_ID)
    assert corr.forget(tid) is live and corr.forget(tid) is None
    assert set(corr.live) == {other.machine.id}
    assert tid not in {*corr.by_agent.values(), *corr.by_linkedid.values(), *corr.by_channel.values()}
    assert corr.route({"Event": "DialEnd", "Channel": L2, "DialStatus": "ANSWER"}, NOW) == []


def test_return_channels_prefer_the_local_leg_then_the_targets(corr: Correlator) -> None:
    _, live = ringing(corr)
    assert live.return_channels() == [L1]
    live.gone.add(L1)
    assert live.return_channels() == [DEST]
    live.gone.add(DEST)
    assert live.return_channels() == []


def test_view_masks_the_caller(corr: Correlator) -> None:
    view = started(corr).view()
    assert view["caller"] == "138******00" and view["agent_channel"] == AGENT and view["state"] == "requested"


# --------------------------------------------------------------------------- restart


def channels() -> list[dict[str, str]]:
    return [
        {"Channel": "PJSIP/caller-00000001", "Uniqueid": CALLER_ID, "Linkedid": CALLER_ID, "BridgeId": "b1"},
        {"Channel": AGENT, "Uniqueid": "1700000000.2", "Linkedid": CALLER_ID, "BridgeId": "b2",
         "ConnectedLineNum": "13800138000"},
        {"Channel": L1, "Uniqueid": "3", "Linkedid": CALLER_ID, "BridgeId": "b2"},
        {"Channel": L2, "Uniqueid": "4", "Linkedid": CALLER_ID, "Context": "hotline-transfer", "Exten": "12366",
         "ChannelStateDesc": "Ring", "Duration": "00:00:05", "BridgeId": "b3"},
        {"Channel": DEST, "Uniqueid": "5", "Linkedid": CALLER_ID, "BridgeId": "b3"},
        {"Channel": "Local/110@hotline-transfer-00000009;2", "Uniqueid": "9", "Linkedid": CALLER2_ID, "Context": "hotline-transfer",
         "ChannelStateDesc": "Up", "Duration": "00:01:00"},
        {"Channel": "PJSIP/other-00000010", "Uniqueid": "10", "Linkedid": "10"},
    ]


def test_recover_reattaches_whom_it_can_tell_apart_and_loses_the_rest(corr: Correlator) -> None:
    ids = Ids()
    found = corr.recover(channels(), NOW, ids)
    assert ids.asked == ["r", "r"]
    ok, lost = found
    m = ok.live.machine
    assert ok.attached and ok.inputs == () and ok.live.recovered
    assert (m.target, m.state, m.ringing_at, m.started_at, m.agent) == ("tax", State.RINGING, NOW - 5, NOW - 5, "1001")
    assert ok.live.agent_channel == AGENT and ok.live.caller_channel == "PJSIP/caller-00000001"
    assert ok.live.caller_number == "13800138000" and ok.live.dests == {DEST} and ok.live.legs == {L1, L2}
    assert corr.by_agent[AGENT] == m.id
    assert not lost.attached and (lost.caller_present, lost.agent_found) == (False, False)
    assert lost.inputs == (Lost(NOW),) and lost.live.machine.target == "110"
    assert lost.live.machine.state is State.REQUESTED and lost.live.agent_channel == f"unknown:{CALLER2_ID}"
    # a second look finds nothing new: both calls are followed now
    assert corr.recover(channels(), NOW + 1, ids) == []


def test_recover_sees_an_answered_consultation_and_skips_followed_calls(corr: Correlator) -> None:
    started(corr, "110", AGENT2, CALLER2_ID)
    rows = channels()
    rows[3]["ChannelStateDesc"] = "Up"
    [found] = corr.recover(rows, NOW, Ids())
    assert found.live.machine.state is State.ANSWERED and found.live.machine.answered_at == NOW


# --------------------------------------------------------------------------- helpers


def test_durations_and_seats() -> None:
    assert seconds("01:02:03") == 3723.0 and seconds("") == 0.0
    assert seat_channel(CFG, AGENT) and not seat_channel(CFG, "PJSIP/trunk-00000001")


def test_dtmf_exten() -> None:
    assert dtmf_exten(CFG, "110") == "110"
    assert dtmf_exten(CFG, "tax") == "12366"  # the legacy line aliased to the branch center
    assert dtmf_exten(CFG, "water") is None


def test_the_pure_modules_import_no_io() -> None:
    code = ("import sys, routing.transfer, routing.transfer_correlation\n"
            "bad = [m for m in ('asyncio', 'socket', 'structlog', 'wire.ami') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).parents[2]))
