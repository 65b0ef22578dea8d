"""A supervisor seat's feature codes (*61 监听, *62 耳语, *63 强插, *69 强拆 + the agent's seat), as AGI `supervise`.

The seats' dialplan sends `AGI(supervise,<code>,<agent>)`; the supervisor is the seat whose endpoint
dialed (`PJSIP/9001-…` → 9001, an authenticated phone). The decision and its audit row are
routing/supervise_service.py's. A session: this script sets `Var.SPY_*` on the channel and the
dialplan goes on to `Context.SUPERVISE` (ChanSpy). A force release: the call is already hung up,
the seat hears a short confirmation. A refusal (not a supervisor seat, no such agent, the agent
not in a call): a short Mandarin prompt. Announced as a HotlinePrompt UserEvent like every prompt.
"""

from __future__ import annotations

from typing import Any

import structlog

from ivr.prompts import sound_name
from model.contract import Event
from routing.supervise import RELEASED_PROMPT, Refusal, Release, mode_of_code
from routing.supervise_service import SupervisionService, spy_variables
from wire.channels import endpoint

log = structlog.get_logger("hotline.supervisor_phone")


class SupervisorPhone:
    def __init__(self, service: SupervisionService) -> None:
        self.service = service

    async def script(self, s: Any) -> None:
        seat = endpoint(s.env.get("agi_channel", "").split(";", 1)[0])
        code = s.args[0] if s.args else ""
        agent = s.args[1] if len(s.args) > 1 else ""
        mode = mode_of_code(self.service.config, code)
        d = await self.service.phone(mode.value if mode else code, seat, agent)
        if isinstance(d, Refusal) or isinstance(d, Release):
            prompt = RELEASED_PROMPT if isinstance(d, Release) else d.prompt
            await s.answer()
            await s.user_event(Event.PROMPT, Prompt=prompt, Seat=seat, Agent=agent,
                               Result=d.reason if isinstance(d, Refusal) else "released")
            await s.stream_file(sound_name(prompt), "")
            return
        for name, value in spy_variables(d).items():
            await s.set_variable(name, value)
