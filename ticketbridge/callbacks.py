"""Calling citizens through Asterisk: missed-call callbacks (漏接电话回拨, 国办函〔2025〕66号) and 回访 calls.

A call abandoned in the queue or ended in the IVR (without a self-query) puts its ticket on the callback
list (ticketbridge.store); a ticket reaching 办结 owes a 回访 (ticketbridge.outreach_store). Either is placed
by a supervisor's `hotline tickets callback NO` (`CallbackDialer.call_back`) or by the controller's scheduler
(ticketbridge.scheduler, rules in ticketbridge.outreach_rules), always the same way:

1. the call is claimed in the store (`claim_owed`: `dialing`, one more attempt, this controller as owner
   with a lease; two supervisors or two controllers together place one call);
2. AMI Originate to the citizen's number through the configured dial string (default
   `Local/{number}@hotline-outbound`, the rendered outbound context, whose allow-list is also checked here
   before anything is dialed) and, once the citizen answers, into
   - a callback: the rendered context of `callbacks.queue` (`hotline-queue-<name>,s`: its overflow and
     survey apply) so an agent of that queue takes it, with HOTLINE_CALLBACK = the ticket; or, with
     `callbacks.connect: offer`, `hotline-callback-offer` ("press 1 for an agent", then that queue);
   - a 回访: `hotline-followup`, the follow-up IVR (ivr/followup.py) with HOTLINE_FOLLOWUP = the ticket;
3. waits for Asterisk's OriginateResponse (a 回访 also for the end of the call) and writes the result onto
   the SAME ticket (`finish_owed`, a history row each time): `done` (a callback answered) or `failed` (no
   answer, busy, congestion…; a 回访 also when answered but no answer was keyed) — retried by the rules.

The originated call's ChannelId — hence its Linkedid — starts with `callback-` or `followup-`, so the
controller never turns it into a ticket of its own (`is_callback_call`), and the CDR replay ignores it too
(it never passes through hotline-inbound, so has no hotline_dialed).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from model.config import Config
from model.contract import Context, Var, queue_context
from model.privacy import mask_number
from routing.outbound import outbound_refusal

log = structlog.get_logger("ticketbridge.callbacks")

CALLBACK_PREFIX = "callback-"
FOLLOWUP_PREFIX = "followup-"
#: OriginateResponse Reason codes (Asterisk's AST_CONTROL_*) in words
REASONS = {"0": "failed (no such number or channel)", "1": "hung up", "3": "no answer", "4": "answered",
           "5": "busy", "8": "congestion"}
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
#: seconds beyond the ring time a claim's lease lasts (Originate's own wait, the answer, the write)
LEASE_MARGIN_S = 60.0


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
    """An AMI event of a callback or 回访 we placed (its Linkedid is our ChannelId)."""
    lid = event.get("Linkedid") or event.get("linkedid") or ""
    return lid.startswith(CALLBACK_PREFIX) or lid.startswith(FOLLOWUP_PREFIX)


def controller_id() -> str:
    """Who holds a claim: this host and process (unique among controllers sharing a database)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class OriginateWaiter:
    """One Originate and the events that end it: the OriginateResponse, or our leg's Hangup before it."""

    def __init__(self, ami: Any) -> None:
        self.ami = ami

    async def originate(self, *, dial: str, channel_id: str, context: str, caller_id: str, ring_s: float,
                        variables: dict[str, str], stay_s: float = 0.0) -> tuple[bool, str]:
        """(answered, result in words). With `stay_s`, an answered call is also waited on until it ends
        (at most `stay_s` seconds)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[str, str]] = loop.create_future()
        ended: asyncio.Future[None] = loop.create_future()

        def on_event(e: dict[str, str]) -> None:
            uid = e.get("Uniqueid", "")
            if e.get("Event") == "Hangup" and uid == channel_id and not ended.done():
                ended.set_result(None)
            if done.done():
                return
            if e.get("Event") == "OriginateResponse":
                # a failed originate may have no channel left: Uniqueid "<null>", Channel the dial string
                if uid == channel_id or (uid in ("", "<null>") and e.get("Channel") == dial):
                    done.set_result(e)
            elif e.get("Event") == "Hangup" and uid == channel_id:
                # our leg went before any OriginateResponse said it was answered (Asterisk does not
                # always send the failure response while another originate is up): not reached
                cause = e.get("Cause", "")
                reason = {"17": "5", "34": "8", "38": "8", "1": "0", "3": "0", "21": "0"}.get(cause, "3")
                done.set_result({"Response": "Failure", "Reason": reason, "Cause": cause})

        off = self.ami.on_event("*", on_event)
        try:
            try:
                await self.ami.originate(
                    dial, context=context, exten="s", priority=1, caller_id=caller_id,
                    timeout_ms=int(ring_s * 1000), variables=variables,
                    channel_id=channel_id, other_channel_id=channel_id + "-2")
                resp = await asyncio.wait_for(done, ring_s + 15)
            except asyncio.TimeoutError:
                resp = {"Response": "Failure", "Reason": "timeout"}
            except Exception as e:  # noqa: BLE001 - AMI refused or down: a failed attempt, said so
                resp = {"Response": "Failure", "Reason": f"{type(e).__name__}: {e}"}
            ok = resp.get("Response", "").lower() == "success"
            if ok and stay_s > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(ended), stay_s)
                except asyncio.TimeoutError:
                    log.warning("outbound_call_still_up", channel=channel_id, after_s=stay_s)
        finally:
            off()
        reason = resp.get("Reason", "")
        return ok, ("answered" if ok else REASONS.get(reason, reason or "failed"))


def callback_of(linkedid: str) -> tuple[str, int] | None:
    """(ticket number, attempt) of a callback call's linkedid `callback-<ticket>-<attempt>-<hex>`."""
    parts = linkedid.removeprefix(CALLBACK_PREFIX).split("-") if linkedid.startswith(CALLBACK_PREFIX) else []
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def answered_in_cdr(rows: list[dict[str, Any]]) -> bool:
    """A callback call's CDR rows say the citizen answered."""
    return any(str(r.get("disposition", "")).upper() == "ANSWERED" for r in rows)


