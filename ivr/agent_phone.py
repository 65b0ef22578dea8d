"""The seat phone's feature codes (*51 签入 … *55), as the AGI script `agent` the seats' dialplan runs.

The dialplan (`hotline-seats`) sends `AGI(agent,<code>[,<reason digit>])` for each code of
`agents.feature_codes`; the agent is the seat whose endpoint dialed (`PJSIP/1001-…` → 1001: an
authenticated phone, never a number the caller could type). The decision is the agent state
machine's (routing/agent.py through routing/agent_service.py); this script only answers with a
short Mandarin prompt saying the new state ("已签入", "已示忙" …), announced as a HotlinePrompt
UserEvent like every prompt. Codes need the controller: without it the dialplan just hangs up.
"""

from __future__ import annotations

from typing import Any

import structlog

from ivr.prompts import sound_name
from model.contract import Event
from routing.agent import AgentState, Refused
from routing.agent_service import AgentService
from wire.channels import endpoint

log = structlog.get_logger("hotline.agent_phone")

#: feature (AgentFeatureCodes field) → the prompt id played when it was done (config `prompts:`)
DONE_PROMPTS = {
    "sign_in": "agent_signed_in", "sign_out": "agent_signed_out", "busy": "agent_busy",
    "ready": "agent_ready", "extend_wrapup": "agent_wrapup_extended",
}
#: a key that cannot apply now (busy while signed out, extend outside after-call work)
REFUSED_PROMPT = "agent_refused"
PROMPT_IDS = (*DONE_PROMPTS.values(), REFUSED_PROMPT)


class AgentPhone:
    def __init__(self, service: AgentService) -> None:
        self.service = service

    def _feature(self, code: str) -> str | None:
        codes = self.service.config.agents.feature_codes.model_dump()
        return next((name for name, c in codes.items() if c == code), None)

    async def script(self, s: Any) -> None:
        agent = endpoint(s.env.get("agi_channel", "").split(";", 1)[0])
        code = s.args[0] if s.args else ""
        digit = s.args[1] if len(s.args) > 1 else ""
        feature = self._feature(code)
        if feature is None or agent not in self.service.agents:
            log.info("agent_key_unknown", agent=agent, code=code)
            prompt = REFUSED_PROMPT
        else:
            try:
                out = await self.service.feature(agent, code, digit)
            except ValueError:
                out = []
                prompt = REFUSED_PROMPT
            else:
                refused = any(isinstance(a, Refused) for a in out)
                prompt = REFUSED_PROMPT if refused else DONE_PROMPTS[feature]
            a = self.service.agents[agent]
            log.info("agent_key", agent=agent, code=code, state=a.state.value, reason=a.reason, prompt=prompt)
        await s.answer()
        state = self.service.agents[agent].state if agent in self.service.agents else AgentState.SIGNED_OUT
        await s.user_event(Event.PROMPT, Prompt=prompt, Agent=agent, State=state.value)
        await s.stream_file(sound_name(prompt), "")
