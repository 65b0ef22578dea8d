"""A cluster's agent sync (routing/agent_sync.py): what a node takes from a state another node's controller saved."""

from __future__ import annotations

from routing.agent import (OFFLINE_REASON, SIGNED_OUT_REASON, Agent, AgentState, Called, Completed, Connected,
                           Reachable, SignIn, Tick, Unreachable)
from routing.agent_sync import Mirror, PendingBusy, mirror, take

S = AgentState


def ready(at: float = 100.0) -> Agent:
    a = Agent("1002", ("general", "overflow"))
    a.feed(SignIn(at))
    return a


def snap(state: str, *, reason: str = "", since: float = 200.0, queues=("general", "overflow"), paused=None,
         agent_id: str = "1002") -> dict:
    d = {"agent": "1002", "state": state, "reason": reason, "since": since, "queues": list(queues),
         "agent_id": agent_id}
    if paused is not None:
        d["paused"] = paused
    return d


def test_busy_set_on_another_node_pauses_every_queue_here_with_its_reason() -> None:
    a = ready()
    m = mirror(a, snap("busy", reason="就餐", paused=True))
    assert isinstance(m, Mirror)
    assert m.pauses == (("general", True, "就餐"), ("overflow", True, "就餐"))
    take(a, m)
    assert (a.state, a.reason, a.paused, a.since) == (S.BUSY, "就餐", True, 200.0)
    # taken: the same saved row (read again at the next look) changes nothing — no loop
    assert mirror(a, snap("busy", reason="就餐", paused=True)) is None
    m2 = mirror(a, snap("ready", since=300.0, paused=False))
    assert isinstance(m2, Mirror) and m2.pauses == (("general", False, ""), ("overflow", False, ""))
    take(a, m2)
    assert (a.state, a.paused) == (S.READY, False)
    # and the machine goes on from it: a call here rings the agent
    assert a.feed(Called(301.0, "general", "b-1.1")) and a.state is S.RINGING


def test_signed_out_elsewhere_is_paused_签出_in_every_queue_the_seat_may_serve() -> None:
    a = ready()
    m = mirror(a, snap("signed_out", queues=(), paused=False))
    assert isinstance(m, Mirror) and m.pauses == (("general", True, SIGNED_OUT_REASON),
                                                  ("overflow", True, SIGNED_OUT_REASON))
    take(a, m)
    assert a.state is S.SIGNED_OUT and a.queues == ()


def test_signed_in_to_one_queue_elsewhere_leaves_the_others_paused_签出() -> None:
    a = Agent("1002", ("general", "overflow"))
    m = mirror(a, snap("ready", queues=("general",), paused=False))
    assert isinstance(m, Mirror) and m.pauses == (("general", False, ""), ("overflow", True, SIGNED_OUT_REASON))


def test_an_older_saved_state_than_this_nodes_own_is_not_taken() -> None:
    a = ready(at=500.0)
    assert mirror(a, snap("busy", reason="小休", since=400.0, paused=True)) is None


def test_ringing_or_talking_of_another_nodes_call_is_not_taken_its_after_call_work_is_without_a_timer() -> None:
    a = ready()
    assert mirror(a, snap("ringing", since=200.0)) is None
    assert mirror(a, snap("talking", since=210.0, paused=True)) is None
    m = mirror(a, snap("wrap_up", reason="话后整理", since=260.0, paused=True))
    assert isinstance(m, Mirror)
    take(a, m)
    assert a.state is S.WRAP_UP and a.wrap_until is None
    assert a.feed(Tick(10_000.0)) == []  # the node that handled the call ends it
    assert a.state is S.WRAP_UP
    take(a, mirror(a, snap("ready", since=280.0, paused=False)))  # type: ignore[arg-type]
    assert a.state is S.READY and not a.paused


def test_while_this_node_has_the_call_a_busy_set_elsewhere_waits_for_its_end_and_nothing_else_is_taken() -> None:
    a = ready()
    a.feed(Called(150.0, "general", "a-1.1"))
    a.feed(Connected(151.0, "general", "a-1.1"))
    assert mirror(a, snap("ready", since=200.0)) is None
    m = mirror(a, snap("busy", reason="小休", since=200.0, paused=True))
    assert m == PendingBusy("小休")
    take(a, m)
    assert mirror(a, snap("busy", reason="小休", since=200.0, paused=True)) is None
    a.feed(Completed(220.0, "general", "a-1.1"))
    assert (a.state, a.reason, a.paused) == (S.BUSY, "小休", True)


def test_offline_is_each_nodes_own_view_of_the_phone() -> None:
    a = ready()
    assert mirror(a, snap("busy", reason=OFFLINE_REASON, paused=True)) is None
    a.feed(Unreachable(150.0))
    assert (a.state, a.reason, a.offline) == (S.BUSY, OFFLINE_REASON, True)
    # another node still reaches the phone: its ready is not taken while this node finds it gone
    assert mirror(a, snap("ready", since=200.0, paused=False)) is None
    # a sign-out elsewhere is; the mark stays, and the phone coming back leaves the agent signed out
    take(a, mirror(a, snap("signed_out", since=210.0, queues=(), paused=False)))  # type: ignore[arg-type]
    assert a.state is S.SIGNED_OUT and a.offline
    a.feed(Reachable(300.0))
    assert a.state is S.SIGNED_OUT and not a.offline


def test_queues_this_node_does_not_let_the_seat_serve_are_dropped_and_bad_rows_ignored() -> None:
    a = ready()
    assert mirror(a, snap("ready", queues=("expert",), paused=False)) is None
    assert mirror(a, {"agent": "1002", "state": "dancing", "since": 300.0}) is None
    m = mirror(a, snap("busy", reason="小休", queues=("general", "expert"), paused=True))
    assert isinstance(m, Mirror) and m.queues == ("general",)
    assert m.pauses == (("general", True, "小休"), ("overflow", True, SIGNED_OUT_REASON))


def test_a_hot_desked_agent_id_is_taken() -> None:
    a = ready()
    m = mirror(a, snap("ready", since=100.0, paused=False, agent_id="A77"))
    assert isinstance(m, Mirror)
    take(a, m)
    assert a.agent_id == "A77"
