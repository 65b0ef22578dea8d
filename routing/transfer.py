"""One agent transfer as a pure state machine: AMI-derived inputs in, actions out, no I/O.

Holds the transfer's vocabulary (`Mode`, `State`, inputs, actions, `resolve_mode`), the
`Transfer` record and the transition tables that drive it. Which AMI event is which
input lives in `routing.transfer_correlation` (pure); AMI I/O in `routing.transfer_service`.

Why a state machine: transfers fail in the field at the edges — the caller and the
agent hanging up at the same instant, the target answering as the caller leaves, a
timeout racing an answer. Here each of those is an ordinary transition; every
(state, input) pair has a defined result (often "ignore"), and nothing raises.

States::

    requested ─► ringing ─► answered ─► completed | threeway
        │           │           └─────► cancelled | abandoned
        │           └─► no_answer | busy | failed | abandoned | cancelled
        └─► failed | abandoned | blind (mode ``blind``)

``threeway`` is terminal for the outcome (it is reported at once, so a restart loses
nothing) but stays *open* until a party leaves: the agent leaving then refines it to
``completed`` (the caller and the target keep talking), anyone else leaving closes it.

The transitions are tables, in the spirit of h11's ``_state.py``: per mode, a dict
``(State, InputKind) → handler`` (`TRANSITIONS`). Rows shared by several states are
written once; `build_table` refuses a pair defined twice or left out, so nothing falls
through unnoticed, and pairs where nothing happens name the explicit `ignore` handler.

Why one module (≈575 lines): the tables are keyed by this module's `State` and
`InputKind` and name the `Transfer` methods they call; vocabulary, record and tables
are one contract, and a row is only checkable next to the handler and input it names.

Asterisk's own attended-transfer machinery (``Atxfer``, ``atxfernoanswertimeout``,
``atxferthreeway``) does the call handling; this machine only decides what happened
and what the controller must do about it (return the caller to the agent, mark the
ticket for work-order dispatch 工单派转, tell the ticket assembler).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, Union

from model.contract import Event
from routing import state_table
from routing.state_table import Row, row


class Mode(StrEnum):
    #: the agent talks to the target first, then completes (hangs up or *2)
    ATTENDED = "attended"
    #: 三方通话: caller, agent and target all talk; the agent may leave later
    THREEWAY = "threeway"
    #: 一键转接: handed over as soon as a human at the target answers
    ONEKEY = "onekey"
    #: the caller is sent to the target at once; the agent is gone
    BLIND = "blind"


class State(StrEnum):
    REQUESTED = "requested"
    RINGING = "ringing"
    ANSWERED = "answered"
    COMPLETED = "completed"
    THREEWAY = "threeway"
    CANCELLED = "cancelled"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    ABANDONED = "abandoned"
    FAILED = "failed"
    BLIND = "blind"


ACTIVE_STATES = frozenset({State.REQUESTED, State.RINGING, State.ANSWERED})
TERMINAL_STATES = frozenset(set(State) - ACTIVE_STATES)
#: outcomes where the matter never reached the target: the ticket goes to work-order dispatch
WORK_ORDER_OUTCOMES = frozenset({State.NO_ANSWER, State.BUSY, State.FAILED})

TargetKind = Literal["emergency", "utility", "branch_center", "legacy_seat"]

#: Mode used when none is asked for (feature codes), per target kind. Emergency lines
#: get a three-way call: 国办发〔2022〕12号 asks for one when it is unclear whether the
#: matter is 12345's or 110's, and an agent keying a feature code mid-call is that case.
DEFAULT_MODE_BY_KIND: Mapping[str, Mode] = {
    "emergency": Mode.THREEWAY,
    "utility": Mode.ONEKEY,
    "branch_center": Mode.ATTENDED,
    "legacy_seat": Mode.ATTENDED,
}


def resolve_mode(requested: Mode | str | None, kind: str, policy: Mapping[str, Mode | str] | None = None) -> Mode:
    """The mode a transfer actually runs in.

    No mode asked → the policy for the target's kind. ``onekey`` to an emergency line →
    the policy for ``emergency`` (three-way by default; set it to ``onekey`` where the
    center hands clear cases straight over). Anything else is taken as asked.
    """
    merged = {**DEFAULT_MODE_BY_KIND, **(policy or {})}
    if requested is None or requested == "":
        return Mode(merged.get(kind, Mode.ATTENDED))
    mode = Mode(requested)
    if mode is Mode.ONEKEY and kind == "emergency":
        return Mode(merged["emergency"])
    return mode


# --------------------------------------------------------------------------- inputs
# Each input carries `at` (seconds on one clock, as the adapter observed it) and, as a
# class attribute, its `kind`: the column of the transition tables it is looked up in.


class InputKind(StrEnum):
    ACK = "ack"
    TARGET_DIALING = "target_dialing"
    DIAL_END = "dial_end"
    TARGET_HANGUP = "target_hangup"
    TRANSFERER_HANGUP = "transferer_hangup"
    CALLER_HANGUP = "caller_hangup"
    ATTENDED_DONE = "attended_done"
    BLIND_DONE = "blind_done"
    TICK = "tick"
    LOST = "lost"


@dataclass(frozen=True)
class ActionAck:
    """Asterisk's answer to the Atxfer/BlindTransfer action. For Atxfer, ok means only "queued"."""

    kind: ClassVar[InputKind] = InputKind.ACK
    ok: bool
    at: float
    message: str = ""


