"""Which transfer an AMI event belongs to, and what it means for it: pure, no I/O.

Holds the `Correlator` (the transfers being followed, their channels, and the indexes
by agent channel, call Linkedid and leg/target channel), its event routing table (AMI
event name → function that turns the event dict into machine inputs), the decisions
around starting a transfer (target and mode, the dialable extension, which AMI action
starts it), re-attaching transfers after a restart from a CoreShowChannels listing,
and the few config lookups these need (channel names are read by `wire.channels`).

Everything here works on plain dicts as the AMI client delivers them and on the pure
machine in `routing.transfer`; `routing.transfer_service` sends the actions, keeps the
locks and timers, and logs what this module decided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model.contract import Event
from model.privacy import mask_number
from routing.transfer import (
    AttendedTransferDone,
    BlindTransferDone,
    CallerHangup,
    DialEnd,
    Input,
    Lost,
    Mode,
    State,
    TargetDialing,
    TargetHangup,
    Transfer,
    TransfererHangup,
    resolve_mode,
)
from wire.channels import endpoint, is_local, local_exten, other_half

if TYPE_CHECKING:
    from model.config import Config

#: keys that can be sent as DTMF (Atxfer keys the extension on the agent's channel)
DTMF = frozenset("0123456789*#")

#: makes a transfer id from a prefix ("x" started here, "r" re-attached); supplied by the service
NewId = Callable[[str], str]
Routed = list[tuple[str, Input]]


class TransferError(ValueError):
    """A transfer that cannot start (unknown target, agent already transferring, no such channel)."""


@dataclass
class LiveTransfer:
    """One transfer plus what only the AMI side knows: channel names."""

    machine: Transfer
    agent_channel: str
    caller_channel: str = ""
    caller_number: str = ""
    exten: str = ""
    #: Local/<exten>@hotline-transfer-…;1/;2 — Asterisk's leg towards the target
    legs: set[str] = field(default_factory=set)
    #: the real target channel(s) the Local leg dialed (DialBegin DestChannel)
    dests: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    optimized: set[str] = field(default_factory=set)
    recovered: bool = False

    @property
    def first_leg(self) -> str | None:
        """The transferer-facing Local ;1: hanging it up makes Asterisk return the caller."""
        for leg in sorted(self.legs):
            if leg.endswith(";1"):
                return leg
        return None

    def return_channels(self) -> list[str]:
        """What to hang up to put the caller back with the agent: the Local ;1 if still up, else the targets."""
        leg = self.first_leg
        return [leg] if leg and leg not in self.gone else sorted(self.dests - self.gone)

    def view(self) -> dict[str, Any]:
        """The machine's snapshot plus channels, caller number masked (for logs, an API, the CLI)."""
        d = self.machine.snapshot()
        d.update(agent_channel=self.agent_channel, caller=mask_number(self.caller_number),
                 legs=sorted(self.legs), dests=sorted(self.dests), recovered=self.recovered)
        return d


@dataclass(frozen=True)
class FeatureRequest:
    """An agent keyed a one-key transfer code: UserEvent HotlineFeature on the agent's channel."""

    channel: str
    target: str
    linkedid: str
    caller_number: str


@dataclass(frozen=True)
class FeatureIgnored:
    """A HotlineFeature event that starts nothing; `details` are safe to log."""

    reason: str
    details: Mapping[str, str] = field(default_factory=dict)


def read_feature(ev: Mapping[str, str], is_agent_channel: Callable[[str], bool]
                 ) -> FeatureRequest | FeatureIgnored | None:
    """A HotlineFeature UserEvent as a transfer request (or why not); None for any other event."""
    if ev.get("Event", "") != "UserEvent" or ev.get("UserEvent") != Event.FEATURE:
        return None
    channel, target = ev.get("Channel", ""), ev.get("Target", "").strip()
    if not channel or not target:
        return FeatureIgnored("missing Channel or Target")
    if not is_agent_channel(channel):
        return FeatureIgnored("not a seat channel", {"channel": channel, "target": target})
    return FeatureRequest(channel, target, ev.get("Linkedid", ""), ev.get("ConnectedLineNum", ""))


@dataclass(frozen=True)
class Recovered:
    """A transfer found in a CoreShowChannels listing and re-attached (or only recorded)."""

    live: LiveTransfer
    caller_present: bool
    agent_found: bool
    #: what to feed it now: Lost when we cannot tell who is who, so it ends with a recorded outcome
    inputs: tuple[Input, ...] = ()

    @property
    def attached(self) -> bool:
        return self.caller_present and self.agent_found


