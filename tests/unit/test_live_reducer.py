"""The live model (live/reducer.py): hand-written event streams, one rule each."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from live.reducer import LiveModel

Z = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 30, 9, 40, tzinfo=Z).timestamp()


def ev(name: str, lid: str = "L1", at: float = T0, **h: str) -> dict[str, str]:
    return {"Event": name, "Linkedid": lid, "Timestamp": f"{at:.6f}", **h}


def caller_enters(m: LiveModel, lid: str = "L1", at: float = T0, caller: str = "13800138000",
                  dialed: str = "12345") -> None:
    m.feed(ev("Newchannel", lid, at, Uniqueid=lid, Channel="PJSIP/trunk-1", Context="hotline-inbound",
              CallerIDNum=caller, Exten=dialed), at)
    m.feed(ev("UserEvent", lid, at, UserEvent="HotlineCall", Dialed=dialed, Caller=caller, Uniqueid=lid), at)


def joins(m: LiveModel, lid: str = "L1", at: float = T0, queue: str = "general") -> None:
    m.feed(ev("QueueCallerJoin", lid, at, Uniqueid=lid, Queue=f"hotline-{queue}", Position="1"), at)


def answered(m: LiveModel, lid: str = "L1", at: float = T0, hold: float = 3, seat: str = "1001",
             queue: str = "general") -> None:
    m.feed(ev("AgentCalled", lid, at, Uniqueid=lid, Queue=f"hotline-{queue}", Interface=f"PJSIP/{seat}"), at)
    m.feed(ev("AgentConnect", lid, at, Uniqueid=lid, Queue=f"hotline-{queue}", Interface=f"PJSIP/{seat}",
              MemberName=seat, HoldTime=str(hold), DestChannel=f"PJSIP/{seat}-0000000a",
              DestUniqueid=lid + ".a"), at)


def hangup(m: LiveModel, lid: str, uid: str, at: float = T0, channel: str = "") -> None:
    m.feed(ev("Hangup", lid, at, Uniqueid=uid, Channel=channel or uid), at)


def test_a_caller_in_the_ivr_then_in_the_queue_then_answered() -> None:
    m = LiveModel(queues=["general"], now=T0)
    caller_enters(m)
    assert m.center_view(T0)["in_ivr"] == 1 and m.center_view(T0)["calls_today"] == 1
    joins(m, at=T0 + 10)
    q = m.queue_view("general", T0 + 14)
    assert q["waiting"] == 1 and q["longest_wait_s"] == 4.0 and m.center_view(T0 + 14)["in_ivr"] == 0
    answered(m, at=T0 + 20, hold=10)
    q = m.queue_view("general", T0 + 20)
    assert (q["waiting"], q["answered"], q["answered_within_15s"], q["talking"]) == (0, 1, 1, 1)
    assert m.agent_calls()["1001"].linkedid == "L1"
    c = m.center_view(T0 + 20)
    assert c["answer_rate"] == 1.0 and c["answered_within_rate"] == 1.0 and c["abandon_rate"] == 0.0
    hangup(m, "L1", "L1.a", T0 + 60, "PJSIP/1001-0000000a")
    assert "1001" not in m.agent_calls() and m.calls["L1"].phase == "after_agent"
    hangup(m, "L1", "L1", T0 + 70)
    assert m.calls == {} and m.center_view(T0 + 70)["calls_now"] == 0


def test_a_late_answer_is_not_within_15_s_and_an_abandon_counts_once() -> None:
    m = LiveModel(queues=["general"], now=T0)
    caller_enters(m, "L1")
    joins(m, "L1")
    answered(m, "L1", T0 + 30, hold=30)
    caller_enters(m, "L2", caller="13900000000")
    joins(m, "L2", T0 + 1)
    abandon = ev("QueueCallerAbandon", "L2", T0 + 9, Uniqueid="L2", Queue="hotline-general", HoldTime="8")
    m.feed(abandon, T0 + 9)
    m.feed(abandon, T0 + 9)  # replayed
    hangup(m, "L2", "L2", T0 + 9)
    q = m.queue_view("general", T0 + 40)
    assert (q["offered"], q["answered"], q["answered_within_15s"], q["abandoned"]) == (2, 1, 0, 1)
    c = m.center_view(T0 + 40)
    assert c["answer_rate"] == 0.5 and c["abandon_rate"] == 0.5 and c["answered_within_rate"] == 0.0


def test_calls_count_per_line_the_legacy_line_when_the_route_names_one() -> None:
    m = LiveModel(queues=["general"], now=T0)
    caller_enters(m, "L1", dialed="12315")
    assert m.lines == {"12315": 1}
    m.feed(ev("UserEvent", "L1", T0, UserEvent="HotlineRoute", Line="12315", Mode="merged", Category="complaint",
              Dest="queue:general", Fallback=""), T0)
    caller_enters(m, "L2", dialed="12345")
    assert m.lines == {"12315": 1, "12345": 1}
    assert m.calls["L1"].category == "complaint"


def test_calls_per_half_hour_and_the_day_rolls_over() -> None:
    m = LiveModel(queues=["general"], now=T0)
    caller_enters(m, "L1")  # 09:40 → bucket 19
    assert m.half_hours[19] == 1 and sum(m.half_hours) == 1
    tomorrow = dt.datetime(2026, 12, 1, 0, 5, tzinfo=Z).timestamp()
    ch = m.tick(tomorrow)
    assert ch.day and m.calls_today == 0 and sum(m.half_hours) == 0 and m.lines == {}
    assert "L1" in m.calls  # still up


def test_events_of_other_calls_change_nothing_and_garbage_never_raises() -> None:
    m = LiveModel(queues=["general"], now=T0)
    m.feed(ev("Newchannel", "S1", T0, Uniqueid="S1", Context="hotline-seats", Exten="*51"), T0)
    m.feed({"Event": "AgentConnect", "Queue": "hotline-general"}, T0)  # no Linkedid
    m.feed(ev("QueueCallerJoin", "X", T0, Queue="other-queue"), T0)
    m.feed(ev("AgentConnect", "L9", T0, Queue="hotline-general", HoldTime="abc", Interface=""), T0)
    m.feed({"Event": None, "Linkedid": None}, T0)  # type: ignore[dict-item]
    assert m.center_view(T0)["calls_today"] == 1  # L9: an AgentConnect on our queue is a hotline call
    assert m.queue_view("general", T0)["answered_within_15s"] == 0


def test_members_device_state_and_pause() -> None:
    m = LiveModel(queues=["general"], now=T0)
    m.feed({"Event": "QueueMemberStatus", "Queue": "hotline-general", "Interface": "PJSIP/1001", "Status": "2",
            "Paused": "1", "PausedReason": "小休", "InCall": "1"}, T0)
    mem = m.members["1001"]
    assert mem.status == "in_use" and mem.paused == {"general": True} and mem.reason == {"general": "小休"}


def test_a_ticket_for_a_call_never_seen_counts_once() -> None:
    m = LiveModel(queues=["general"], now=T0)
    row = {"linkedid": "C1", "started_at": T0 - 60, "dialed": "12345", "queue": "general", "agent": "1001",
           "queue_wait_s": 5.0, "outcome": "answered"}
    m.note_ticket(row, T0)
    m.note_ticket(row, T0)
    assert (m.calls_today, m.offered, m.answered, m.answered_within) == (1, 1, 1, 1)
    assert m.queue_view("general", T0)["answered_within_15s"] == 1
    m.note_ticket({**row, "linkedid": "C2", "outcome": "in_progress"}, T0)  # a shutdown flush: the call is up
    m.note_ticket({**row, "linkedid": "C3", "started_at": T0 - 86400}, T0)  # yesterday's
    assert m.calls_today == 1


def test_a_finished_call_keeps_only_its_linkedid_and_a_late_or_replayed_input_counts_nothing() -> None:
    """Per call the model holds what the figures need while it is up; once it ends only its linkedid (issue 15's
    soak: ~1 KiB of per-call entries a call for the whole day made the controller's memory grow)."""
    m = LiveModel(queues=["general"], now=T0)
    for i in range(200):
        lid = f"L{i}"
        caller_enters(m, lid, T0 + i)
        joins(m, lid, T0 + i + 1)
        if i % 2:
            answered(m, lid, T0 + i + 2)
            hangup(m, lid, lid + ".a", T0 + i + 3, "PJSIP/1001-0000000a")
        hangup(m, lid, lid, T0 + i + 4)
    assert m.calls == {} and m._counted == {}  # nothing per call up: back to the baseline
    assert len(m._finished) == 200
    c = m.center_view(T0 + 300)
    assert (c["calls_today"], c["offered"], c["answered"], c["abandoned"]) == (200, 200, 100, 100)
    # the call's own ticket, then a replay of its events: counted once
    m.note_ticket({"linkedid": "L1", "started_at": T0 + 1, "dialed": "12345", "queue": "general", "agent": "1001",
                   "outcome": "answered"}, T0 + 300)
    caller_enters(m, "L3", T0 + 301)
    joins(m, "L3", T0 + 301)
    answered(m, "L3", T0 + 302)
    hangup(m, "L3", "L3", T0 + 303)
    c = m.center_view(T0 + 310)
    assert (c["calls_today"], c["offered"], c["answered"], c["abandoned"]) == (200, 200, 100, 100)
    assert m._counted == {} and len(m._finished) == 200


def test_the_finished_calls_remembered_are_bounded_by_the_day_and_a_cap(monkeypatch) -> None:
    import live.reducer as reducer

    monkeypatch.setattr(reducer, "COUNTED_MEMORY", 50)
    m = LiveModel(queues=["general"], now=T0)
    for i in range(120):
        caller_enters(m, f"L{i}", T0 + i)
        hangup(m, f"L{i}", f"L{i}", T0 + i)
    # the oldest forgotten first; every call still counted
    assert len(m._finished) == 50 and "L119" in m._finished and "L0" not in m._finished
    assert m.center_view(T0 + 200)["calls_today"] == 120
    for i in range(30):  # tickets of calls never seen live: counted once each, remembered under the same cap
        row = {"linkedid": f"T{i}", "started_at": T0 + 200, "dialed": "12345", "outcome": "ivr_only"}
        m.note_ticket(row, T0 + 200)
        m.note_ticket(row, T0 + 200)
    assert m.center_view(T0 + 200)["calls_today"] == 150 and len(m._finished) == 50
    m.tick(T0 + 86_400)  # the next day: all of it let go
    assert len(m._finished) == 0 and m.center_view(T0 + 86_400)["calls_today"] == 0


def test_the_finished_calls_remembered_are_flat_at_a_steady_rate() -> None:
    """Issue 15's soak: each finished call's linkedid is let go FINISHED_KEEP_S after it ended (the model's
    clock), so at a call a second the set stays the same size; every call still counts."""
    from live.state import FINISHED_KEEP_S

    m = LiveModel(queues=["general"], now=T0)
    sizes = []
    for i in range(900):
        caller_enters(m, f"L{i}", T0 + i)
        hangup(m, f"L{i}", f"L{i}", T0 + i + 0.5)
        sizes.append(len(m._finished))
    keep = int(FINISHED_KEEP_S)
    assert sizes[keep + 10:] == [sizes[-1]] * (900 - keep - 10) and keep <= sizes[-1] <= keep + 2
    assert m.center_view(T0 + 901)["calls_today"] == 900
    hangup(m, "L890", "L890", T0 + 901)  # a late event of a recent call: nothing counted again
    assert m.center_view(T0 + 901)["calls_today"] == 900
