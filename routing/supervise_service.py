"""Supervisors' intervention over AMI: the thin adapter around `routing.supervise` (pure).

The interface the API and the CLI call (through the controller, `Controller.supervise`, control op
`supervise`):

    await service.intervene(mode, seat, agent, actor=..., uid=..., user=..., via="api")
        → {"ok": True, "mode", "seat", "agent", "linkedid", ...} or {"ok": False, "reason", "error"}

* listen / whisper / barge: AMI Originate rings the supervisor's seat `PJSIP/<seat>` into
  `Context.SUPERVISE` (`spy`), with the agent's channel and the mode's ChanSpy options as channel
  variables (`Var.SPY_*`): when the supervisor answers, ChanSpy attaches. Nothing but the
  `originate` class is needed (never Originate Application=ChanSpy, which Asterisk would not class
  as originate only).
* release (强拆): AMI Hangup of every channel of the agent's call; `on_release` hears of it first
  (the controller puts it on the call's ticket).

`phone(mode, seat, agent)` is the same decision for a seat that dialed a feature code
(ivr/supervisor_phone.py): the dialplan then runs ChanSpy on the seat's own channel.

Every use is written to the audit log through `audit(action, asked, uid, user)` BEFORE anything
is done: when it cannot be written, nothing is done (the answer says why). A refusal is written
too. Mode switches by key arrive as UserEvent `Event.SUPERVISE` (Step: switch) from the
supervisor's channel and are written as they come; ChanSpyStart/ChanSpyStop are logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import structlog

from model.config import Config
from model.contract import Context, Event, Var
from routing.supervise import MODE_LABELS, Decision, LiveChannel, Refusal, Release, Spy, decide

log = structlog.get_logger("hotline.supervise")

#: (action, asked, uid, user) → a durable audit row (ticketbridge store's audit_log)
AuditFn = Callable[[str, dict[str, Any], int, str], Awaitable[None]]
ReleaseFn = Callable[[Release, str], Awaitable[None]]
#: the uid recorded when no OS user is behind a request (a seat phone's feature code, an API token):
#: `user` names who instead (`seat:9001`, the token's name)
NO_UID = -1
#: the extension of Context.SUPERVISE that runs ChanSpy with Var.SPY_*
SPY_EXTEN = "spy"


class AuditFailed(Exception):
    """The audit row could not be written: the intervention is not done."""


def _asked(d: Decision, via: str, actor: str) -> dict[str, Any]:
    base: dict[str, Any] = {"mode": str(d.mode), "seat": d.seat, "agent": d.agent, "via": via, "actor": actor}
    if isinstance(d, Refusal):
        return {**base, "result": "refused", "reason": d.reason, "detail": d.detail}
    if isinstance(d, Release):
        return {**base, "result": "released", "linkedid": d.linkedid, "channels": list(d.channels)}
    # from a phone the session starts now; otherwise the supervisor's seat rings first (ChanSpyStart follows)
    return {**base, "result": "started" if via == "phone" else "ringing", "linkedid": d.linkedid, "channel": d.target}


class SupervisionService:
    def __init__(self, ami: Any, config: Config, audit: AuditFn, *, on_release: ReleaseFn | None = None) -> None:
        self.ami, self.config, self._audit, self._on_release = ami, config, audit, on_release

    def attach(self) -> None:
        self.ami.on_event("ChanSpyStart", self._on_spy_event)
        self.ami.on_event("ChanSpyStop", self._on_spy_event)
        self.ami.on_event("UserEvent", self._on_user_event)

    # ---------------------------------------------------------------- decisions
    async def channels(self) -> list[LiveChannel]:
        rows = await self.ami.action_list("CoreShowChannels")
        return [LiveChannel.from_ami(r) for r in rows]

    async def decide(self, mode: str, seat: str, agent: str, call: str = "") -> Decision:
        return decide(self.config, mode, seat, agent, await self.channels(), call)

    async def _record(self, d: Decision, via: str, actor: str, uid: int, user: str) -> None:
        action = f"supervise {d.mode}" if d.mode else "supervise"
        try:
            await self._audit(action, _asked(d, via, actor), uid, user)
        except Exception as e:  # noqa: BLE001 - a broken store: the intervention is not done
            log.error("supervise_audit_failed", seat=d.seat, agent=d.agent, error=type(e).__name__)
            raise AuditFailed(f"the audit log cannot be written ({type(e).__name__}): nothing done") from e

    # ---------------------------------------------------------------- the API / CLI
    async def intervene(self, mode: str, seat: str, agent: str, *, actor: str = "supervisor", uid: int = NO_UID,
                        user: str = "", via: str = "api", call: str = "") -> dict[str, Any]:
        """Start a listen/whisper/barge session on `seat` (its phone rings) or force release `agent`'s call
        (`call`: only while the agent is still on that linkedid)."""
        d = await self.decide(mode, seat, agent, call)
        try:
            await self._record(d, via, actor, uid, user)
        except AuditFailed as e:
            return {"ok": False, "reason": "audit_failed", "error": str(e)}
        if isinstance(d, Refusal):
            log.info("supervise_refused", seat=seat, agent=agent, mode=mode, reason=d.reason, via=via)
            return {"ok": False, "reason": d.reason, "error": d.detail}
        if isinstance(d, Release):
            await self._release(d, actor)
            return {"ok": True, "mode": d.mode.value, "seat": seat, "agent": agent, "linkedid": d.linkedid,
                    "channels": list(d.channels)}
        await self._ring(d)
        return {"ok": True, "mode": d.mode.value, "seat": seat, "agent": agent, "linkedid": d.linkedid,
                "channel": d.target, "ringing": f"PJSIP/{seat}"}

    async def _ring(self, d: Spy) -> None:
        label = MODE_LABELS[d.mode]
        # with a ChannelId: even a retried Originate never rings the seat twice (wire/ami.py)
        await self.ami.originate(f"PJSIP/{d.seat}", context=Context.SUPERVISE.value, exten=SPY_EXTEN, priority=1,
                                 caller_id=f'"{label} {d.agent}" <{d.agent}>', variables=spy_variables(d),
                                 timeout_ms=self.config.supervision.ring_s * 1000)
        log.info("supervise_ringing", seat=d.seat, agent=d.agent, mode=d.mode.value, linkedid=d.linkedid)

    async def _release(self, d: Release, actor: str) -> None:
        if self._on_release is not None:
            try:
                await self._on_release(d, actor)
            except Exception:  # noqa: BLE001 - the release still happens; the audit row has it
                log.exception("supervise_release_note_failed", linkedid=d.linkedid)
        for ch in d.channels:
            resp = await self.ami.action("Hangup", raise_on_error=False, Channel=ch, Cause="16")
            if resp.get("Response") == "Error":
                log.info("supervise_hangup_failed", channel=ch, message=resp.get("Message"))
        log.info("supervise_released", seat=d.seat, agent=d.agent, linkedid=d.linkedid, channels=len(d.channels))

    # ---------------------------------------------------------------- the seat phone
    async def phone(self, mode: str, seat: str, agent: str) -> Decision:
        """A supervisor feature code dialed on `seat`: decide, record, and release now if asked;
        a `Spy` is run by the dialplan on the seat's own channel. Unrecordable → a refusal."""
        d = await self.decide(mode, seat, agent)
        try:
            await self._record(d, "phone", f"seat:{seat}", NO_UID, f"seat:{seat}")
        except AuditFailed as e:
            return Refusal("audit_failed", str(e), seat, agent, mode)
        if isinstance(d, Release):
            await self._release(d, f"seat:{seat}")
        log.info("supervise_phone", seat=seat, agent=agent, mode=mode, result=type(d).__name__.lower())
        return d

    # ---------------------------------------------------------------- what Asterisk reports
    def _on_user_event(self, ev: Mapping[str, str]) -> Coroutine[Any, Any, None] | None:
        """A key switched mode during a session (Context.SUPERVISE_KEYS): the AMI dispatcher awaits recording it.
        Every other UserEvent (several per call) is passed over synchronously: an async handler would cost the
        dispatcher a task and a timer for each (issue 15)."""
        if ev.get("UserEvent") != Event.SUPERVISE.value or ev.get("Step") != "switch":
            return None
        return self._switched(ev)

    async def _switched(self, ev: Mapping[str, str]) -> None:
        """Recorded like the session: an audit row and a log line."""
        seat, agent, mode = str(ev.get("Seat") or ""), str(ev.get("Agent") or ""), str(ev.get("Mode") or "")
        asked = {"mode": mode, "seat": seat, "agent": agent, "via": "key", "result": "switched",
                 "linkedid": str(ev.get("Call") or ""), "channel": str(ev.get("Target") or "")}
        try:
            await self._audit(f"supervise {mode}"[:64], asked, NO_UID, f"seat:{seat}"[:64])
        except Exception:  # noqa: BLE001 - the switch already happened; the log keeps it
            log.exception("supervise_audit_failed", seat=seat, agent=agent, mode=mode)
        log.info("supervise_switched", seat=seat, agent=agent, mode=mode)

    def _on_spy_event(self, ev: Mapping[str, str]) -> None:
        log.info("supervise_chanspy", ami_event=ev.get("Event"), spyer=ev.get("SpyerChannel"),
                 spyee=ev.get("SpyeeChannel"), linkedid=ev.get("SpyeeLinkedid"))


def spy_variables(d: Spy) -> dict[str, str]:
    """The supervisor channel's variables for `Context.SUPERVISE` (set by AGI or by Originate)."""
    return {Var.SPY_TARGET.value: d.target, Var.SPY_OPTIONS.value: d.options, Var.SPY_MODE.value: d.mode.value,
            Var.SPY_AGENT.value: d.agent, Var.SPY_CALL.value: d.linkedid, Var.SPY_SEAT.value: d.seat}

