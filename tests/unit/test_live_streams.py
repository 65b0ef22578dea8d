"""The live model over recorded AMI streams: real calls (tests/unit/fixtures/live_*.jsonl, recorded by
tests/e2e/test_live_calls.py with HOTLINE_RECORD_LIVE=file from the controller's own AMI link; the callback's own
events left out, as live/service.py leaves them out), replayed
alone, and interleaved by the thousand with hypothesis.

Each recorded call is one unit (its events by Linkedid). Hypothesis picks calls, gives each copy its own
ids and a time shift, interleaves them in any order that keeps each call's own order, and repeats some
events at once (a replay). What must hold:

* at every step: each queue's `waiting` is the number of calls queued there; the center's counts add
  up to the calls up now; answered ≤ offered; within 15 s ≤ answered; answered + abandoned ≤ offered;
  every rate is in [0, 1];
* at the end, with every call hung up: nothing is live, and today's figures are exactly the sum of
  each call's figures replayed alone (order, company and replays change nothing);
* random garbage events never raise and never break those invariants.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from live.reducer import LiveModel

FIXTURES = Path(__file__).parent / "fixtures"
#: seat 1001 answering / a caller abandoning; callers in the IVR answered by a scripted agent; the API's
#: actions (a one-key transfer to the water utility, the caller a callback is for, a branch-center call)
RECORDINGS = ("live_seat_calls.jsonl", "live_ivr_calls.jsonl", "live_action_calls.jsonl")
QUEUES = ["general", "overflow", "expert", "line_12333"]
TZ = "Asia/Shanghai"
#: headers naming a call or a channel: a copy of a call gets its own values of each
ID_KEYS = ("Linkedid", "Uniqueid", "DestUniqueid", "DestLinkedid", "Channel", "DestChannel")
FIGURES = ("calls_today", "offered", "answered", "answered_within_15s", "abandoned")
QUEUE_FIGURES = ("offered", "answered", "answered_within_15s", "abandoned")

Timed = tuple[dict[str, str], float]


def load(name: str) -> list[Timed]:
    out = []
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        at = e.pop("_at")
        out.append((e, at))
    return out


def units() -> list[list[Timed]]:
    """Every recorded caller call: its events in arrival order."""
    calls: dict[str, list[Timed]] = {}
    for name in RECORDINGS:
        for e, at in load(name):
            lid = e.get("Linkedid")
            if lid and lid.startswith("robot-"):
                calls.setdefault(lid, []).append((e, at))
    return list(calls.values())


UNITS = units()
MEMBERS = [(e, at) for e, at in load("live_seat_calls.jsonl") if e.get("Event", "").startswith("QueueMember")]
T0 = min(at for u in UNITS for _, at in u)


def copy(unit: list[Timed], k: int, shift: float) -> list[Timed]:
    out = []
    for e, at in unit:
        e2 = {key: (f"{v}~{k}" if key in ID_KEYS and v else v) for key, v in e.items()}
        if "Timestamp" in e2:
            e2["Timestamp"] = f"{float(e2['Timestamp']) + shift:.6f}"
        out.append((e2, at + shift))
    return out


def model() -> LiveModel:
    return LiveModel(TZ, queues=QUEUES, now=T0)


def figures(m: LiveModel, now: float) -> dict[str, Any]:
    c = m.center_view(now)
    return {"center": {k: c[k] for k in FIGURES},
            "queues": {q: {k: m.queue_view(q, now)[k] for k in QUEUE_FIGURES} for q in QUEUES},
            "lines": dict(m.lines), "half_hours": sum(m.half_hours)}


def alone(i: int) -> dict[str, Any]:
    m = model()
    for e, at in UNITS[i]:
        m.feed(e, at)
    return figures(m, UNITS[i][-1][1])


ALONE = [alone(i) for i in range(len(UNITS))]


def check_invariants(m: LiveModel, now: float) -> None:
    c = m.center_view(now)
    queued = Counter(call.queue for call in m.calls.values() if call.phase == "queued")
    for q in set(QUEUES) | set(queued):
        v = m.queue_view(q, now)
        assert v["waiting"] == queued.get(q, 0) >= 0
        assert v["answered"] <= v["offered"] and v["answered_within_15s"] <= v["answered"]
        assert v["answered"] + v["abandoned"] <= v["offered"]
        assert v["longest_wait_s"] >= 0
    assert c["waiting"] == sum(queued.values())
    assert c["calls_now"] == len(m.calls) == sum(c[k] for k in ("in_ivr", "waiting", "talking", "after_agent",
                                                                 "connected"))
    assert c["answered"] <= c["offered"] <= c["calls_today"] and c["answered_within_15s"] <= c["answered"]
    assert c["answered"] + c["abandoned"] <= c["offered"]
    for k in ("answer_rate", "answered_within_rate", "abandon_rate"):
        assert c[k] is None or 0.0 <= c[k] <= 1.0
    assert sum(m.half_hours) == c["calls_today"] and all(n >= 0 for n in m.lines.values())
    assert sum(m.lines.values()) <= c["calls_today"]
    talking = {a for a, call in m.agent_calls().items() if call.agent == a}
    assert all(m.calls[call.linkedid].agent == a for a, call in m.agent_calls().items() if a in talking)


def test_the_recordings_hold_seven_real_calls_with_what_they_did() -> None:
    assert len(UNITS) == 7
    seen = Counter()
    for f in ALONE:
        assert f["center"]["calls_today"] == 1 and f["half_hours"] == 1 and sum(f["lines"].values()) == 1
        seen["answered"] += f["center"]["answered"]
        seen["abandoned"] += f["center"]["abandoned"]
        seen.update(f["lines"])
    assert seen == Counter({"answered": 4, "abandoned": 2, "12358": 4, "12345": 1, "12315": 1, "12366": 1})


def test_each_recording_replayed_leaves_nothing_live() -> None:
    for name in RECORDINGS:
        m = model()
        for e, at in load(name):
            m.feed(e, at)
            check_invariants(m, at)
        assert m.calls == {} and m.center_view(at)["calls_now"] == 0
        assert m.members["1001"].status in ("not_in_use", "unavailable")


def replay(picks: list[int], schedule: list[int], repeats: list[bool], shift_s: float,
           check_every: int = 1) -> tuple[LiveModel, float]:
    streams = [copy(UNITS[u], k, k * shift_s) for k, u in enumerate(picks)]
    pos = [0] * len(streams)
    order = [k % len(streams) for k in schedule] + [k for k, s in enumerate(streams) for _ in s]
    m = model()
    for e, at in MEMBERS:
        m.feed(e, at)
    now = T0
    r = 0
    for k in order:
        if pos[k] >= len(streams[k]):
            continue
        e, now = streams[k][pos[k]]
        pos[k] += 1
        m.feed(e, now)
        if r < len(repeats) and repeats[r]:
            m.feed(dict(e), now)  # the same event again (a replay)
        r += 1
        if r % check_every == 0:
            check_invariants(m, now)
    return m, now


def expected(picks: list[int]) -> dict[str, Any]:
    total: dict[str, Any] = {"center": Counter(), "queues": {q: Counter() for q in QUEUES}, "lines": Counter(),
                             "half_hours": 0}
    for u in picks:
        f = ALONE[u]
        total["center"].update(f["center"])
        for q in QUEUES:
            total["queues"][q].update(f["queues"][q])
        total["lines"].update(f["lines"])
        total["half_hours"] += f["half_hours"]
    return total


def same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["center"] == {k: want["center"][k] for k in FIGURES}
    for q in QUEUES:
        assert got["queues"][q] == {k: want["queues"][q][k] for k in QUEUE_FIGURES}
    assert got["lines"] == dict(want["lines"]) and got["half_hours"] == want["half_hours"]


@settings(max_examples=int(os.environ.get("HOTLINE_LIVE_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(picks=st.lists(st.integers(0, len(UNITS) - 1), min_size=1, max_size=12),
       schedule=st.lists(st.integers(0, 11), max_size=600),
       repeats=st.lists(st.booleans(), max_size=600),
       shift_s=st.floats(0.0, 30.0))
def test_interleaved_calls_add_up_whatever_the_order_and_the_replays(picks, schedule, repeats, shift_s) -> None:
    m, now = replay(picks, schedule, repeats, shift_s)
    assert m.calls == {}
    same(figures(m, now), expected(picks))


def test_a_thousand_calls_in_one_stream() -> None:
    rnd = random.Random(12345)
    picks = [rnd.randrange(len(UNITS)) for _ in range(1000)]
    schedule = [rnd.randrange(1000) for _ in range(60_000)]
    m, now = replay(picks, schedule, [rnd.random() < 0.05 for _ in range(60_000)], 1.7,
                     check_every=97)
    assert m.calls == {} and m.calls_today == 1000
    same(figures(m, now), expected(picks))


EVENTS = ["Newchannel", "Hangup", "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentCalled",
          "AgentConnect", "AgentComplete", "AgentRingNoAnswer", "BridgeEnter", "BridgeLeave", "QueueMemberStatus",
          "QueueMemberPause", "UserEvent", "Cdr"]
text = st.one_of(st.sampled_from(["", "L1", "L2", "u1", "u2", "hotline-general", "hotline-inbound", "PJSIP/1001",
                                  "PJSIP/1001-0000000a", "HotlineCall", "HotlineRoute", "HotlineIVR", "abc", "-5",
                                  "1e400", "nan", "7", "1"]), st.text(max_size=12))


@settings(max_examples=int(os.environ.get("HOTLINE_LIVE_EXAMPLES", "300")), deadline=None, database=None)
@given(st.lists(st.fixed_dictionaries(
    {"Event": st.sampled_from(EVENTS)},
    optional={k: text for k in ("Linkedid", "Uniqueid", "Channel", "Context", "Queue", "Interface", "MemberName",
                                "DestChannel", "HoldTime", "Timestamp", "UserEvent", "Caller", "Dialed", "Line",
                                "Step", "Status", "Paused", "PausedReason")}), max_size=80))
def test_garbage_never_raises_nor_breaks_the_invariants(events) -> None:
    m = model()
    for i, e in enumerate(events):
        m.feed(e, T0 + i)
        check_invariants(m, T0 + i)
