"""One seat agent's state as a pure state machine: keys/API calls, queue events and timers in; queue-member actions out.

States, in the words 12345 staff use (Huawei CEC and the provincial platforms have the same set)::

    签出 signed_out ──sign in──► 示闲 ready ──AgentCalled──► 振铃 ringing ──AgentConnect──► 通话 talking
         ▲                        ▲  │ ▲                       │ RingNoAnswer (N in a row → 示忙 未接)   │ AgentComplete
         │                        │  │ └───────────────────────┘                                        ▼
         └──── sign out (any) ────┘  └──busy(reason)──► 示忙 busy ◄──busy── 话后整理 wrap_up ◄──────────┘
                                        ready ◄─────────────┘     ready key / wrap-up time over ─► ready

Outputs are Asterisk queue-member actions (`QueueAdd`, `QueueRemove`, `QueuePause` with a reason) and a
`StateChanged` for every move (who, when, why; the time spent in the state left), which the adapter
records and turns into the Mandarin confirmation prompt.

After-call work: when the call's queue has a wrap-up time, the member is paused *at AgentConnect* (reason
话后整理), so no next queue call can slip in between the hang-up and a pause sent after it; the agent then
gets no queue call until the timer (or the ready key) unpauses. Asterisk's own ``wrapuptime`` is not used:
it cannot be ended early by the agent.

The table is total: `build_table` refuses a (state, input) pair defined twice or left out, and pairs where
nothing happens name `ignore` (or `refuse`, which answers the key with "not possible now").

The phone's reachability (离线) is an input like the others (Unreachable/Reachable, from Asterisk's device
state): a ready agent whose phone is gone becomes busy 离线 (paused) and ready again when it is back;
signed-out and busy agents are only marked (`offline`), recorded as a same-state change.

Why one module: it is one machine — its inputs, actions, handlers and the table that names them are read
together when checking a transition; split, each cell would send the reader across three files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Union

from routing import state_table
from routing.state_table import Row, row

if TYPE_CHECKING:
    from model.config import Config


class AgentState(StrEnum):
    SIGNED_OUT = "signed_out"
    READY = "ready"
    RINGING = "ringing"
    TALKING = "talking"
    WRAP_UP = "wrap_up"
    BUSY = "busy"


#: the words on a supervisor's screen and in the phone's confirmation prompt
STATE_LABELS: Mapping[AgentState, str] = {
    AgentState.SIGNED_OUT: "签出", AgentState.READY: "示闲", AgentState.RINGING: "振铃",
    AgentState.TALKING: "通话", AgentState.WRAP_UP: "话后整理", AgentState.BUSY: "示忙",
}
SIGNED_IN = frozenset(set(AgentState) - {AgentState.SIGNED_OUT})
#: the reason of the pause that keeps queue calls away during after-call work
WRAP_UP_REASON = "话后整理"
#: the busy reason set when an agent misses `miss_limit` queue calls in a row
MISSED_REASON = "未接"
#: the pause reason of a signed-out agent (its static member stays in queues.conf, paused)
SIGNED_OUT_REASON = "签出"
#: the busy reason set when the agent's phone is unreachable (unregistered, or not answering SIP OPTIONS)
OFFLINE_REASON = "离线"


class InputKind(StrEnum):
    SIGN_IN = "sign_in"
    SIGN_OUT = "sign_out"
    SET_BUSY = "set_busy"
    SET_READY = "set_ready"
    EXTEND_WRAP_UP = "extend_wrap_up"
    CALLED = "called"
    CONNECTED = "connected"
    COMPLETED = "completed"
    RING_NO_ANSWER = "ring_no_answer"
    TICK = "tick"
    UNREACHABLE = "unreachable"
    REACHABLE = "reachable"
    HOT_DESK = "hot_desk"


# --------------------------------------------------------------------------- inputs
# `by`/`why`: who asked (the agent's own phone: None; a supervisor's name) and why (强制签出 …).

@dataclass(frozen=True)
class SignIn:
    """签入: join `queues` (empty: every queue the seat may serve) ready, or, already signed in, change them."""
    kind: ClassVar[InputKind] = InputKind.SIGN_IN
    at: float
    queues: tuple[str, ...] = ()
    by: str | None = None
    why: str = ""


@dataclass(frozen=True)
class SignOut:
    kind: ClassVar[InputKind] = InputKind.SIGN_OUT
    at: float
    by: str | None = None
    why: str = ""


@dataclass(frozen=True)
class SetBusy:
    """示忙 with a reason label (小休, 就餐, …); during a call it applies when the call ends."""
    kind: ClassVar[InputKind] = InputKind.SET_BUSY
    at: float
    reason: str
    by: str | None = None
    why: str = ""


@dataclass(frozen=True)
class SetReady:
    """示闲: back from busy, or after-call work ended early."""
    kind: ClassVar[InputKind] = InputKind.SET_READY
    at: float
    by: str | None = None
    why: str = ""


@dataclass(frozen=True)
class ExtendWrapUp:
    kind: ClassVar[InputKind] = InputKind.EXTEND_WRAP_UP
    at: float
    by: str | None = None
    why: str = ""


@dataclass(frozen=True)
class Called:
    """AMI AgentCalled: a queue call rings the agent."""
    kind: ClassVar[InputKind] = InputKind.CALLED
    at: float
    queue: str
    linkedid: str = ""


@dataclass(frozen=True)
class Connected:
    """AMI AgentConnect: the agent answered a queue call."""
    kind: ClassVar[InputKind] = InputKind.CONNECTED
    at: float
    queue: str
    linkedid: str = ""


@dataclass(frozen=True)
class Completed:
    """AMI AgentComplete: the queue call ended."""
    kind: ClassVar[InputKind] = InputKind.COMPLETED
    at: float
    queue: str
    linkedid: str = ""


@dataclass(frozen=True)
class RingNoAnswer:
    """AMI AgentRingNoAnswer: rang for the queue's ring time, not answered (a missed call)."""
    kind: ClassVar[InputKind] = InputKind.RING_NO_ANSWER
    at: float
    queue: str
    linkedid: str = ""


