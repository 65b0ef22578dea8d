"""The call assembler, by example: realistic Asterisk 22 AMI sequences → one record per caller call."""

from __future__ import annotations

import importlib
import itertools
import re
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from model.contract import Event, template_names
from ticketbridge.assembler import Assembler, CallRecord, record_from_cdr

ROOT = Path(__file__).resolve().parents[2]

T0 = 1_760_000_000.0
_seq = itertools.count(1)


def ev(name: str, lid: str, uid: str, ts: float, **headers: str) -> dict[str, str]:
    """One AMI event as the client hands it over: every value a string, Timestamp on."""
    e = {"Event": name, "Privilege": "call,all", "Linkedid": lid, "Uniqueid": uid, "Timestamp": f"{ts:.6f}"}
    e.update({k.replace("_", "-"): str(v) for k, v in headers.items()})
    return e


def user(name: str, lid: str, uid: str, ts: float, **headers: str) -> dict[str, str]:
    e = ev("UserEvent", lid, uid, ts, **headers)
    e["UserEvent"] = name
    e["Channel"] = headers.get("Channel", "PJSIP/trunk-00000001")
    return e


def newchannel(lid: str, uid: str, ts: float, channel: str, cid: str = "13800138000", exten: str = "12345",
               context: str = "hotline-inbound") -> dict[str, str]:
    return ev("Newchannel", lid, uid, ts, Channel=channel, CallerIDNum=cid, Exten=exten, Context=context,
              ChannelState="0", ChannelStateDesc="Down")


def hangup(lid: str, uid: str, ts: float, channel: str, cause: str = "16") -> dict[str, str]:
    return ev("Hangup", lid, uid, ts, Channel=channel, Cause=cause, Cause_txt="Normal Clearing")


def run(events: list[dict[str, str]], asm: Assembler | None = None) -> list[CallRecord]:
    asm = asm or Assembler()
    out: list[CallRecord] = []
    for e in events:
        out.extend(asm.feed(e))
    return out


L = "1760000000.1"
CALLER = "PJSIP/trunk-00000001"
AGENT = "PJSIP/1001-00000002"


def inbound(lid: str = L, dialed: str = "12345", dest: str = "queue:general/咨询", mode: str = "center",
            line: str = "", category: str = "咨询", fallback: str = "0", ivr: tuple[str, ...] = ("menu:main", "key:1"),
            t: float = T0) -> list[dict[str, str]]:
    evs = [newchannel(lid, lid, t, CALLER, exten=dialed),
           user("HotlineCall", lid, lid, t + 0.1, Dialed=dialed, Caller="13800138000", Channel=CALLER)]
    for i, step in enumerate(ivr):
        evs.append(user("HotlineIVR", lid, lid, t + 1 + i, Step=step, Channel=CALLER))
    evs.append(user("HotlineRoute", lid, lid, t + 5, Line=line, Mode=mode, Dest=dest, Category=category,
                    Fallback=fallback, Channel=CALLER))
    return evs


def queue_answered(lid: str = L, t: float = T0 + 6, hold: str = "12", talk: str = "95", reason: str = "agent",
                   queue: str = "general") -> list[dict[str, str]]:
    auid = lid[:-1] + "2"
    return [
        ev("QueueCallerJoin", lid, lid, t, Channel=CALLER, Queue=queue, Position="1", Count="1"),
        newchannel(lid, auid, t + 1, AGENT, cid="1001", exten="s", context="hotline-seats"),
        ev("AgentCalled", lid, lid, t + 1, Channel=CALLER, Queue=queue, MemberName="seat1001",
           Interface="PJSIP/1001", DestChannel=AGENT, DestUniqueid=auid, DestLinkedid=lid),
        ev("QueueCallerLeave", lid, lid, t + 12, Channel=CALLER, Queue=queue, Position="1", Count="0"),
        ev("AgentConnect", lid, lid, t + 12, Channel=CALLER, Queue=queue, MemberName="seat1001",
           Interface="PJSIP/1001", HoldTime=hold, RingTime="3", DestChannel=AGENT, DestUniqueid=auid,
           DestLinkedid=lid),
        ev("BridgeEnter", lid, lid, t + 12, Channel=CALLER, BridgeUniqueid="b1"),
        ev("BridgeEnter", lid, auid, t + 12, Channel=AGENT, BridgeUniqueid="b1"),
        ev("AgentComplete", lid, lid, t + 107, Channel=CALLER, Queue=queue, MemberName="seat1001",
           Interface="PJSIP/1001", HoldTime=hold, TalkTime=talk, Reason=reason, DestChannel=AGENT,
           DestUniqueid=auid, DestLinkedid=lid),
    ]


# --------------------------------------------------------------------------- outcomes


def test_ended_in_ivr() -> None:
    evs = [newchannel(L, L, T0, CALLER),
           user("HotlineCall", L, L, T0 + 0.1, Dialed="12345", Caller="13800138000", Channel=CALLER),
           user("HotlineIVR", L, L, T0 + 1, Step="menu:main", Channel=CALLER),
           user("HotlineIVR", L, L, T0 + 6, Step="timeout", Channel=CALLER),
           hangup(L, L, T0 + 8, CALLER)]
    asm = Assembler()
    recs = run(evs[:-1], asm)
    assert recs == []
    assert [r.outcome for r in asm.open_records()] == ["in_progress"]
    [r] = run(evs[-1:], asm)
    assert r.linkedid == L and r.outcome == "ended_in_ivr" and r.actual_dest == "ivr"
    assert r.caller == "13800138000" and r.dialed == "12345"
    assert r.ivr_path == ["menu:main", "timeout"]
    assert r.started_at == pytest.approx(T0) and r.ended_at == pytest.approx(T0 + 8)
    assert r.handled_by == "controller" and r.queue is None and r.agent is None
    assert ("caller", CALLER) in r.participants
    assert asm.open_records() == []


