"""The agent state machine (routing/agent.py): every state × every input, and the paths 12345 staff take."""

from __future__ import annotations

from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.config import AgentSettings, Config
from model.loading import load_config
from routing.agent import (
    MISSED_REASON,
    OFFLINE_REASON,
    SIGNED_IN,
    TABLE,
    WRAP_UP_REASON,
    Agent,
    AgentPolicy,
    AgentState,
    Called,
    Completed,
    Connected,
    ExtendWrapUp,
    HotDesk,
    InputKind,
    Missed,
    QueueAdd,
    Reachable,
    QueuePause,
    QueueRemove,
    Refused,
    RingNoAnswer,
    SetBusy,
    SetReady,
    SignIn,
    SignOut,
    StateChanged,
    Tick,
    Unreachable,
    agents_from_config,
    build_table,
    call_gone,
    ignore,
    row,
    state_words,
)

S = AgentState
T0 = 1000.0


def agent(wrapup: int = 0, miss_limit: int = 3, allowed=("general", "overflow")) -> Agent:
    return Agent("1001", tuple(allowed), AgentPolicy(wrapup_s={"general": wrapup} if wrapup else {},
                                                     extend_s=30, miss_limit=miss_limit))


def ready(**kw) -> Agent:
    a = agent(**kw)
    a.feed(SignIn(T0))
    return a


def inputs_for(kind: InputKind, at: float = T0 + 1):
    return {
        InputKind.SIGN_IN: SignIn(at), InputKind.SIGN_OUT: SignOut(at), InputKind.SET_BUSY: SetBusy(at, "小休"),
        InputKind.SET_READY: SetReady(at), InputKind.EXTEND_WRAP_UP: ExtendWrapUp(at),
        InputKind.CALLED: Called(at, "general", "L1"), InputKind.CONNECTED: Connected(at, "general", "L1"),
        InputKind.COMPLETED: Completed(at, "general", "L1"), InputKind.RING_NO_ANSWER: RingNoAnswer(at, "general"),
        InputKind.TICK: Tick(at), InputKind.UNREACHABLE: Unreachable(at), InputKind.REACHABLE: Reachable(at),
        InputKind.HOT_DESK: HotDesk(at, "8001"),
    }[kind]


def in_state(state: AgentState, wrapup: int = 20) -> Agent:
    a = agent(wrapup=wrapup)
    path = {
        S.SIGNED_OUT: [], S.READY: [SignIn(T0)], S.RINGING: [SignIn(T0), Called(T0, "general")],
        S.TALKING: [SignIn(T0), Called(T0, "general"), Connected(T0, "general")],
        S.WRAP_UP: [SignIn(T0), Called(T0, "general"), Connected(T0, "general"), Completed(T0, "general")],
        S.BUSY: [SignIn(T0), SetBusy(T0, "就餐")],
    }[state]
    for i in path:
        a.feed(i)
    assert a.state is state
    return a


def test_table_is_total_and_refuses_gaps_and_doubles():
    assert set(TABLE) == set(product(AgentState, InputKind))
    with pytest.raises(ValueError, match="no transition"):
        build_table([row(S.READY, InputKind.TICK, ignore)])
    with pytest.raises(ValueError, match="defined twice"):
        build_table([row(AgentState, InputKind, ignore), row(S.READY, InputKind.TICK, ignore)])


@pytest.mark.parametrize("state,kind", list(product(AgentState, InputKind)))
def test_every_pair_is_defined_and_consistent(state, kind):
    """Every cell runs without raising; a move is announced by one StateChanged (a hot-desk onto a seat another
    agent is signed in at: two, theirs out and the new agent's in); membership follows."""
    a = in_state(state)
    out = a.feed(inputs_for(kind))
    changes = [x for x in out if isinstance(x, StateChanged)]
    assert len(changes) <= (2 if kind is InputKind.HOT_DESK else 1)
    if changes:
        assert changes[0].old is state and changes[-1].new is a.state
        assert all(c.seat == "1001" and c.cause == kind.value for c in changes)
    else:
        assert a.state is state
    if a.state is S.SIGNED_OUT:
        assert a.queues == ()
    else:
        assert a.queues and set(a.queues) <= set(a.allowed)
    if any(isinstance(x, Refused) for x in out):
        assert a.state is state and len(out) == 1