@dataclass(frozen=True)
class TargetDialing:
    """The target leg exists and is being dialed (DialBegin from the hotline-transfer context)."""

    kind: ClassVar[InputKind] = InputKind.TARGET_DIALING
    at: float


@dataclass(frozen=True)
class DialEnd:
    """The target leg's Dial ended: ANSWER, BUSY, NOANSWER, CANCEL, CHANUNAVAIL, CONGESTION, …"""

    kind: ClassVar[InputKind] = InputKind.DIAL_END
    status: str
    at: float


@dataclass(frozen=True)
class TargetHangup:
    kind: ClassVar[InputKind] = InputKind.TARGET_HANGUP
    at: float


@dataclass(frozen=True)
class TransfererHangup:
    """The agent's channel hung up."""

    kind: ClassVar[InputKind] = InputKind.TRANSFERER_HANGUP
    at: float


@dataclass(frozen=True)
class CallerHangup:
    kind: ClassVar[InputKind] = InputKind.CALLER_HANGUP
    at: float


@dataclass(frozen=True)
class AttendedTransferDone:
    """AMI AttendedTransfer: Result (Success/Fail/Invalid/Not Permitted) and DestType (Bridge/App/Link/Threeway/Fail)."""

    kind: ClassVar[InputKind] = InputKind.ATTENDED_DONE
    result: str
    dest_type: str
    at: float


@dataclass(frozen=True)
class BlindTransferDone:
    """AMI BlindTransfer: Result (Success/Fail/Invalid/Not Permitted)."""

    kind: ClassVar[InputKind] = InputKind.BLIND_DONE
    result: str
    at: float


@dataclass(frozen=True)
class Tick:
    """Time passes; lets the machine give up when Asterisk's events never come."""

    kind: ClassVar[InputKind] = InputKind.TICK
    at: float


@dataclass(frozen=True)
class Lost:
    """The controller lost track of this transfer (restart, no way to re-attach): record it, never strand it."""

    kind: ClassVar[InputKind] = InputKind.LOST
    at: float


Input = Union[ActionAck, TargetDialing, DialEnd, TargetHangup, TransfererHangup, CallerHangup,
              AttendedTransferDone, BlindTransferDone, Tick, Lost]


def target_answered(at: float) -> DialEnd:
    return DialEnd("ANSWER", at)


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class ReturnToAgent:
    """Make sure the caller is back with the agent: drop the target leg if it is still up."""


