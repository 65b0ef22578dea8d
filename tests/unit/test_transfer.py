"""The transfer state machine: every mode × every ending, simultaneous hang-ups, totality, and the tables."""

from __future__ import annotations

from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.transfer import (
    ACTIVE_STATES,
    BLIND_TABLE,
    CONSULT_TABLE,
    TRANSITIONS,
    ActionAck,
    AttendedTransferDone,
    BlindTransferDone,
    CallerHangup,
    CompleteTransfer,
    DialEnd,
    EmitUserEvent,
    InputKind,
    MarkWorkOrder,
    MergeThreeway,
    Lost,
    Mode,
    ReturnToAgent,
    State,
    TargetDialing,
    TargetHangup,
    TERMINAL_STATES,
    Tick,
    Transfer,
    TransfererHangup,
    build_table,
    ends,
    ignore,
    resolve_mode,
    row,
    settle,
    target_answered,
)

T0 = 1000.0


def make(mode: Mode = Mode.ATTENDED, target: str = "tax", kind: str = "branch_center") -> Transfer:
    return Transfer(id="t1", target=target, kind=kind, mode=mode, agent="1001", started_at=T0,
                    timeout_s=20, grace_s=5, setup_timeout_s=10, linkedid="1700000000.1")


def run(t: Transfer, *inputs) -> list:
    out = []
    for i in inputs:
        out.extend(t.feed(i))
    return out


def outcomes(actions) -> list[str]:
    return [a.as_dict()["Outcome"] for a in actions if isinstance(a, EmitUserEvent)]


def ringing(t: Transfer) -> Transfer:
    run(t, ActionAck(True, T0 + 0.1, "Atxfer successfully queued"), TargetDialing(T0 + 2))
    assert t.state is State.RINGING
    return t


def answered(t: Transfer) -> list:
    ringing(t)
    return t.feed(target_answered(T0 + 6))


# --------------------------------------------------------------------------- modes


def test_resolve_mode_defaults_and_policy() -> None:
    assert resolve_mode(None, "emergency") is Mode.THREEWAY  # 12345↔110: unclear → three-way
    assert resolve_mode("onekey", "emergency") is Mode.THREEWAY
    assert resolve_mode("onekey", "emergency", {"emergency": "onekey"}) is Mode.ONEKEY
    assert resolve_mode(None, "utility") is Mode.ONEKEY
    assert resolve_mode(None, "branch_center") is Mode.ATTENDED
    assert resolve_mode("blind", "emergency") is Mode.BLIND
    assert resolve_mode("attended", "utility") is Mode.ATTENDED
    with pytest.raises(ValueError):
        resolve_mode("sideways", "utility")


# --------------------------------------------------------------------------- attended


def test_attended_answered_then_completed_by_agent_hangup() -> None:
    t = make()
    assert answered(t) == []
    assert t.state is State.ANSWERED
    acts = t.feed(TransfererHangup(T0 + 30))
    assert t.state is State.COMPLETED and t.closed
    assert outcomes(acts) == ["completed"]
    assert not any(isinstance(a, (MarkWorkOrder, ReturnToAgent)) for a in acts)


def test_attended_completed_by_attended_transfer_event() -> None:
    t = make()
    answered(t)
    acts = t.feed(AttendedTransferDone("Success", "Bridge", T0 + 30))
    assert t.state is State.COMPLETED and outcomes(acts) == ["completed"]
    assert run(t, TransfererHangup(T0 + 31), CallerHangup(T0 + 40)) == []  # closed: nothing more


def test_attended_failed_completion_keeps_consulting() -> None:
    t = make()
    answered(t)
    assert t.feed(AttendedTransferDone("Fail", "Fail", T0 + 30)) == []
    assert t.state is State.ANSWERED
    acts = t.feed(TargetHangup(T0 + 40))
    assert t.state is State.CANCELLED and any(isinstance(a, ReturnToAgent) for a in acts)


@pytest.mark.parametrize("mode", [Mode.ATTENDED, Mode.THREEWAY, Mode.ONEKEY])
def test_no_answer_by_dial_status(mode: Mode) -> None:
    t = ringing(make(mode))
    acts = t.feed(DialEnd("NOANSWER", T0 + 22))
    assert t.state is State.NO_ANSWER and t.closed
    assert ReturnToAgent() in acts and MarkWorkOrder("tax", "no_answer") in acts
    assert outcomes(acts) == ["no_answer"]
    assert acts[-1].as_dict()["WorkOrder"] == "1"