def test_sign_in_adds_every_allowed_queue_ready_and_sign_out_removes_them():
    a = agent()
    out = a.feed(SignIn(T0))
    assert out[:2] == [QueueAdd("general"), QueueAdd("overflow")]
    assert a.state is S.READY and out[-1].new is S.READY and out[-1].old is S.SIGNED_OUT
    out = a.feed(SignOut(T0 + 60, by="班长王", why="强制签出"))
    assert out[:2] == [QueueRemove("general"), QueueRemove("overflow")]
    assert out[-1] == StateChanged("1001", S.READY, S.SIGNED_OUT, T0 + 60, 60.0, by="班长王", why="强制签出",
                                   seat="1001", cause="sign_out")


def test_sign_in_to_one_queue_and_change_queues_while_signed_in():
    a = agent()
    assert a.feed(SignIn(T0, queues=("overflow",)))[0] == QueueAdd("overflow")
    assert a.queues == ("overflow",)
    a.feed(SetBusy(T0, "小休"))
    out = a.feed(SignIn(T0 + 1, queues=("general",)))
    assert out == [QueueRemove("overflow"), QueueAdd("general", paused=True, reason="小休")]
    assert a.state is S.BUSY


def test_sign_in_to_a_queue_not_allowed_is_refused():
    a = agent()
    assert a.feed(SignIn(T0, queues=("expert",))) == [Refused("1001", InputKind.SIGN_IN, S.SIGNED_OUT)]
    assert a.state is S.SIGNED_OUT


def test_busy_with_reason_pauses_and_ready_unpauses():
    a = ready()
    out = a.feed(SetBusy(T0 + 5, "小休"))
    assert out[0] == QueuePause(True, "小休") and a.state is S.BUSY and a.reason == "小休"
    out = a.feed(SetBusy(T0 + 6, "就餐"))  # a new reason
    assert out[0] == QueuePause(True, "就餐") and out[1].old_reason == "小休"
    out = a.feed(SetReady(T0 + 66))
    assert out[0] == QueuePause(False) and a.state is S.READY and a.reason == ""
    assert out[1].seconds == 60 and out[1].old_reason == "就餐"


def test_keys_that_make_no_sense_are_refused():
    a = agent()
    assert a.feed(SetBusy(T0, "小休")) == [Refused("1001", InputKind.SET_BUSY, S.SIGNED_OUT)]
    assert a.feed(SetReady(T0)) == [Refused("1001", InputKind.SET_READY, S.SIGNED_OUT)]
    a.feed(SignIn(T0))
    assert a.feed(ExtendWrapUp(T0)) == [Refused("1001", InputKind.EXTEND_WRAP_UP, S.READY)]


def test_a_call_without_wrap_up_goes_back_to_ready_without_pausing():
    a = ready()
    assert [x.new for x in a.feed(Called(T0 + 1, "general", "L1"))] == [S.RINGING]
    assert a.feed(Connected(T0 + 3, "general", "L1")) == [
        StateChanged("1001", S.RINGING, S.TALKING, T0 + 3, 2.0, queue="general", linkedid="L1",
                     seat="1001", cause="connected")]
    out = a.feed(Completed(T0 + 63, "general", "L1"))
    assert not any(isinstance(x, QueuePause) for x in out)
    assert a.state is S.READY and out[-1].seconds == 60 and out[-1].linkedid == "L1"


def test_wrap_up_pauses_at_answer_holds_for_its_time_then_unpauses():
    a = ready(wrapup=20)
    a.feed(Called(T0, "general"))
    assert a.feed(Connected(T0 + 1, "general"))[0] == QueuePause(True, WRAP_UP_REASON)
    out = a.feed(Completed(T0 + 30, "general"))
    assert not any(isinstance(x, QueuePause) for x in out)  # already paused since the answer
    assert a.state is S.WRAP_UP and a.wrap_until == T0 + 50
    assert a.feed(Tick(T0 + 49)) == []
    out = a.feed(Tick(T0 + 50))
    assert out[0] == QueuePause(False) and a.state is S.READY and out[1].seconds == 20


def test_wrap_up_of_another_queue_does_not_apply():
    a = ready(wrapup=20)
    a.feed(Called(T0, "overflow"))
    assert not any(isinstance(x, QueuePause) for x in a.feed(Connected(T0, "overflow")))
    a.feed(Completed(T0 + 5, "overflow"))
    assert a.state is S.READY