@dataclass(frozen=True)
class MarkWorkOrder:
    """工单派转: the target was not reached; the ticket is dispatched to it as a work order."""

    target: str
    reason: str


@dataclass(frozen=True)
class MergeThreeway:
    """Turn the consultation into a three-way call (the atxferthreeway key on the agent's channel)."""


@dataclass(frozen=True)
class CompleteTransfer:
    """Hand the caller to the target and release the agent (the atxfercomplete key)."""


@dataclass(frozen=True)
class EmitUserEvent:
    """Tell the ticket assembler: UserEvent HotlineTransfer with these headers."""

    name: str
    headers: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, str]:
        return dict(self.headers)


Action = Union[ReturnToAgent, MarkWorkOrder, MergeThreeway, CompleteTransfer, EmitUserEvent]

#: Dial statuses that mean "the target could not take the call" → outcome
_DIAL_FAILURES: Mapping[str, State] = {
    "BUSY": State.BUSY, "NOANSWER": State.NO_ANSWER,
    **dict.fromkeys(("CHANUNAVAIL", "CONGESTION", "DONTCALL", "TORTURE", "INVALIDARGS"), State.FAILED),
}

#: how close to the no-answer timeout a cancelled leg counts as Asterisk's timeout rather than the agent's *1
TIMEOUT_SLACK_S = 1.0


# --------------------------------------------------------------------------- the machine