def test_abandoned_in_queue_uses_holdtime() -> None:
    evs = inbound() + [
        ev("QueueCallerJoin", L, L, T0 + 6, Channel=CALLER, Queue="general", Position="3", Count="3"),
        ev("QueueCallerAbandon", L, L, T0 + 40, Channel=CALLER, Queue="general", Position="2",
           OriginalPosition="3", HoldTime="34"),
        ev("QueueCallerLeave", L, L, T0 + 40, Channel=CALLER, Queue="general", Position="2", Count="1"),
        hangup(L, L, T0 + 40, CALLER, cause="16"),
    ]
    [r] = run(evs)
    assert r.outcome == "abandoned_in_queue"
    assert r.queue == "general" and r.queue_wait_s == 34
    assert r.requested_dest == "queue:general/咨询" and r.actual_dest == "queue:general"
    assert r.category == "咨询" and r.mode == "center"
    assert r.ivr_path == ["menu:main", "key:1"]


def test_answered_with_talk_time() -> None:
    evs = inbound() + queue_answered() + [hangup(L, L[:-1] + "2", T0 + 113, AGENT),
                                          hangup(L, L, T0 + 113.2, CALLER)]
    asm = Assembler()
    out = run(evs[:-1], asm)
    assert out == []  # the caller is still there
    [r] = run(evs[-1:], asm)
    assert r.outcome == "answered"
    assert r.agent == "seat1001" and r.actual_dest == "agent:seat1001"
    assert r.queue_wait_s == 12 and r.talk_s == 95
    assert r.answered_at == pytest.approx(T0 + 18)
    assert ("agent", AGENT) in r.participants and ("caller", CALLER) in r.participants


def test_the_ticket_names_the_agent_id_working_the_seat_when_it_answered() -> None:
    """Not the channel (PJSIP/1001) nor the member's name: the agent ID (工号) the seat had at AgentConnect."""
    working = {"1001": "8101"}
    asm = Assembler(agent_id_of=working.get)
    evs = inbound() + queue_answered()
    run(evs[:-1], asm)
    working["1001"] = "8001"  # someone else at the seat after the answer changes nothing for this call
    [r] = run(evs[-1:] + [hangup(L, L[:-1] + "2", T0 + 113, AGENT), hangup(L, L, T0 + 113.2, CALLER)], asm)
    assert r.agent == "8101" and r.actual_dest == "agent:8101"
    robot = [dict(e, Interface="Local/3@agent-robot/n", MemberName="robot3") if e.get("Event", "").startswith("Agent")
             else e for e in queue_answered(lid="1760000001.1")]
    [r] = run(inbound(lid="1760000001.1") + robot + [hangup("1760000001.1", "1760000001.2", T0 + 113, AGENT),
                                                      hangup("1760000001.1", "1760000001.1", T0 + 114, CALLER)], asm)
    assert r.agent == "robot3"  # no seat: the member's name as before


def test_survey_after_agent_hangup() -> None:
    evs = inbound() + queue_answered() + [
        hangup(L, L[:-1] + "2", T0 + 113, AGENT),
        user("HotlineSurvey", L, L, T0 + 118, Rating="1", Scale="5", Channel=CALLER),
        hangup(L, L, T0 + 120, CALLER),
    ]
    [r] = run(evs)
    assert r.survey_rating == 1 and r.survey_scale == 5 and r.outcome == "answered"


def test_survey_without_answer_keeps_scale_only() -> None:
    evs = inbound() + queue_answered() + [
        user("HotlineSurvey", L, L, T0 + 118, Rating="", Scale="3", Channel=CALLER),
        hangup(L, L[:-1] + "2", T0 + 119, AGENT), hangup(L, L, T0 + 120, CALLER),
    ]
    [r] = run(evs)
    assert r.survey_rating is None and r.survey_scale == 3


