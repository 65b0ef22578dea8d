"""The controller's live API wiring: listen once a token exists, and what the API asks of the controller.

Kept beside hotline/controller.py (which starts `serve_api` as one of its tasks) so the controller
module stays the process's wiring only; the API itself is live/api.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from live.api import LiveApi
from live.pages import Pages
from routing.transfer_correlation import TransferError

log = structlog.get_logger("hotline.controller")


class ApiActions:
    """What the live API asks of the controller (live.api.LiveActions): the same paths as the control socket."""

    def __init__(self, controller: Any) -> None:
        self.c = controller

    async def agent_change(self, agent: str, action: str, reason: str, why: str, actor: str) -> dict[str, Any]:
        return await self.c.agent_control.change({"agent": agent, "action": action, "reason": reason, "why": why,
                                                  "actor": actor})

    async def call_back(self, ticket: str, actor: str) -> dict[str, Any]:
        return await self.c._on_control_request({"op": "callback", "ticket": ticket, "actor": actor})

    async def transfer(self, agent_channel: str, target: str, linkedid: str, actor: str) -> dict[str, Any]:
        try:
            view = await self.c.transfers.start(agent_channel, target, linkedid=linkedid)
        except TransferError as e:
            return {"ok": False, "error": str(e)}
        log.info("live_api_transfer", target=target, linkedid=linkedid, actor=actor)
        return {"ok": True, "transfer": view}


async def serve_api(c: Any) -> None:
    """Listen on api.bind:port once a token exists (off by default: said so in the log, looked at again)."""
    settings = c.config.api
    said = False
    while True:
        try:
            tokens = await c.store.live_token_count()
        except Exception:  # noqa: BLE001 - the store may be briefly away; ask again
            log.warning("live_api_token_check_failed", exc_info=True)
            tokens = 0
        if tokens:
            break
        if not said:
            log.info("live_api_off_no_token", bind=f"{settings.bind}:{settings.port}",
                     hint="hotline tokens create --role supervisor --name NAME")
            said = True
        await asyncio.sleep(settings.token_check_s)
    api = LiveApi(c.live, c.store, ApiActions(c), intervention=c.intervention)
    Pages(api, c.config).attach()  # /wallboard, /agent, the screen pop and the intake (live/pages.py)
    try:
        await api.start(settings.bind, settings.port)
    except OSError as e:
        log.error("live_api_bind_failed", bind=f"{settings.bind}:{settings.port}", error=str(e))
        await api.stop()
        return
    c.api = api
