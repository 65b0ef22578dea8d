"""The FastAGI scripts a call runs: `inbound` (greeting, number plan, menus, self-query) and `survey`.

Thin adapter: the inbound decisions come from the call-flow core (ivr/callflow.py, the
same code `hotline explain` drives); this module only plays, collects and hands the
chosen route back to the dialplan in channel variables (model/contract.py names them). The dialplan carries the route out, so a
controller restart never strands a caller, and anything that goes wrong here ends
in the general queue (fail open), never in silence.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from ivr.callflow import (
    Decided,
    FlowAction,
    Greeted,
    MenuExit,
    MenuPath,
    Note,
    Now,
    OpenTicket,
    SelfService,
    SetRoute,
    inbound_flow,
)
from ivr.menu import Collect, Digit, Play, SpeechResult, Timeout
from ivr.prompts import say_digits_files, sound_name
from ivr.ticket_notice import AskRepeat, Part, Recite, Say, SayDigits, ticket_notice
from model.config import Config
from model.contract import IVR_STEPS_PER_EVENT, Event, Var, ivr_step_headers
from model.destinations import Destination, HangupDest, QueueDest
from model.hours import Clock
from model.privacy import mask_number
from model.ticket_state import QueryLimited
from wire.fastagi import AgiHangup, AgiSession

log = structlog.get_logger("hotline.ivr")

#: how long the ticket number may take as the call enters before the greeting goes on without it (s)
OPEN_TICKET_TIMEOUT_S = 3.0
#: the longest a self-query caller waits on the store (three round trips); then an agent helps
STORE_WAIT_S = 5.0
#: Asterisk's own channel function naming the call (not one of our wire names)
LINKEDID = "CHANNEL(linkedid)"



@dataclass(frozen=True)
class InboundCall:
    """What the IVR knows of a call as it enters: the number dialed, the caller, the call's linkedid and
    whether it arrived with video (the dialplan's answer, routing/access.py)."""

    dialed: str
    caller: str
    linkedid: str
    video: bool


async def _inbound_args(s: AgiSession) -> tuple[str, bool]:
    """The linkedid and the video flag, as the dialplan passes them (`inbound,<linkedid>[,<video>]`: no video
    flag without a video queue); asked of the channel when the script runs from a dialplan rendered before they
    were arguments (two more round trips)."""
    if s.args:
        return s.args[0], s.args[1:2] == ["1"]
    return (await s.get_variable(LINKEDID) or ""), (await s.get_variable(Var.VIDEO) or "") == "1"


#: Where speech recordings go, as Asterisk sees its filesystem (under its spool dir, which it can write).
DEFAULT_RECORD_DIR = "/var/spool/asterisk/tmp"


class QueryStore(Protocol):
    async def verify_query(self, ticket_no: str, password: str, caller: str | None = None) -> Any:
        """The ticket, or None; raises model.ticket_state.QueryLimited past the guess limits."""

    async def open_ticket(self, linkedid: str, *, caller: str = "", dialed: str = "",
                          started_at: float | None = None) -> Any: ...

    async def issue_password(self, ticket_no: str, *, sms: bool = True, actor: str = "ivr") -> str | None: ...


class CallScripts:
    """Holds what every call's script needs; one instance serves all concurrent calls."""

    def __init__(self, config: Config, clock: Clock, store: QueryStore | None = None,
                 recognizer: Any = None, *, recordings_root: str | os.PathLike[str] = "/",
                 record_dir: str = DEFAULT_RECORD_DIR) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.recognizer = recognizer
        #: Asterisk's root as the controller sees it ("/" for a system Asterisk, the chroot otherwise):
        #: RECORD FILE paths are inside Asterisk's filesystem, the controller reads them under this root.
        self.recordings_root = Path(recordings_root)
        #: the directory RECORD FILE writes to, as Asterisk sees it
        self.record_dir = record_dir.rstrip("/") or "/"

    def record_host_dir(self) -> Path:
        """Where the controller finds what Asterisk recorded in `record_dir`."""
        return self.recordings_root / self.record_dir.lstrip("/")

    def prepare_recordings(self) -> None:
        """Create the speech recording directory, owned like its parent (Asterisk's spool), if missing.

        res_agi's RECORD FILE does not create directories; without this, every listen fails
        (and falls back to DTMF). Mode 0770: recordings are personal data.
        """
        d = self.record_host_dir()
        if d.is_dir():
            return
        try:
            d.mkdir(mode=0o770, parents=True, exist_ok=True)
            st = d.parent.stat()
            os.chown(d, st.st_uid, st.st_gid)
        except OSError as e:
            log.warning("speech_record_dir_unusable", dir=str(d), error=str(e))

    # ------------------------------------------------------------------ inbound
    async def inbound(self, s: AgiSession) -> None:
        started = time.monotonic()
        dialed = s.env.get("agi_extension", "") or (await s.get_variable(Var.DIALED) or "")
        caller = s.env.get("agi_callerid", "")
        now = self.clock()
        hung_up = False
        try:
            await self._inbound(s, InboundCall(dialed, caller, *await _inbound_args(s)), now)
        except AgiHangup:
            hung_up = True  # the caller hung up in the IVR
        except Exception:
            # fail open: the dialplan finds no HOTLINE_ROUTE and queues the caller
            log.exception("ivr_failed_open", dialed=dialed, caller=mask_number(caller))
            try:
                await s.set_variable(Var.ROUTE, "")
            except Exception:  # noqa: BLE001 - the channel may be gone; the dialplan still falls back
                pass
        finally:
            log.info("ivr_done", dialed=dialed, ms=round((time.monotonic() - started) * 1000), hung_up=hung_up,
                     **({"caller": mask_number(caller)} if hung_up else {}))

    async def _inbound(self, s: AgiSession, call: InboundCall, now: dt.datetime) -> None:
        """Drive the one call-flow core (ivr/callflow.py): perform each action, answer it, go on."""
        flow = inbound_flow(self.config, call.dialed, call.caller, now, video=call.video)
        answer: object = None
        while True:
            try:
                action = flow.send(answer)
            except StopIteration:
                return
            answer = await self._perform(s, action, call)

    async def _perform(self, s: AgiSession, action: FlowAction, call: InboundCall) -> object:
        dialed, caller = call.dialed, call.caller
        match action:
            case Play(prompt=prompt, interruptible=interruptible):
                return await self._play(s, prompt, interruptible=interruptible)
            case Collect():
                return await self._collect(s, action)
            case MenuPath(labels=labels):
                # one HotlineIVR event for the whole batch of decisions (Step, Step2, …), not one per step
                for i in range(0, len(labels), IVR_STEPS_PER_EVENT):
                    await s.user_event(Event.IVR, **ivr_step_headers(labels[i:i + IVR_STEPS_PER_EVENT]))
            case Decided(decision=d, chosen=chosen):
                for w in d.warnings:
                    log.warning("numberplan_warning", dialed=d.dialed, warning=w)
                log.info("call_routed", dialed=d.dialed, caller=mask_number(caller), mode=d.mode, line=d.line,
                         dest=d.dest.label(), reason=d.reason, chosen_in_menu=chosen)
            case OpenTicket():
                return await self._open_ticket(s, call)
            case Greeted():
                await s.set_variable(Var.GREETED, "1")
            case Note(kind=kind, text=text):
                log.info("queue_closed" if kind == "hours" else "call_flow_note", kind=kind, note=text, dialed=dialed)
            case Now():
                return self.clock()
            case SelfService():
                return await self.progress_query(s)
            case MenuExit():
                pass
            case SetRoute():
                d = action.decision
                await s.user_event(Event.ROUTE, Line=d.line or "", Mode=d.mode, Dest=action.dest.label(),
                                   Category=action.category.value if action.category else "", Fallback="0",
                                   # not `Priority`/`Language`: every UserEvent carries the channel's own
                                   **({"AccessPriority": action.priority} if action.priority else {}),
                                   **({"AccessLanguage": action.language} if action.language else {}))
                # the route's variables in one round trip, Var.ROUTE last: a script cut off before it leaves the
                # dialplan without a route, and it queues the caller (fail open)
                await s.set_variables([*action.variables,
                                       # the queue records each direction apart for the transcripts
                                       *([(Var.TRANSCRIBE, "1")] if self.config.transcripts.enabled else []),
                                       (Var.ROUTE, action.route)])
        return None

    async def _open_ticket(self, s: AgiSession, call: InboundCall) -> str | None:
        """Allocate the call's ticket number now and hand it to the channel (inherited by the agent's leg).

        Never in the caller's way: a slow or failing store is logged and the call goes on; the
        ticket then gets its number when the call ends (or from the CDR replay)."""
        if self.store is None:
            return None
        dialed, caller = call.dialed, call.caller
        try:
            linkedid = call.linkedid or await s.get_variable(LINKEDID) or s.uniqueid
            async with asyncio.timeout(OPEN_TICKET_TIMEOUT_S):  # (not wait_for: no task of its own)
                ticket_no = (await self.store.open_ticket(linkedid, caller=caller, dialed=dialed,
                                                          started_at=time.time())).ticket_no
        except AgiHangup:
            raise
        except Exception as e:  # noqa: BLE001 - the call goes on without its number for now
            log.warning("ticket_open_failed", dialed=dialed, error=type(e).__name__)
            return None
        await s.set_variable(f"__{Var.TICKET.value}", ticket_no)  # (the store logged ticket_opened)
        return ticket_no

    async def _collect(self, s: AgiSession, c: Collect) -> Any:
        digits, timed_out = await self._ask(s, c.prompt, int(c.timeout_s * 1000), 1)
        if digits:
            return Digit(digits[0])
        if not timed_out:
            # GET DATA takes '#' as "end of input": it returns nothing, without "(timeout)".
            # In a menu '#' means back, so it must not count as a silent caller.
            return Digit("#")
        if c.speech and self.recognizer is not None:
            heard = await self._listen(s, c.words)
            if heard is not None:
                return heard
        return Timeout()

    async def _listen(self, s: AgiSession, words: tuple[str, ...] = ()) -> SpeechResult | Digit | None:
        """Record a few seconds and decode off the loop; any failure falls back to DTMF.

        RECORD FILE writes inside Asterisk's filesystem (a chroot, perhaps): the file is
        named there (`record_dir`) and read here under `recordings_root`. A key pressed
        while listening is that key. The recording is deleted once decoded (personal data).
        """
        name = f"hotline-speech-{_safe_id(s.uniqueid)}-{uuid.uuid4().hex[:8]}"
        inside = f"{self.record_dir}/{name}"
        host = self.record_host_dir() / f"{name}.wav"
        ms = int(self.config.speech.listen_s * 1000)
        line = f'RECORD FILE {inside} wav "0123456789*#" {ms} BEEP s=2'
        try:
            await s.user_event(Event.SPEECH, Phase="listening")
            reply = await s.command(line, timeout=(s.command_timeout or 30.0) + ms / 1000)
            code = reply.result_int
            if code is not None and code < 0:
                await s.confirm_hangup(line)  # raises AgiHangup when the caller is gone
                log.warning("speech_record_failed", reason=reply.data or "", dir=self.record_dir)
                return None
            # only "(dtmf)" carries a key; "(timeout)" may come with result=1 when silence ended it
            if code and (reply.data or "").strip() == "dtmf":
                return Digit(chr(code))
            res = await self.recognizer.recognize_file(host, grammar=words if self.config.speech.grammar else ())
            await s.user_event(Event.SPEECH, Phase="heard", Confidence=f"{res.confidence:.2f}",
                               Words=str(len(res.text.split())))
            log.info("speech_heard", confidence=round(res.confidence, 2), words=len(res.text.split()))
            return SpeechResult(res.text, res.confidence)
        except AgiHangup:
            raise
        except Exception:  # noqa: BLE001
            log.warning("speech_failed_fallback_dtmf", exc_info=True)
            return None
        finally:
            await asyncio.to_thread(_unlink_quietly, host)

    async def _play(self, s: AgiSession, prompt: str, *, interruptible: bool = True) -> str | None:
        return await self._stream(s, prompt, "0123456789*#" if interruptible else "")

    # Every prompt is announced as a HotlinePrompt UserEvent as it starts, so what a caller heard
    # is visible on AMI (supervisors, tests) without the `agi` event class. Never the keys pressed.
    async def _stream(self, s: AgiSession, prompt: str, escape: str) -> str | None:
        await s.user_event(Event.PROMPT, Prompt=prompt)
        return await s.stream_file(sound_name(prompt), escape)

    async def _ask(self, s: AgiSession, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        await s.user_event(Event.PROMPT, Prompt=prompt)
        return await s.get_data(sound_name(prompt), timeout_ms, max_digits)

    # ------------------------------------------------------------------ self-service
    async def progress_query(self, s: AgiSession) -> Destination:
        """办理进度查询: ticket number + query password; nothing is read without the password."""
        cfg = self.config
        general = QueueDest(queue=cfg.center.general_queue)
        if self.store is None:
            return general
        for attempt in range(1, cfg.self_query.max_attempts + 1):
            # one more than the number's length: the prompt asks for '#' at the end, and with exactly
            # `ticket_digits` GET DATA would return before it, leaving the '#' to end the password at once
            ticket_no, _ = await self._ask(s, "query_ticket", 8000, cfg.self_query.ticket_digits + 1)
            if ticket_no == "0":
                return general
            password, _ = await self._ask(s, "query_password", 8000, 8)
            try:
                async with asyncio.timeout(STORE_WAIT_S):  # a store away never leaves the caller in silence
                    ticket = (await self.store.verify_query(ticket_no, password, caller=s.env.get("agi_callerid", ""))
                              if ticket_no and password else None)
            except TimeoutError:
                log.warning("self_query_store_slow", seconds=STORE_WAIT_S)
                break
            except QueryLimited as e:  # too many wrong tries across calls: no more guessing, an agent helps
                log.warning("self_query_refused", by=str(e), attempt=attempt)
                break
            if ticket is not None:
                await s.user_event(Event.SELF_QUERY, Ticket=ticket_no, Result="found")
                log.info("self_query_found", ticket=ticket_no, attempt=attempt)
                await self._play(s, "query_ticket_is")
                await self._say_digits(s, ticket_no)
                await self._play(s, "query_state")
                await self._play(s, f"state_{_state_name(ticket.state)}")
                digit = await self._stream(s, "query_done", "0")
                if digit is None:
                    digit = await s.wait_for_digit(3000)
                return general if digit == "0" else HangupDest()
            log.info("self_query_wrong", ticket=ticket_no, attempt=attempt)  # never the password
            await s.user_event(Event.SELF_QUERY, Ticket=ticket_no, Result="wrong")
            await self._play(s, "query_wrong")
        await s.user_event(Event.SELF_QUERY, Ticket="", Result="locked")
        await self._stream(s, "query_locked", "")
        return general  # the query is over, the call is not: an agent takes it from here

    async def _say_digits(self, s: AgiSession, number: str) -> None:
        for f in say_digits_files(number):
            await s.stream_file(f, "")

    # ------------------------------------------------------------------ after the agent hung up
    async def survey(self, s: AgiSession) -> None:
        """After the agent hung up first: the ticket notice (number and query password), then the survey."""
        if self.config.ticket_notice.enabled and self.store is not None:
            await self.notice(s)
        await self._survey(s)

    async def notice(self, s: AgiSession) -> None:
        """工单编号与查询密码: issue the password (stored hashed only) and read both out, * to hear them again.

        Any failure of ours skips the notice (the survey still follows); the password is never in a
        log, an event or a channel variable: only the digit files it is read with carry it. Each
        reading is one Playback (prompts, digits and the silences between them) after the
        HotlinePrompt events of its prompts, then the repeat question: a handful of AGI commands."""
        try:
            # a missed-call callback's leg carries the missed call's ticket: never a ticket of its own
            ticket_no = await s.get_variable(Var.TICKET) or await s.get_variable(Var.CALLBACK) or ""
            if not ticket_no:  # the IVR never saw the call enter (fallback): number it now
                linkedid = await s.get_variable(LINKEDID) or s.uniqueid
                ticket_no = (await self.store.open_ticket(linkedid, caller=s.env.get("agi_callerid", ""),
                                                          dialed=await s.get_variable(Var.DIALED) or "")).ticket_no
                await s.set_variable(Var.TICKET, ticket_no)
            password = await self.store.issue_password(ticket_no)
        except AgiHangup:
            raise
        except Exception:  # noqa: BLE001
            log.exception("ticket_notice_failed")
            return
        if password is None:
            log.info("ticket_notice_skipped", ticket=ticket_no, reason="a password was issued before")
            return
        flow = ticket_notice(self.config.ticket_notice, ticket_no, password)
        answer: object = None
        while True:
            try:
                action = flow.send(answer)
            except StopIteration as stop:
                log.info("ticket_notice_told", ticket=ticket_no, times=stop.value)
                return
            answer = None
            match action:
                case Recite(parts=parts):
                    try:
                        await self._recite(s, parts)
                    except ValueError:  # a sound name Playback cannot take (wire/fastagi.py): skipped, survey follows
                        log.exception("ticket_notice_failed")
                        return
                case AskRepeat(prompt=prompt, wait_s=wait_s):
                    answer = await self._stream(s, prompt, "*")
                    if answer is None:
                        answer = await s.wait_for_digit(int(wait_s * 1000))

    async def _recite(self, s: AgiSession, parts: tuple[Part, ...]) -> None:
        """A run nobody interrupts as one Playback; its prompts are announced (HotlinePrompt, in order) as it
        starts, its digits never (a secret part is the password)."""
        files: list[str] = []
        for part in parts:
            match part:
                case Say(prompt=prompt):
                    await s.user_event(Event.PROMPT, Prompt=prompt)
                    files.append(sound_name(prompt))
                case SayDigits(digits=digits, gap_s=gap_s):
                    files += say_digits_files(digits, gap_s)
        if files:
            await s.playback(files)

    async def _survey(self, s: AgiSession) -> None:
        """满意度评价; no answer is recorded as none."""
        cfg = self.config.survey
        if not cfg.enabled:
            return
        rating, answered = "", False
        try:
            for _ in range(2):
                digits, _ = await self._ask(s, cfg.prompt, int(cfg.timeout_s * 1000), 1)
                if digits and digits.isdigit() and 1 <= int(digits) <= cfg.scale:
                    rating = digits
                    break
                if not digits:
                    break
                await self._play(s, "invalid_input")
            await s.user_event(Event.SURVEY, Rating=rating, Scale=str(cfg.scale))
            answered = True
            log.info("survey_answered", rating=rating or None, scale=cfg.scale)
            if rating:
                await self._play(s, cfg.thanks, interruptible=False)
        except AgiHangup:
            # a caller who rated and hung up during the thanks did not abandon the survey: the rating is sent
            log.info("survey_hung_up_after_rating" if answered else "survey_abandoned")
            raise


def _safe_id(uniqueid: str) -> str:
    return "".join(c for c in uniqueid if c.isalnum() or c in "._-") or "x"


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("speech_recording_not_deleted", path=str(path), error=str(e))


def _state_name(state: Any) -> str:
    return str(getattr(state, "value", state))