def test_attended_transfer_joins_second_linkedid() -> None:
    """Agent's phone places a consultation call (its own linkedid) and joins it: one record."""
    L2, AG2, TGT = "1760000200.7", "PJSIP/1001-00000007", "PJSIP/branch-00000008"
    auid = L[:-1] + "2"
    evs = inbound() + queue_answered(reason="transfer")[:-1] + [
        newchannel(L2, L2, T0 + 60, AG2, cid="1001", exten="tax", context="hotline-seats"),
        newchannel(L2, "1760000200.8", T0 + 61, TGT, cid="1001", exten="s", context="hotline-transfer"),
        user("HotlineTransfer", L, L, T0 + 62, Target="tax", Kind="branch_center", Mode="attended",
             Outcome="answered", Agent="seat1001"),
        {"Event": "AttendedTransfer", "Timestamp": f"{T0 + 70:.6f}", "Result": "Success",
         "OrigTransfererChannel": AGENT, "OrigTransfererUniqueid": auid, "OrigTransfererLinkedid": L,
         "SecondTransfererChannel": AG2, "SecondTransfererUniqueid": L2, "SecondTransfererLinkedid": L2,
         "SecondTransfererConnectedLineNum": "tax", "DestType": "Bridge", "DestBridgeUniqueid": "b1",
         "TransfereeChannel": CALLER, "TransfereeUniqueid": L, "TransfereeLinkedid": L,
         "TransferTargetChannel": TGT, "TransferTargetUniqueid": "1760000200.8",
         "TransferTargetLinkedid": L2, "TransferTargetCallerIDNum": "tax", "IsExternal": "No"},
        user("HotlineTransfer", L, L, T0 + 70, Target="tax", Kind="branch_center", Mode="attended",
             Outcome="completed", Agent="seat1001"),
        hangup(L, auid, T0 + 70.1, AGENT),
        hangup(L2, L2, T0 + 70.2, AG2),
    ]
    asm = Assembler()
    assert run(evs, asm) == []
    assert len(asm.open_records()) == 1  # the consultation leg is part of the caller's call
    # the target leg keeps its own linkedid; its hangup still lands on the caller's record
    out = run([hangup(L2, "1760000200.8", T0 + 200, TGT)], asm)
    assert out == []  # the caller is still on
    [r] = run([hangup(L, L, T0 + 200.1, CALLER)], asm)
    assert r.linkedid == L and r.outcome == "transferred" and r.actual_dest == "transfer:tax"
    assert r.transfers == [{"target": "tax", "kind": "branch_center", "mode": "attended",
                            "outcome": "completed", "agent": "seat1001", "at": pytest.approx(T0 + 62)}]
    assert ("transfer_target", TGT) in r.participants and ("agent", AGENT) in r.participants
    assert asm.open_records() == []
    # late events of either linkedid do not resurrect the call
    assert run([hangup(L2, L2, T0 + 300, AG2), hangup(L, L, T0 + 300, CALLER)], asm) == []
    assert asm.open_records() == []


def test_attended_transfer_without_hotline_event_is_still_a_transfer() -> None:
    L2, AG2, TGT = "1760000300.1", "PJSIP/1001-00000011", "PJSIP/gas-00000012"
    evs = inbound() + queue_answered()[:-1] + [
        newchannel(L2, L2, T0 + 60, AG2, cid="1001", exten="96777", context="hotline-seats"),
        {"Event": "AttendedTransfer", "Result": "Success", "OrigTransfererLinkedid": L,
         "SecondTransfererLinkedid": L2, "TransfereeLinkedid": L, "TransferTargetLinkedid": L2,
         "TransferTargetChannel": TGT, "TransferTargetUniqueid": "1760000300.2",
         "TransferTargetCallerIDNum": "96777", "DestType": "Threeway"},
        hangup(L, L[:-1] + "2", T0 + 80, AGENT), hangup(L2, L2, T0 + 80, AG2),
        hangup(L2, "1760000300.2", T0 + 90, TGT), hangup(L, L, T0 + 90, CALLER),
    ]
    [r] = run(evs)
    assert r.outcome == "transferred"
    assert r.transfers[0]["target"] == "96777" and r.transfers[0]["mode"] == "threeway"


def test_one_key_transfer_outcome() -> None:
    evs = inbound() + queue_answered()[:-1] + [
        user("HotlineTransfer", L, L, T0 + 50, Target="110", Kind="emergency", Mode="onekey",
             Outcome="no_answer", Agent="seat1001"),
        user("HotlineTransfer", L, L, T0 + 70, Target="120", Kind="emergency", Mode="onekey",
             Outcome="answered", Agent="seat1001"),
        hangup(L, L[:-1] + "2", T0 + 71, AGENT), hangup(L, L, T0 + 200, CALLER),
    ]
    [r] = run(evs)
    assert [(t["target"], t["outcome"]) for t in r.transfers] == [("110", "no_answer"), ("120", "answered")]
    assert r.outcome == "transferred" and r.actual_dest == "transfer:120"


def test_warm_transfer_no_answer_returns_to_agent() -> None:
    evs = inbound() + queue_answered() + [
        user("HotlineTransfer", L, L, T0 + 50, Target="tax", Kind="branch_center", Mode="attended",
             Outcome="no_answer", Agent="seat1001"),
        hangup(L, L[:-1] + "2", T0 + 113, AGENT), hangup(L, L, T0 + 113, CALLER),
    ]
    [r] = run(evs)
    assert r.outcome == "answered" and r.transfers[0]["outcome"] == "no_answer"


def test_fallback_call_built_from_standard_events() -> None:
    """Controller's AGI failed: only HotlineCall and the dialplan's HotlineRoute Fallback=1."""
    evs = [newchannel(L, L, T0, CALLER, cid="13900001111", exten="12315"),
           user("HotlineCall", L, L, T0 + 0.1, Dialed="12315", Caller="13900001111", Channel=CALLER),
           user("HotlineRoute", L, L, T0 + 2.1, Line="", Mode="fallback", Dest="queue:general", Category="",
                Fallback="1", Channel=CALLER)]
    evs += queue_answered(t=T0 + 3, hold="7", talk="30", reason="caller")
    evs += [hangup(L, L, T0 + 48, CALLER), hangup(L, L[:-1] + "2", T0 + 48.1, AGENT)]
    [r] = run(evs)
    assert r.handled_by == "fallback" and r.mode == "fallback"
    assert r.dialed == "12315" and r.caller == "13900001111"
    assert r.ivr_path == [] and r.category is None
    assert r.outcome == "answered" and r.agent == "seat1001" and r.queue_wait_s == 7 and r.talk_s == 30


