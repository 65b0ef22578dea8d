"""The control socket's agent ops (hotline/control.py): `agents` lists every seat agent, `agent` changes one.

What `hotline agents` (hotline/cli_agents.py) asks the running controller, which owns the agents' state
machines (routing/agent_service.py) and the AMI account that pauses queue members. Requests and answers:

    → {"op": "agents"}
    ← {"ok": true, "agents": [{"agent": "8001", "seat": "1001", "state": "ready", "label": "示闲", "reason": "",
                               "since": 1764460000.0, "queues": ["general"], "call": "", "calls_today": 3,
                               "offline": false, "helping": []}, …]}
    → {"op": "agent", "action": "busy", "agent": "8001", "reason": "培训", "actor": "supervisor:wang", "why": "…"}
    ← {"ok": true, "agent": "8001", "seat": "1001", "state": "busy", "reason": "培训"}
    ← {"ok": false, "error": "…"}

`agent` may name an agent ID (工号) or a seat. Every change is recorded with who (hotline.control.actor_of:
the socket peer's user name, the client's `actor` only a label) and why.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import structlog

from hotline.control import actor_of
from routing.agent import STATE_LABELS, AgentState, Refused, SetBusy, SetReady, SignIn, SignOut
from routing.agent_service import AgentService

log = structlog.get_logger("hotline.agent_control")

ACTIONS = ("signout", "busy", "ready", "signin")


class AgentControl:
    def __init__(self, service: AgentService, store: Any, now: Callable[[], dt.datetime]) -> None:
        """`now`: the center's clock (an aware datetime): "today" is the center's day."""
        self.service, self.store, self.now = service, store, now

    async def handle(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to an agent op; None when the request is not one."""
        if request.get("op") == "agents":
            return await self.listing()
        if request.get("op") == "agent":
            return await self.change(request)
        return None

    async def listing(self) -> dict[str, Any]:
        """Every agent: agent ID, seat, state, reason, since, queues, current call, calls answered today."""
        day = self.now().replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            events = await self.store.agent_events(since=day.astimezone(dt.timezone.utc))
        except Exception:  # noqa: BLE001 - the live states are still worth showing
            log.warning("agent_events_read_failed", exc_info=True)
            events = []
        answered: dict[str, int] = {}
        for e in events:
            if e.new == AgentState.TALKING.value and e.old != AgentState.TALKING.value:
                answered[e.agent] = answered.get(e.agent, 0) + 1
        rows = [{"agent": a.agent_id, "seat": a.id, "state": a.state.value, "label": STATE_LABELS[a.state],
                 "reason": a.reason, "since": a.since, "queues": list(a.queues), "call": a.linkedid,
                 "calls_today": answered.get(a.agent_id, 0), "offline": a.offline,
                 "helping": list(self.service.helping(a.id))}
                for a in self.service.agents.values()]
        return {"ok": True, "agents": rows}

    async def change(self, request: dict[str, Any]) -> dict[str, Any]:
        """强制签出 / 强制示忙 / 示闲 / 签入 by a supervisor, recorded with who and why."""
        who, action = str(request.get("agent") or ""), str(request.get("action") or "")
        actor = actor_of(request, "supervisor")
        reason, why = str(request.get("reason") or ""), str(request.get("why") or "")
        reasons = self.service.config.agents.busy_reasons
        now = time.time()
        if action not in ACTIONS:
            return {"ok": False, "error": f"unknown agent action {action!r} (one of {', '.join(ACTIONS)})"}
        if action == "busy" and reason and reason not in reasons.values():
            return {"ok": False, "error": f"unknown busy reason {reason!r} (agents.busy_reasons: "
                                          f"{', '.join(reasons.values())})"}
        seat = self.service.seat_of(who)
        if seat is None:
            return {"ok": False, "error": f"no agent or seat {who!r} (a seat listed in some queue's members, "
                                          "or the agent ID working one)"}
        inp = {"signout": lambda: SignOut(now, by=actor, why=why or "强制签出"),
               "busy": lambda: SetBusy(now, reason or next(iter(reasons.values())), by=actor, why=why or "强制示忙"),
               "ready": lambda: SetReady(now, by=actor, why=why),
               "signin": lambda: SignIn(now, by=actor, why=why)}[action]()
        out = await self.service.command(seat, inp)
        a = self.service.agents[seat]
        if any(isinstance(x, Refused) for x in out):
            return {"ok": False, "error": f"agent {a.agent_id} (seat {seat}) is {a.state.value}: {action} does not apply"}
        return {"ok": True, "agent": a.agent_id, "seat": seat, "state": a.state.value, "reason": a.reason}
