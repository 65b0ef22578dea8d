"""The control socket's `help` op (多援一): start, end and list help periods of the running controller's agents.

The decisions are routing/agent_help.py's and the AMI work routing/agent_service.py's; this only reads the
request, names who asked (the socket's peer, hotline.control.actor_of) and shapes the answer.

    → {"op": "help", "action": "start", "group": "1001,1002" | "<skill>", "queue": "general", "minutes": 30,
       "why": "暴雨应急"}
    ← {"ok": true, "period": {"id": "h…", "queue": "general", "agents": ["1001"], "until": …}, "skipped": […]}
    → {"op": "help", "action": "end", "id": "h…"}        (or "queue": "general", or neither: every active one)
    → {"op": "help", "action": "list"}                   ← {"ok": true, "active": […], "recent": […]}
"""

from __future__ import annotations

from typing import Any

import structlog

from hotline.control import actor_of
from routing.agent_help import HelpError
from routing.agent_service import AgentService

log = structlog.get_logger("hotline.agent_help")


async def help_request(agents: AgentService, store: Any, request: dict[str, Any]) -> dict[str, Any]:
    """多援一: `start` (group, queue, minutes, why), `end` (id, or every active period of `queue`, or all),
    `list` (the active periods and the latest ended ones). Who: the socket's peer (actor_of)."""
    action, actor = str(request.get("action") or "list"), actor_of(request, "supervisor")
    why = str(request.get("why") or "")
    if action == "start":
        try:
            minutes = float(request.get("minutes") or 0)
            period, skipped = await agents.help_start(
                group=str(request.get("group") or ""), queue=str(request.get("queue") or ""),
                minutes=minutes, by=actor, why=why)
        except (HelpError, ValueError) as e:
            return {"ok": False, "error": str(e)}
        return {"ok": True, "period": period.as_dict(), "skipped": list(skipped)}
    if action == "end":
        pid, queue = str(request.get("id") or ""), str(request.get("queue") or "")
        ids = [pid] if pid else [p.id for p in agents.help.values() if not queue or p.queue == queue]
        if not ids:
            return {"ok": False, "error": "no active help period" + (f" for {queue}" if queue else "")}
        ended = []
        for i in ids:
            try:
                ended.append((await agents.help_end(i, by=actor, why=why or "ended by a supervisor")).as_dict())
            except HelpError as e:
                return {"ok": False, "error": str(e)}
        return {"ok": True, "ended": ended}
    if action == "list":
        try:
            recent = await store.help_periods(active=False, limit=20)
        except Exception:  # noqa: BLE001 - the active ones are still worth showing
            log.warning("agent_help_read_failed", exc_info=True)
            recent = []
        return {"ok": True, "active": [p.as_dict() for p in agents.help.values()],
                "recent": [p for p in recent if p.get("ended") is not None]}
    return {"ok": False, "error": f"unknown help action {action!r} (start, end, list)"}