def test_fallback_without_any_user_event_from_hotline_context() -> None:
    """Even with no UserEvent at all, a channel in hotline-inbound makes a hotline call."""
    evs = [newchannel(L, L, T0, CALLER, cid="13900001111", exten="12345"),
           ev("QueueCallerJoin", L, L, T0 + 3, Channel=CALLER, Queue="general", Position="1"),
           ev("QueueCallerLeave", L, L, T0 + 20, Channel=CALLER, Queue="general"),
           hangup(L, L, T0 + 20, CALLER)]
    [r] = run(evs)
    assert r.caller == "13900001111" and r.dialed == "12345"
    assert r.outcome == "abandoned_in_queue" and r.queue_wait_s == 17


def test_talk_time_computed_when_agent_complete_missing() -> None:
    evs = inbound() + queue_answered()[:-1] + [hangup(L, L[:-1] + "2", T0 + 48, AGENT),
                                               hangup(L, L, T0 + 48, CALLER)]
    [r] = run(evs)
    assert r.talk_s == pytest.approx(30)


def test_self_query_recorded() -> None:
    evs = inbound(dest="hangup", ivr=("menu:main", "key:5")) + [
        user("HotlineSelfQuery", L, L, T0 + 4, Ticket="202601010001", Result="wrong"),
        user("HotlineSelfQuery", L, L, T0 + 4.5, Ticket="202601010001", Result="found"),
        hangup(L, L, T0 + 9, CALLER)]
    [r] = run(evs)
    assert r.self_query == {"attempts": 2, "tickets": ["202601010001"], "result": "found"}


def test_retired_and_forwarded_lines() -> None:
    [r] = run(inbound(dest="hangup", mode="merged", line="12315", ivr=()) + [hangup(L, L, T0 + 9, CALLER)])
    assert r.outcome == "retired" and r.legacy_line == "12315" and r.actual_dest == "hangup"
    L9 = "1760000900.1"
    evs = inbound(lid=L9, dest="dial:88880000", mode="forward", line="96666", ivr=())
    evs = [{**e, "Linkedid": L9, "Uniqueid": L9} for e in evs] + [hangup(L9, L9, T0 + 60, CALLER)]
    [r] = run(evs)
    assert r.outcome == "forwarded" and r.actual_dest == "dial:88880000"


def test_robot_call_roles() -> None:
    half1, half2 = "Local/12345@hotline-inbound-0000001a;1", "Local/12345@hotline-inbound-0000001a;2"
    evs = [newchannel(L, L, T0, half1, context="caller-robot", exten="s"),
           newchannel(L, L[:-1] + "9", T0, half2),
           user("HotlineCall", L, L[:-1] + "9", T0 + 0.1, Dialed="12345", Caller="13800138000", Channel=half2),
           hangup(L, L[:-1] + "9", T0 + 5, half2), hangup(L, L, T0 + 5, half1)]
    [r] = run(evs)
    assert ("caller", half2) in r.participants and ("robot", half1) in r.participants


# --------------------------------------------------------------------------- robustness


def test_replayed_events_do_not_double_count() -> None:
    evs = inbound() + queue_answered() + [
        user("HotlineTransfer", L, L, T0 + 50, Target="110", Kind="emergency", Mode="onekey",
             Outcome="no_answer", Agent="seat1001"),
        user("HotlineSurvey", L, L, T0 + 118, Rating="4", Scale="5"),
    ]
    doubled = [e for e in evs for _ in range(3)]
    asm = Assembler()
    assert run(doubled, asm) == []
    [snap] = asm.open_records()
    assert snap.ivr_path == ["menu:main", "key:1"]
    assert len(snap.transfers) == 1 and snap.queue_wait_s == 12
    assert snap.participants.count(("agent", AGENT)) == 1
    [r] = run([hangup(L, L[:-1] + "2", T0 + 119, AGENT), hangup(L, L, T0 + 120, CALLER),
               hangup(L, L, T0 + 120, CALLER)], asm)
    assert r.ivr_path == ["menu:main", "key:1"] and len(r.transfers) == 1 and r.survey_rating == 4


def test_replay_without_timestamps_is_idempotent_for_state_events() -> None:
    evs = inbound() + queue_answered()
    for e in evs:
        e.pop("Timestamp")
    state = [e for e in evs if e.get("UserEvent") != "HotlineIVR"]
    asm = Assembler()
    run(state + state, asm)
    [snap] = asm.open_records()
    assert snap.agent == "seat1001" and snap.queue_wait_s == 12 and snap.participants.count(("agent", AGENT)) == 1


def test_a_whole_replay_after_close_yields_nothing_new() -> None:
    evs = inbound() + [hangup(L, L, T0 + 9, CALLER)]
    asm = Assembler()
    assert len(run(evs, asm)) == 1
    assert run(evs, asm) == []


