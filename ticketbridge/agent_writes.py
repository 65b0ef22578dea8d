"""The seat agents' writes as pure functions of a `CallDb` (ticketbridge/call_db.py), each run by the store in one
transaction (ticketbridge/store.py `_call_tx`: in the call-writer thread, as the call writes, on either backend).

`save_agent` runs 2-3 times per answered call (routing/agent_service.py `_worker`): a seat's snapshot, its row in
agent_states inserted or updated in one statement, and one agent_events row per StateChanged or PinRefused.
`save_help` keeps a 多援一 period (routing/agent_help.py) the same way in agent_help.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ticketbridge.call_db import CallDb
from ticketbridge.schema import UTC, AgentEvent, AgentHelp, AgentStateRow

_STATES = AgentStateRow.__table__
_EVENTS = AgentEvent.__table__
_HELP = AgentHelp.__table__


def state_values(snapshot: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The seat's agent_states row from its snapshot (routing.agent_service.snapshot); `agent_id` None: the
    seat's own agent."""
    return {"agent": snapshot["agent"], "state": snapshot["state"], "reason": snapshot.get("reason", ""),
            "since": snapshot["since"], "queues": list(snapshot.get("queues", [])),
            "paused": bool(snapshot.get("paused")), "updated_at": now, "agent_id": snapshot.get("agent_id") or None}


def event_values(c: Any) -> dict[str, Any] | None:
    """The agent_events row of an agent action (every column but id), None for an action that is no event:
    a StateChanged (routing/agent.py), or a PinRefused (routing/agent_service.py: a refused hot-desk PIN,
    old = new). Both have the same keys (`CallDb.insert_rows` inserts them together)."""
    kind = type(c).__name__
    if kind == "StateChanged":
        return {"agent": c.agent, "at": dt.datetime.fromtimestamp(c.at, UTC), "old": str(c.old), "new": str(c.new),
                "reason": c.reason[:32], "old_reason": c.old_reason[:32], "seconds": c.seconds or 0.0,
                "actor": (c.by or None) and c.by[:64], "why": c.why[:200], "queue": c.queue[:64],
                "linkedid": c.linkedid[:64], "seat": c.seat[:32], "cause": c.cause[:24]}
    if kind == "PinRefused":
        return {"agent": c.agent[:32], "at": dt.datetime.fromtimestamp(c.at, UTC), "old": str(c.state),
                "new": str(c.state), "reason": "", "old_reason": "", "seconds": 0.0, "actor": c.agent[:32],
                "why": f"{c.tries} wrong PIN(s) in a row" + ("; locked" if c.locked else ""), "queue": "",
                "linkedid": "", "seat": c.seat[:32], "cause": c.cause[:24]}
    return None


def save_agent(db: CallDb, snapshot: Mapping[str, Any], changes: Sequence[Any], now: dt.datetime) -> None:
    """The seat's row, inserted or updated, and its actions' events."""
    db.upsert(_STATES, state_values(snapshot, now))
    events = [v for v in map(event_values, changes) if v is not None]
    if events:
        db.insert_rows(_EVENTS, events)


def _ts(x: Any) -> dt.datetime | None:
    return None if x is None else dt.datetime.fromtimestamp(float(x), UTC)


def help_values(period: Mapping[str, Any]) -> dict[str, Any]:
    """The agent_help row of a period (routing.agent_help.HelpPeriod.as_dict): started, or ended."""
    return {"id": period["id"], "queue": str(period["queue"])[:64], "agents": [str(a)[:32] for a in period["agents"]],
            "started_at": _ts(period["started"]), "until": _ts(period["until"]),
            "actor": str(period.get("by") or "")[:64], "why": str(period.get("why") or "")[:200],
            "ended_at": _ts(period.get("ended")), "ended_by": str(period.get("ended_by") or "")[:64],
            "end_why": str(period.get("end_why") or "")[:200]}


def save_help(db: CallDb, period: Mapping[str, Any]) -> None:
    db.upsert(_HELP, help_values(period))