class Correlator:
    """The transfers being followed and the indexes that map AMI events onto them.

    `route(ev, now)` updates what is known about the channels and returns the inputs to
    feed, as (transfer id, input) pairs; it never touches the machines' state itself.
    """

    def __init__(self, config: Config, *, mode_policy: Mapping[str, Mode | str] | None = None,
                 context: str, agent_context: str, grace_s: float = 5.0, setup_timeout_s: float = 10.0) -> None:
        self.config = config
        self.mode_policy = dict(mode_policy or {})
        self.context = context
        self.agent_context = agent_context
        self.grace_s = grace_s
        self.setup_timeout_s = setup_timeout_s
        self.live: dict[str, LiveTransfer] = {}
        self.by_agent: dict[str, str] = {}
        self.by_linkedid: dict[str, str] = {}
        self.by_channel: dict[str, str] = {}

    # ------------------------------------------------------------------ starting
    def begin(self, agent_channel: str, target: str, mode: Mode | str | None, linkedid: str,
              caller_number: str, caller_channel: str, *, now: float, new_id: NewId) -> LiveTransfer:
        """Create and index a transfer, so the very next event already finds it; TransferError if it cannot start."""
        trunk = self.config.trunk(target)
        if trunk is None:
            raise TransferError(f"unknown transfer target {target!r}")
        if agent_channel in self.by_agent:
            raise TransferError(f"{agent_channel} is already transferring ({self.by_agent[agent_channel]})")
        if linkedid and linkedid in self.by_linkedid:
            raise TransferError(f"call {linkedid} is already being transferred ({self.by_linkedid[linkedid]})")
        policy = dict(self.mode_policy)
        own = trunk.transfer_mode  # a per-target override of the policy by kind
        if own:
            policy[trunk.kind] = own
        tid = new_id("x")
        machine = self._machine(tid, target, trunk.kind, resolve_mode(mode, trunk.kind, policy),
                                agent_channel, now, linkedid)
        exten = dtmf_exten(self.config, target)
        live = LiveTransfer(machine, agent_channel, caller_channel, caller_number,
                            exten=target if exten is None else exten)
        self.live[tid] = live
        self.by_agent[agent_channel] = tid
        if linkedid:
            self.by_linkedid[linkedid] = tid
        return live

    def start_action(self, live: LiveTransfer) -> tuple[str, dict[str, str]]:
        """The AMI action that starts the transfer: BlindTransfer, or Atxfer keying the dialable extension."""
        m = live.machine
        if m.mode is Mode.BLIND:
            return "BlindTransfer", {"Channel": live.agent_channel, "Context": self.context, "Exten": m.target}
        return "Atxfer", {"Channel": live.agent_channel, "Context": self.agent_context, "Exten": live.exten}

    def _machine(self, tid: str, target: str, kind: str, mode: Mode, agent_channel: str, started_at: float,
                 linkedid: str) -> Transfer:
        return Transfer(id=tid, target=target, kind=kind, mode=mode, agent=endpoint(agent_channel),
                        started_at=started_at, timeout_s=float(self.config.transfer_timeout_s),
                        grace_s=self.grace_s, setup_timeout_s=self.setup_timeout_s, linkedid=linkedid)

    # ------------------------------------------------------------------ following
    def route(self, ev: Mapping[str, str], now: float) -> Routed:
        """The inputs one AMI event means, per transfer; [] for events and calls we do not follow."""
        handler = _EVENT_ROUTES.get(ev.get("Event", ""))
        return handler(self, ev, now) if handler is not None else []

    def _dial_begin(self, ev: Mapping[str, str], now: float) -> Routed:
        tid = self.by_linkedid.get(ev.get("Linkedid", ""))
        live = self.live.get(tid) if tid else None
        chan = ev.get("Channel", "")
        if tid is None or live is None or not (ev.get("Context") in (self.context, self.agent_context)
                                               or self.is_leg(ev)):
            return []
        if is_local(chan):
            self._add_leg(tid, live, chan)
            dest = ev.get("DestChannel", "")
            if dest:
                live.dests.add(dest)
                self.by_channel[dest] = tid
        return [(tid, TargetDialing(now))]

    def _dial_end(self, ev: Mapping[str, str], now: float) -> Routed:
        chan = ev.get("Channel", "")
        tid = self.by_channel.get(chan)
        if tid and chan in self.live[tid].legs:
            return [(tid, DialEnd(ev.get("DialStatus", ""), now))]
        return []

    def _hangup(self, ev: Mapping[str, str], now: float) -> Routed:
        chan, uid = ev.get("Channel", ""), ev.get("Uniqueid", "")
        out: Routed = []
        tid = self.by_agent.get(chan)
        if tid:
            out.append((tid, TransfererHangup(now)))
        tid = self.by_linkedid.get(ev.get("Linkedid", ""))
        if tid and (uid == ev.get("Linkedid") or chan == self.live[tid].caller_channel):
            out.append((tid, CallerHangup(now)))
        tid = self.by_channel.get(chan)
        if tid:
            live = self.live[tid]
            live.gone.add(chan)
            if chan in live.optimized:
                pass  # a Local half swapped out of the way: not the target leaving
            elif chan in live.dests:
                out.append((tid, TargetHangup(now)))
            elif chan in live.legs and not (live.dests - live.gone - live.optimized) and live.machine.answered_at is None:
                out.append((tid, TargetHangup(now)))
        return out

    def _attended_transfer(self, ev: Mapping[str, str], now: float) -> Routed:
        tid = (self.by_agent.get(ev.get("OrigTransfererChannel", ""))
               or self.by_agent.get(ev.get("SecondTransfererChannel", ""))
               or self.by_linkedid.get(ev.get("OrigTransfererLinkedid", "")))
        if tid:
            return [(tid, AttendedTransferDone(ev.get("Result", ""), ev.get("DestType", ""), now))]
        return []

    def _blind_transfer(self, ev: Mapping[str, str], now: float) -> Routed:
        tid = self.by_agent.get(ev.get("TransfererChannel", ""))
        return [(tid, BlindTransferDone(ev.get("Result", ""), now))] if tid else []

    def _local_optimization(self, ev: Mapping[str, str], now: float) -> Routed:
        """The Local leg is swapped out of the way: its hang-up is not the target leaving."""
        for key in ("LocalOneChannel", "LocalTwoChannel"):
            chan = ev.get(key, "")
            tid = self.by_channel.get(chan)
            if tid:
                live = self.live[tid]
                live.optimized.add(chan)
                src = ev.get("SourceChannel", "")
                if src and src not in (live.agent_channel, live.caller_channel) and chan in live.dests:
                    live.dests.add(src)
                    self.by_channel[src] = tid
        return []

    def forget(self, tid: str) -> LiveTransfer | None:
        """Drop a transfer and every index entry pointing at it."""
        live = self.live.pop(tid, None)
        if live is not None:
            for index in (self.by_agent, self.by_linkedid, self.by_channel):
                for key in [k for k, v in index.items() if v == tid]:
                    del index[key]
        return live

    def is_leg(self, row: Mapping[str, str]) -> bool:
        """A Local channel in one of the transfer contexts (an event or a CoreShowChannel row)."""
        chan = row.get("Channel", "")
        if not is_local(chan):
            return False
        return any(f"@{ctx}-" in chan or row.get("Context") == ctx for ctx in {self.context, self.agent_context})

    def _add_leg(self, tid: str, live: LiveTransfer, chan: str) -> None:
        for leg in {chan, other_half(chan)}:
            if leg:
                live.legs.add(leg)
                self.by_channel[leg] = tid

    # ------------------------------------------------------------------ restart
    def recover(self, rows: Iterable[Mapping[str, str]], now: float, new_id: NewId) -> list[Recovered]:
        """Re-attach every transfer leg in a CoreShowChannels listing that no followed transfer owns."""
        groups: dict[str, list[Mapping[str, str]]] = {}
        for r in rows:
            groups.setdefault(r.get("Linkedid", ""), []).append(r)
        found: list[Recovered] = []
        for linkedid, group in groups.items():
            legs = [r for r in group if self.is_leg(r)]
            if not legs or not linkedid or linkedid in self.by_linkedid:
                continue
            found.append(self._reattach(linkedid, group, legs, now, new_id))
        return found

    def _reattach(self, linkedid: str, group: list[Mapping[str, str]], legs: list[Mapping[str, str]],
                  now: float, new_id: NewId) -> Recovered:
        """Tell caller, agent, legs and target apart by Uniqueid and bridges; ringing or answered by the leg's state."""
        two = next((r for r in legs if r.get("Channel", "").endswith(";2")), legs[0])
        one = next((r for r in legs if r.get("Channel", "").endswith(";1")), None)
        exten = two.get("Exten", "") or local_exten(two.get("Channel", ""))
        target = self.target_for_exten(exten)
        caller = next((r for r in group if r.get("Uniqueid") == linkedid), None)
        leg_names = {r.get("Channel", "") for r in legs}
        others = [r for r in group if r.get("Channel") not in leg_names and r is not caller]
        dest_bridge = two.get("BridgeId", "")
        dests = [r for r in others if dest_bridge and r.get("BridgeId") == dest_bridge]
        others = [r for r in others if r not in dests]
        agent_bridge = (one or {}).get("BridgeId", "")
        agents = [r for r in others if agent_bridge and r.get("BridgeId") == agent_bridge] or others
        agent = agents[0] if len(agents) == 1 else None
        agent_channel = agent["Channel"] if agent else f"unknown:{linkedid}"
        trunk = self.config.trunk(target)
        kind = trunk.kind if trunk else "branch_center"
        duration = seconds(two.get("Duration", ""))
        tid = new_id("r")
        machine = self._machine(tid, target, kind, resolve_mode(None, kind, self.mode_policy), agent_channel,
                                now - duration, linkedid)
        live = LiveTransfer(machine, agent_channel, caller.get("Channel", "") if caller else "",
                            (agent or {}).get("ConnectedLineNum", ""), exten=exten, recovered=True)
        self.live[tid] = live
        self.by_linkedid[linkedid] = tid
        for r in legs:
            self._add_leg(tid, live, r.get("Channel", ""))
        for r in dests:
            live.dests.add(r["Channel"])
            self.by_channel[r["Channel"]] = tid
        if agent and caller:
            self.by_agent[agent_channel] = tid
            machine.state, machine.ringing_at = State.RINGING, now - duration
            if two.get("ChannelStateDesc", "").lower() == "up":
                machine.state, machine.answered_at = State.ANSWERED, now
            return Recovered(live, caller_present=True, agent_found=True)
        return Recovered(live, caller_present=caller is not None, agent_found=agent is not None, inputs=(Lost(now),))

    def target_for_exten(self, exten: str) -> str:
        """The configured target a leg's extension dials (its key, its `exten`, or a legacy line's branch)."""
        if self.config.trunk(exten):
            return exten
        for key, trunk in list(self.config.transfer_targets.items()) + list(self.config.branch_centers.items()):
            if trunk.exten == exten:
                return key
        line = self.config.legacy_lines.get(exten)
        if line and line.branch:
            return line.branch
        return exten