def test_unknown_linkedids_and_odd_events_do_not_crash() -> None:
    asm = Assembler()
    odd = [
        {"Event": "Hangup", "Linkedid": "9.9", "Uniqueid": "9.9"},       # a call we never saw start
        {"Event": "QueueCallerAbandon", "Linkedid": "9.8", "Queue": "x"},
        {"Event": "AgentComplete", "Linkedid": "9.7", "TalkTime": "x"},
        {"Event": "UserEvent", "UserEvent": "HotlineSurvey", "Linkedid": "9.6", "Rating": "9", "Scale": "z"},
        {"Event": "UserEvent", "UserEvent": "SomethingElse", "Linkedid": "9.6"},
        {"Event": "PeerStatus", "Peer": "PJSIP/1001"},                    # no linkedid at all
        {"Event": "AttendedTransfer", "Result": "Fail"},
        {"Event": "BlindTransfer", "TransfereeLinkedid": "9.5", "Extension": "110", "Result": "Success"},
        {},
    ]
    for e in odd:
        assert asm.feed(e, now=T0) == []
    # a seat-to-seat call: not a hotline call, no record when it ends
    seat = [newchannel("7.1", "7.1", T0, "PJSIP/1001-1", context="hotline-seats", exten="1002"),
            hangup("7.1", "7.1", T0 + 3, "PJSIP/1001-1")]
    assert run(seat, asm) == []


def test_malformed_values_do_not_crash() -> None:
    evs = inbound() + [
        ev("QueueCallerJoin", L, L, T0 + 6, Channel=CALLER, Queue="general", Position="first"),
        ev("AgentConnect", L, L, T0 + 10, Channel=CALLER, Queue="general", MemberName="seat1001",
           HoldTime="abc", RingTime="", DestChannel=AGENT, DestUniqueid="x.2", DestLinkedid=L),
        ev("AgentComplete", L, L, T0 + 20, Queue="general", MemberName="seat1001", HoldTime="NaN",
           TalkTime="-", Reason="agent"),
        user("HotlineSurvey", L, L, T0 + 21, Rating="七", Scale=""),
        user("HotlineTransfer", L, L, T0 + 22),
        hangup(L, "x.2", T0 + 23, AGENT),
        {**hangup(L, L, T0 + 24, CALLER), "Timestamp": "not-a-time"},
    ]
    [r] = run(evs)
    assert r.outcome == "answered" and r.queue_wait_s == pytest.approx(4)  # from join/leave times
    assert r.talk_s == pytest.approx(10)  # AgentComplete had no usable TalkTime
    assert r.survey_rating is None


def test_now_is_used_without_timestamp_header() -> None:
    asm = Assembler()
    asm.feed({"Event": "Newchannel", "Linkedid": L, "Uniqueid": L, "Channel": CALLER, "Context": "hotline-inbound",
              "Exten": "12345", "CallerIDNum": "1"}, now=T0)
    [r] = asm.feed({"Event": "Hangup", "Linkedid": L, "Uniqueid": L, "Channel": CALLER}, now=T0 + 3)
    assert r.started_at == T0 and r.ended_at == T0 + 3


def test_to_dict_is_json_friendly() -> None:
    import json

    [r] = run(inbound() + [hangup(L, L, T0 + 9, CALLER)])
    d = json.loads(json.dumps(r.to_dict(), ensure_ascii=False))
    assert d["participants"][0] == ["caller", CALLER] and d["linkedid"] == L


def test_to_dict_is_asdict_with_participants_as_lists_and_shares_nothing_with_the_record() -> None:
    from dataclasses import asdict

    r = CallRecord(linkedid=L, caller="13700000000", ivr_path=["menu:main", "key:1"],
                   transfers=[{"to": "110", "kind": "blind", "legs": [{"a": 1}]}],
                   participants=[("caller", CALLER), ("agent", AGENT)], self_query={"ticket": "x", "tries": [1]},
                   outcome="answered", survey_rating=5)
    want = asdict(r)
    want["participants"] = [list(p) for p in r.participants]
    d = r.to_dict()
    assert d == want and list(d) == list(want)
    d["ivr_path"].append("x")
    d["transfers"][0]["legs"][0]["a"] = 2
    d["self_query"]["tries"].append(2)
    assert r.ivr_path == ["menu:main", "key:1"] and r.transfers[0]["legs"] == [{"a": 1}]
    assert r.self_query == {"ticket": "x", "tries": [1]}


# --------------------------------------------------------------------------- CDR


CDR_JSON = [
    {"linkedid": L, "uniqueid": L, "clid": '"" <13700000000>', "src": "13700000000", "dst": "s",
     "dcontext": "hotline-queue-general", "channel": CALLER, "dstchannel": AGENT, "lastapp": "Queue",
     "lastdata": "q-general,c,,,120", "start": T0, "answer": T0 + 20, "end": T0 + 80, "duration": "80",
     "billsec": "60", "disposition": "ANSWERED", "userfield": "", "hotline_dialed": "12345",
     "hotline_fallback": "1", "hotline_queue": "general"},
    {"linkedid": L, "uniqueid": L[:-1] + "3", "src": "13700000000", "channel": CALLER,
     "dstchannel": "PJSIP/1002-00000003", "lastapp": "Queue", "start": T0 + 5, "answer": 0, "end": T0 + 20,
     "billsec": "0", "disposition": "NO ANSWER", "hotline_dialed": "12345", "hotline_fallback": "1"},
]