@dataclass
class Transfer:
    """One transfer. Feed inputs with `feed`; it returns the actions to carry out.

    `timeout_s` mirrors features.conf ``atxfernoanswertimeout`` (Asterisk returns the
    caller then); `grace_s` is how much longer we wait for Asterisk's events before
    deciding no-answer ourselves; `setup_timeout_s` bounds the wait for the target leg
    to appear at all after the request.
    """

    id: str
    target: str
    kind: str
    mode: Mode
    agent: str
    started_at: float
    timeout_s: float = 20.0
    grace_s: float = 5.0
    setup_timeout_s: float = 10.0
    linkedid: str = ""

    state: State = State.REQUESTED
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    dial_status: str = ""
    agent_gone: bool = False
    merged: bool = False
    closed: bool = False
    work_order: bool = False
    history: list[tuple[float, str]] = field(default_factory=list)

    # ------------------------------------------------------------------ public
    @property
    def outcome(self) -> State | None:
        return self.state if self.state in TERMINAL_STATES else None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def feed(self, inp: Input) -> list[Action]:
        """Apply one input: the handler at `TRANSITIONS[mode][(state, inp.kind)]`. Never raises on valid inputs."""
        if self.closed:
            return []
        return TRANSITIONS[self.mode][(self.state, inp.kind)](self, inp)

    def snapshot(self) -> dict[str, object]:
        return {
            "id": self.id, "target": self.target, "kind": self.kind, "mode": str(self.mode),
            "agent": self.agent, "state": str(self.state), "linkedid": self.linkedid,
            "started_at": self.started_at, "ringing_at": self.ringing_at, "answered_at": self.answered_at,
            "ended_at": self.ended_at, "dial_status": self.dial_status, "work_order": self.work_order,
            "closed": self.closed,
        }

    # ------------------------------------------------------------------ transitions (the tables' cells)
    def _lost(self, inp: Lost) -> list[Action]:
        """Lost track mid-transfer: abandoned, and a work order if the target never answered."""
        return self._end(State.ABANDONED, inp.at, work_order=self.answered_at is None, reason="lost track")

    def _fail_if_refused(self, inp: ActionAck) -> list[Action]:
        """Atxfer refused: failed. Accepted only means "queued"; the events tell the rest."""
        return [] if inp.ok else self._end(State.FAILED, inp.at)

    def _ringing(self, inp: TargetDialing) -> list[Action]:
        self.state, self.ringing_at = State.RINGING, inp.at
        self._log(inp.at, "ringing")
        return []

    def _ringing_from_now(self, inp: Input) -> list[Action]:
        """The Dial start was missed: treat the leg as ringing from now and apply the input there."""
        self.ringing_at = inp.at
        self.state = State.RINGING
        return self.feed(inp)

    def _setup_timeout(self, inp: Tick) -> list[Action]:
        if inp.at >= self.started_at + self.setup_timeout_s:
            return self._end(State.FAILED, inp.at, reason="target leg never appeared")
        return []

    def _dial_ended(self, inp: DialEnd) -> list[Action]:
        status = inp.status.upper()
        if status == "ANSWER":
            return self._answer(inp.at)
        self.dial_status = status
        return self._target_failed(inp.at)

    def _target_left_ringing(self, inp: TargetHangup) -> list[Action]:
        return self._target_failed(inp.at)

    def _agent_left_ringing(self, inp: TransfererHangup) -> list[Action]:
        """atxferdropcall=no: Asterisk keeps the caller with the still-ringing target (blond transfer)."""
        self.agent_gone = True
        self._log(inp.at, "agent_left_while_ringing")
        return []

    def _transfer_key_while_ringing(self, inp: AttendedTransferDone) -> list[Action]:
        """*2 or *3 before the answer: remembered; the answer then completes or merges."""
        if not _ok(inp.result):
            return self._end(State.FAILED, inp.at, reason=f"attended transfer {inp.result}")
        if inp.dest_type.lower() == "threeway":
            self.merged = True
        else:
            self.agent_gone = True
        return []

    def _no_answer_timeout(self, inp: Tick) -> list[Action]:
        since = self.ringing_at if self.ringing_at is not None else self.started_at
        if inp.at >= since + self.timeout_s + self.grace_s:
            self.dial_status = self.dial_status or "NOANSWER"
            return self._end(State.NO_ANSWER, inp.at, return_to_agent=True)
        return []

    def _completion(self, inp: AttendedTransferDone) -> list[Action]:
        if not _ok(inp.result):
            self._log(inp.at, f"completion_refused:{inp.result}")
            return []  # Asterisk keeps the consultation up; the agent may retry or abort
        return self._end(State.THREEWAY if inp.dest_type.lower() == "threeway" else State.COMPLETED, inp.at)

    def _agent_left_threeway(self, inp: TransfererHangup) -> list[Action]:
        """The caller and the target keep talking: the outcome is refined to completed."""
        self.state, self.closed, self.ended_at = State.COMPLETED, True, inp.at
        self._log(inp.at, "completed")
        return [self._event()]

    def _threeway_ended(self, inp: Input) -> list[Action]:
        self.closed = True
        self._log(inp.at, "threeway_ended")
        return []

    def _blind_result(self, inp: BlindTransferDone) -> list[Action]:
        return self._end(State.BLIND if _ok(inp.result) else State.FAILED, inp.at)

    def _blind_ack(self, inp: ActionAck) -> list[Action]:
        return self._end(State.BLIND if inp.ok else State.FAILED, inp.at)

    def _blind_agent_left(self, inp: TransfererHangup) -> list[Action]:
        """BlindTransfer hangs the agent up once the caller is on its way; the ack/event decides."""
        self.agent_gone = True
        return []

    def _blind_setup_timeout(self, inp: Tick) -> list[Action]:
        if inp.at >= self.started_at + self.setup_timeout_s:
            return self._end(State.BLIND if self.agent_gone else State.FAILED, inp.at)
        return []

    # ------------------------------------------------------------------ helpers
    def _answer(self, at: float) -> list[Action]:
        self.answered_at = at
        if self.merged:
            return self._end(State.THREEWAY, at)
        if self.agent_gone:
            return self._end(State.COMPLETED, at)
        self.state = State.ANSWERED
        self._log(at, "answered")
        return list(_ON_ANSWER[self.mode])

    def _target_failed(self, at: float) -> list[Action]:
        """The target leg ended before answering: busy, no answer, failure, or cancelled by the agent."""
        outcome = _DIAL_FAILURES.get(self.dial_status)
        if outcome is None:  # CANCEL or unknown: Asterisk's no-answer timeout, or the agent pressed *1
            ringing_for = at - (self.ringing_at if self.ringing_at is not None else self.started_at)
            outcome = State.NO_ANSWER if ringing_for >= self.timeout_s - TIMEOUT_SLACK_S else State.CANCELLED
        return self._end(outcome, at, return_to_agent=True, work_order=outcome in WORK_ORDER_OUTCOMES)

    def _end(self, outcome: State, at: float, *, return_to_agent: bool = False,
             work_order: bool | None = None, reason: str = "") -> list[Action]:
        self.state, self.ended_at = outcome, at
        self.closed = outcome is not State.THREEWAY
        self._log(at, str(outcome) + (f":{reason}" if reason else ""))
        actions: list[Action] = []
        if return_to_agent or (outcome in WORK_ORDER_OUTCOMES and not self.agent_gone):
            actions.append(ReturnToAgent())
        if work_order is None:
            work_order = outcome in WORK_ORDER_OUTCOMES
        if work_order:
            self.work_order = True
            actions.append(MarkWorkOrder(self.target, reason or str(outcome)))
        actions.append(self._event())
        return actions

    def _event(self) -> EmitUserEvent:
        return EmitUserEvent(Event.TRANSFER.value, (
            ("Target", self.target), ("Kind", self.kind), ("Mode", str(self.mode)),
            ("Outcome", str(self.state)), ("Agent", self.agent), ("Linkedid", self.linkedid),
            ("TransferId", self.id), ("WorkOrder", "1" if self.work_order else "0"),
        ))

    def _log(self, at: float, what: str) -> None:
        self.history.append((at, what))