@dataclass(frozen=True)
class Tick:
    """Time passes (ends after-call work)."""
    kind: ClassVar[InputKind] = InputKind.TICK
    at: float


@dataclass(frozen=True)
class Unreachable:
    """The seat's phone is gone (Asterisk: device UNAVAILABLE — unregistered, or no answer to qualify)."""
    kind: ClassVar[InputKind] = InputKind.UNREACHABLE
    at: float
    why: str = "话机离线"


@dataclass(frozen=True)
class Reachable:
    """The seat's phone is back (registered and answering)."""
    kind: ClassVar[InputKind] = InputKind.REACHABLE
    at: float
    why: str = "话机在线"


@dataclass(frozen=True)
class HotDesk:
    """签入 by agent ID + PIN (the PIN already checked): the seat becomes `agent_id`'s, signed in to `queues`
    (empty: every queue the seat serves). An agent signed in there before is signed out first."""
    kind: ClassVar[InputKind] = InputKind.HOT_DESK
    at: float
    agent_id: str
    queues: tuple[str, ...] = ()
    by: str | None = None
    why: str = ""


Input = Union[SignIn, SignOut, SetBusy, SetReady, ExtendWrapUp, Called, Connected, Completed, RingNoAnswer, Tick,
              Unreachable, Reachable, HotDesk]


# --------------------------------------------------------------------------- actions

@dataclass(frozen=True)
class QueueAdd:
    queue: str
    paused: bool = False
    reason: str = ""


@dataclass(frozen=True)
class QueueRemove:
    queue: str


@dataclass(frozen=True)
class QueuePause:
    """Pause (or unpause) the member in every queue it is in."""
    paused: bool
    reason: str = ""