def test_record_from_cdr_json_rows() -> None:
    r = Assembler().record_from_cdr(CDR_JSON)
    assert r is not None and r.source == "cdr"
    assert r.linkedid == L and r.caller == "13700000000" and r.dialed == "12345"
    assert r.handled_by == "fallback" and r.outcome == "answered" and r.agent == "PJSIP/1001"
    assert r.talk_s == 60 and r.answered_at == T0 + 20 and r.queue == "general"
    assert r.started_at == T0 and r.ended_at == T0 + 80


def test_record_from_ami_cdr_event_abandoned() -> None:
    row = {"Event": "Cdr", "AccountCode": "", "Source": "13700000000", "Destination": "s",
           "DestinationContext": "hotline-queue-general", "CallerID": '"" <13700000000>', "Channel": CALLER,
           "DestinationChannel": "", "LastApplication": "Queue", "LastData": "q-general,c,,,120",
           "StartTime": "2026-03-02 09:00:00", "AnswerTime": "2026-03-02 09:00:01",
           "EndTime": "2026-03-02 09:00:41", "Duration": "41", "BillableSeconds": "40",
           "Disposition": "ANSWERED", "AMAFlags": "DOCUMENTATION", "UniqueID": L, "UserField": "",
           "Linkedid": L, "HotlineDialed": "12345", "HotlineFallback": "", "HotlineQueue": "general"}
    r = record_from_cdr(row)
    assert r is not None and r.outcome == "abandoned_in_queue" and r.handled_by == "controller"
    assert r.started_at == pytest.approx(1772413200.0)  # 09:00 Beijing time


def test_record_from_cdr_nothing_usable() -> None:
    assert record_from_cdr([]) is None
    assert record_from_cdr({"foo": "bar"}) is None
    r = record_from_cdr({"linkedid": L, "start": "garbage", "billsec": "x", "disposition": "NO ANSWER"})
    assert r is not None and r.outcome == "ended_in_ivr" and r.started_at is None


def test_cdr_event_marks_live_fallback() -> None:
    asm = Assembler()
    run([newchannel(L, L, T0, CALLER),
         user("HotlineCall", L, L, T0 + 0.1, Dialed="12345", Caller="1", Channel=CALLER),
         {"Event": "Cdr", "Linkedid": L, "UniqueID": L, "HotlineFallback": "1", "HotlineDialed": "12345"}], asm)
    [r] = run([hangup(L, L, T0 + 2, CALLER)], asm)
    assert r.handled_by == "fallback"


def test_expire_closes_a_call_whose_hangup_was_missed_while_ami_was_down() -> None:
    a = Assembler()
    lid = "1700000100.1"
    a.feed({"Event": "Newchannel", "Channel": "PJSIP/trunk-1", "Uniqueid": lid, "Linkedid": lid,
            "Context": "hotline-inbound", "Exten": "12345", "CallerIDNum": "13800000000"}, now=100.0)
    a.feed({"Event": "UserEvent", "UserEvent": "HotlineCall", "Uniqueid": lid, "Linkedid": lid,
            "Dialed": "12345", "Caller": "13800000000"}, now=100.5)
    other = "1700000200.1"  # began after the channel list was asked for: left alone
    a.feed({"Event": "Newchannel", "Channel": "PJSIP/trunk-2", "Uniqueid": other, "Linkedid": other,
            "Context": "hotline-inbound", "Exten": "12345"}, now=300.0)
    live_one = "1700000050.1"  # still up in Asterisk: left alone
    a.feed({"Event": "Newchannel", "Channel": "PJSIP/trunk-3", "Uniqueid": live_one, "Linkedid": live_one,
            "Context": "hotline-inbound", "Exten": "12345"}, now=50.0)

    closed = a.expire(live={live_one}, before=200.0)

    assert [r.linkedid for r in closed] == [lid]
    assert closed[0].outcome != "in_progress" and closed[0].caller == "13800000000"
    assert {r.linkedid for r in a.open_records()} == {other, live_one}
    assert a.expire(live={live_one}, before=200.0) == []  # once only


def test_expire_counts_a_vanished_leg_as_hung_so_the_last_hangup_closes_the_call() -> None:
    """Issue 15.6: an agent leg whose Hangup was lost while the caller stays on: without the sweep the
    caller's own Hangup would leave the call open for ever (its ticket `in_progress`)."""
    a = Assembler()
    lid, agent = "1700000100.1", "1700000100.2"
    a.feed({"Event": "Newchannel", "Channel": "PJSIP/trunk-1", "Uniqueid": lid, "Linkedid": lid,
            "Context": "hotline-inbound", "Exten": "12345", "CallerIDNum": "13800000000"}, now=100.0)
    a.feed({"Event": "UserEvent", "UserEvent": "HotlineCall", "Uniqueid": lid, "Linkedid": lid,
            "Dialed": "12345", "Caller": "13800000000"}, now=100.5)
    a.feed({"Event": "Newchannel", "Channel": "PJSIP/1001-2", "Uniqueid": agent, "Linkedid": lid}, now=101.0)
    assert a.expire(live={lid}, before=200.0) == []  # the caller is still on
    [r] = a.feed({"Event": "Hangup", "Channel": "PJSIP/trunk-1", "Uniqueid": lid, "Linkedid": lid}, now=210.0)
    assert r.linkedid == lid and r.complete and r.gap  # gapped: its ticket is checked against the CDR
    assert a.open_records() == []