def test_wrap_up_ended_early_by_key_and_extended_by_key():
    a = in_state(S.WRAP_UP, wrapup=20)
    assert a.feed(ExtendWrapUp(T0 + 10)) == [] and a.wrap_until == T0 + 50
    assert a.feed(Tick(T0 + 30)) == [] and a.state is S.WRAP_UP
    out = a.feed(SetReady(T0 + 31))
    assert out[0] == QueuePause(False) and a.state is S.READY


def test_a_call_completed_without_its_answer_seen_still_pauses_for_wrap_up():
    a = ready(wrapup=20)
    a.feed(Called(T0, "general"))
    assert a.feed(Completed(T0 + 9, "general"))[0] == QueuePause(True, WRAP_UP_REASON)
    assert a.state is S.WRAP_UP


def test_a_paused_member_rung_anyway_is_unpaused_when_the_ring_ends_ready():
    a = in_state(S.WRAP_UP, wrapup=20)
    a.feed(Called(T0 + 1, "general"))
    out = a.feed(RingNoAnswer(T0 + 16, "general"))
    assert QueuePause(False) in out and a.state is S.READY and not a.paused


def test_busy_keyed_during_a_call_applies_when_it_ends_instead_of_wrap_up():
    a = in_state(S.TALKING, wrapup=20)
    assert a.feed(SetBusy(T0 + 1, "会议")) == [] and a.state is S.TALKING
    out = a.feed(Completed(T0 + 9, "general"))
    assert out[0] == QueuePause(True, "会议") and a.state is S.BUSY and a.reason == "会议"


def test_missed_calls_counted_and_the_limit_sets_busy():
    a = ready(miss_limit=2)
    a.feed(Called(T0, "general"))
    out = a.feed(RingNoAnswer(T0 + 15, "general", "L1"))
    assert out[0] == Missed("1001", "general", T0 + 15, 1, "L1", "1001") and a.state is S.READY
    a.feed(Called(T0 + 20, "general"))
    out = a.feed(RingNoAnswer(T0 + 35, "general"))
    assert out[0].in_a_row == 2 and out[1] == QueuePause(True, MISSED_REASON)
    assert a.state is S.BUSY and a.reason == MISSED_REASON
    a.feed(SetReady(T0 + 40))
    a.feed(Called(T0 + 41, "general"))
    assert a.feed(RingNoAnswer(T0 + 56, "general"))[0].in_a_row == 1  # ready again starts a new count


def test_an_answer_resets_the_miss_count_and_limit_zero_never_sets_busy():
    a = ready(miss_limit=2)
    a.feed(Called(T0, "general")); a.feed(RingNoAnswer(T0, "general"))
    a.feed(Called(T0, "general")); a.feed(Connected(T0, "general")); a.feed(Completed(T0, "general"))
    a.feed(Called(T0, "general"))
    assert a.feed(RingNoAnswer(T0, "general"))[0].in_a_row == 1
    b = ready(miss_limit=0)
    for _ in range(10):
        b.feed(Called(T0, "general")); b.feed(RingNoAnswer(T0, "general"))
    assert b.state is S.READY


def test_busy_while_ringing_and_the_ring_ending_is_not_a_miss():
    a = ready()
    a.feed(Called(T0, "general"))
    assert a.feed(SetBusy(T0 + 1, "小休"))[0] == QueuePause(True, "小休")
    assert a.feed(RingNoAnswer(T0 + 15, "general")) == [] and a.state is S.BUSY and a.misses == 0


def test_sign_out_during_a_call_removes_membership_and_the_end_of_the_call_is_ignored():
    a = in_state(S.TALKING)
    out = a.feed(SignOut(T0 + 1))
    assert QueueRemove("general") in out and a.state is S.SIGNED_OUT
    assert a.feed(Completed(T0 + 5, "general")) == []


def test_restart_restores_membership_and_transient_states_become_ready():
    for state, paused, reason in [(S.BUSY, True, "就餐"), (S.READY, False, "")]:
        a = in_state(state)
        assert a.member_actions() == [QueueAdd("general", paused, reason), QueueAdd("overflow", paused, reason)]
    for state in (S.RINGING, S.TALKING, S.WRAP_UP):
        a = in_state(state)
        a.restored(T0 + 99)
        assert a.state is S.READY and a.member_actions()[0] == QueueAdd("general")
    assert in_state(S.SIGNED_OUT).member_actions() == []