@pytest.mark.parametrize("mode", [Mode.ATTENDED, Mode.THREEWAY, Mode.ONEKEY])
def test_no_answer_by_asterisk_timeout_cancel(mode: Mode) -> None:
    """atxfernoanswertimeout hangs the leg up: Dial sees CANCEL at ~timeout → no_answer, not cancelled."""
    t = ringing(make(mode))
    acts = run(t, DialEnd("CANCEL", T0 + 22), TargetHangup(T0 + 22))
    assert t.state is State.NO_ANSWER
    assert sum(isinstance(a, MarkWorkOrder) for a in acts) == 1


@pytest.mark.parametrize("mode", [Mode.ATTENDED, Mode.THREEWAY, Mode.ONEKEY])
def test_no_answer_by_our_own_timeout(mode: Mode) -> None:
    t = ringing(make(mode))
    assert t.feed(Tick(T0 + 2 + 20 + 4)) == []  # still inside Asterisk's timeout + grace
    acts = t.feed(Tick(T0 + 2 + 20 + 5))
    assert t.state is State.NO_ANSWER and ReturnToAgent() in acts


@pytest.mark.parametrize("mode", [Mode.ATTENDED, Mode.THREEWAY, Mode.ONEKEY])
def test_agent_aborts_while_ringing_is_cancelled(mode: Mode) -> None:
    t = ringing(make(mode))
    acts = t.feed(TargetHangup(T0 + 5))  # *1 after 3 s of ringing
    assert t.state is State.CANCELLED
    assert not any(isinstance(a, MarkWorkOrder) for a in acts) and ReturnToAgent() in acts


@pytest.mark.parametrize("mode", [Mode.ATTENDED, Mode.THREEWAY, Mode.ONEKEY])
@pytest.mark.parametrize("status,outcome", [("BUSY", State.BUSY), ("CHANUNAVAIL", State.FAILED),
                                            ("CONGESTION", State.FAILED)])
def test_busy_and_unreachable(mode: Mode, status: str, outcome: State) -> None:
    t = ringing(make(mode))
    acts = run(t, DialEnd(status, T0 + 3), TargetHangup(T0 + 3))
    assert t.state is outcome
    assert ReturnToAgent() in acts and MarkWorkOrder("tax", str(outcome)) in acts
    assert outcomes(acts) == [str(outcome)]


@pytest.mark.parametrize("mode", [Mode.ATTENDED, Mode.THREEWAY, Mode.ONEKEY])
def test_caller_hangs_up_while_ringing(mode: Mode) -> None:
    t = ringing(make(mode))
    acts = t.feed(CallerHangup(T0 + 4))
    assert t.state is State.ABANDONED and outcomes(acts) == ["abandoned"]
    assert MarkWorkOrder("tax", "abandoned") in acts  # the matter never reached the target


@pytest.mark.parametrize("mode", [Mode.ATTENDED, Mode.THREEWAY, Mode.ONEKEY])
def test_caller_hangs_up_after_answer(mode: Mode) -> None:
    t = make(mode)
    answered(t)
    acts = t.feed(CallerHangup(T0 + 9))
    assert t.state is State.ABANDONED and not any(isinstance(a, MarkWorkOrder) for a in acts)


@pytest.mark.parametrize("mode", [Mode.ATTENDED, Mode.THREEWAY, Mode.ONEKEY])
def test_agent_hangs_up_while_ringing_then_target_answers(mode: Mode) -> None:
    """atxferdropcall=no: the caller stays with the ringing target; an answer completes it."""
    t = ringing(make(mode))
    assert t.feed(TransfererHangup(T0 + 3)) == []
    acts = t.feed(target_answered(T0 + 8))
    assert t.state is State.COMPLETED and outcomes(acts) == ["completed"]


def test_agent_hangs_up_while_ringing_then_no_answer() -> None:
    t = ringing(make())
    run(t, TransfererHangup(T0 + 3))
    acts = t.feed(DialEnd("NOANSWER", T0 + 22))
    assert t.state is State.NO_ANSWER and MarkWorkOrder("tax", "no_answer") in acts


