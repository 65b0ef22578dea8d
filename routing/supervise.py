"""Supervisors' intervention in agents' calls (监听 listen, 耳语 whisper, 强插 barge, 强拆 force release): pure.

Who may intervene on what, on which channel, and with which ChanSpy options — decided here, with
no I/O: `decide(config, mode, seat, agent, channels)` takes the live channels (AMI CoreShowChannels
rows, as `LiveChannel`) and returns a `Spy` (ChanSpy on the agent's channel), a `Release` (hang
up every channel of the agent's call) or a `Refusal` (with the prompt the seat phone plays). The
adapters carry it out: routing/supervise_service.py over AMI (Originate, Hangup), ivr/supervisor_phone.py
for the seats' feature codes.

Rules:
* only a seat with `role: supervisor` intervenes; the target is a seat with `role: agent`, never
  the supervisor's own seat;
* the agent must be in a call now: its channel (`PJSIP/<agent>-…`) is up and in a bridge;
* listen, whisper and barge attach Asterisk's ChanSpy to that one channel; ChanSpy ends when the
  agent's channel hangs up (E) or there is nothing left to spy on (S). Keys during the session
  (`SWITCH_KEYS`) leave ChanSpy into `Context.SUPERVISE_KEYS` (option X), which records the switch
  and re-enters ChanSpy in the new mode — so every switch is seen on AMI, unlike ChanSpy's own `d`;
* force release hangs up every channel of the agent's call (its linkedid): the caller does not
  fall through to the survey, the call ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from model.config import Config


class Mode(StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"
    RELEASE = "release"


#: the 12345 words for each mode (logs, answers, the audit log)
MODE_LABELS = {Mode.LISTEN: "监听", Mode.WHISPER: "耳语", Mode.BARGE: "强插", Mode.RELEASE: "强拆"}
#: keys during a session → the mode they switch to (the digits of ChanSpy's own `d` option)
SWITCH_KEYS: Mapping[str, Mode] = {"4": Mode.LISTEN, "5": Mode.WHISPER, "6": Mode.BARGE}
#: ChanSpy options every session has: q no beep or channel name, b bridged channels only, E end when the
#: agent's channel hangs up, S end when nothing is left to spy on, X keys leave to SUPERVISE_KEYS
BASE_OPTIONS = "qbESX"
#: what each mode adds: nothing (listen: the supervisor is heard by nobody), w (whisper: the spied-on
#: agent's channel hears the supervisor), B (barge: both sides of the agent's bridge hear the supervisor)
MODE_OPTIONS = {Mode.LISTEN: "", Mode.WHISPER: "w", Mode.BARGE: "B"}

#: refusal reasons → the prompt id a seat phone hears (config `prompts:`)
NOT_SUPERVISOR = "not_supervisor"
UNKNOWN_SEAT = "unknown_seat"
UNKNOWN_AGENT = "unknown_agent"
NOT_AN_AGENT = "not_an_agent"
NOT_IN_CALL = "not_in_call"
UNKNOWN_MODE = "unknown_mode"
REFUSED_PROMPT = "supervisor_refused"
NO_CALL_PROMPT = "supervisor_no_call"
RELEASED_PROMPT = "supervisor_released"
PROMPT_IDS = (REFUSED_PROMPT, NO_CALL_PROMPT, RELEASED_PROMPT)
REFUSAL_PROMPTS = {NOT_IN_CALL: NO_CALL_PROMPT}


def chanspy_options(mode: Mode | str) -> str:
    """ChanSpy's options for a listen/whisper/barge session (ValueError for release or an unknown mode)."""
    m = Mode(mode)
    if m is Mode.RELEASE:
        raise ValueError("force release is no ChanSpy session")
    return BASE_OPTIONS + MODE_OPTIONS[m]


def spy_modes() -> dict[str, str]:
    """Every session mode → its ChanSpy options (the dialplan templates render the switch keys from it)."""
    return {m.value: chanspy_options(m) for m in (Mode.LISTEN, Mode.WHISPER, Mode.BARGE)}