def test_state_words_for_the_confirmation_prompt():
    assert state_words(S.READY) == "已示闲"
    assert state_words(S.BUSY, "小休") == "已示忙：小休"
    assert state_words(S.SIGNED_OUT) == "已签出"
    assert state_words(S.WRAP_UP) == "话后整理"


_any_input = st.builds(
    lambda kind, dt, q: {**{k: inputs_for(k, T0 + dt) for k in InputKind},
                         InputKind.CALLED: Called(T0 + dt, q), InputKind.CONNECTED: Connected(T0 + dt, q),
                         InputKind.COMPLETED: Completed(T0 + dt, q),
                         InputKind.RING_NO_ANSWER: RingNoAnswer(T0 + dt, q)}[kind],
    st.sampled_from(list(InputKind)), st.floats(0, 1000), st.sampled_from(["general", "overflow"]))


@settings(max_examples=1500, deadline=None)
@given(st.lists(_any_input, max_size=40))
def test_random_sequences_keep_asterisk_membership_in_step_with_the_state(inputs):
    """Replaying the actions on a model of Asterisk's members always gives the state's membership and pause."""
    a = agent(wrapup=20, miss_limit=2)
    members: dict[str, bool] = {}
    for inp in sorted(inputs, key=lambda i: i.at):
        for x in a.feed(inp):
            if isinstance(x, QueueAdd):
                assert x.queue not in members
                members[x.queue] = x.paused
            elif isinstance(x, QueueRemove):
                members.pop(x.queue)
            elif isinstance(x, QueuePause):
                members = {q: x.paused for q in members}
        assert set(members) == set(a.queues)
        assert all(v == a.paused for v in members.values())
        if a.state in (S.BUSY, S.WRAP_UP):
            assert all(members.values())
        if a.state is S.READY:
            assert not any(members.values())
        assert (a.state in SIGNED_IN) == bool(a.queues)
        if a.offline:  # an unreachable phone never gets a queue call (only the call it is on goes on)
            assert a.state in (S.SIGNED_OUT, S.BUSY, S.TALKING), a.state


def test_config_defaults_and_agents_from_the_shipped_config():
    cfg = load_config("config/hotline.yaml")
    codes = cfg.agents.feature_codes
    assert (codes.sign_in, codes.sign_out, codes.busy, codes.ready, codes.extend_wrapup) == (
        "*51", "*52", "*53", "*54", "*55")
    assert cfg.agents.busy_reasons["1"] == "小休"
    agents = agents_from_config(cfg)
    assert agents["1002"].allowed == ("general", "overflow") and agents["1003"].allowed == ("expert", "line_12333")
    assert all(a.state is S.SIGNED_OUT for a in agents.values())


@pytest.mark.parametrize("bad", [
    {"feature_codes": {"sign_in": "51"}}, {"feature_codes": {"ready": "*5a"}},
    {"feature_codes": {"ready": "*51"}}, {"busy_reasons": {"12": "x"}}, {"busy_reasons": {}},
])
def test_agent_settings_refuse_bad_codes_and_reasons(bad):
    with pytest.raises(ValueError):
        AgentSettings.model_validate(bad)


def test_queue_wrapup_is_configurable():
    cfg = Config.model_validate({"queues": {"general": {"name": "g", "wrapup_s": 30, "members": ["1001"]}},
                                 "seats": {"1001": {"name": "a"}}})
    assert agents_from_config(cfg)["1001"].policy.wrapup_s == {"general": 30}


# --------------------------------------------------------------------------- the phone's reachability (离线)

def test_a_ready_agent_whose_phone_goes_away_is_busy_offline_and_ready_again_when_it_is_back():
    a = ready()
    out = a.feed(Unreachable(T0 + 10))
    assert out[0] == QueuePause(True, OFFLINE_REASON) and a.state is S.BUSY and a.reason == OFFLINE_REASON
    assert out[1].why == "话机离线" and a.offline
    assert a.feed(Unreachable(T0 + 11)) == []  # the same news again changes nothing
    assert a.feed(SetReady(T0 + 12)) == [Refused("1001", InputKind.SET_READY, S.BUSY)]  # it could not answer
    out = a.feed(Reachable(T0 + 70))
    assert out[0] == QueuePause(False) and a.state is S.READY and not a.offline
    assert out[1].old_reason == OFFLINE_REASON and out[1].seconds == 60 and out[1].why == "话机在线"