class CallbackDialer:
    """Places callbacks and 回访 calls. `policy`: the config whose outbound allow-list (routing.outbound) a
    number must pass before anything is dialed; Asterisk's hotline-outbound enforces the same list again."""

    def __init__(self, store: Any, ami: Any, settings: Any, *, policy: Config | None = None,
                 followups: Any = None, owner: str | None = None) -> None:
        self.store = store
        self.ami = ami
        self.settings = settings
        self.followup_settings = followups if followups is not None else (policy.followups if policy else None)
        self.policy = policy
        #: this controller, as the owner of its claims
        self.owner = owner or controller_id()
        self.waiter = OriginateWaiter(ami)
        #: ChannelIds of callbacks this process is dialing now (their result is its own to write)
        self.in_flight: set[str] = set()

    def lease_s(self, kind: str) -> float:
        if kind == "followup" and self.followup_settings is not None:
            s = self.followup_settings
            return s.ring_s + s.max_call_s + LEASE_MARGIN_S
        return self.settings.ring_s + LEASE_MARGIN_S

    # -------------------------------------------------------------- a supervisor's callback
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
        claimed = await self.store.claim_owed("callback", cb.id, self.owner, lease_s=self.lease_s("callback"),
                                              actor=actor)
        if claimed is None:
            raise CallbackError(f"ticket {ticket_no} is being called back right now")
        return await self.place(claimed, actor=actor)

    # -------------------------------------------------------------- placing a claimed call
    async def place(self, claimed: Any, actor: str | None = None) -> CallbackResult:
        """Dial a call this controller has claimed (`claim_owed`) and write its result onto the ticket."""
        number, ticket_no = claimed.number, claimed.ticket_no
        if not _NUMBER.match(number) or (self.policy is not None and outbound_refusal(self.policy, number)):
            # the claim was taken on a number that may not be dialed: say so, dial nothing
            result = "refused by the outbound policy" if _NUMBER.match(number) else "no callable number"
            await self.store.finish_owed(claimed.kind, claimed.id, claimed.owner, "failed", result, actor=actor)
            return CallbackResult(ticket_no, "failed", claimed.attempts, result, "")
        if claimed.kind == "followup":
            return await self._place_followup(claimed, actor)
        s = self.settings
        channel_id = f"{CALLBACK_PREFIX}{ticket_no}-{claimed.attempts}-{uuid.uuid4().hex[:8]}"
        # straight into the queue's own context: originating into hotline-route would run its catch-all
        # `_[a-z].` for Asterisk's "failed" extension on a failed attempt and queue a phantom
        # "OutgoingSpoolFailed" caller in front of real ones
        context = Context.CALLBACK_OFFER.value if s.connect == "offer" else queue_context(s.queue)
        log.info("callback_dialing", ticket=ticket_no, caller=mask_number(number), attempt=claimed.attempts,
                 connect=s.connect)
        self.in_flight.add(channel_id)
        try:
            ok, words = await self.waiter.originate(
                dial=s.dial.format(number=number), channel_id=channel_id, context=context,
                caller_id=f'"12345" <{s.caller_id}>', ring_s=s.ring_s,
                variables={Var.QUEUE.value: s.queue, Var.CALLBACK.value: ticket_no,
                           Var.CALLBACK_NUMBER.value: number})
        finally:
            self.in_flight.discard(channel_id)
        if ok:
            result = (f"answered; offered an agent of queue {s.queue}" if s.connect == "offer"
                      else f"answered; connected to queue {s.queue}")
        else:
            result = words
        status = "done" if ok else "failed"
        await self.store.finish_owed("callback", claimed.id, claimed.owner, status, result, actor=actor)
        log.info("callback_result", ticket=ticket_no, status=status, result=result, attempt=claimed.attempts)
        return CallbackResult(ticket_no, status, claimed.attempts, result, channel_id)

    async def _place_followup(self, claimed: Any, actor: str | None) -> CallbackResult:
        s = self.followup_settings
        ticket_no = claimed.ticket_no
        channel_id = f"{FOLLOWUP_PREFIX}{ticket_no}-{claimed.attempts}-{uuid.uuid4().hex[:8]}"
        log.info("followup_dialing", ticket=ticket_no, caller=mask_number(claimed.number), attempt=claimed.attempts)
        ok, words = await self.waiter.originate(
            dial=s.dial.format(number=claimed.number), channel_id=channel_id, context=Context.FOLLOWUP.value,
            caller_id=f'"12345" <{s.caller_id}>', ring_s=s.ring_s,
            variables={Var.FOLLOWUP.value: ticket_no}, stay_s=s.max_call_s)
        # the IVR records an answer itself (record_followup: done); what is left is a failed attempt
        result = "answered, but no answer was keyed" if ok else words
        still_ours = await self.store.finish_owed("followup", claimed.id, claimed.owner, "failed", result,
                                                  actor=actor)
        status = "failed" if still_ours else "done"
        if not still_ours:
            result = "answered"
        log.info("followup_result", ticket=ticket_no, status=status, result=result, attempt=claimed.attempts)
        return CallbackResult(ticket_no, status, claimed.attempts, result, channel_id)

    async def settle_from_cdr(self, linkedid: str, rows: list[dict[str, Any]]) -> bool:
        """A callback whose controller died while dialing it (its claim left `dialing`): when the call's CDR
        rows say the citizen answered, the callback is done (`settle_owed` not_needed) rather than dialed
        again once the dead claim's lease runs out. Returns False while that lease still runs (ask again
        later), True when there is nothing (more) to do."""
        if linkedid in self.in_flight:
            return True
        which = callback_of(linkedid)
        if which is None or not answered_in_cdr(rows):
            return True  # not answered: the scheduler's rules try again, as after any failed attempt
        ticket_no, attempt = which
        cb = await self.store.callback_for(ticket_no)
        if cb is None or cb.status == "done" or cb.attempts != attempt:
            return True
        if not await self.store.settle_owed("callback", cb.id, "not_needed",
                                            "answered (from the CDR: the controller stopped while dialing)",
                                            actor="cdr"):
            return cb.status != "dialing"
        log.warning("callback_settled_from_cdr", ticket=ticket_no, attempt=attempt)
        return True