@dataclass(frozen=True)
class StateChanged:
    """The agent moved; `seconds` is the time spent in `old` (with `old_reason`), None when there was no
    previous state (a seat's very first sign-in). `agent` is the agent ID (工号) of who was at `seat` when
    it moved; `cause` the input kind that moved it (connected: a call answered; ring_no_answer: a miss)."""
    agent: str
    old: AgentState
    new: AgentState
    at: float
    seconds: float | None
    reason: str = ""
    old_reason: str = ""
    by: str | None = None
    why: str = ""
    queue: str = ""
    linkedid: str = ""
    seat: str = ""
    cause: str = ""


@dataclass(frozen=True)
class Refused:
    """The key or call made no sense in this state (the phone says so); nothing changed."""
    agent: str
    kind: InputKind
    state: AgentState


@dataclass(frozen=True)
class Missed:
    """A queue call rang the agent and was not answered; `in_a_row` counts since the last answer."""
    agent: str
    queue: str
    at: float
    in_a_row: int
    linkedid: str = ""
    seat: str = ""


Action = Union[QueueAdd, QueueRemove, QueuePause, StateChanged, Refused, Missed]


@dataclass(frozen=True)
class AgentPolicy:
    """The centre's settings that the machine applies (from `agents:` and each queue's `wrapup_s`)."""
    #: queue → after-call work seconds (absent or 0: none)
    wrapup_s: Mapping[str, int] = field(default_factory=dict)
    #: how much one extend key adds to after-call work
    extend_s: int = 30
    #: misses in a row that set the agent busy (0: never)
    miss_limit: int = 3


# --------------------------------------------------------------------------- the record

