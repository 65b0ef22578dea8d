"""The FastAGI scripts of calls the hotline places itself: the 回访 follow-up IVR and the callback offer.

`followup` (context hotline-followup, reached once the citizen answers a 回访 call placed by
ticketbridge.callbacks): says which request the call is about — the ticket number digit by digit and its
category — asks "was your request resolved?" (1 yes, 2 no) and the satisfaction (1–5, or 1–3 on the
3-level scale), and hands the answer to the store (`record_followup`: → 已回访 / 已评价, or → 督办 when not
resolved / the worst rating). A citizen who keys nothing at all leaves no answer: the call counts as an
unanswered attempt and is retried by the scheduler's rules.

`callback_offer` (context hotline-callback-offer, `callbacks.connect: offer`): "you called 12345 and were
not answered; press 1 for an agent" — 1 sets the queue route; anything else ends the call politely. If the
script fails, the dialplan queues the citizen anyway (fail open).

Thin adapter like ivr/calls.py: prompts and digits in, one store call out; keys are never logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import structlog

from ivr.prompts import say_digits_files, sound_name
from model.config import Config
from model.contract import Event, Route, Var
from model.destinations import Category
from wire.fastagi import AgiHangup, AgiSession

log = structlog.get_logger("hotline.ivr.outbound")

#: the prompts played here are listed in routing.graph.FOLLOWUP_PROMPTS (checked when 回访 is on); the
#: category is said by `followup_category_<name>` (consult, complaint, help, suggestion, other)


def category_prompt(category: str | None) -> str | None:
    for c in Category:
        if category in (c.value, c.name):
            return f"followup_category_{c.name}"
    return None


class FollowupStore(Protocol):
    async def followup_about(self, ticket_no: str) -> tuple[str, str | None] | None: ...

    async def record_followup(self, ticket_no: str, resolved: bool | None, rating: int | None, scale: int,
                              *, actor: str = ...) -> Any: ...


class OutboundScripts:
    """`config()`: the configuration in force (swapped by `hotline apply` between calls)."""

    def __init__(self, config: Callable[[], Config], store: FollowupStore) -> None:
        self.config = config
        self.store = store

    async def _play(self, s: AgiSession, prompt: str, escape: str = "") -> str | None:
        await s.user_event(Event.PROMPT, Prompt=prompt)
        return await s.stream_file(sound_name(prompt), escape)

    async def _key(self, s: AgiSession, prompt: str, allowed: str, timeout_s: float) -> str | None:
        """One key of `allowed`, asked at most twice ("invalid input" between); None when nothing was keyed."""
        for _ in range(2):
            await s.user_event(Event.PROMPT, Prompt=prompt)
            digits, _ = await s.get_data(sound_name(prompt), int(timeout_s * 1000), 1)
            if digits and digits in allowed:
                return digits
            if not digits:
                return None
            await self._play(s, "invalid_input")
        return None

    # ------------------------------------------------------------------ 回访
    async def followup(self, s: AgiSession) -> None:
        cfg = self.config()
        f = cfg.followups
        scale = f.scale or cfg.survey.scale
        ticket_no = (await s.get_variable(Var.FOLLOWUP) or "").strip()
        about = await self.store.followup_about(ticket_no) if ticket_no.isdigit() else None
        if about is None:
            log.warning("followup_unknown_ticket", ticket=ticket_no)
            return
        _, category = about
        try:
            await s.user_event(Event.FOLLOWUP, Ticket=ticket_no, Step="about")
            await self._play(s, "followup_intro")
            for name in say_digits_files(ticket_no):
                await s.stream_file(name, "")
            cat = category_prompt(category)
            if cat:
                await self._play(s, cat)
            key = await self._key(s, "followup_resolved", "12", f.timeout_s)
            resolved = None if key is None else key == "1"
            key = await self._key(s, f"followup_rating{scale}", "".join(str(i) for i in range(1, scale + 1)),
                                  f.timeout_s)
            rating = None if key is None else int(key)
            if resolved is None and rating is None:
                await s.user_event(Event.FOLLOWUP, Ticket=ticket_no, Step="no_answer")
                log.info("followup_no_answer", ticket=ticket_no)
                await self._play(s, "followup_no_answer")
                return
            try:
                outcome = await self.store.record_followup(ticket_no, resolved, rating, scale)
            except AgiHangup:
                raise
            except Exception:  # noqa: BLE001 - the store is away: the attempt counts as unanswered, retried
                log.exception("followup_not_recorded", ticket=ticket_no)
                await self._play(s, "followup_no_answer")
                return
            await s.user_event(Event.FOLLOWUP, Ticket=ticket_no, Step="answered",
                               Resolved={True: "1", False: "0", None: ""}[resolved], Rating=str(rating or ""),
                               Scale=str(scale), State=outcome.states[-1].value)
            await self._play(s, "followup_reopened" if outcome.reopened else "followup_thanks")
        except AgiHangup:
            log.info("followup_hung_up", ticket=ticket_no)

    # ------------------------------------------------------------------ callback offer
    async def callback_offer(self, s: AgiSession) -> None:
        cb = self.config().callbacks
        ticket_no = (await s.get_variable(Var.CALLBACK) or "").strip()
        try:
            key = await self._key(s, cb.offer_prompt, "1", cb.offer_timeout_s)
            if key == "1":
                await s.set_variable(Var.ROUTE, Route.QUEUE.value)
                log.info("callback_offer_taken", ticket=ticket_no)
            else:
                await s.set_variable(Var.ROUTE, Route.HANGUP.value)
                log.info("callback_offer_declined", ticket=ticket_no)
        except AgiHangup:
            log.info("callback_offer_hung_up", ticket=ticket_no)
