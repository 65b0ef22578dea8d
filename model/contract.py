"""The wire contract between our Python and the dialplan: every name both sides must agree on.

UserEvent names, channel variables and dialplan contexts are written here once. Python
imports them (`Var.ROUTE`, `Event.ROUTE`, `Context.SURVEY`); `routing/dialplan.py` passes
the same enums to the Jinja templates (as `var`, `ref`, `event`, `ctx`), so renaming one is a
one-line change that cannot leave the dialplan and the controller disagreeing.

Pure vocabulary: imports nothing of ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Var(StrEnum):
    """Channel and global variables set by one side and read by the other."""

    #: the route the controller chose (a `Route`); empty or unset → the general queue
    ROUTE = "HOTLINE_ROUTE"
    QUEUE = "HOTLINE_QUEUE"
    DIAL = "HOTLINE_DIAL"
    DIAL_TIMEOUT = "HOTLINE_DIAL_TIMEOUT"
    TRANSFER = "HOTLINE_TRANSFER"
    CATEGORY = "HOTLINE_CATEGORY"
    #: "1" once the IVR played the greeting (the fallback path then does not play it again)
    GREETED = "HOTLINE_GREETED"
    #: "1" once the caller heard the recording notice (played once per call, before the first queue)
    RECORDING_NOTICED = "HOTLINE_RECORDING_NOTICED"
    #: "1": the controller transcribes this call (transcripts.enabled), so the queue also records each
    #: direction apart (MixMonitor r()/t(), RECORDING_SIDE_SUFFIX)
    TRANSCRIBE = "HOTLINE_TRANSCRIBE"
    #: the number the caller dialed, inherited by every channel of the call
    DIALED = "HOTLINE_DIALED"
    FALLBACK_QUEUE = "HOTLINE_FALLBACK_QUEUE"
    #: set on the citizen's leg of a missed-call callback (never becomes a ticket of its own)
    CALLBACK = "HOTLINE_CALLBACK"
    #: the citizen's number on a callback's leg: the agent's phone shows it (the citizen saw caller_id)
    CALLBACK_NUMBER = "HOTLINE_CALLBACK_NUMBER"
    #: set on the citizen's leg of a 回访 (follow-up) call: the ticket it is about
    FOLLOWUP = "HOTLINE_FOLLOWUP"
    #: the call's ticket number, allocated as the call enters (inherited: the agent's channel has it too;
    #: the agent reads it out, the IVR tells it to the caller after the agent hangs up). Never the password.
    TICKET = "HOTLINE_TICKET"
    #: app_queue's own: a caller's priority in Queue() (higher first); set for priority (老年人优先) callers
    QUEUE_PRIO = "QUEUE_PRIO"
    #: why the caller has priority: `listed` (the center's list) or `key` (pressed in the greeting)
    PRIORITY = "HOTLINE_PRIORITY"
    #: the language path taken (access.languages key: en, nan, …); empty: the center's own
    LANGUAGE = "HOTLINE_LANGUAGE"
    #: "1": the call arrived with video (the caller's client offered a video stream Asterisk accepted, in one of
    #: asterisk.sip.video_codecs): the sign-language path (access.languages.<code>.video); set by the dialplan
    VIDEO = "HOTLINE_VIDEO"
    #: globals
    GENERAL = "HOTLINE_GENERAL"
    AGI = "HOTLINE_AGI"
    DYNAMIC_FEATURES = "HOTLINE_DYNAMIC_FEATURES"
    #: a carrier call: the number read from one header while looking for a known DID
    DID_TRY = "HOTLINE_DID_TRY"
    #: the carrier trunk a call came in by
    CARRIER = "HOTLINE_CARRIER"
    #: a supervisor's session (routing/supervise.py), on the supervisor's own channel: the agent's channel
    #: ChanSpy attaches to, its options for the mode, the mode, the agent's seat and the call (linkedid)
    SPY_TARGET = "HOTLINE_SPY_TARGET"
    SPY_OPTIONS = "HOTLINE_SPY_OPTIONS"
    SPY_MODE = "HOTLINE_SPY_MODE"
    SPY_AGENT = "HOTLINE_SPY_AGENT"
    SPY_CALL = "HOTLINE_SPY_CALL"
    #: the supervisor's seat (set by the controller: never read from what the phone sends)
    SPY_SEAT = "HOTLINE_SPY_SEAT"


class Event(StrEnum):
    """UserEvent names: what the dialplan and the IVR report on AMI (the assembler reads them)."""

    CALL = "HotlineCall"
    ROUTE = "HotlineRoute"
    #: the menu engine's decisions since the last report, in order: `Step` (the first), `Step2`, `Step3`, …
    #: (one event per batch of decisions, not one per decision; read them with `ivr_steps`)
    IVR = "HotlineIVR"
    PROMPT = "HotlinePrompt"
    SPEECH = "HotlineSpeech"
    SELF_QUERY = "HotlineSelfQuery"
    SURVEY = "HotlineSurvey"
    OVERFLOW = "HotlineOverflow"
    DIAL_FAILED = "HotlineDialFailed"
    RECORDING = "HotlineRecording"
    FEATURE = "HotlineFeature"
    #: a transfer's progress and outcome (routing/transfer.py)
    TRANSFER = "HotlineTransfer"
    #: hotline-outbound refused a number (not on the outbound allow-list, or no route)
    OUTBOUND_DENIED = "HotlineOutboundDenied"
    #: a supervisor's session attaches in a mode (Step: attach) or switches mode by key (Step: switch), with
    #: Seat, Agent, Mode, Call (the agent's call's linkedid), Target (the agent's channel); raised on the
    #: supervisor's own channel, so never part of the caller's call (ChanSpyStop says when it ends)
    SUPERVISE = "HotlineSupervise"
    #: a 回访 call's progress: Ticket, Step (about/asked/answered), Resolved, Rating (never the number)
    FOLLOWUP = "HotlineFollowup"
    #: a caller enters a language's queue (access.languages; Code: en, nan, …), by the IVR, a menu or a transfer
    LANGUAGE = "HotlineLanguage"


#: the header of a HotlineIVR event's first step; later steps of the same event are `Step2`, `Step3`, …
IVR_STEP_HEADER = "Step"
#: at most this many steps in one HotlineIVR event (UserEvent takes up to 100 arguments); more go in another
IVR_STEPS_PER_EVENT = 32


def ivr_step_headers(labels: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The headers of one HotlineIVR event carrying `labels` (at most IVR_STEPS_PER_EVENT of them)."""
    return {(IVR_STEP_HEADER if i == 0 else f"{IVR_STEP_HEADER}{i + 1}"): label for i, label in enumerate(labels)}


