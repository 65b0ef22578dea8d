"""Calling back missed calls (漏接电话回拨, 国办函〔2025〕66号) through Asterisk.

A call abandoned in the queue or ended in the IVR (without a self-query) puts its ticket
on the callback list (ticketbridge.store). `CallbackDialer.call_back(ticket_no)`:

1. claims the callback atomically (`dialing`, one more attempt; two supervisors pressing
   "call back" together place one call);
2. AMI Originate to the caller's number through `callbacks.dial` (default
   `Local/{number}@hotline-outbound`, the rendered outbound context) and, once the citizen
   answers, into the rendered context of `callbacks.queue` (`hotline-queue-<name>,s`: its
   overflow and survey apply), so an agent of that queue takes the call;
3. waits for Asterisk's OriginateResponse and writes the result onto the SAME ticket:
   callback `done` (the citizen answered) or `failed` (no answer, busy, congestion, …),
   with a history row each time.

The originated call's ChannelId — hence its Linkedid — starts with `callback-`, so the
controller never turns the callback into a ticket of its own (`is_callback_call`), and the
CDR replay ignores it too (it never passes through hotline-inbound, so has no hotline_dialed).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from model.config import Config
from model.contract import Var, queue_context
from model.privacy import mask_number
from routing.outbound import outbound_refusal

log = structlog.get_logger("ticketbridge.callbacks")

CALLBACK_PREFIX = "callback-"
#: OriginateResponse Reason codes (Asterisk's AST_CONTROL_*) in words
REASONS = {"0": "failed (no such number or channel)", "1": "hung up", "3": "no answer", "4": "answered",
           "5": "busy", "8": "congestion"}
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")


class CallbackError(Exception):
    """Why a callback cannot be placed (no such ticket, nothing to call back, already done…)."""


@dataclass(frozen=True)
class CallbackResult:
    ticket_no: str
    status: str  # "done" | "failed"
    attempts: int
    result: str
    channel_id: str


def is_callback_call(event: dict[str, str]) -> bool:
    """An AMI event of a callback we placed (its Linkedid is our ChannelId)."""
    return (event.get("Linkedid") or event.get("linkedid") or "").startswith(CALLBACK_PREFIX)


class CallbackDialer:
    """`policy`: the config whose outbound allow-list (routing.outbound) a callback number must pass,
    before anything is dialed; Asterisk's hotline-outbound enforces the same list again."""

    def __init__(self, store: Any, ami: Any, settings: Any, *, policy: Config | None = None) -> None:
        self.store = store
        self.ami = ami
        self.settings = settings
        self.policy = policy

    async def call_back(self, ticket_no: str, actor: str = "supervisor") -> CallbackResult:
        cb = await self.store.callback_for(ticket_no)
        if cb is None:
            t = await self.store.get_ticket(ticket_no)
            raise CallbackError(f"ticket {ticket_no} does not exist" if t is None
                                else f"ticket {ticket_no} ({t.outcome}) is not on the callback list")
        if cb.status == "done":
            raise CallbackError(f"ticket {ticket_no} was already called back ({cb.last_result or 'done'})")
        number = (cb.caller or "").strip()
        if not _NUMBER.match(number):
            await self.store.mark_callback(cb.id, "failed", f"no callable number ({number!r})", actor=actor)
            raise CallbackError(f"ticket {ticket_no} has no callable caller number")
        refused = outbound_refusal(self.policy, number) if self.policy is not None else None
        if refused:
            await self.store.mark_callback(cb.id, "failed", "refused by the outbound policy", actor=actor)
            log.warning("callback_refused", ticket=ticket_no, caller=mask_number(number))
            raise CallbackError(f"ticket {ticket_no}: the caller's number is refused by the outbound policy "
                                "(outbound.allow)")
        claimed = await self.store.claim_callback(cb.id, actor=actor)
        if claimed is None:
            raise CallbackError(f"ticket {ticket_no} is being called back right now")
        s = self.settings
        channel_id = f"{CALLBACK_PREFIX}{ticket_no}-{claimed.attempts}-{uuid.uuid4().hex[:8]}"
        dial = s.dial.format(number=number)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[str, str]] = loop.create_future()

        def on_event(e: dict[str, str]) -> None:
            if done.done():
                return
            uid = e.get("Uniqueid", "")
            if e.get("Event") == "OriginateResponse":
                # a failed originate may have no channel left: Uniqueid "<null>", Channel the dial string
                if uid == channel_id or (uid in ("", "<null>") and e.get("Channel") == dial):
                    done.set_result(e)
            elif e.get("Event") == "Hangup" and uid == channel_id:
                # our leg went before any OriginateResponse said it was answered (Asterisk does not
                # always send the failure response while another originate is up): not reached
                cause = e.get("Cause", "")
                reason = {"17": "5", "34": "8", "38": "8", "1": "0", "3": "0"}.get(cause, "3")
                done.set_result({"Response": "Failure", "Reason": reason, "Cause": cause})

        off = self.ami.on_event("*", on_event)
        log.info("callback_dialing", ticket=ticket_no, caller=mask_number(number), attempt=claimed.attempts)
        try:
            try:
                await self.ami.originate(
                    # straight into the queue's own context: originating into hotline-route would run
                    # its catch-all `_[a-z].` for Asterisk's "failed" extension on a failed attempt and
                    # queue a phantom "OutgoingSpoolFailed" caller in front of real ones
                    dial, context=queue_context(s.queue), exten="s", priority=1,
                    caller_id=f'"12345" <{s.caller_id}>', timeout_ms=int(s.ring_s * 1000),
                    variables={Var.QUEUE.value: s.queue, Var.CALLBACK.value: ticket_no},
                    channel_id=channel_id, other_channel_id=channel_id + "-2")
                resp = await asyncio.wait_for(done, s.ring_s + 15)
            except asyncio.TimeoutError:
                resp = {"Response": "Failure", "Reason": "timeout"}
            except Exception as e:  # noqa: BLE001 - AMI refused or down: a failed attempt, said so
                resp = {"Response": "Failure", "Reason": f"{type(e).__name__}: {e}"}
        finally:
            off()
        ok = resp.get("Response", "").lower() == "success"
        reason = resp.get("Reason", "")
        if ok:
            result = f"answered; connected to queue {s.queue}"
        else:
            result = REASONS.get(reason, reason or "failed")
        status = "done" if ok else "failed"
        await self.store.mark_callback(cb.id, status, result, actor=actor)
        log.info("callback_result", ticket=ticket_no, status=status, result=result, attempt=claimed.attempts)
        return CallbackResult(ticket_no, status, claimed.attempts, result, channel_id)