def test_agent_hangs_up_before_the_leg_exists() -> None:
    t = make()
    acts = t.feed(TransfererHangup(T0 + 1))
    assert t.state is State.ABANDONED and t.closed and outcomes(acts) == ["abandoned"]


def test_atxfer_refused_fails_at_once() -> None:
    t = make()
    acts = t.feed(ActionAck(False, T0 + 0.1, "No attended transfer feature code found"))
    assert t.state is State.FAILED and MarkWorkOrder("tax", "failed") in acts


def test_leg_never_appears_fails_after_setup_timeout() -> None:
    t = make()
    run(t, ActionAck(True, T0 + 0.1))
    assert t.feed(Tick(T0 + 9)) == []
    acts = t.feed(Tick(T0 + 10))
    assert t.state is State.FAILED and outcomes(acts) == ["failed"]


def test_missed_dial_begin_still_works() -> None:
    t = make()
    acts = t.feed(target_answered(T0 + 5))
    assert t.state is State.ANSWERED and acts == []


# --------------------------------------------------------------------------- three-way and one-key


def test_threeway_mode_merges_on_answer_then_agent_leaves() -> None:
    t = make(Mode.THREEWAY, "110", "emergency")
    assert answered(t) == [MergeThreeway()]
    acts = t.feed(AttendedTransferDone("Success", "Threeway", T0 + 7))
    assert t.state is State.THREEWAY and not t.closed and outcomes(acts) == ["threeway"]
    assert t.feed(Tick(T0 + 500)) == []  # a three-way call may last
    acts = t.feed(TransfererHangup(T0 + 60))
    assert t.state is State.COMPLETED and t.closed and outcomes(acts) == ["completed"]


def test_threeway_ends_when_caller_leaves() -> None:
    t = make(Mode.THREEWAY, "110", "emergency")
    answered(t)
    run(t, AttendedTransferDone("Success", "Threeway", T0 + 7))
    assert t.feed(CallerHangup(T0 + 60)) == []
    assert t.state is State.THREEWAY and t.closed


def test_threeway_pressed_while_ringing_becomes_threeway_on_answer() -> None:
    t = ringing(make())
    run(t, AttendedTransferDone("Success", "Threeway", T0 + 3))
    acts = t.feed(target_answered(T0 + 6))
    assert t.state is State.THREEWAY and outcomes(acts) == ["threeway"]


def test_onekey_completes_on_answer() -> None:
    t = make(Mode.ONEKEY, "water", "utility")
    assert answered(t) == [CompleteTransfer()]
    acts = t.feed(AttendedTransferDone("Success", "Bridge", T0 + 7))
    assert t.state is State.COMPLETED and outcomes(acts) == ["completed"]
    assert acts[-1].as_dict() == {"Target": "water", "Kind": "utility", "Mode": "onekey", "Outcome": "completed",
                                  "Agent": "1001", "Linkedid": "1700000000.1", "TransferId": "t1",
                                  "WorkOrder": "0"}


# --------------------------------------------------------------------------- blind


def test_blind_success_by_ack_and_event() -> None:
    t = make(Mode.BLIND)
    acts = t.feed(ActionAck(True, T0 + 0.1, "Transfer succeeded"))
    assert t.state is State.BLIND and outcomes(acts) == ["blind"]
    assert t.feed(BlindTransferDone("Success", T0 + 0.2)) == []


@pytest.mark.parametrize("inp,state", [
    (BlindTransferDone("Not Permitted", T0 + 0.1), State.FAILED),
    (ActionAck(False, T0 + 0.1, "Transfer failed"), State.FAILED),
    (CallerHangup(T0 + 0.1), State.ABANDONED),
    (Tick(T0 + 11), State.FAILED),
])
def test_blind_endings(inp, state: State) -> None:
    t = make(Mode.BLIND)
    t.feed(inp)
    assert t.state is state and t.closed


def test_blind_agent_gone_then_timeout_counts_as_blind() -> None:
    t = make(Mode.BLIND)
    run(t, TransfererHangup(T0 + 0.1), Tick(T0 + 11))
    assert t.state is State.BLIND


# --------------------------------------------------------------------------- simultaneous hang-ups