#: what the machine asks for once the target answers a consultation, per mode
_ON_ANSWER: Mapping[Mode, tuple[Action, ...]] = {
    Mode.ATTENDED: (), Mode.THREEWAY: (MergeThreeway(),), Mode.ONEKEY: (CompleteTransfer(),),
    Mode.BLIND: (),  # a blind transfer never consults
}


def _ok(result: str) -> bool:
    return result.strip().lower() == "success"


# --------------------------------------------------------------------------- the tables

#: a table cell: the transfer and an input of the kind its row names → the actions to carry out
Handler = Callable[[Transfer, Any], list[Action]]
Table = Mapping[tuple[State, InputKind], Handler]


def ignore(t: Transfer, inp: Input) -> list[Action]:
    """Nothing happens: the input is stale, repeated, or does not matter in this state."""
    return []


def settle(t: Transfer, inp: Input) -> list[Action]:
    """The outcome is already reported: close the transfer quietly."""
    t.closed = True
    return []


def ends(outcome: State, *, return_to_agent: bool = False, work_order: bool | None = None) -> Handler:
    """A cell that just ends the transfer with `outcome` (`Transfer._end` adds the actions)."""
    def handler(t: Transfer, inp: Input) -> list[Action]:
        return t._end(outcome, inp.at, return_to_agent=return_to_agent, work_order=work_order)
    handler.__name__ = handler.__qualname__ = f"ends_{outcome}"
    return handler


def build_table(rows: Iterable[Row]) -> dict[tuple[State, InputKind], Handler]:
    """This machine's total table (routing/state_table.py: a pair defined twice or left out is a ValueError)."""
    return state_table.build_table(rows, State, InputKind)


S, K, T = State, InputKind, Transfer
PRE_ANSWER = frozenset({S.REQUESTED, S.RINGING})
SETTLED_STATES = TERMINAL_STATES - {S.THREEWAY}
#: a party left before the target heard the matter: abandoned, and the ticket becomes a work order
_abandoned_unheard = ends(S.ABANDONED, work_order=True)

