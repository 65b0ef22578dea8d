"""One agent transfer as a pure state machine: AMI-derived inputs in, actions out, no I/O.

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

Asterisk's own attended-transfer machinery (``Atxfer``, ``atxfernoanswertimeout``,
``atxferthreeway``) does the call handling; this machine only decides what happened
and what the controller must do about it (return the caller to the agent, mark the
ticket for work-order dispatch 工单派转, tell the ticket assembler).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Union


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
# Each input carries `at` (seconds on one clock, as the adapter observed it).


@dataclass(frozen=True)
class ActionAck:
    """Asterisk's answer to the Atxfer/BlindTransfer action. For Atxfer, ok means only "queued"."""

    ok: bool
    at: float
    message: str = ""


@dataclass(frozen=True)
class TargetDialing:
    """The target leg exists and is being dialed (DialBegin from the hotline-transfer context)."""

    at: float


@dataclass(frozen=True)
class DialEnd:
    """The target leg's Dial ended: ANSWER, BUSY, NOANSWER, CANCEL, CHANUNAVAIL, CONGESTION, …"""

    status: str
    at: float


@dataclass(frozen=True)
class TargetHangup:
    at: float


@dataclass(frozen=True)
class TransfererHangup:
    """The agent's channel hung up."""

    at: float


@dataclass(frozen=True)
class CallerHangup:
    at: float


@dataclass(frozen=True)
class AttendedTransferDone:
    """AMI AttendedTransfer: Result (Success/Fail/Invalid/Not Permitted) and DestType (Bridge/App/Link/Threeway/Fail)."""

    result: str
    dest_type: str
    at: float


@dataclass(frozen=True)
class BlindTransferDone:
    """AMI BlindTransfer: Result (Success/Fail/Invalid/Not Permitted)."""

    result: str
    at: float


@dataclass(frozen=True)
class Tick:
    """Time passes; lets the machine give up when Asterisk's events never come."""

    at: float