@pytest.mark.parametrize("mode", [Mode.ATTENDED, Mode.THREEWAY, Mode.ONEKEY])
@pytest.mark.parametrize("order", ["caller_first", "agent_first"])
def test_caller_and_agent_hang_up_at_once_while_ringing(mode: Mode, order: str) -> None:
    t = ringing(make(mode))
    pair = [CallerHangup(T0 + 5), TransfererHangup(T0 + 5)]
    acts = run(t, *(pair if order == "caller_first" else pair[::-1]))
    assert t.state is State.ABANDONED and t.closed and outcomes(acts) == ["abandoned"]


@pytest.mark.parametrize("order", ["caller_first", "agent_first"])
def test_caller_and_agent_hang_up_at_once_while_consulting(order: str) -> None:
    t = make()
    answered(t)
    pair = [CallerHangup(T0 + 9), TransfererHangup(T0 + 9)]
    acts = run(t, *(pair if order == "caller_first" else pair[::-1]))
    # Asterisk processes one first: agent first completes the transfer, caller first abandons it.
    assert t.state is (State.ABANDONED if order == "caller_first" else State.COMPLETED)
    assert len(outcomes(acts)) == 1 and t.closed


@pytest.mark.parametrize("order", ["answer_first", "hangup_first"])
def test_target_answers_as_caller_hangs_up(order: str) -> None:
    t = ringing(make())
    pair = [target_answered(T0 + 6), CallerHangup(T0 + 6)]
    acts = run(t, *(pair if order == "answer_first" else pair[::-1]))
    assert t.state is State.ABANDONED and outcomes(acts) == ["abandoned"]


def test_answer_racing_our_timeout() -> None:
    t = ringing(make())
    run(t, Tick(T0 + 27), target_answered(T0 + 27))
    assert t.state is State.NO_ANSWER  # we gave up first and dropped the leg; the late answer is ignored


def test_everyone_hangs_up_at_once() -> None:
    for perm in ([0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0]):
        t = make()
        answered(t)
        evs = [CallerHangup(T0 + 9), TransfererHangup(T0 + 9), TargetHangup(T0 + 9)]
        acts = run(t, *[evs[i] for i in perm])
        assert t.closed and len(outcomes(acts)) == 1
        assert t.state in {State.ABANDONED, State.COMPLETED, State.CANCELLED}


# --------------------------------------------------------------------------- totality

DIAL_STATUSES = ["ANSWER", "BUSY", "NOANSWER", "CANCEL", "CHANUNAVAIL", "CONGESTION", "DONTCALL", "", "weird"]
RESULTS = ["Success", "Fail", "Invalid", "Not Permitted", ""]
DEST_TYPES = ["Bridge", "App", "Link", "Threeway", "Fail", ""]


#: every kind of input with every interesting parameter, as a function of time
TEMPLATES = (
    [lambda at: ActionAck(True, at, "queued"), lambda at: ActionAck(False, at, "refused"),
     TargetDialing, TargetHangup, TransfererHangup, CallerHangup, Tick, Lost]
    + [lambda at, s=s: DialEnd(s, at) for s in DIAL_STATUSES]
    + [lambda at, r=r, d=d: AttendedTransferDone(r, d, at) for r in RESULTS for d in DEST_TYPES]
    + [lambda at, r=r: BlindTransferDone(r, at) for r in RESULTS]
)
GAPS = [0.0, 0.0, 0.5, 3.0, 19.0, 30.0]  # zeros: simultaneous events


@st.composite
def input_sequences(draw):
    steps = draw(st.lists(st.tuples(st.integers(0, len(GAPS) - 1), st.integers(0, len(TEMPLATES) - 1)),
                          max_size=25))
    at, seq = T0, []
    for gap, which in steps:
        at += GAPS[gap]
        seq.append(TEMPLATES[which](at))
    return seq


RANK = {State.REQUESTED: 0, State.RINGING: 1, State.ANSWERED: 2}


