"""The live model rebuilt from what Asterisk has now (pure): after a controller restart or an AMI reconnect.

Input: the rows of `CoreShowChannels` (every channel: Linkedid, Uniqueid, Context, CallerIDNum,
BridgeId, Duration) and of `QueueStatus` (QueueEntry: who waits where and how long; QueueMember:
each member's device status and pause). Today's finished calls come from the tickets
(`LiveModel.note_ticket`), fed before this.

A call that is up is adopted as it is now: in a queue (QueueEntry; waiting since now − Wait), with an
agent (a seat's PJSIP channel in a bridge on the call's linkedid), put through (the caller is bridged),
or in the IVR. Calls the model held that Asterisk no longer has are dropped (their tickets count them).
A call adopted here is counted into today's figures once (it has no finished ticket yet); its wait
before the restart is unknown, so its answer is not counted within 15 s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from live.reducer import LiveModel
from live.state import HOTLINE_CONTEXTS, Call, Changes, Counted, number, clean, agent_of, queue_name
from model.contract import QUEUE_CONTEXT_PREFIX, Context
from model.privacy import normalise_number
from wire.channels import is_local

#: contexts a caller's channel is in while it is a hotline call (besides the queue contexts)
CALLER_CONTEXTS = HOTLINE_CONTEXTS | {Context.SURVEY.value}


def _duration(v: Any) -> float:
    """`HH:MM:SS` (CoreShowChannel Duration) or seconds → seconds (0 when unreadable)."""
    s = clean(v)
    if ":" in s:
        total = 0.0
        for part in s.split(":"):
            n = number(part)
            if n is None:
                return 0.0
            total = total * 60 + n
        return total
    return number(s) or 0.0


def rebuild(model: LiveModel, channels: Iterable[Mapping[str, str]], queue_status: Iterable[Mapping[str, str]],
            now: float) -> Changes:
    ch = model.tick(now)
    by_lid: dict[str, list[Mapping[str, str]]] = {}
    for c in channels:
        lid = clean(c.get("Linkedid"))
        if lid and clean(c.get("Uniqueid")):
            by_lid.setdefault(lid, []).append(c)
    entries: dict[str, Mapping[str, str]] = {}
    for row in queue_status:
        kind = clean(row.get("Event"))
        if kind == "QueueEntry" and clean(row.get("Uniqueid")):
            entries[clean(row.get("Uniqueid"))] = row
        elif kind == "QueueMember":
            ch.update(model.feed({**row, "Event": "QueueMember"}, now))
    for lid in [lid for lid in model.calls if lid not in by_lid]:
        call = model.calls[lid]
        model.end_call(lid)
        ch.calls.add(lid)
        ch.queues.add(call.queue or "")
        ch.agents |= call.ringing | ({call.agent} if call.agent else set())
        ch.center = True
    model._pending.clear()
    for lid, chans in by_lid.items():
        _adopt(model, lid, chans, entries, now, ch)
    ch.queues.discard("")
    ch.agents.discard("")
    return ch


def _adopt(model: LiveModel, lid: str, chans: list[Mapping[str, str]], entries: Mapping[str, Mapping[str, str]],
           now: float, ch: Changes) -> None:
    uids = {clean(c.get("Uniqueid")) for c in chans}
    queued = next((entries[u] for u in uids if u in entries), None)
    callers = [c for c in chans if clean(c.get("Context")) in CALLER_CONTEXTS
               or clean(c.get("Context")).startswith(QUEUE_CONTEXT_PREFIX) or clean(c.get("Uniqueid")) in entries]
    if not callers and queued is None:
        if lid not in model.calls:
            model._pending[lid] = uids
            return
    call = model.calls.get(lid)
    started = now - max((_duration(c.get("Duration")) for c in chans), default=0.0)
    if call is None:
        call = model.calls[lid] = Call(lid, started, hotline=True)
        first = next((c for c in chans if clean(c.get("Uniqueid")) == lid), None) or (callers or chans)[0]
        call.caller_uid = clean(first.get("Uniqueid"))
        call.caller = normalise_number(clean(first.get("CallerIDNum")))
        if not model.counted_today(lid):
            model._counted[lid] = Counted()
            model.calls_today += 1
            model.half_hours[model._half_hour(started)] += 1
            ch.half_hours = True
    call.channels = set(uids)
    counted = model._counted.get(lid)
    agent_chan = next((c for c in chans if clean(c.get("Uniqueid")) != call.caller_uid and clean(c.get("BridgeId"))
                       and not is_local(clean(c.get("Channel"))) and clean(c.get("Channel")).upper().startswith("PJSIP/")
                       and agent_of(clean(c.get("Channel"))) in model_agents(model, call)), None)
    if queued is not None and (q := queue_name(clean(queued.get("Queue")))) is not None:
        wait = number(queued.get("Wait")) or 0.0
        call.phase, call.queue, call.joined_at = "queued", q, now - wait
        call.first_joined_at = call.first_joined_at if call.first_joined_at is not None else call.joined_at
        call.agent = call.agent_channel = None
        if counted is not None and not counted.offered:
            counted.offered = True
            model.offered += 1
            if q not in counted.queues_offered:
                counted.queues_offered.add(q)
                model._figures(q).offered += 1
        ch.queues.add(q)
    elif agent_chan is not None:
        call.phase, call.joined_at = "talking", None
        call.agent, call.agent_channel = agent_of(clean(agent_chan.get("Channel"))), clean(agent_chan.get("Channel"))
        ch.agents.add(call.agent)
        if counted is not None and not counted.answered:
            counted.offered = counted.answered = True
            model.offered += 1
            model.answered += 1
    elif call.phase in ("queued", "talking"):
        call.phase, call.joined_at, call.agent, call.agent_channel = "after_agent", None, None, None
    elif any(clean(c.get("BridgeId")) for c in chans if clean(c.get("Uniqueid")) == call.caller_uid):
        call.phase = "connected"
    ch.calls.add(lid)
    ch.center = True


def model_agents(model: LiveModel, call: Call) -> set[str]:
    """Who may be the agent of `call` after a restart: any seat that is a queue member (or was its agent)."""
    return set(model.seats) | set(model.members) | ({call.agent} if call.agent else set())