def ivr_steps(event: Mapping[str, object]) -> list[str]:
    """The steps a HotlineIVR event carries, in order (`Step`, `Step2`, … up to the first one missing)."""
    steps = []
    for i in range(IVR_STEPS_PER_EVENT):
        value = event.get(IVR_STEP_HEADER if i == 0 else f"{IVR_STEP_HEADER}{i + 1}")
        if value is None:
            break
        steps.append(value if isinstance(value, str) else str(value))
    return steps


class Context(StrEnum):
    """Dialplan contexts the controller originates into, transfers through or recognises."""

    INBOUND = "hotline-inbound"
    ROUTE = "hotline-route"
    SURVEY = "hotline-survey"
    TRANSFER = "hotline-transfer"
    #: an agent's consultation leg (*2, Atxfer): a failed dial returns the caller to the agent
    AGENT_TRANSFER = "hotline-agent-transfer"
    SEATS = "hotline-seats"
    OVERFLOW_DIAL = "hotline-overflow-dial"
    QUEUE_RETRY = "hotline-queue-retry"
    #: rendered from `outbound:`: forwarded numbers, callbacks and transfers leave here (allow-list)
    OUTBOUND = "hotline-outbound"
    #: a supervisor's session: `spy` runs ChanSpy with Var.SPY_*; the controller originates the supervisor's
    #: seat into it (API), the seats' feature codes go there after the controller said yes
    SUPERVISE = "hotline-supervise"
    #: ChanSpy's exit context (option X): the keys 4/5/6 during a session switch mode and come back to `spy`
    SUPERVISE_KEYS = "hotline-supervise-keys"
    #: a missed-call callback in `callbacks.connect: offer` mode: "press 1 for an agent" first
    CALLBACK_OFFER = "hotline-callback-offer"
    #: a 回访 call, once the citizen answers: the follow-up IVR (ivr/followup.py)
    FOLLOWUP = "hotline-followup"


class CdrVar(StrEnum):
    """CDR variables the dialplan sets (`CDR(name)`); Asterisk's CDR events carry them under `ami_header`."""

    DIALED = "hotline_dialed"
    FALLBACK = "hotline_fallback"
    QUEUE = "hotline_queue"
    #: the Asterisk instance that wrote the row (Layout.instance, "main" for the default one): a
    #: controller replays only its own instance's calls, never a test run's
    INSTANCE = "hotline_instance"

    @property
    def ami_header(self) -> str:
        """`hotline_dialed` → `HotlineDialed`, as cdr_manager.conf maps it."""
        return "".join(part.capitalize() for part in self.value.split("_"))