@settings(max_examples=1000, deadline=None)
@given(mode=st.sampled_from(list(Mode)), seq=input_sequences(), ending=st.sampled_from(["caller", "tick", "all"]))
def test_total_monotone_and_always_terminates(mode: Mode, seq, ending: str) -> None:
    t = make(mode)
    emitted, work_orders, rank = [], 0, 0
    was_terminal = False
    for inp in seq:
        acts = t.feed(inp)  # never raises
        emitted += outcomes(acts)
        work_orders += sum(isinstance(a, MarkWorkOrder) for a in acts)
        if was_terminal:
            assert t.terminal  # no resurrection
        new_rank = RANK.get(t.state, 3)
        assert new_rank >= rank  # only forward: bounded number of transitions
        rank, was_terminal = new_rank, t.terminal
    # one outcome per transfer; a three-way may be refined once to completed
    assert len(emitted) <= 2 and work_orders <= 1
    if len(emitted) == 2:
        assert emitted == ["threeway", "completed"]
    if t.terminal:
        assert emitted and emitted[-1] == str(t.state) or (t.state is State.THREEWAY and emitted[-1] == "threeway")
    # bounded: one more input always ends it
    last = seq[-1].at if seq else T0
    if ending == "caller":
        t.feed(CallerHangup(last))
        assert t.terminal and t.closed
    elif ending == "tick":
        t.feed(Tick(last + 1000))
        assert t.terminal or t.state is State.ANSWERED
    else:
        run(t, CallerHangup(last), TransfererHangup(last), TargetHangup(last))
        assert t.terminal and t.closed


def test_every_state_input_pair_is_defined() -> None:
    """Reach each state, then apply each kind of input: always a defined result, never an exception."""
    reach = {
        State.REQUESTED: [],
        State.RINGING: [TargetDialing(T0 + 1)],
        State.ANSWERED: [TargetDialing(T0 + 1), target_answered(T0 + 2)],
        State.THREEWAY: [TargetDialing(T0 + 1), target_answered(T0 + 2), AttendedTransferDone("Success", "Threeway", T0 + 3)],
        State.COMPLETED: [TargetDialing(T0 + 1), target_answered(T0 + 2), TransfererHangup(T0 + 3)],
        State.CANCELLED: [TargetDialing(T0 + 1), TargetHangup(T0 + 2)],
        State.NO_ANSWER: [TargetDialing(T0 + 1), DialEnd("NOANSWER", T0 + 21)],
        State.BUSY: [TargetDialing(T0 + 1), DialEnd("BUSY", T0 + 2)],
        State.ABANDONED: [CallerHangup(T0 + 1)],
        State.FAILED: [ActionAck(False, T0 + 1)],
    }
    probes = [ActionAck(True, T0 + 50), ActionAck(False, T0 + 50), TargetDialing(T0 + 50)]
    probes += [DialEnd(s, T0 + 50) for s in DIAL_STATUSES]
    probes += [TargetHangup(T0 + 50), TransfererHangup(T0 + 50), CallerHangup(T0 + 50), Tick(T0 + 50), Tick(T0 + 5000), Lost(T0 + 50)]
    probes += [AttendedTransferDone(r, d, T0 + 50) for r in RESULTS for d in DEST_TYPES]
    probes += [BlindTransferDone(r, T0 + 50) for r in RESULTS]
    for state, path in reach.items():
        for probe in probes:
            t = make(Mode.ATTENDED)
            run(t, *path)
            assert t.state is state
            acts = t.feed(probe)
            assert isinstance(acts, list)
            if state in TERMINAL_STATES and state is not State.THREEWAY:
                assert acts == [] and t.state is state


def test_lost_track_is_recorded_as_abandoned() -> None:
    t = ringing(make())
    acts = t.feed(Lost(T0 + 3))
    assert t.state is State.ABANDONED and t.closed and MarkWorkOrder("tax", "lost track") in acts


# --------------------------------------------------------------------------- the tables themselves

ALL_PAIRS = set(product(State, InputKind))
TABLES = {"consult": CONSULT_TABLE, "blind": BLIND_TABLE}
#: one input of each kind (fields that matter for "ignored" cells are chosen to be harmless)
SAMPLE = {
    InputKind.ACK: ActionAck(True, T0 + 50), InputKind.TARGET_DIALING: TargetDialing(T0 + 50),
    InputKind.DIAL_END: DialEnd("ANSWER", T0 + 50), InputKind.TARGET_HANGUP: TargetHangup(T0 + 50),
    InputKind.TRANSFERER_HANGUP: TransfererHangup(T0 + 50), InputKind.CALLER_HANGUP: CallerHangup(T0 + 50),
    InputKind.ATTENDED_DONE: AttendedTransferDone("Success", "Bridge", T0 + 50),
    InputKind.BLIND_DONE: BlindTransferDone("Success", T0 + 50), InputKind.TICK: Tick(T0 + 5000),
    InputKind.LOST: Lost(T0 + 50),
}


def in_state(mode: Mode, state: State) -> Transfer:
    t = make(mode)
    t.state = state
    return t