def test_a_caller_gone_during_the_queues_recording_notice_abandoned_in_that_queue() -> None:
    """Issue 15 (found by bench/ami_saturation.py): routed to the queue, hung up during the recording notice
    played before Queue(): the CDR says the queue (its variable is set), so must the live record."""
    a = Assembler()
    lid = "1700000300.1"
    a.feed({"Event": "Newchannel", "Channel": "Local/12345@hotline-inbound-1;2", "Uniqueid": lid, "Linkedid": lid,
            "Context": "hotline-inbound", "Exten": "12345", "CallerIDNum": "13800000000"}, now=100.0)
    a.feed({"Event": "UserEvent", "UserEvent": "HotlineRoute", "Uniqueid": lid, "Linkedid": lid, "Line": "12345",
            "Mode": "main", "Dest": "queue:general", "Category": "", "Fallback": "0"}, now=119.0)
    a.feed({"Event": "UserEvent", "UserEvent": "HotlineRecording", "Uniqueid": lid, "Linkedid": lid,
            "File": "hotline/20261130/x.wav"}, now=119.1)
    [r] = a.feed({"Event": "Hangup", "Uniqueid": lid, "Linkedid": lid, "Channel": "x"}, now=120.0)
    assert (r.outcome, r.queue, r.actual_dest) == ("abandoned_in_queue", "general", "queue:general")


# --------------------------------------------------------------------------- dispatch tables

#: `UserEvent(HotlineCall,…)` in a template, or `UserEvent({{ event.CALL }},…)` with the shared names
_TEMPLATE_LITERAL = re.compile(r"\bUserEvent\(\s*([A-Za-z]\w*)")
_TEMPLATE_SYMBOL = re.compile(r"\bUserEvent\(\s*\{\{\s*([A-Za-z_]\w*)\.([A-Za-z_]\w*)\s*\}\}")
#: `s.user_event("HotlineIVR", …)` / `EmitUserEvent("HotlineTransfer", …)`, or with `Event.IVR`
_PY_LITERAL = re.compile(r"""\b(?:user_event|EmitUserEvent)\(\s*["']([A-Za-z]\w*)["']""")
_PY_SYMBOL = re.compile(r"\b(?:user_event|EmitUserEvent)\(\s*([A-Za-z_]\w*)\.([A-Za-z_]\w*)")


def sent_user_events() -> dict[str, set[str]]:
    """Every UserEvent name our dialplan templates, IVR and routing send, by where it was found."""
    found: dict[str, set[str]] = {"templates": set(), "ivr": set(), "routing": set()}
    for pkg in ("ivr", "routing"):
        for path in sorted((ROOT / pkg).glob("*.py")):
            text = path.read_text(encoding="utf-8")
            found[pkg] |= set(_PY_LITERAL.findall(text))
            symbols = _PY_SYMBOL.findall(text)
            if symbols:  # names from a shared vocabulary: resolve them as the module sees them
                module = importlib.import_module(f"{pkg}.{path.stem}")
                for holder, member in symbols:
                    found[pkg].add(str(getattr(getattr(module, holder), member)))
    names = template_names()  # what routing.dialplan hands the templates
    for path in sorted((ROOT / "dialplans" / "templates").glob("*.j2")):
        text = path.read_text(encoding="utf-8")
        found["templates"] |= set(_TEMPLATE_LITERAL.findall(text))
        for holder, member in _TEMPLATE_SYMBOL.findall(text):
            found["templates"].add(str(getattr(names[holder], member)))
    return found


def test_user_event_table_covers_every_name_we_send() -> None:
    found = sent_user_events()
    # the scan itself must keep working: each source sends something, and the core events are seen
    assert all(found.values()), found
    sent = set().union(*found.values())
    assert {"HotlineCall", "HotlineRoute", "HotlineTransfer", "HotlineFeature"} <= sent, sent
    missing = sent - set(Assembler().user_event_handlers)
    assert not missing, f"UserEvents sent but not in the assembler's table: {sorted(missing)}"


def test_user_event_table_covers_the_shared_vocabulary() -> None:
    missing = {str(e) for e in Event} - set(Assembler().user_event_handlers)
    assert not missing, f"model.contract.Event names not in the assembler's table: {sorted(missing)}"


def test_known_user_events_without_ticket_data_are_ignored_silently() -> None:
    asm = Assembler()
    with capture_logs() as logs:
        evs = inbound() + [
            user("HotlinePrompt", L, L, T0 + 5.5, Prompt="connecting", Channel=CALLER),
            user("HotlineOverflow", L, L, T0 + 6, Queue="general", Status="FULL", To="dial", Channel=CALLER),
            user("HotlineDialFailed", L, L, T0 + 7, Dial="x", Status="BUSY", Channel=CALLER),
            hangup(L, L, T0 + 8, CALLER),
        ]
        [r] = run(evs, asm)
    assert r.outcome == "ended_in_ivr" and r.ivr_path == ["menu:main", "key:1"]
    assert not [e for e in logs if e["event"].startswith("assembler_user_event")]


