"""live/rebuild.py: the live model from what Asterisk has now (CoreShowChannels, QueueStatus) after a restart."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from live.rebuild import rebuild
from live.reducer import LiveModel

Z = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 30, 10, 0, tzinfo=Z).timestamp()


def chan(lid: str, uid: str, channel: str, context: str, *, bridge: str = "", duration: str = "00:00:30",
         caller: str = "13800138000") -> dict[str, str]:
    return {"Event": "CoreShowChannel", "Channel": channel, "Uniqueid": uid, "Linkedid": lid, "Context": context,
            "Exten": "s", "CallerIDNum": caller, "BridgeId": bridge, "Duration": duration, "Application": "Queue"}


CHANNELS = [
    chan("W", "W", "PJSIP/trunk-00000001", "hotline-queue-general", duration="00:01:10"),  # waiting
    chan("T", "T", "PJSIP/trunk-00000002", "hotline-queue-general", bridge="b1"),           # talking to 1001
    chan("T", "T.2", "PJSIP/1001-00000003", "hotline-seats", bridge="b1"),
    chan("I", "I", "PJSIP/trunk-00000004", "hotline-inbound", duration="00:00:05"),          # in the IVR
    chan("S", "S", "PJSIP/1002-00000005", "hotline-seats", caller="1002"),                   # a seat's own call
]
STATUS = [
    {"Event": "QueueParams", "Queue": "hotline-general", "Calls": "1"},
    {"Event": "QueueMember", "Queue": "hotline-general", "Name": "1001", "Location": "PJSIP/1001",
     "StateInterface": "PJSIP/1001", "Status": "2", "Paused": "0", "PausedReason": "", "InCall": "1"},
    {"Event": "QueueEntry", "Queue": "hotline-general", "Position": "1", "Channel": "PJSIP/trunk-00000001",
     "Uniqueid": "W", "CallerIDNum": "13800138000", "Wait": "42"},
]


def test_waiting_talking_and_ivr_calls_are_adopted_as_they_are() -> None:
    m = LiveModel(queues=["general"], seats=["1001", "1002"], now=NOW)
    rebuild(m, CHANNELS, STATUS, NOW)
    assert set(m.calls) == {"W", "T", "I"}  # the seat's own call is not a hotline call
    w, t, i = m.calls["W"], m.calls["T"], m.calls["I"]
    assert w.phase == "queued" and w.queue == "general" and w.joined_at == NOW - 42
    assert t.phase == "talking" and t.agent == "1001" and t.agent_channel == "PJSIP/1001-00000003"
    assert i.phase == "ivr"
    q = m.queue_view("general", NOW)
    assert q["waiting"] == 1 and q["longest_wait_s"] == 42.0
    c = m.center_view(NOW)
    assert (c["calls_today"], c["offered"], c["answered"], c["in_ivr"]) == (3, 2, 1, 1)
    assert m.members["1001"].status == "in_use" and m.agent_calls()["1001"].linkedid == "T"


def test_events_after_a_rebuild_carry_on_and_nothing_is_counted_twice() -> None:
    m = LiveModel(queues=["general"], seats=["1001"], now=NOW)
    rebuild(m, CHANNELS, STATUS, NOW)
    rebuild(m, CHANNELS, STATUS, NOW + 1)  # a reconnect: the same calls again
    assert m.calls_today == 3 and m.offered == 2
    m.feed({"Event": "AgentConnect", "Linkedid": "W", "Uniqueid": "W", "Queue": "hotline-general",
            "Interface": "PJSIP/1002", "DestChannel": "PJSIP/1002-00000009", "HoldTime": "50"}, NOW + 8)
    assert m.calls["W"].phase == "talking" and m.answered == 2 and m.answered_within == 0
    for lid, uid in [("W", "W"), ("T", "T"), ("T", "T.2"), ("I", "I")]:
        m.feed({"Event": "Hangup", "Linkedid": lid, "Uniqueid": uid, "Channel": "x"}, NOW + 9)
    assert m.calls == {} and m.center_view(NOW + 9)["calls_now"] == 0


def test_calls_that_ended_while_the_controller_was_away_are_dropped() -> None:
    m = LiveModel(queues=["general"], seats=["1001"], now=NOW)
    rebuild(m, CHANNELS, STATUS, NOW)
    rebuild(m, [c for c in CHANNELS if c["Linkedid"] != "W"], [s for s in STATUS if s["Event"] != "QueueEntry"],
            NOW + 60)
    assert "W" not in m.calls and m.queue_view("general", NOW + 60)["waiting"] == 0
    assert m.calls_today == 3  # it was a call today all the same


def test_unreadable_rows_are_skipped() -> None:
    m = LiveModel(queues=["general"], now=NOW)
    rebuild(m, [{"Event": "CoreShowChannel"}, {"Linkedid": "X", "Duration": "aa:bb"}, chan("Y", "Y", "PJSIP/t-1",
            "hotline-inbound", duration="nonsense")], [{"Event": "QueueEntry", "Wait": "x"}], NOW)
    assert set(m.calls) == {"Y"} and m.calls["Y"].started_at == NOW


def test_calls_asterisk_no_longer_has_keep_only_their_linkedid() -> None:
    """Dropped at a rebuild (their Hangup missed): what the figures held of them per call goes, as at a hang-up."""
    m = LiveModel(queues=["general"], seats=["1001", "1002"], now=NOW)
    rebuild(m, CHANNELS, STATUS, NOW)
    assert set(m._counted) == {"W", "T", "I"}
    rebuild(m, [c for c in CHANNELS if c["Linkedid"] != "W"], STATUS[:2], NOW + 60)
    assert set(m.calls) == set(m._counted) == {"T", "I"} and "W" in m._finished  # (W's figures parked, bounded)
    rebuild(m, CHANNELS, STATUS, NOW + 61)  # the same linkedid again (never in practice): not counted twice
    assert m.center_view(NOW + 61)["calls_today"] == 3


def test_a_call_the_rebuild_ended_too_early_still_counts_when_its_events_go_on() -> None:
    """Its first events came after Asterisk's channel list was taken: the rebuild drops it from the calls up now,
    its next events bring it back, and the queue's offer and answer still count (review of issue 15)."""
    from zoneinfo import ZoneInfo

    now = dt.datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    m = LiveModel(queues=["general"], seats=["1001"], now=now)
    m.feed({"Event": "Newchannel", "Linkedid": "N", "Uniqueid": "N", "Channel": "PJSIP/trunk-00000009",
            "Context": "hotline-inbound", "Exten": "12345", "CallerIDNum": "13800138000"}, now)
    rebuild(m, [], [], now + 0.1)  # the channel list was taken before N existed
    assert "N" not in m.calls
    m.feed({"Event": "QueueCallerJoin", "Linkedid": "N", "Uniqueid": "N", "Channel": "PJSIP/trunk-00000009",
            "Queue": "hotline-general", "Position": "1"}, now + 2)
    m.feed({"Event": "AgentConnect", "Linkedid": "N", "Uniqueid": "N", "Queue": "hotline-general",
            "Interface": "PJSIP/1001", "DestChannel": "PJSIP/1001-0000000a", "HoldTime": "3"}, now + 5)
    assert "N" in m.calls and m.calls_today == 1 and (m.offered, m.answered) == (1, 1)


def test_the_figures_parked_for_calls_a_rebuild_dropped_are_bounded() -> None:
    from live.state import PARKED_MEMORY, Counted, FinishedCalls

    f = FinishedCalls(limit=10 * PARKED_MEMORY)
    for i in range(PARKED_MEMORY + 5):
        f.add(f"L{i}", Counted())
    assert f.reopen("L0") is None and f.reopen("L4") is None  # the oldest parked went first
    assert f.reopen(f"L{PARKED_MEMORY + 4}") is not None
    assert "L0" in f and f"L{PARKED_MEMORY + 4}" not in f  # reopened: up again, not ended
    f.add("L5")  # its hang-up after all: nothing parked for it any more
    assert f.reopen("L5") is None