class Route(StrEnum):
    """Values of `Var.ROUTE`: extensions of `Context.ROUTE`."""

    QUEUE = "queue"
    DIAL = "dial"
    TRANSFER = "transfer"
    HANGUP = "hangup"


#: every context we render starts with this; the admin's own contexts use other names
CONTEXT_PREFIX = "hotline-"
#: one context per configured queue: `hotline-queue-<name>`
QUEUE_CONTEXT_PREFIX = "hotline-queue-"
#: Asterisk's queues.conf reserves [general]: every configured queue is named `hotline-<name>` there
#: (and so in QueueCallerJoin/AgentConnect events)
ASTERISK_QUEUE_PREFIX = "hotline-"
#: the JSON-lines CDR file cdr_custom writes (under Asterisk's log dir, cdr-custom/)
CDR_FILE = "hotline-cdr.json"
#: one context per carrier trunk: its calls enter here (`hotline-carrier-<name>`), DIDs in `hotline-did-<name>`
CARRIER_CONTEXT_PREFIX = "hotline-carrier-"
DID_CONTEXT_PREFIX = "hotline-did-"
#: the SIP header Kamailio (cluster:) adds to a carrier's INVITE, naming the carrier, and strips from every other
#: request: behind the proxy every request comes from one address, so the nodes recognise carriers by it
TRUNK_HEADER = "X-Hotline-Trunk"
#: with transcripts on, each direction of an answered call is recorded beside the mixed recording
#: `<name>.wav` as `<name><suffix>.wav` (MixMonitor r(): what the caller says; t(): what the agent says)
RECORDING_SIDE_SUFFIX = {"caller": "-caller", "agent": "-agent"}


def side_recording(recording: str, side: str) -> str:
    """The per-direction file of a mixed recording's name: `hotline/d/x.wav` → `hotline/d/x-caller.wav`."""
    stem = recording[:-4] if recording.endswith(".wav") else recording
    return f"{stem}{RECORDING_SIDE_SUFFIX[side]}.wav"


def queue_context(queue: str) -> str:
    """The dialplan context that puts a caller into the configured queue `queue`."""
    return f"{QUEUE_CONTEXT_PREFIX}{queue}"


def agi_global(n: int) -> str:
    """The global holding the n-th (1-based) FastAGI controller's `agi://host:port` in the dialplan."""
    return Var.AGI.value if n == 1 else f"{Var.AGI.value}_{n}"


def template_names() -> dict[str, object]:
    """The names as the Jinja templates use them: `var.X` a variable's name, `ref.X` its `${X}` reading."""
    return {
        "var": Var,
        "ref": {v.name: f"${{{v.value}}}" for v in Var},
        "event": Event,
        "ctx": Context,
        "route": Route,
        "cdr": CdrVar,
        "queue_context_prefix": QUEUE_CONTEXT_PREFIX,
        "cdr_file": CDR_FILE,
        "carrier_context_prefix": CARRIER_CONTEXT_PREFIX,
        "did_context_prefix": DID_CONTEXT_PREFIX,
    }


class ControlEvent(StrEnum):
    """UserEvents between `hotline apply` and the running controller (not call events: no ticket reads them).

    apply raises CONFIG_APPLIED (headers in ControlHeader) once Asterisk runs the new files; the controller
    loads that configuration between calls and answers CONFIG_LOADED with the same generation.
    """

    CONFIG_APPLIED = "HotlineConfigApplied"
    CONFIG_LOADED = "HotlineConfigLoaded"


class ControlHeader(StrEnum):
    GENERATION = "Generation"
    FILE = "File"
    DIGEST = "Digest"
    #: CONFIG_LOADED: `loaded`, `restart` (the change needs a controller restart; nothing was swapped) or `error`
    RESULT = "Result"
    DETAIL = "Detail"