@dataclass
class Agent:
    """One seat's agent machine: `id` is the seat (its extension, the static queue member), `allowed` the queues
    it may serve (the seat's skills), `agent_id` the agent ID (工号) of who works it now — `home` (the seat's
    configured agent ID) unless someone hot-desked onto it; a sign-out gives the seat back to `home`."""

    id: str
    allowed: tuple[str, ...]
    policy: AgentPolicy = field(default_factory=AgentPolicy)
    state: AgentState = AgentState.SIGNED_OUT
    reason: str = ""
    since: float = 0.0
    queues: tuple[str, ...] = ()
    wrap_until: float | None = None
    misses: int = 0
    #: a busy reason keyed during a call: applied when the call ends
    pending_busy: str | None = None
    #: the queue and call the agent is ringing for or talking on
    queue: str = ""
    linkedid: str = ""
    #: whether Asterisk has the member paused (as this machine last told it)
    paused: bool = False
    #: the phone is unreachable (离线): a ready agent is set busy (离线) until it is back
    offline: bool = False
    #: the seat's own agent ID ("" → the seat's key) and who works the seat now ("" → home)
    home: str = ""
    agent_id: str = ""

    def __post_init__(self) -> None:
        self.home = self.home or self.id
        self.agent_id = self.agent_id or self.home

    def feed(self, inp: Input) -> list[Action]:
        return TABLE[(self.state, inp.kind)](self, inp)

    def member_actions(self) -> list[Action]:
        """What Asterisk must be told to have this agent's membership back (controller or Asterisk restart)."""
        return [QueueAdd(q, paused=self.paused, reason=self.reason if self.paused else "") for q in self.queues]

    def restored(self, at: float) -> None:
        """After a restart nobody is ringing or talking any more: those (and after-call work) become ready."""
        if self.state in (AgentState.RINGING, AgentState.TALKING, AgentState.WRAP_UP):
            self.state, self.reason, self.wrap_until, self.since = AgentState.READY, "", None, at
            self.paused = False
        self.pending_busy, self.queue, self.linkedid = None, "", ""
        # the phone's reachability is asked of Asterisk again at login; a 离线 busy is its mark
        self.offline = self.state is AgentState.BUSY and self.reason == OFFLINE_REASON

    # ---------------------------------------------------------------- helpers
    def _move(self, new: AgentState, inp: Input, reason: str = "") -> StateChanged:
        seconds = max(0.0, inp.at - self.since) if self.since else None  # since 0: no previous state
        change = StateChanged(self.agent_id, self.state, new, inp.at, seconds, reason,
                              self.reason, getattr(inp, "by", None), getattr(inp, "why", ""),
                              getattr(inp, "queue", "") or self.queue, getattr(inp, "linkedid", "") or self.linkedid,
                              self.id, inp.kind.value)
        self.state, self.reason, self.since = new, reason, inp.at
        if new is not AgentState.WRAP_UP:
            self.wrap_until = None
        return change

    def _pause(self, paused: bool, reason: str = "") -> QueuePause:
        self.paused = paused
        return QueuePause(paused, reason)

    def _unpaused(self) -> list[Action]:
        """Unpause if paused (on the way to ready)."""
        return [self._pause(False)] if self.paused else []

    def _choose(self, asked: Iterable[str]) -> tuple[str, ...]:
        asked = tuple(asked)
        return tuple(q for q in self.allowed if not asked or q in asked)

    # ---------------------------------------------------------------- handlers
    def _sign_in(self, inp: SignIn | HotDesk) -> list[Action]:
        queues = self._choose(inp.queues)
        if not queues:
            return [Refused(self.id, inp.kind, self.state)]
        self.queues, self.misses, self.paused = queues, 0, False
        if self.offline:  # signed in (by a supervisor) while the phone is away: busy 离线 until it is back
            self.paused = True
            return [*(QueueAdd(q, paused=True, reason=OFFLINE_REASON) for q in queues),
                    self._move(AgentState.BUSY, inp, OFFLINE_REASON)]
        return [*(QueueAdd(q) for q in queues), self._move(AgentState.READY, inp)]

    def _change_queues(self, inp: SignIn | HotDesk) -> list[Action]:
        queues = self._choose(inp.queues)
        if not queues:
            return [Refused(self.id, inp.kind, self.state)]
        paused = self.paused
        out: list[Action] = [QueueRemove(q) for q in self.queues if q not in queues]
        out += [QueueAdd(q, paused=paused, reason=self.reason or (WRAP_UP_REASON if paused else ""))
                for q in queues if q not in self.queues]
        self.queues = queues
        return out

    def _sign_out(self, inp: SignOut | HotDesk) -> list[Action]:
        out: list[Action] = [QueueRemove(q) for q in self.queues]
        self.queues, self.pending_busy, self.misses, self.queue, self.linkedid = (), None, 0, "", ""
        self.paused = False
        out.append(self._move(AgentState.SIGNED_OUT, inp))
        self.agent_id = self.home  # a hot-desked agent leaves the seat with the sign-out
        return out

    def _hot_desk(self, inp: HotDesk) -> list[Action]:
        """The seat becomes `inp.agent_id`'s: the same agent again only changes queues; another agent signed
        in here is signed out first (two moves: theirs to 签出, the new agent's to 示闲)."""
        if not self._choose(inp.queues):
            return [Refused(self.id, inp.kind, self.state)]
        if self.state is not AgentState.SIGNED_OUT and inp.agent_id == self.agent_id:
            return self._change_queues(inp)
        out: list[Action] = self._sign_out(inp) if self.state is not AgentState.SIGNED_OUT else []
        self.agent_id = inp.agent_id
        return [*out, *self._sign_in(inp)]

    def _busy(self, inp: SetBusy) -> list[Action]:
        return [self._pause(True, inp.reason), self._move(AgentState.BUSY, inp, inp.reason)]

    def _busy_after_call(self, inp: SetBusy) -> list[Action]:
        self.pending_busy = inp.reason
        return []

    def _ready(self, inp: Input) -> list[Action]:
        self.misses = 0 if self.state is AgentState.BUSY else self.misses
        return [*self._unpaused(), self._move(AgentState.READY, inp)]

    def _ready_key(self, inp: SetReady) -> list[Action]:
        """示闲 from busy: not while the phone is unreachable (it could not answer the call)."""
        return [Refused(self.id, inp.kind, self.state)] if self.offline else self._ready(inp)

    def _mark(self, inp: Input) -> list[Action]:
        """A reachability change that leaves the state as it is: recorded as a same-state change (the time
        in the state is split, never lost) so agent_events says when the phone went away and came back."""
        return [self._move(self.state, inp, self.reason)]

    def _ringing(self, inp: Called) -> list[Action]:
        self.queue, self.linkedid = inp.queue, inp.linkedid
        return [self._move(AgentState.RINGING, inp)]

    def _connected(self, inp: Connected) -> list[Action]:
        self.queue, self.linkedid, self.misses = inp.queue, inp.linkedid, 0
        out: list[Action] = []
        if self.policy.wrapup_s.get(inp.queue, 0) > 0 and self.state is not AgentState.BUSY:
            out.append(self._pause(True, WRAP_UP_REASON))  # no next call between hang-up and wrap-up
        elif self.state is AgentState.BUSY:  # a call slipped past the pause: after it, busy again
            self.pending_busy = self.reason
        return [*out, self._move(AgentState.TALKING, inp)]

    def _completed(self, inp: Completed) -> list[Action]:
        wrap = self.policy.wrapup_s.get(inp.queue or self.queue, 0)
        busy, self.pending_busy = self.pending_busy, None
        if busy is not None:
            out: list[Action] = [self._pause(True, busy), self._move(AgentState.BUSY, inp, busy)]
        elif wrap > 0:
            out = [] if self.paused else [self._pause(True, WRAP_UP_REASON)]
            out.append(self._move(AgentState.WRAP_UP, inp, WRAP_UP_REASON))
            self.wrap_until = inp.at + wrap
        else:
            out = self._unpaused()
            out.append(self._move(AgentState.READY, inp))
        self.queue, self.linkedid = "", ""
        return out

    def _missed(self, inp: RingNoAnswer) -> list[Action]:
        self.misses += 1
        out: list[Action] = [Missed(self.agent_id, inp.queue, inp.at, self.misses, inp.linkedid, self.id)]
        limit = self.policy.miss_limit
        if limit and self.misses >= limit:
            out += [self._pause(True, MISSED_REASON), self._move(AgentState.BUSY, inp, MISSED_REASON)]
        else:
            out += [*self._unpaused(), self._move(AgentState.READY, inp)]
        self.queue, self.linkedid = "", ""
        return out

    def _wrap_tick(self, inp: Tick) -> list[Action]:
        if self.wrap_until is not None and inp.at >= self.wrap_until:
            return self._ready(inp)
        return []

    def _extend(self, inp: ExtendWrapUp) -> list[Action]:
        self.wrap_until = max(self.wrap_until or inp.at, inp.at) + self.policy.extend_s
        return []

    def _offline_busy(self, inp: Unreachable) -> list[Action]:
        """Ready, ringing or in after-call work and the phone is gone: busy 离线 (paused, queues skip it)."""
        if self.offline:
            return []
        self.offline, self.queue, self.linkedid = True, "", ""
        return [self._pause(True, OFFLINE_REASON), self._move(AgentState.BUSY, inp, OFFLINE_REASON)]

    def _offline_after_call(self, inp: Unreachable) -> list[Action]:
        """On a call and the phone is gone: the end of the call sets busy 离线 (unless a busy reason was keyed)."""
        self.offline = True
        self.pending_busy = self.pending_busy or OFFLINE_REASON
        return []

    def _offline_mark(self, inp: Unreachable) -> list[Action]:
        """Signed out or busy already: only marked (recorded)."""
        if self.offline:
            return []
        self.offline = True
        return self._mark(inp)

    def _back(self, inp: Reachable) -> list[Action]:
        """The phone is back: busy 离线 becomes ready; signed out or another busy reason is marked back."""
        if not self.offline:
            return []
        self.offline = False
        if self.state is AgentState.BUSY and self.reason == OFFLINE_REASON:
            return self._ready(inp)
        return self._mark(inp)

    def _back_during_call(self, inp: Reachable) -> list[Action]:
        self.offline = False
        self.pending_busy = None if self.pending_busy == OFFLINE_REASON else self.pending_busy
        return []

    def _back_unmarked(self, inp: Reachable) -> list[Action]:
        """Ready, ringing, after-call work: the phone was never marked away in these (nothing to record)."""
        self.offline = False
        return []

