"""The seat phone's feature codes (*51 签入 … *56 hot-desk), as the AGI script `agent` the seats' dialplan runs.

The dialplan (`hotline-seats`) sends `AGI(agent,<code>[,<reason digit>])` for each code of
`agents.feature_codes`; the seat is the one whose endpoint dialed (`PJSIP/1001-…` → 1001: an
authenticated phone, never a number the caller could type). The decision is the agent state
machine's (routing/agent.py through routing/agent_service.py); this script only answers with a
short Mandarin prompt saying the new state ("已签入", "已示忙" + the reason: "小休" …), each prompt
announced as a HotlinePrompt UserEvent like every prompt. The hot-desk code first asks for the agent
ID and then the PIN (each ended by #; the keys are never logged nor announced). Codes need the
controller: without it the dialplan just hangs up.
"""

from __future__ import annotations

from typing import Any

import structlog

from ivr.prompts import agent_reason_prompt, sound_name
from model.contract import Event
from routing.agent import AgentState, Refused
from routing.agent_login import PinOutcome
from routing.agent_service import AgentService
from wire.channels import endpoint

log = structlog.get_logger("hotline.agent_phone")

#: feature (AgentFeatureCodes field) → the prompt id played when it was done (config `prompts:`)
DONE_PROMPTS = {
    "sign_in": "agent_signed_in", "sign_out": "agent_signed_out", "busy": "agent_busy",
    "ready": "agent_ready", "extend_wrapup": "agent_wrapup_extended", "hot_desk": "agent_signed_in",
}
#: a key that cannot apply now (busy while signed out, extend outside after-call work)
REFUSED_PROMPT = "agent_refused"
#: hot-desking: the questions, and the answers other than signed in
ENTER_ID_PROMPT, ENTER_PIN_PROMPT = "agent_enter_id", "agent_enter_pin"
PIN_PROMPTS = {PinOutcome.SIGNED_IN: "agent_signed_in", PinOutcome.WRONG: "agent_pin_wrong",
               PinOutcome.LOCKED: "agent_locked", PinOutcome.REFUSED: REFUSED_PROMPT}
PROMPT_IDS = tuple(dict.fromkeys((*DONE_PROMPTS.values(), REFUSED_PROMPT, ENTER_ID_PROMPT, ENTER_PIN_PROMPT,
                                  *PIN_PROMPTS.values())))
#: how long the phone waits for each key of the agent ID or PIN (ms); at most this many digits
KEY_TIMEOUT_MS, MAX_ID_DIGITS, MAX_PIN_DIGITS = 6000, 16, 12


class AgentPhone:
    def __init__(self, service: AgentService) -> None:
        self.service = service

    def _feature(self, code: str) -> str | None:
        codes = self.service.config.agents.feature_codes.model_dump()
        return next((name for name, c in codes.items() if c == code), None)

    def _reason_prompt(self, reason: str) -> list[str]:
        """The prompt that says a busy reason (agents.busy_reasons; one prompt per reason digit)."""
        digit = next((d for d, word in self.service.config.agents.busy_reasons.items() if word == reason), None)
        return [agent_reason_prompt(digit)] if digit is not None else []

    async def script(self, s: Any) -> None:
        seat = endpoint(s.env.get("agi_channel", "").split(";", 1)[0])
        code = s.args[0] if s.args else ""
        digit = s.args[1] if len(s.args) > 1 else ""
        feature = self._feature(code)
        await s.answer()
        if feature is None or seat not in self.service.agents:
            log.info("agent_key_unknown", seat=seat, code=code)
            prompts = [REFUSED_PROMPT]
        elif feature == "hot_desk":
            prompts = await self._hot_desk(s, seat)
        else:
            try:
                out = await self.service.feature(seat, code, digit)
                refused = any(isinstance(x, Refused) for x in out)
            except ValueError:  # not a code the service knows (a config swapped under a running call)
                refused = True
            prompts = [REFUSED_PROMPT] if refused else [DONE_PROMPTS[feature]]
            a = self.service.agents[seat]
            if not refused and feature == "busy":
                prompts += self._reason_prompt(a.reason)  # 已示忙 + 小休
            log.info("agent_key", seat=seat, agent=a.agent_id, code=code, state=a.state.value, reason=a.reason,
                     prompt=prompts[0])
        a = self.service.agents.get(seat)
        state = a.state if a is not None else AgentState.SIGNED_OUT
        for prompt in prompts:
            await s.user_event(Event.PROMPT, Prompt=prompt, Agent=a.agent_id if a is not None else seat, Seat=seat,
                               State=state.value)
            await s.stream_file(sound_name(prompt), "")

    async def _hot_desk(self, s: Any, seat: str) -> list[str]:
        """Agent ID, then PIN (each ended by #): the seat becomes that agent's, or the phone says why not."""
        await s.user_event(Event.PROMPT, Prompt=ENTER_ID_PROMPT, Seat=seat)
        agent_id, _ = await s.get_data(sound_name(ENTER_ID_PROMPT), KEY_TIMEOUT_MS, MAX_ID_DIGITS)
        if not agent_id.isdigit():
            return [PIN_PROMPTS[PinOutcome.WRONG]]
        await s.user_event(Event.PROMPT, Prompt=ENTER_PIN_PROMPT, Seat=seat)
        pin, _ = await s.get_data(sound_name(ENTER_PIN_PROMPT), KEY_TIMEOUT_MS, MAX_PIN_DIGITS)
        outcome = await self.service.hot_desk(seat, agent_id, pin)
        log.info("agent_hot_desk", seat=seat, outcome=outcome.value,
                 agent=agent_id if outcome is PinOutcome.SIGNED_IN else None)
        return [PIN_PROMPTS[outcome]]