class AmiRights:
    """What each AMI account may read and write (manager.conf classes), granted by need only.

    The controller: Newchannel/Hangup/Dial*/Bridge*/transfers (call), queue and agent events (agent),
    UserEvents (user), Cdr (cdr), FullyBooted at login (system, read only); actions Originate
    (originate), Atxfer/PlayDTMF/Hangup (call; Hangup is also a supervisor's force release), UserEvent (user), CoreShowChannels (reporting), QueueStatus
    (with CoreShowChannels, the live model's rebuild: live/rebuild.py), QueuePause
    (agent: seat agents' states, routing/agent_service.py; members stay static in queues.conf), QueueAdd/
    QueueRemove (agent: 多援一 helpers, routing/agent_help.py), DeviceStateList (call: seat phones' reachability,
    with DeviceStateChange events read under call). Never
    dtmf, agi or dialplan read (DTMF*, AGIExec*, Newexten and VarSet carry what callers key, self-query
    passwords included), never command/config/system write (a shell or a file writer on the server).
    Supervisors' sessions need nothing more: ChanSpyStart/ChanSpyStop are call events, the supervisor's
    seat is rung by an Originate into the hotline-supervise context (originate; never Application=ChanSpy).
    `apply`: Reload with Module= and PJSIPShowEndpoints (system), ShowDialPlan (reporting), UserEvent
    to the controller and its answer (user). `sim`: the test world's robots (PlayDTMF, QueueAdd) and
    tests that watch the dialplan run; rendered only with --sim.
    """

    CONTROLLER = {"read": "system,call,agent,user,reporting,cdr", "write": "call,originate,agent,user,reporting"}
    APPLY = {"read": "user", "write": "system,reporting,user"}
    SIM = {"read": "system,call,agent,user,reporting,cdr,dialplan,dtmf,agi",
           "write": "call,originate,agent,user,reporting"}

    @classmethod
    def classes(cls) -> dict[str, dict[str, str]]:
        return {"controller": cls.CONTROLLER, "apply": cls.APPLY, "sim": cls.SIM}


#: the only events the controller's account receives (manager.conf eventfilter, include by name; issue 15):
#: what its parts read, and nothing else — on a busy hotline most of Asterisk's stream (Newstate,
#: DialState, NewConnectedLine, Bridge* bookkeeping, …) is read by nobody here, and every event sent is
#: parsed. tests/unit/test_ami_accounts.py checks every event-name table of the controller's parts
#: against this list. Event-list items (CoreShowChannel, QueueMember, …) answer actions and are
#: named too, so they pass whatever Asterisk decides about filtering them.
AMI_CONTROLLER_EVENTS = (
    # calls into tickets (ticketbridge/assembler.py) and the live model (live/reducer.py)
    "Newchannel", "Hangup", "BridgeEnter", "BridgeLeave", "Cdr", "UserEvent",
    # queues and seat agents (routing/agent_service.py, live/reducer.py)
    "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentCalled", "AgentConnect",
    "AgentComplete", "AgentRingNoAnswer", "QueueMemberStatus", "QueueMemberPause", "DeviceStateChange",
    # transfers (routing/transfer_correlation.py)
    "DialBegin", "DialEnd", "AttendedTransfer", "BlindTransfer", "LocalOptimizationBegin",
    # callbacks (ticketbridge/callbacks.py), supervisors (routing/supervise_service.py), each login
    "OriginateResponse", "ChanSpyStart", "ChanSpyStop", "FullyBooted",
    # items and ends of the event lists the controller asks for
    "CoreShowChannel", "CoreShowChannelsComplete", "QueueParams", "QueueMember", "QueueEntry",
    "QueueStatusComplete", "DeviceStateListComplete",
)

#: of these, events sent only when a header starts with a value (manager.conf `header(…)`,
#: `method(starts_with)`): device states of seat phones only (routing/agent_service.py reads no other;
#: Local channels and queues change device state on every call)
AMI_CONTROLLER_EVENT_PREFIXES = {"DeviceStateChange": ("Device", "PJSIP/")}

#: UserEvents the controller's account is not sent (manager.conf eventfilter, exclude by the UserEvent
#: header): the IVR's prompt announcements, one for every prompt a caller hears, read by no part of the
#: controller (the assembler lists them as carrying nothing for a ticket); they stay in Asterisk's AMI
#: stream for any other account (tests, the demo, an operator's own tools)
AMI_CONTROLLER_EXCLUDED_USER_EVENTS = (Event.PROMPT.value,)

#: how long Asterisk waits on a write to the controller's AMI link before dropping it (manager.conf, the
#: account's `writetimeout`; the general default of 1 s dropped it on a saturated box, issue 15)
AMI_CONTROLLER_WRITETIMEOUT_MS = 10_000

#: events the controller's account never receives (manager.conf eventfilter, exclude by name): the
#: DTMF/AGI/dialplan ones again (callers' digits, should a class be granted by mistake) and the RTCP
#: reports that make up most of the AMI traffic on a busy hotline and that no ticket reads
AMI_EXCLUDED_EVENTS = ("DTMFBegin", "DTMFEnd", "AGIExecStart", "AGIExecEnd", "AsyncAGIStart", "AsyncAGIExec",
                       "AsyncAGIEnd", "VarSet", "Newexten", "RTCPSent", "RTCPReceived")