Handler = Callable[[Agent, Input], list[Action]]


def ignore(a: Agent, inp: Input) -> list[Action]:
    """Nothing happens: stale, repeated, or meaningless here (a queue event for a member we did not add)."""
    return []


def refuse(a: Agent, inp: Input) -> list[Action]:
    """A key that cannot apply now (busy while signed out, extend outside after-call work): said, not done."""
    return [Refused(a.id, inp.kind, a.state)]




def build_table(rows: Iterable[Row]) -> dict[tuple[AgentState, InputKind], Handler]:
    """This machine's total table (routing/state_table.py: a pair defined twice or left out is a ValueError)."""
    return state_table.build_table(rows, AgentState, InputKind)


S, K, A = AgentState, InputKind, Agent
_QUEUE_EVENTS = {K.CALLED, K.CONNECTED, K.COMPLETED, K.RING_NO_ANSWER}

TABLE: Mapping[tuple[AgentState, InputKind], Handler] = build_table((
    # 签出: only signing in does anything; queue events are for a member we never added
    row(S.SIGNED_OUT, K.SIGN_IN, A._sign_in),
    row(S.SIGNED_OUT, {K.SIGN_OUT, K.TICK, *_QUEUE_EVENTS}, ignore),
    row(S.SIGNED_OUT, {K.SET_BUSY, K.SET_READY, K.EXTEND_WRAP_UP}, refuse),
    # every signed-in state
    row(SIGNED_IN, K.SIGN_IN, A._change_queues),
    row(SIGNED_IN, K.SIGN_OUT, A._sign_out),
    row(SIGNED_IN - {S.WRAP_UP}, K.EXTEND_WRAP_UP, refuse),
    # 示闲
    row(S.READY, K.SET_BUSY, A._busy),
    row(S.READY, {K.SET_READY, K.TICK, K.RING_NO_ANSWER}, ignore),
    row(S.READY, K.CALLED, A._ringing),
    row(S.READY, K.CONNECTED, A._connected),  # AgentCalled lost: the answer still counts
    row(S.READY, K.COMPLETED, A._completed),
    # 振铃
    row(S.RINGING, K.CONNECTED, A._connected),
    row(S.RINGING, K.RING_NO_ANSWER, A._missed),
    row(S.RINGING, K.COMPLETED, A._completed),
    row(S.RINGING, K.SET_BUSY, A._busy),
    row(S.RINGING, {K.CALLED, K.TICK}, ignore),
    # ready while a call rings or is on: said not done (the phone must not claim 已示闲)
    row(S.RINGING, K.SET_READY, refuse),
    # 通话: a busy key applies when the call ends
    row(S.TALKING, K.COMPLETED, A._completed),
    row(S.TALKING, K.SET_BUSY, A._busy_after_call),
    row(S.TALKING, {K.CALLED, K.CONNECTED, K.RING_NO_ANSWER, K.TICK}, ignore),
    row(S.TALKING, K.SET_READY, refuse),
    # 话后整理: the timer or the ready key ends it; the extend key lengthens it
    row(S.WRAP_UP, K.TICK, A._wrap_tick),
    row(S.WRAP_UP, K.SET_READY, A._ready),
    row(S.WRAP_UP, K.EXTEND_WRAP_UP, A._extend),
    row(S.WRAP_UP, K.SET_BUSY, A._busy),
    row(S.WRAP_UP, K.CALLED, A._ringing),  # Asterisk rang a paused member (a pause raced): follow it
    row(S.WRAP_UP, K.CONNECTED, A._connected),
    row(S.WRAP_UP, {K.COMPLETED, K.RING_NO_ANSWER}, ignore),
    # 示忙
    row(S.BUSY, K.SET_READY, A._ready_key),
    row(S.BUSY, K.SET_BUSY, A._busy),  # a new reason
    row(S.BUSY, K.CONNECTED, A._connected),
    row(S.BUSY, {K.CALLED, K.COMPLETED, K.RING_NO_ANSWER, K.TICK}, ignore),
    # the phone's reachability (Asterisk's device state of PJSIP/<seat>): 离线
    row({S.READY, S.RINGING, S.WRAP_UP}, K.UNREACHABLE, A._offline_busy),
    row(S.TALKING, K.UNREACHABLE, A._offline_after_call),
    row({S.SIGNED_OUT, S.BUSY}, K.UNREACHABLE, A._offline_mark),
    row({S.SIGNED_OUT, S.BUSY}, K.REACHABLE, A._back),
    row(S.TALKING, K.REACHABLE, A._back_during_call),
    row({S.READY, S.RINGING, S.WRAP_UP}, K.REACHABLE, A._back_unmarked),
    # hot-desking (agent ID + PIN, checked by the adapter): not while a call rings or is on
    row({S.SIGNED_OUT, S.READY, S.WRAP_UP, S.BUSY}, K.HOT_DESK, A._hot_desk),
    row({S.RINGING, S.TALKING}, K.HOT_DESK, refuse),
))