def test_unknown_or_malformed_user_events_are_logged_and_ignored() -> None:
    asm = Assembler()
    odd: list[dict[str, object]] = [
        {"Event": "UserEvent", "UserEvent": "SomethingElse", "Linkedid": L, "Uniqueid": L},
        {"Event": "UserEvent", "UserEvent": "SomethingElse", "Linkedid": L, "Uniqueid": L, "X": "again"},
        {"Event": "UserEvent", "Linkedid": L, "Uniqueid": L},                        # no name at all
        {"Event": "UserEvent", "UserEvent": "", "Linkedid": L},
        {"Event": "UserEvent", "UserEvent": "   ", "Linkedid": L},
        {"Event": "UserEvent", "UserEvent": None, "Linkedid": L},
        {"Event": "UserEvent", "UserEvent": 42, "Linkedid": L},
        {"Event": "UserEvent", "UserEvent": ["HotlineCall"], "Linkedid": L},
        # names that getattr-dispatch would have turned into attribute lookups
        {"Event": "UserEvent", "UserEvent": "__class__", "Linkedid": L},
        {"Event": "UserEvent", "UserEvent": "call", "Linkedid": L},
        {"Event": "UserEvent", "UserEvent": "_close", "Linkedid": L},
        {"Event": "transfer_event", "Linkedid": L, "Uniqueid": L},
        {"Event": "__init__", "Linkedid": L},
        {"Event": "UserEvent", "UserEvent": "x" * 10_000, "Linkedid": L},
        # known names with values of the wrong type
        {"Event": "UserEvent", "UserEvent": "HotlineSurvey", "Linkedid": L, "Rating": None, "Scale": [5]},
        {"Event": "UserEvent", "UserEvent": "HotlineIVR", "Linkedid": L, "Step": {"a": 1}},
        {"Event": "UserEvent", "UserEvent": "HotlineSelfQuery", "Linkedid": L, "Ticket": 7, "Result": None},
        {"Event": "UserEvent", "UserEvent": "HotlineRoute", "Linkedid": L, "Dest": None},
        {"Event": "UserEvent", "UserEvent": "HotlineTransfer", "Linkedid": L, "Target": 1, "Outcome": 2},
        {"Event": "UserEvent", "UserEvent": "HotlineCall", "Linkedid": L, "Dialed": 12345, "Channel": None},
    ]
    with capture_logs() as logs:
        for e in odd:
            assert asm.feed(e, now=T0) == []  # type: ignore[arg-type]
    unknown = [e for e in logs if e["event"] == "assembler_user_event_unknown"]
    malformed = [e for e in logs if e["event"] == "assembler_user_event_malformed"]
    assert [e["user_event"] for e in unknown if e["log_level"] == "info"][:1] == ["SomethingElse"]
    assert len([e for e in unknown if e["user_event"] == "SomethingElse"]) == 2  # the second at debug only
    assert [e["log_level"] for e in unknown if e["user_event"] == "SomethingElse"] == ["info", "debug"]
    assert malformed, "a UserEvent without a name leaves a log line"
    assert all(len(e["user_event"]) <= 64 for e in unknown)
    # the call still goes on normally afterwards
    [r] = run(inbound() + [hangup(L, L, T0 + 9, CALLER)], asm)
    assert r.caller == "13800138000"


def test_standard_events_are_dispatched_by_the_table_too() -> None:
    asm = Assembler()
    assert {"Newchannel", "Hangup", "QueueCallerJoin", "AgentConnect", "Cdr"} <= set(asm.event_handlers)
    assert "UserEvent" not in asm.event_handlers


def test_ended_calls_are_remembered_for_a_while_then_forgotten_flat_at_a_steady_rate() -> None:
    """Issue 15's soak: the late events of an ended call are dropped for CLOSED_KEEP_S (event time), after
    which its linkedid is let go; at a call a second the remembered set stays the same size."""
    from ticketbridge.assembler import CLOSED_KEEP_S

    asm = Assembler()
    sizes = []
    for t in range(900):
        lid, ch = f"17600{t:05d}.1", f"PJSIP/trunk-{t:08x}"
        assert len(run([newchannel(lid, lid, T0 + t, ch), hangup(lid, lid, T0 + t + 0.5, ch)], asm)) == 1
        sizes.append(len(asm._closed))
    keep = int(CLOSED_KEEP_S)
    assert sizes[keep + 10:] == [sizes[-1]] * (900 - keep - 10) and keep <= sizes[-1] <= keep + 2
    recent, old = f"17600{899 - 10:05d}.1", "1760000000.1"
    # a late event of a recent call is dropped; one of a call ended long ago starts nothing hotline
    assert asm.feed(hangup(recent, recent, T0 + 900, "PJSIP/x")) == [] and recent not in asm._calls
    assert old not in asm._closed


def test_to_dict_copies_every_list_or_dict_field_of_the_record() -> None:
    """Whatever fields CallRecord has (one added later included), to_dict never hands out a list or dict the record
    still holds: the live view and the savers may change what they were given."""
    from dataclasses import fields

    r = CallRecord(linkedid=L, ivr_path=["menu:main"], transfers=[{"to": "110"}], participants=[("caller", CALLER)],
                   self_query={"tickets": ["x"]})
    d = r.to_dict()
    for f in fields(CallRecord):
        value = getattr(r, f.name)
        if isinstance(value, list | dict):
            assert d[f.name] == (value if f.name != "participants" else [list(p) for p in value])
            assert d[f.name] is not value, f"to_dict shares {f.name} with the record"