#: AMI event name → what it means; events not listed carry nothing for a transfer
_EVENT_ROUTES: Mapping[str, Callable[[Correlator, Mapping[str, str], float], Routed]] = {
    "DialBegin": Correlator._dial_begin,
    "DialEnd": Correlator._dial_end,
    "Hangup": Correlator._hangup,
    "AttendedTransfer": Correlator._attended_transfer,
    "BlindTransfer": Correlator._blind_transfer,
    "LocalOptimizationBegin": Correlator._local_optimization,
}


# --------------------------------------------------------------------------- helpers


def is_dtmf(keys: str) -> bool:
    return bool(keys) and set(keys) <= DTMF


def dtmf_exten(config: Config, target: str) -> str | None:
    """A DTMF-dialable extension for the target: its key if digits, its `exten`, else a legacy number aliased to it."""
    if is_dtmf(target):
        return target
    trunk = config.trunk(target)
    own = trunk.exten if trunk else None
    if own and is_dtmf(own):
        return own
    for number, line in config.legacy_lines.items():
        if line.mode == "branch_center" and line.branch == target and set(number) <= DTMF:
            return number
    return None


def seat_channel(config: Config, channel: str) -> bool:
    """Whether a channel is a configured seat's (any channel when no seats are configured)."""
    if not config.seats:
        return True
    return endpoint(channel) in config.seats


def seconds(duration: str) -> float:
    """CoreShowChannel Duration is HH:MM:SS."""
    try:
        h, m, s = (int(x) for x in duration.split(":"))
        return float(h * 3600 + m * 60 + s)
    except ValueError:
        return 0.0