@dataclass(frozen=True)
class Lost:
    """The controller lost track of this transfer (restart, no way to re-attach): record it, never strand it."""

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
    "BUSY": State.BUSY,
    "NOANSWER": State.NO_ANSWER,
    "CHANUNAVAIL": State.FAILED,
    "CONGESTION": State.FAILED,
    "DONTCALL": State.FAILED,
    "TORTURE": State.FAILED,
    "INVALIDARGS": State.FAILED,
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
        """Apply one input; total over every (state, input) pair, never raises on valid inputs."""
        if self.closed:
            return []
        if self.state is State.THREEWAY:
            return self._in_threeway(inp)
        if self.state in TERMINAL_STATES:  # pragma: no cover - terminal non-threeway states are closed
            self.closed = True
            return []
        if isinstance(inp, Lost):
            return self._end(State.ABANDONED, inp.at, work_order=self.answered_at is None, reason="lost track")
        if self.mode is Mode.BLIND:
            return self._blind(inp)
        if self.state is State.REQUESTED:
            return self._requested(inp)
        if self.state is State.RINGING:
            return self._ringing(inp)
        return self._answered(inp)

    def snapshot(self) -> dict[str, object]:
        return {
            "id": self.id, "target": self.target, "kind": self.kind, "mode": str(self.mode),
            "agent": self.agent, "state": str(self.state), "linkedid": self.linkedid,
            "started_at": self.started_at, "ringing_at": self.ringing_at, "answered_at": self.answered_at,
            "ended_at": self.ended_at, "dial_status": self.dial_status, "work_order": self.work_order,
            "closed": self.closed,
        }

    # ------------------------------------------------------------------ per state
    def _blind(self, inp: Input) -> list[Action]:
        """Blind: only "did Asterisk take the transfer" matters; the caller's own dialplan handles failure."""
        if isinstance(inp, BlindTransferDone):
            return self._end(State.BLIND if _ok(inp.result) else State.FAILED, inp.at)
        if isinstance(inp, ActionAck):
            return self._end(State.BLIND if inp.ok else State.FAILED, inp.at)
        if isinstance(inp, (TargetDialing, DialEnd)):
            return self._end(State.BLIND, inp.at)  # the caller is already dialing the target
        if isinstance(inp, CallerHangup):
            return self._end(State.ABANDONED, inp.at, work_order=True)
        if isinstance(inp, TransfererHangup):
            # BlindTransfer hangs the agent up once the caller is on its way; the ack/event decides.
            self.agent_gone = True
            return []
        if isinstance(inp, Tick) and inp.at >= self.started_at + self.setup_timeout_s:
            return self._end(State.BLIND if self.agent_gone else State.FAILED, inp.at)
        return []

    def _requested(self, inp: Input) -> list[Action]:
        if isinstance(inp, ActionAck):
            return [] if inp.ok else self._end(State.FAILED, inp.at)
        if isinstance(inp, TargetDialing):
            self.state, self.ringing_at = State.RINGING, inp.at
            self._log(inp.at, "ringing")
            return []
        if isinstance(inp, (DialEnd, TargetHangup, AttendedTransferDone)):
            self.ringing_at = inp.at  # the Dial start was missed; treat as ringing from now
            self.state = State.RINGING
            return self._ringing(inp)
        if isinstance(inp, (CallerHangup, TransfererHangup)):
            return self._end(State.ABANDONED, inp.at, work_order=True)
        if isinstance(inp, Tick) and inp.at >= self.started_at + self.setup_timeout_s:
            return self._end(State.FAILED, inp.at, reason="target leg never appeared")
        return []

    def _ringing(self, inp: Input) -> list[Action]:
        if isinstance(inp, DialEnd):
            status = inp.status.upper()
            if status == "ANSWER":
                return self._answer(inp.at)
            self.dial_status = status
            return self._target_failed(inp.at)
        if isinstance(inp, TargetHangup):
            return self._target_failed(inp.at)
        if isinstance(inp, CallerHangup):
            return self._end(State.ABANDONED, inp.at, work_order=True)
        if isinstance(inp, TransfererHangup):
            # atxferdropcall=no: Asterisk keeps the caller with the still-ringing target (blond transfer)
            self.agent_gone = True
            self._log(inp.at, "agent_left_while_ringing")
            return []
        if isinstance(inp, AttendedTransferDone):
            if not _ok(inp.result):
                return self._end(State.FAILED, inp.at, reason=f"attended transfer {inp.result}")
            if inp.dest_type.lower() == "threeway":
                self.merged = True
            else:
                self.agent_gone = True
            return []
        if isinstance(inp, Tick):
            since = self.ringing_at if self.ringing_at is not None else self.started_at
            if inp.at >= since + self.timeout_s + self.grace_s:
                self.dial_status = self.dial_status or "NOANSWER"
                return self._end(State.NO_ANSWER, inp.at, return_to_agent=True)
            return []
        if isinstance(inp, ActionAck):
            return [] if inp.ok else self._end(State.FAILED, inp.at)
        return []  # TargetDialing again, BlindTransferDone: nothing new

    def _answered(self, inp: Input) -> list[Action]:
        if isinstance(inp, AttendedTransferDone):
            if not _ok(inp.result):
                self._log(inp.at, f"completion_refused:{inp.result}")
                return []  # Asterisk keeps the consultation up; the agent may retry or abort
            if inp.dest_type.lower() == "threeway":
                return self._end(State.THREEWAY, inp.at)
            return self._end(State.COMPLETED, inp.at)
        if isinstance(inp, TransfererHangup):
            # hanging up during the consultation completes an attended transfer in Asterisk
            return self._end(State.COMPLETED, inp.at)
        if isinstance(inp, TargetHangup):
            return self._end(State.CANCELLED, inp.at, return_to_agent=True)
        if isinstance(inp, CallerHangup):
            return self._end(State.ABANDONED, inp.at)
        return []  # DialEnd/TargetDialing repeats, Tick (a consultation may last), acks

    def _in_threeway(self, inp: Input) -> list[Action]:
        if isinstance(inp, Lost):
            self.closed = True
            return []
        if isinstance(inp, TransfererHangup):
            self.state, self.closed, self.ended_at = State.COMPLETED, True, inp.at
            self._log(inp.at, "completed")
            return [self._event()]
        if isinstance(inp, (CallerHangup, TargetHangup)):
            self.closed = True
            self._log(inp.at, "threeway_ended")
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
        if self.mode is Mode.THREEWAY:
            return [MergeThreeway()]
        if self.mode is Mode.ONEKEY:
            return [CompleteTransfer()]
        return []

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
        return EmitUserEvent("HotlineTransfer", (
            ("Target", self.target), ("Kind", self.kind), ("Mode", str(self.mode)),
            ("Outcome", str(self.state)), ("Agent", self.agent), ("Linkedid", self.linkedid),
            ("TransferId", self.id), ("WorkOrder", "1" if self.work_order else "0"),
        ))

    def _log(self, at: float, what: str) -> None:
        self.history.append((at, what))


def _ok(result: str) -> bool:
    return result.strip().lower() == "success"