#: rows every mode shares: losing track mid-transfer, and everything after the outcome
_SHARED_ROWS: tuple[Row, ...] = (
    row(ACTIVE_STATES, K.LOST, T._lost),
    row(S.THREEWAY, K.TRANSFERER_HANGUP, T._agent_left_threeway),
    row(S.THREEWAY, {K.CALLER_HANGUP, K.TARGET_HANGUP}, T._threeway_ended),
    row(S.THREEWAY, K.LOST, settle),
    row(S.THREEWAY, {K.ACK, K.TARGET_DIALING, K.DIAL_END, K.ATTENDED_DONE, K.BLIND_DONE, K.TICK}, ignore),
    row(SETTLED_STATES, InputKind, settle),
)

#: attended, three-way and one-key: Atxfer, then a consultation leg towards the target
CONSULT_TABLE: Table = build_table((
    *_SHARED_ROWS,
    row(PRE_ANSWER, K.CALLER_HANGUP, _abandoned_unheard),
    row(PRE_ANSWER, K.ACK, T._fail_if_refused),
    row(PRE_ANSWER, K.BLIND_DONE, ignore),
    # requested: waiting for the target leg to appear
    row(S.REQUESTED, K.TARGET_DIALING, T._ringing),
    row(S.REQUESTED, {K.DIAL_END, K.TARGET_HANGUP, K.ATTENDED_DONE}, T._ringing_from_now),
    row(S.REQUESTED, K.TRANSFERER_HANGUP, _abandoned_unheard),
    row(S.REQUESTED, K.TICK, T._setup_timeout),
    # ringing: the target leg is being dialed
    row(S.RINGING, K.DIAL_END, T._dial_ended),
    row(S.RINGING, K.TARGET_HANGUP, T._target_left_ringing),
    row(S.RINGING, K.TRANSFERER_HANGUP, T._agent_left_ringing),
    row(S.RINGING, K.ATTENDED_DONE, T._transfer_key_while_ringing),
    row(S.RINGING, K.TICK, T._no_answer_timeout),
    row(S.RINGING, K.TARGET_DIALING, ignore),
    # answered: agent and target talk (a consultation may last: no timeout)
    row(S.ANSWERED, K.ATTENDED_DONE, T._completion),
    row(S.ANSWERED, K.TRANSFERER_HANGUP, ends(S.COMPLETED)),  # hanging up completes it in Asterisk
    row(S.ANSWERED, K.TARGET_HANGUP, ends(S.CANCELLED, return_to_agent=True)),
    row(S.ANSWERED, K.CALLER_HANGUP, ends(S.ABANDONED)),
    row(S.ANSWERED, {K.ACK, K.TARGET_DIALING, K.DIAL_END, K.BLIND_DONE, K.TICK}, ignore),
))

#: blind: BlindTransfer sends the caller off alone; the same rows in every active state
BLIND_TABLE: Table = build_table((
    *_SHARED_ROWS,
    row(ACTIVE_STATES, K.BLIND_DONE, T._blind_result),
    row(ACTIVE_STATES, K.ACK, T._blind_ack),
    row(ACTIVE_STATES, {K.TARGET_DIALING, K.DIAL_END}, ends(S.BLIND)),  # the caller is already dialing it
    row(ACTIVE_STATES, K.CALLER_HANGUP, _abandoned_unheard),
    row(ACTIVE_STATES, K.TRANSFERER_HANGUP, T._blind_agent_left),
    row(ACTIVE_STATES, K.TICK, T._blind_setup_timeout),
    row(ACTIVE_STATES, {K.TARGET_HANGUP, K.ATTENDED_DONE}, ignore),
))

#: mode → its table; `Transfer.feed` looks every input up here
TRANSITIONS: Mapping[Mode, Table] = {
    Mode.ATTENDED: CONSULT_TABLE, Mode.THREEWAY: CONSULT_TABLE, Mode.ONEKEY: CONSULT_TABLE,
    Mode.BLIND: BLIND_TABLE,
}