def state_words(state: AgentState | str, reason: str = "") -> str:
    """What the phone says after a key: 已签入 / 已示闲 / 已示忙：小休 / 话后整理 / 已签出."""
    state = AgentState(state)
    if state is AgentState.BUSY:
        return f"已示忙：{reason}" if reason else "已示忙"
    if state is AgentState.SIGNED_OUT:
        return "已签出"
    if state is AgentState.READY:
        return "已示闲"
    return STATE_LABELS[state]


def seat_queues(config: "Config", seat: str) -> tuple[str, ...]:
    """The queues a seat may serve (its skills): those whose `members` list it, in config order."""
    return tuple(name for name, q in config.queues.items() if seat in q.members)


def policy_from_config(config: "Config") -> AgentPolicy:
    return AgentPolicy(wrapup_s={name: q.wrapup_s for name, q in config.queues.items() if q.wrapup_s},
                       extend_s=config.agents.wrapup_extend_s, miss_limit=config.agents.miss_limit)


def agents_from_config(config: "Config") -> dict[str, Agent]:
    """Every seat that serves a queue, signed out (the adapter restores or signs them in)."""
    policy = policy_from_config(config)
    return {seat: Agent(seat, seat_queues(config, seat), policy, home=config.agent_id_of(seat)) for seat in config.seats
            if seat_queues(config, seat)}


def call_gone(a: Agent, live_linkedids: AbstractSet[str], agents_on_channels: AbstractSet[str],
              asked_at: float) -> bool:
    """Whether the queue call `a` rings for or talks on has ended although its AgentComplete (or
    AgentRingNoAnswer) never reached us — the event was dropped, or AMI was down at the hang-up.

    `live_linkedids`/`agents_on_channels`: the calls and the agents with a channel in a CoreShowChannels
    answer asked at `asked_at`. An agent whose state began after that question is never judged on it (its
    call may be newer than the answer); one with any live channel of its own is kept (a consultation leg
    of a transfer, say) — a false end would take a talking agent's pause away."""
    if a.state not in (AgentState.RINGING, AgentState.TALKING) or a.since > asked_at:
        return False
    if a.linkedid and a.linkedid in live_linkedids:
        return False
    return a.id not in agents_on_channels
