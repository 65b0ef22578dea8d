"""多援一 (many help one): a group of agents added to another queue for a while, then taken out — pure decisions.

A supervisor names the group (seats `1001,1002`, or a skill: every agent whose seat has it), the queue to
help, how long and why. The adapter (routing/agent_service.py) adds each helper to that queue as a dynamic
member (AMI QueueAdd with StateInterface and MemberName, paused as the agent's own state has it: signed
out, busy, after-call work, 离线), keeps that pause in step with the agent's state, and removes them
(QueueRemove) at the end time or when a supervisor ends the period. Periods are persisted with their end
time, so a controller restart neither forgets nor prolongs one.

Here: the period record, resolving a group, refusing what cannot be helped, and what is due to end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from routing.agent import SIGNED_OUT_REASON, WRAP_UP_REASON, Agent, AgentState

if TYPE_CHECKING:
    from model.config import Config

#: the longest help period a supervisor may ask for (a shift)
MAX_HELP_MINUTES = 12 * 60


class HelpError(ValueError):
    """A help request that cannot be done, said in words a supervisor reads."""


@dataclass(frozen=True)
class HelpPeriod:
    id: str
    queue: str
    agents: tuple[str, ...]
    started: float
    until: float
    by: str
    why: str
    ended: float | None = None
    ended_by: str = ""
    end_why: str = ""

    @property
    def active(self) -> bool:
        return self.ended is None

    def end(self, at: float, by: str, why: str) -> "HelpPeriod":
        return replace(self, ended=at, ended_by=by, end_why=why)

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "queue": self.queue, "agents": list(self.agents), "started": self.started,
                "until": self.until, "by": self.by, "why": self.why, "ended": self.ended,
                "ended_by": self.ended_by, "end_why": self.end_why}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "HelpPeriod":
        ended = d.get("ended")
        return cls(str(d["id"]), str(d["queue"]), tuple(str(a) for a in d["agents"]),  # type: ignore[union-attr]
                   float(d["started"]), float(d["until"]), str(d.get("by") or ""),  # type: ignore[arg-type]
                   str(d.get("why") or ""), None if ended is None else float(ended),  # type: ignore[arg-type]
                   str(d.get("ended_by") or ""), str(d.get("end_why") or ""))


def resolve_group(config: "Config", agents: Mapping[str, Agent], group: str) -> tuple[str, ...]:
    """`1001,1002` (seats, comma or space separated) or a skill name (every agent whose seat has it)."""
    names = [g for g in group.replace(",", " ").split() if g]
    if not names:
        raise HelpError("--group is empty: name seats (1001,1002) or a skill")
    if len(names) == 1 and names[0] not in config.seats:
        skill = names[0]
        seats = tuple(s for s, seat in config.seats.items() if skill in seat.skills and s in agents)
        if not seats:
            raise HelpError(f"{skill!r} is neither a seat nor a skill of any agent "
                            f"(seats: {', '.join(agents)})")
        return seats
    unknown = [n for n in names if n not in agents]
    if unknown:
        raise HelpError(f"not an agent: {', '.join(unknown)} (agents: {', '.join(agents)})")
    return tuple(dict.fromkeys(names))


def plan(config: "Config", agents: Mapping[str, Agent], active: Iterable[HelpPeriod], *, group: str, queue: str,
         minutes: float, now: float, by: str, why: str) -> tuple[HelpPeriod, tuple[str, ...]]:
    """A new period, and the seats of the group left out because they already serve or help `queue`."""
    if queue not in config.queues:
        raise HelpError(f"no queue {queue!r} (queues: {', '.join(config.queues)})")
    if not 0 < minutes <= MAX_HELP_MINUTES:
        raise HelpError(f"--minutes must be more than 0 and at most {MAX_HELP_MINUTES}")
    if not why.strip():
        raise HelpError("--why is required: a help period is recorded with its reason")
    seats = resolve_group(config, agents, group)
    helping = {a for p in active if p.active and p.queue == queue for a in p.agents}
    skipped = tuple(s for s in seats if queue in agents[s].allowed or s in helping)
    helpers = tuple(s for s in seats if s not in skipped)
    if not helpers:
        raise HelpError(f"every seat of {group!r} already serves or helps {queue}")
    period = HelpPeriod(f"h{uuid.uuid4().hex[:10]}", queue, helpers, now, now + minutes * 60, by, why.strip())
    return period, skipped


def due(periods: Iterable[HelpPeriod], now: float) -> list[HelpPeriod]:
    """The active periods whose end time has come."""
    return [p for p in periods if p.active and p.until <= now]


def helped_queues(periods: Iterable[HelpPeriod], agent: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.queue for p in periods if p.active and agent in p.agents))


def member_pause(a: Agent) -> tuple[bool, str]:
    """How the agent's member in a helped queue must be paused, following its own state."""
    if a.state is AgentState.SIGNED_OUT:
        return True, SIGNED_OUT_REASON
    if a.paused:
        return True, a.reason or WRAP_UP_REASON
    return False, ""
