"""Agent states shared by every node of a cluster (docs/cluster.md): what a node's controller takes from a saved state.

Each controller saves its agents' states in the shared store (routing/agent_service.py, `agent_states`). On a
cluster every node's queues list every seat, so a state set through one node's controller (签入/签出, 示忙/示闲,
after-call work) must hold on the others too. Each controller therefore reads the saved states every
`cluster.agent_sync_s` and mirrors those that differ from its own machines: `mirror()` decides, pure.

- A mirrored state is taken as is (state, reason, since, queues, pause, agent ID) and only *sent* to this node's
  Asterisk — never saved nor recorded again: the controller that made the change did that, and a mirror that
  saved would look like a new change to every other node (a loop, and doubled agent_events).
- `since` orders the changes: a saved state older than this node's own (its change not yet saved, or already
  superseded here) is not taken.
- Ringing and talking belong to the node that has the call. Saved by another node they are not taken (the
  seat is busy there; Kamailio answers 486 to this node's queue meanwhile); the after-call work that follows is.
  While this node has the seat in a call, a busy set elsewhere becomes the machine's pending busy (applied when
  the call ends, as a key during the call would), and nothing else is taken.
- After-call work taken from another node has no timer here (`wrap_until` None): the node that handled the
  call ends it, and this node mirrors the ready that follows.
- 离线 (the phone unreachable) is each node's own finding: every node qualifies the seat through Kamailio and
  sets it itself. A busy 离线 saved elsewhere is not taken, nor a ready while this node finds the phone gone
  (its `offline` mark stays as this node's device state has it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from routing.agent import OFFLINE_REASON, SIGNED_OUT_REASON, Agent, AgentState

#: states owned by the node that has the call
IN_CALL = frozenset({AgentState.RINGING, AgentState.TALKING})


@dataclass(frozen=True)
class Mirror:
    """Take `saved` into the machine and pause each queue the seat may serve as `pauses` says
    (queue → (paused, reason))."""

    state: AgentState
    reason: str
    since: float
    queues: tuple[str, ...]
    paused: bool
    agent_id: str
    pauses: tuple[tuple[str, bool, str], ...]


@dataclass(frozen=True)
class PendingBusy:
    """The seat is in a call on this node: busy with `reason` when it ends."""

    reason: str


def _view(a: Agent) -> tuple[Any, ...]:
    return (a.state, a.reason, a.queues, a.paused, a.agent_id)


def mirror(a: Agent, saved: Mapping[str, Any]) -> Mirror | PendingBusy | None:
    """What this node's machine `a` takes from `saved` (a stored snapshot of the same seat), None: nothing."""
    try:
        state = AgentState(saved["state"])
    except (KeyError, ValueError):
        return None
    since = float(saved.get("since") or 0.0)
    if state in IN_CALL or since < a.since:
        return None
    reason = str(saved.get("reason") or "")
    if (state is AgentState.BUSY and reason == OFFLINE_REASON) or (a.offline and state is AgentState.READY):
        return None  # 离线 is each node's own view of the phone (its qualify through Kamailio)
    if a.state in IN_CALL:
        if state is AgentState.BUSY and a.pending_busy != reason:
            return PendingBusy(reason)
        return None
    queues = tuple(q for q in saved.get("queues") or () if q in a.allowed)
    if state is not AgentState.SIGNED_OUT and not queues:
        return None  # nothing this node's configuration lets the seat serve: keep what it has
    if state is AgentState.SIGNED_OUT:
        queues = ()
    paused = bool(saved.get("paused", state in (AgentState.BUSY, AgentState.WRAP_UP)))
    agent_id = str(saved.get("agent_id") or a.home)
    if _view(a) == (state, reason, queues, paused, agent_id):
        return None
    pauses = tuple((q, True, SIGNED_OUT_REASON) if q not in queues else (q, paused, reason if paused else "")
                   for q in a.allowed)
    return Mirror(state, reason, since, queues, paused, agent_id, pauses)


def take(a: Agent, m: Mirror | PendingBusy) -> None:
    """Put the decision into the machine (the adapter then sends `m.pauses`)."""
    if isinstance(m, PendingBusy):
        a.pending_busy = m.reason
        return
    a.state, a.reason, a.since, a.queues, a.paused, a.agent_id = (m.state, m.reason, m.since, m.queues, m.paused,
                                                                  m.agent_id)
    a.wrap_until = None  # the node that handled the call owns the timer