def test_ringing_or_after_call_work_when_the_phone_goes_away_is_busy_offline():
    for state in (S.RINGING, S.WRAP_UP):
        a = in_state(state)
        out = a.feed(Unreachable(T0 + 1))
        assert QueuePause(True, OFFLINE_REASON) in out and a.state is S.BUSY and a.reason == OFFLINE_REASON
        assert a.feed(RingNoAnswer(T0 + 15, "general")) == []  # the ring it was on ends: no miss counted
        assert a.misses == 0


def test_busy_or_signed_out_agents_are_only_marked_and_keep_their_state_and_reason():
    a = in_state(S.BUSY)
    out = a.feed(Unreachable(T0 + 5))
    assert out == [StateChanged("1001", S.BUSY, S.BUSY, T0 + 5, 5.0, "就餐", "就餐", why="话机离线",
                                 seat="1001", cause="unreachable")]
    assert a.offline and a.reason == "就餐"
    out = a.feed(Reachable(T0 + 9))
    assert [(x.old, x.new, x.reason, x.seconds) for x in out] == [(S.BUSY, S.BUSY, "就餐", 4.0)] and not a.offline
    b = agent()
    assert [x.why for x in b.feed(Unreachable(T0))] == ["话机离线"] and b.state is S.SIGNED_OUT
    out = b.feed(SignIn(T0 + 1))  # a supervisor signs in an agent whose phone is away: busy 离线, paused
    assert out[:2] == [QueueAdd("general", True, OFFLINE_REASON), QueueAdd("overflow", True, OFFLINE_REASON)]
    assert b.state is S.BUSY and b.reason == OFFLINE_REASON
    assert b.feed(Reachable(T0 + 2))[0] == QueuePause(False) and b.state is S.READY


def test_a_call_goes_on_when_the_phone_is_marked_and_its_end_sets_busy_offline_unless_back():
    a = in_state(S.TALKING)
    assert a.feed(Unreachable(T0 + 1)) == [] and a.state is S.TALKING and a.offline
    out = a.feed(Completed(T0 + 9, "general"))
    assert out[0] == QueuePause(True, OFFLINE_REASON) and a.state is S.BUSY
    b = in_state(S.TALKING)
    b.feed(SetBusy(T0 + 1, "会议"))
    b.feed(Unreachable(T0 + 2))
    b.feed(Reachable(T0 + 3))
    assert b.feed(Completed(T0 + 9, "general"))[0] == QueuePause(True, "会议")  # the agent's own key wins
    c = in_state(S.TALKING)
    c.feed(Unreachable(T0 + 1)); c.feed(Reachable(T0 + 2))
    c.feed(Completed(T0 + 9, "general"))
    assert c.state is S.WRAP_UP  # back before the call ended: as if nothing happened


def test_restart_keeps_the_offline_mark_of_a_busy_offline_agent():
    a = ready()
    a.feed(Unreachable(T0))
    b = agent()
    b.state, b.reason, b.queues, b.paused = a.state, a.reason, a.queues, a.paused
    b.restored(T0 + 50)
    assert b.offline and b.member_actions()[0] == QueueAdd("general", True, OFFLINE_REASON)
    assert b.feed(Reachable(T0 + 60))[0] == QueuePause(False) and b.state is S.READY


# --------------------------------------------------------------------------- the lost-AgentComplete watchdog

def test_call_gone_only_for_a_call_asterisk_no_longer_has_and_never_for_a_newer_state():
    a = in_state(S.TALKING)
    a.linkedid = "L1"
    assert call_gone(a, set(), set(), T0 + 30)
    assert not call_gone(a, {"L1"}, set(), T0 + 30)  # the call is still up
    assert not call_gone(a, set(), {"1001"}, T0 + 30)  # the agent still has a channel (a consultation leg)
    assert not call_gone(a, set(), set(), T0 - 1)  # the answer predates this call: never judged on it
    assert not call_gone(in_state(S.READY), set(), set(), T0 + 30)
    r = in_state(S.RINGING)
    assert call_gone(r, set(), {"1002"}, T0 + 30)