@dataclass(frozen=True)
class LiveChannel:
    """One channel Asterisk has now (a CoreShowChannels row)."""

    channel: str
    linkedid: str
    bridge: str = ""
    state: str = ""  # ChannelStateDesc: Up, Ring, Ringing, …

    @classmethod
    def from_ami(cls, row: Mapping[str, str]) -> "LiveChannel":
        return cls(channel=str(row.get("Channel") or ""), linkedid=str(row.get("Linkedid") or ""),
                   bridge=str(row.get("BridgeId") or ""), state=str(row.get("ChannelStateDesc") or ""))


@dataclass(frozen=True)
class Spy:
    """Attach ChanSpy(target, options) on the supervisor's seat: a listen, whisper or barge session."""

    mode: Mode
    seat: str
    agent: str
    target: str
    linkedid: str
    options: str


@dataclass(frozen=True)
class Release:
    """Hang up `channels` (every channel of the agent's call `linkedid`)."""

    seat: str
    agent: str
    linkedid: str
    channels: tuple[str, ...]
    mode: Mode = Mode.RELEASE


@dataclass(frozen=True)
class Refusal:
    reason: str
    detail: str
    seat: str = ""
    agent: str = ""
    mode: str = ""

    @property
    def prompt(self) -> str:
        return REFUSAL_PROMPTS.get(self.reason, REFUSED_PROMPT)


Decision = Spy | Release | Refusal


def agent_channel(agent: str, channels: Iterable[LiveChannel]) -> LiveChannel | None:
    """The agent's call leg now: `PJSIP/<agent>-…`, up and bridged (the newest when there are several)."""
    prefix = f"pjsip/{agent}-".lower()
    legs = [c for c in channels if c.channel.lower().startswith(prefix) and c.bridge and c.state in ("Up", "")]
    return legs[-1] if legs else None


def decide(config: Config, mode: str, seat: str, agent: str, channels: Iterable[LiveChannel],
           call: str = "") -> Decision:
    """May `seat` intervene in `agent`'s call in `mode`, and how. `call` (a linkedid, from the API): only
    that call — an agent who has moved on to another call meanwhile is refused, never the other caller."""
    channels = list(channels)
    try:
        m = Mode(mode)
    except ValueError:
        return Refusal(UNKNOWN_MODE, f"unknown mode {mode!r} (one of {', '.join(x.value for x in Mode)})",
                       seat, agent, mode)
    s = config.seats.get(seat)
    if s is None:
        return Refusal(UNKNOWN_SEAT, f"seat {seat!r} is not configured", seat, agent, m.value)
    if s.role != "supervisor":
        return Refusal(NOT_SUPERVISOR, f"seat {seat} is not a supervisor seat (role: {s.role})", seat, agent, m.value)
    a = config.seats.get(agent)
    if a is None:
        return Refusal(UNKNOWN_AGENT, f"no seat {agent!r}", seat, agent, m.value)
    if a.role != "agent" or agent == seat:
        return Refusal(NOT_AN_AGENT, f"seat {agent} is not an agent's seat", seat, agent, m.value)
    leg = agent_channel(agent, channels)
    if leg is None:
        return Refusal(NOT_IN_CALL, f"agent {agent} is not in a call", seat, agent, m.value)
    if call and leg.linkedid != call:
        return Refusal(NOT_IN_CALL, f"agent {agent} is no longer on call {call}", seat, agent, m.value)
    if m is Mode.RELEASE:
        legs = tuple(c.channel for c in channels if c.linkedid == leg.linkedid) if leg.linkedid else (leg.channel,)
        return Release(seat, agent, leg.linkedid, legs)
    return Spy(m, seat, agent, leg.channel, leg.linkedid, chanspy_options(m))


def mode_of_code(config: Config, code: str) -> Mode | None:
    """A dialed supervisor feature code (without the agent's digits) → its mode."""
    for name, c in config.supervision.feature_codes.model_dump().items():
        if c == code:
            return Mode(name)
    return None