def test_every_mode_has_a_table_and_every_table_every_pair() -> None:
    assert set(TRANSITIONS) == set(Mode)
    for name, table in TABLES.items():
        assert set(table) == ALL_PAIRS, name
        for pair, handler in table.items():
            assert callable(handler) and handler.__name__ != "<lambda>", (name, pair)


def test_every_input_class_names_its_own_kind() -> None:
    kinds = [type(inp).kind for inp in SAMPLE.values()]
    assert sorted(kinds) == sorted(InputKind) and all(inp.kind is k for k, inp in SAMPLE.items())


def test_build_table_refuses_gaps_and_pairs_defined_twice() -> None:
    with pytest.raises(ValueError, match="no transition"):
        build_table([row(State.REQUESTED, InputKind.TICK, ignore)])
    with pytest.raises(ValueError, match="defined twice"):
        build_table([row(State, InputKind, ignore), row(State.RINGING, InputKind.TICK, settle)])


def test_shared_rows_are_written_once_for_every_mode() -> None:
    for state, kind in ALL_PAIRS:
        if state not in ACTIVE_STATES:  # after the outcome, modes do not differ
            assert CONSULT_TABLE[(state, kind)] is BLIND_TABLE[(state, kind)]
    lost = {table[(s, InputKind.LOST)] for table in TABLES.values() for s in ACTIVE_STATES}
    assert len(lost) == 1
    settled = {CONSULT_TABLE[(s, k)] for s in set(State) - ACTIVE_STATES - {State.THREEWAY} for k in InputKind}
    assert settled == {settle}
    # the caller leaving before the target answered is one row for requested and ringing
    assert CONSULT_TABLE[(State.REQUESTED, InputKind.CALLER_HANGUP)] is CONSULT_TABLE[(State.RINGING, InputKind.CALLER_HANGUP)]
    # blind: the same rows in every active state
    for kind in InputKind:
        assert len({BLIND_TABLE[(s, kind)] for s in ACTIVE_STATES}) == 1


@pytest.mark.parametrize("mode", list(Mode))
def test_ignored_cells_change_nothing(mode: Mode) -> None:
    cells = [(s, k) for (s, k), h in TRANSITIONS[mode].items() if h is ignore]
    assert cells  # there are some, and each is explicit
    for state, kind in cells:
        t = in_state(mode, state)
        before = (t.snapshot(), list(t.history), t.merged, t.agent_gone)
        assert t.feed(SAMPLE[kind]) == []
        assert (t.snapshot(), t.history, t.merged, t.agent_gone) == before, (state, kind)


@pytest.mark.parametrize("mode", list(Mode))
def test_settled_cells_close_quietly(mode: Mode) -> None:
    for (state, kind), handler in TRANSITIONS[mode].items():
        if handler is settle:
            t = in_state(mode, state)
            assert t.feed(SAMPLE[kind]) == [] and t.closed and t.state is state and t.history == []


@pytest.mark.parametrize("mode", list(Mode))
def test_every_cell_answers_from_its_state(mode: Mode) -> None:
    """Each (state, kind) cell, entered directly, returns a list and never moves backwards."""
    for (state, kind), handler in TRANSITIONS[mode].items():
        t = in_state(mode, state)
        acts = t.feed(SAMPLE[kind])
        assert isinstance(acts, list), (state, kind, handler.__name__)
        assert RANK.get(t.state, 3) >= RANK.get(state, 3), (state, kind, handler.__name__)


def test_ends_cells_report_their_outcome() -> None:
    t = in_state(Mode.ATTENDED, State.ANSWERED)
    acts = ends(State.CANCELLED, return_to_agent=True)(t, TargetHangup(T0 + 9))
    assert t.state is State.CANCELLED and t.closed and acts[0] == ReturnToAgent() and outcomes(acts) == ["cancelled"]
    assert CONSULT_TABLE[(State.ANSWERED, InputKind.TARGET_HANGUP)].__name__ == "ends_cancelled"


def test_a_blind_transfer_found_ringing_follows_the_blind_rows() -> None:
    """A re-attached transfer under a blind mode policy: its events still mean "blind", whatever the state."""
    t = in_state(Mode.BLIND, State.RINGING)
    assert t.feed(DialEnd("BUSY", T0 + 3))[-1].as_dict()["Outcome"] == "blind"
