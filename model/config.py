"""The hotline's configuration: typed models and a loader whose errors name file, line and field.

The YAML in `config/` is the single source for the number plan, menus, queues,
seats, prompts and transfer targets. Everything downstream (dialplan rendering,
the IVR, the number plan, `check` and `explain`) reads these models, never the
YAML itself.

Why one module (≈500+ lines): it is the one schema of `hotline.yaml`. Each class is one section of
that file, `Config` ties them together, and its cross-section rules need every section at hand;
splitting the sections over files would only add re-exports.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from model.caller_loop import DeadlineRules, SmsSettings, TicketNotice
from model.destinations import Category, Destination, QueueDest
from model.names import DialString, LineNumber, SafeName, SafeText, SeatKey
from model.transcript_rules import KEYWORDS, CategoryRule, SummaryRules

DIGITS = "0123456789*#"

#: `center.timezone` unless configured; every time function takes the configured zone
DEFAULT_TZ = "Asia/Shanghai"


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: the AMI accounts, each with only the rights its user needs (dialplans/templates/manager.conf.j2):
#: the controller (calls, originate, user events), apply (reloads), the test world's robots (--sim only)
AMI_ACCOUNTS = ("controller", "apply", "sim")


class AmiSettings(_M):
    host: str = "127.0.0.1"
    port: int = 5038
    #: the controller's account (calls, originate, user events, reporting; no command/system/config)
    username: str = "hotline"
    #: `hotline apply`'s account (module reloads and their checks only)
    apply_username: str = "hotline-apply"
    #: the simulated outside world's account (demo and tests; rendered only with --sim)
    sim_username: str = "hotline-sim"
    #: The controller's AMI secret is read from this environment variable (the apply and sim accounts' from
    #: this name + `_APPLY` / `_SIM`); when unset, a secret generated once per machine (model/secrets.py).
    secret_env: str = "HOTLINE_AMI_SECRET"
    connect_timeout_s: float = 5.0
    action_timeout_s: float = 10.0
    ping_interval_s: float = 5.0

    def account_username(self, account: str) -> str:
        """The AMI username of one of AMI_ACCOUNTS."""
        return {"controller": self.username, "apply": self.apply_username, "sim": self.sim_username}[account]

    def account_secret_env(self, account: str) -> str:
        return self.secret_env if account == "controller" else f"{self.secret_env}_{account.upper()}"


#: a FastAGI controller's address as the dialplan dials it: host (name, IPv4, or [IPv6]) and port
_CONTROLLER_ADDR = re.compile(r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]):(?P<port>[0-9]{1,5})$")


class FastAgiSettings(_M):
    #: where this controller listens for FastAGI
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=0, le=65535)  # 0: any free port (tests)
    #: listen backlog; Asterisk gives up connecting after ~2 s, a 20-slot backlog overflowed in the field.
    backlog: int = 1024
    command_timeout_s: float = 30.0
    #: the controllers the dialplan tries, in order, as `host:port` (README "Several controllers"): when one does
    #: not answer within Asterisk's connect timeout (2 s; at once when refused) the next is tried, and with none
    #: answering the caller goes to the general queue as ever. Empty: this controller only (`host:port` above).
    controllers: list[str] = Field(default_factory=list, max_length=8)

    @field_validator("controllers")
    @classmethod
    def _controllers(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        for i, addr in enumerate(v):
            m = _CONTROLLER_ADDR.match(addr.strip()) if isinstance(addr, str) else None
            if m is None or not 1 <= int(m["port"]) <= 65535:
                raise ValueError(f"controllers[{i}]: {addr!r} is not host:port (e.g. 10.0.0.5:4573, port 1-65535)")
            if m["host"] in ("0.0.0.0", "[::]"):
                raise ValueError(f"controllers[{i}]: {addr!r}: the dialplan cannot dial a wildcard address; "
                                 "give the controller's own address")
            key = addr.strip().lower()
            if key in seen:
                raise ValueError(f"controllers[{i}]: {addr!r} is listed twice")
            seen.add(key)
        return [a.strip() for a in v]

    def rank(self) -> int:
        """This controller's place in `controllers` (0: the one the dialplan tries first; none listed: 0; this
        one not listed: after all of them). A lower rank takes over the node's agents (ticketbridge/leases.py)."""
        if not self.controllers:
            return 0
        own = f"{self.host}:{self.port}".lower()
        wildcard = self.host in ("0.0.0.0", "::", "[::]", "")
        for i, c in enumerate(self.controllers):
            if c.lower() == own or (wildcard and c.rsplit(":", 1)[1] == str(self.port)):
                return i
        return len(self.controllers)

    def agi_targets(self) -> list[str]:
        """The `host:port` of each controller the dialplan tries, in order (at least this one)."""
        return list(self.controllers) or [f"{self.host}:{self.port}"]


class SipTls(_M):
    """An optional TLS transport for seats (SIP over TLS; SRTP keys then travel encrypted)."""

    port: int = 5061
    cert_file: str
    key_file: str
    ca_list_file: str | None = None
    method: Literal["tlsv1_2", "tlsv1_3"] = "tlsv1_2"


class SipSettings(_M):
    """Where Asterisk listens for SIP: seats' desk phones on the LAN, carriers. Independent of AMI's host."""

    #: address SIP binds to: 0.0.0.0 (all) or the LAN address for desk phones; AMI stays on loopback
    bind: str = "127.0.0.1"
    port: int = 5060
    tls: SipTls | None = None
    #: how often Asterisk asks each registered seat phone whether it is alive (SIP OPTIONS, the AOR's
    #: qualify_frequency); one that stops answering is unreachable and its agent marked 离线. 0: only an
    #: unregistration (or the registration expiring) counts
    seat_qualify_s: int = Field(30, ge=0, le=3600)
    #: video codecs Asterisk passes through (never transcodes) between a video caller and a video seat (sign
    #: language, `access.languages.<code>.video`): rendered on the seats with `video: true` and the carriers with
    #: `video: true`; both legs of a call must share one, so the center names them once, here
    video_codecs: list[str] = Field(default_factory=lambda: ["h264", "vp8"])


class AsteriskSettings(_M):
    ami: AmiSettings = AmiSettings()
    fastagi: FastAgiSettings = FastAgiSettings()
    sip: SipSettings = SipSettings()
    #: where the controller reads Asterisk's CDR CSV to rebuild tickets of calls it never saw.
    cdr_csv: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _sip_port_alias(cls, data: Any) -> Any:
        """`asterisk.sip_port` (before `asterisk.sip`) still works: it is `asterisk.sip.port`."""
        if isinstance(data, dict) and "sip_port" in data:
            data = dict(data)
            port = data.pop("sip_port")
            sip = dict(data.get("sip") or {})
            if "port" in sip and sip["port"] != port:
                raise ValueError("asterisk.sip_port and asterisk.sip.port disagree; keep only asterisk.sip.port")
            sip["port"] = port
            data["sip"] = sip
        return data

    @property
    def sip_port(self) -> int:
        return self.sip.port


class StoreSettings(_M):
    #: SQLAlchemy async URL; SQLite (WAL) by default, postgresql+asyncpg://… for a shared database.
    url: str = "sqlite+aiosqlite:////var/lib/hotline12345/tickets.db"


class OutboxSettings(_M):
    """Pushing ticket changes to an outside system (the provincial platform): at-least-once HTTP POST."""

    #: where each ticket change is POSTed as JSON (header Idempotency-Key); None: nothing is pushed.
    #: https only (the payload is personal data), unless allow_http
    url: str | None = None
    #: the bearer token is read from this environment variable (never from the YAML): required with a
    #: url, and the controller refuses to start when the variable is unset or empty
    token_env: str | None = None
    #: accept a plain http:// url: only for tests against a local receiver
    allow_http: bool = False
    timeout_s: float = 10.0
    #: a change still undelivered after this many attempts becomes a dead letter (`hotline tickets outbox --dead`)
    max_attempts: int = 10
    #: first retry after this many seconds, doubling per attempt up to max_backoff_s
    backoff_s: float = 30.0
    max_backoff_s: float = 3600.0
    poll_s: float = 2.0

    @model_validator(mode="after")
    def _safe_url(self) -> "OutboxSettings":
        if self.url is None:
            return self
        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise ValueError(f"url must be https:// (got {scheme or 'no scheme'}; allow_http: true is for tests only)")
        if not self.token_env:
            raise ValueError("token_env is required with a url: the platform is never pushed to without a token")
        return self


class AutoDialRules(_M):
    """When the controller places an automatic outbound call by itself (ticketbridge/outreach_rules.py).

    Off by default: automatic calls cost carrier minutes and agents' time, and the outbound caller ID must be
    registered with the carrier (an unregistered display number is flagged as spam); a center turns them on.
    """

    enabled: bool = False
    #: the first attempt no earlier than this many minutes after the missed call / the closure
    delay_min: float = Field(0.0, ge=0)
    #: and no later than this many minutes after it (then it is given up)
    within_min: float = Field(120.0, gt=0)
    #: attempts at most (a manual `hotline tickets callback` counts too)
    max_attempts: int = Field(3, ge=1, le=20)
    #: minutes between two attempts
    spacing_min: float = Field(10.0, gt=0)
    #: a schedule under `hours:` outside which nobody is dialed; None: 08:00-20:00 every day
    hours: str | None = None
    #: how often the scheduler looks for due calls (s)
    poll_s: float = Field(15.0, gt=0)
    #: at most this many such calls at once, per controller
    max_concurrent: int = Field(2, ge=1, le=100)

    @model_validator(mode="after")
    def _window(self) -> "AutoDialRules":
        if self.delay_min >= self.within_min:
            raise ValueError(f"delay_min ({self.delay_min}) must be less than within_min ({self.within_min})")
        return self


class CallbackSettings(_M):
    """Calling back missed calls (漏接电话回拨) through Asterisk."""

    #: the channel that rings the citizen; {number} is the caller's number. `hotline-outbound` is rendered
    #: from `outbound:` (its allow-list, then the carrier); the same list is checked before dialing
    dial: DialString = "Local/{number}@hotline-outbound"
    #: the queue the citizen is connected to once they answer
    queue: str = "general"
    caller_id: str = "12345"
    ring_s: int = 30
    #: queue: the answered citizen goes straight into `queue` (an agent gets the callback as a queue call);
    #: offer: the citizen first hears `offer_prompt` and is queued only after pressing 1
    connect: Literal["queue", "offer"] = "queue"
    offer_prompt: str = "callback_offer"
    #: how long the offer waits for the key (s)
    offer_timeout_s: float = Field(8.0, gt=0)
    #: the scheduler that places callbacks by itself (off by default)
    auto: AutoDialRules = AutoDialRules()


def _followup_rules() -> AutoDialRules:
    # 回访: from an hour after 办结, for three days, three tries two hours apart, office-ish hours
    return AutoDialRules(delay_min=60, within_min=3 * 24 * 60, max_attempts=3, spacing_min=120)


class FollowupSettings(_M):
    """回访: the automated follow-up call after a ticket reaches 办结 (ivr/followup.py asks, the store records)."""

    dial: DialString = "Local/{number}@hotline-outbound"
    caller_id: str = "12345"
    ring_s: int = 30
    #: the satisfaction scale asked; None: the survey's (`survey.scale`)
    scale: Literal[3, 5] | None = None
    #: seconds to wait for each key
    timeout_s: float = Field(8.0, gt=0)
    #: how long an answered follow-up call may last before it is counted as unanswered (s)
    max_call_s: float = Field(180.0, gt=0)
    auto: AutoDialRules = Field(default_factory=_followup_rules)


class Center(_M):
    name: str = "12345政务服务便民热线"
    number: str = "12345"
    timezone: str = DEFAULT_TZ
    #: where a call to the center goes after the greeting: a menu, or straight to a queue.
    entry: Destination = QueueDest(queue="general")
    greeting: str = "greeting"
    #: the emergency notice (110/119/120) played once to EVERY caller, after the greeting or a merged
    #: line's transition announcement (which replaces the greeting), never interrupted; None plays none
    emergency_notice: str | None = None
    #: `hotline check` warns when a caller who presses nothing would reach a queue later than this (s)
    no_input_budget_s: float = 30.0
    #: the queue every fail-open path ends in.
    general_queue: str = "general"
    #: prompt played before putting a caller into a queue; None plays nothing
    queue_prompt: str | None = "connecting"


class Menu(_M):
    """A DTMF menu. Options map one key to a destination; 0/*/# are reserved by the engine."""

    prompt: str
    options: dict[str, Destination] = Field(default_factory=dict)
    timeout_s: float = 5.0
    max_retries: int = Field(2, ge=0, le=5)
    #: replays of the menu after no input (None: max_retries). 0: a silent caller goes to `agent` at the
    #: first timeout (GB/T 33358: no forced navigation); an invalid key still replays up to max_retries
    no_input_retries: int | None = Field(None, ge=0, le=5)
    invalid_prompt: str = "invalid_input"
    timeout_prompt: str = "no_input"
    #: where the caller goes after retries are used up, and where 0 goes (an agent, always).
    agent: Destination = QueueDest(queue="general")
    #: a named hours schedule; outside it `closed` applies instead of this menu
    hours: str | None = None
    closed: Destination | None = None
    #: speech navigation: option key -> words that choose it
    speech: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if len(key) != 1 or key not in DIGITS:
                raise ValueError(f"option key {key!r} must be a single DTMF digit 1-9")
            if key in "0*#":
                raise ValueError(f"option key {key!r} is reserved (0 = agent, * = repeat, # = back)")
        return v


class Queue(_M):
    name: SafeText
    skill: SafeName = "general"
    strategy: Literal["ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "linear"] = "rrmemory"
    members: list[SafeName] = Field(default_factory=list)
    #: how long one member rings before the next is tried (s)
    ring_s: int = 15
    #: the longest a caller waits here before overflow applies (s)
    max_wait_s: int = 120
    #: callers waiting beyond which new callers overflow
    max_len: int = 0
    #: after-call work (话后整理) after a call from this queue: no queue call for this long (s); 0: none
    wrapup_s: int = Field(0, ge=0, le=600)
    overflow: Destination | None = None
    announce_position: bool = True
    hours: str | None = None
    closed: Destination | None = None


class Seat(_M):
    name: SafeText
    #: the agent ID (工号) of who normally works this seat: tickets and per-agent KPIs name it; None: the seat's
    #: key. An agent of `agents.roster` may take the seat over with the hot-desk code (*56); the seat's
    #: skills (the queues listing it) stay with the seat.
    agent_id: SeatKey | None = None
    skills: list[SafeName] = Field(default_factory=lambda: ["general"])
    #: environment variable holding this seat's own SIP secret (e.g. HOTLINE_SEAT_1001_SECRET); or a file
    secret_env: str | None = None
    secret_file: str | None = None
    #: SIP transport of the phone: udp, or tls (needs asterisk.sip.tls)
    transport: Literal["udp", "tls"] = "udp"
    #: encrypt the seat's media (SRTP, SDES keys; needs transport tls)
    srtp: bool = False
    #: agent (话务员) or supervisor (班长席): only supervisor seats may listen, whisper, barge and force
    #: release (`supervision.feature_codes`, `hotline supervise`)
    role: Literal["agent", "supervisor"] = "agent"
    #: the phone has a camera (sign-language seats, `access.languages.<code>.video`): its endpoint also allows
    #: `asterisk.sip.video_codecs`, so a video caller's call reaches it with video
    video: bool = False


LegacyMode = Literal["merged", "dual_retained", "dual_cancelled", "branch_center", "forward", "dedicated", "parallel"]


class AgentFeatureCodes(_M):
    """What an agent dials on the seat phone (no call up) to change state; each answered by a short prompt."""

    sign_in: str = "*51"
    sign_out: str = "*52"
    #: followed by the reason digit (`busy_reasons`), e.g. *531 小休; alone: the first reason
    busy: str = "*53"
    ready: str = "*54"
    #: adds `wrapup_extend_s` to the running after-call work
    extend_wrapup: str = "*55"
    #: hot-desking (签入 by agent ID + PIN, `agents.roster`): the phone asks for both; this seat is then the agent's
    hot_desk: str = "*56"

    @field_validator("sign_in", "sign_out", "busy", "ready", "extend_wrapup", "hot_desk")
    @classmethod
    def _dialable(cls, v: str) -> str:
        if len(v) < 2 or v[0] != "*" or not v[1:].isdigit():
            raise ValueError(f"agent feature code {v!r} must be '*' followed by digits")
        return v


#: an agent ID keyed on a phone (hot-desking): digits only
AGENT_ID_DIGITS = re.compile(r"[0-9]{1,16}")
#: what `hotline agents pin-hash` writes: salted scrypt, `scrypt$n$r$p$salt$hash` (hex)
PIN_HASH = re.compile(r"scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[0-9a-f]{16,}\$[0-9a-f]{32,}")


class RosterAgent(_M):
    """An agent who may sign in at any seat phone by agent ID + PIN (hot-desking)."""

    name: SafeText = ""
    #: the PIN's salted hash, made by `hotline agents pin-hash` (the PIN itself is never in the config)
    pin_hash: str

    @field_validator("pin_hash")
    @classmethod
    def _hashed(cls, v: str) -> str:
        if not PIN_HASH.fullmatch(v):
            raise ValueError("pin_hash must be what `hotline agents pin-hash` prints (scrypt$…), never the PIN")
        return v


class AgentSettings(_M):
    """Seat agents' states (routing/agent.py): sign in/out, busy with a reason, ready, after-call work."""

    #: reason digit → the word staff use (示忙 reasons); keyed after `feature_codes.busy`
    busy_reasons: dict[str, str] = Field(default_factory=lambda: {
        "1": "小休", "2": "就餐", "3": "培训", "4": "会议", "9": "其他"})
    feature_codes: AgentFeatureCodes = AgentFeatureCodes()
    #: what the extend key adds to after-call work (s)
    wrapup_extend_s: int = Field(30, ge=1, le=600)
    #: queue calls missed in a row (rang, not answered) that set an agent busy (未接); 0: never
    miss_limit: int = Field(3, ge=0)
    #: the watchdog: an agent ringing or talking this long has its call looked for in Asterisk
    #: (CoreShowChannels) every as many seconds; gone without AgentComplete → the call state ends
    call_check_s: int = Field(30, ge=5, le=3600)
    #: agent ID (工号, digits) → the agent who may hot-desk: key `feature_codes.hot_desk` on any seat phone,
    #: then the agent ID and the PIN, each ended by #
    roster: dict[str, RosterAgent] = Field(default_factory=dict)
    #: wrong PINs in a row for one agent ID before it is locked (hot-desking)
    pin_max_tries: int = Field(3, ge=1, le=20)
    #: how long a locked agent ID stays locked (s)
    pin_lock_s: int = Field(900, ge=1)

    @field_validator("roster")
    @classmethod
    def _roster_ids(cls, v: dict[str, RosterAgent]) -> dict[str, RosterAgent]:
        for key in v:
            if not AGENT_ID_DIGITS.fullmatch(key):
                raise ValueError(f"roster agent ID {key!r} must be 1-16 digits (it is keyed on a phone)")
        return v

    @field_validator("busy_reasons")
    @classmethod
    def _reason_digits(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if len(key) != 1 or not key.isdigit():
                raise ValueError(f"busy reason key {key!r} must be one digit 0-9")
        if not v:
            raise ValueError("at least one busy reason is needed")
        return v

    @model_validator(mode="after")
    def _codes_distinct(self) -> "AgentSettings":
        codes = self.feature_codes.model_dump()
        seen: dict[str, str] = {}
        for name, code in codes.items():
            if code in seen:
                raise ValueError(f"agent feature codes {seen[code]} and {name} are both {code}")
            seen[code] = name
        return self


class SupervisorFeatureCodes(_M):
    """What a supervisor seat dials, followed by the agent's seat (e.g. *611001): 监听/耳语/强插/强拆."""

    #: listen: the supervisor hears agent and caller; neither hears the supervisor (监听)
    listen: str = "*61"
    #: whisper: only the agent hears the supervisor (耳语)
    whisper: str = "*62"
    #: barge: a three-way call, both hear the supervisor (强插)
    barge: str = "*63"
    #: force release: the agent's call is hung up (强拆)
    release: str = "*69"

    @field_validator("listen", "whisper", "barge", "release")
    @classmethod
    def _dialable(cls, v: str) -> str:
        if len(v) < 2 or v[0] != "*" or not v[1:].isdigit():
            raise ValueError(f"supervisor feature code {v!r} must be '*' followed by digits")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> "SupervisorFeatureCodes":
        codes = list(self.model_dump().items())
        for i, (name, code) in enumerate(codes):
            for other, code2 in codes[i + 1:]:
                if code.startswith(code2) or code2.startswith(code):
                    raise ValueError(f"supervisor feature codes {name} ({code}) and {other} ({code2}): one is a "
                                     "prefix of the other (the agent's seat follows the code)")
        return self


class SupervisionSettings(_M):
    """Supervisors' intervention in agents' calls (routing/supervise.py; Asterisk's ChanSpy does the audio).

    During a session the supervisor switches mode by key: 4 listen, 5 whisper, 6 barge (ChanSpy's own
    digits); each switch is recorded like the session itself.
    """

    feature_codes: SupervisorFeatureCodes = SupervisorFeatureCodes()
    #: how long the supervisor's seat rings when the session is started from the API or `hotline supervise` (s)
    ring_s: int = Field(20, ge=5, le=120)


class LegacyLine(_M):
    name: SafeText
    department: SafeText = ""
    mode: LegacyMode
    merged_on: dt.date | None = None
    transition_months: int = Field(3, ge=0, le=36)
    #: merged lines after the window: retire (notice and hang up) or keep putting through
    after_window: Literal["retire", "put_through"] = "retire"
    #: the queue of the line's own seats (dual_retained, dedicated) or its skill queue (dual_cancelled)
    queue: str | None = None
    #: forward and parallel: where the call is sent
    forward_to: str | None = None
    #: branch_center: the branch center key in `branch_centers`
    branch: str | None = None
    category: Category | None = None
    announcement: str | None = None
    retirement_notice: str | None = None


class Trunk(_M):
    """A place outside 12345 that agents transfer to: a branch center, 110, a utility."""

    name: SafeText
    #: Asterisk dial string, e.g. PJSIP/110@police-trunk or Local/110@emergency-sim
    dial: DialString
    kind: Literal["emergency", "utility", "branch_center", "legacy_seat"] = "branch_center"
    #: DTMF feature code an agent keys during a call (one-key transfer)
    feature_code: str | None = None
    #: digits that reach this target in the transfer contexts, for a key that is not digits
    #: (water/power/gas): what an agent keys after *2 and what AMI Atxfer sends as DTMF
    exten: str | None = None
    #: transfer mode when none is asked for (feature codes): attended, threeway, onekey, blind;
    #: None follows the default for the target's kind (routing.transfer.DEFAULT_MODE_BY_KIND)
    transfer_mode: Literal["attended", "threeway", "onekey", "blind"] | None = None
    ring_s: int = 20
    hours: str | None = None


class Carrier(_M):
    """A carrier's SIP trunk that delivers 12345 and the legacy numbers and carries outbound calls.

    Not a `Trunk` (those are transfer targets and branch centers): this is the line to the PSTN.
    """

    #: the carrier's SIP server (address or name) and port
    host: SafeText
    port: int = 5060
    #: ip: the carrier's INVITEs are recognised by source address (`match`); register: we register
    #: to the carrier with username + secret (and still recognise its INVITEs by `match`, default host)
    auth: Literal["ip", "register"] = "ip"
    #: addresses / CIDRs the carrier sends from; default: host
    match: list[str] = Field(default_factory=list)
    username: SafeName | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    #: codecs, in order of preference
    codecs: list[str] = Field(default_factory=lambda: ["alaw", "ulaw"])
    #: DIDs the carrier delivers -> the hotline number they are (the center number or a legacy line);
    #: the center number and every legacy number are always accepted as themselves
    dids: dict[SafeName, SafeName] = Field(default_factory=dict)
    #: where the dialed number is read, first known DID wins: diversion (Diversion header: a call
    #: forwarded to us), to (To header), request_uri
    number_from: list[Literal["diversion", "to", "request_uri"]] = Field(
        default_factory=lambda: ["diversion", "to", "request_uri"])
    #: trust the carrier's P-Asserted-Identity / Remote-Party-ID for the caller's number
    trust_caller_id: bool = True
    #: the trunk carries video calls (VoLTE video, a video-capable SIP client): its endpoint also allows
    #: `asterisk.sip.video_codecs`; a call that arrives with video goes to the sign-language seats
    video: bool = False


class OutboundPolicy(_M):
    """Which numbers may be dialed out through the carrier (forwarding, callbacks, transfers).

    Patterns are Asterisk extension patterns (`_1[3-9]XXXXXXXXX`) or plain numbers; the same list is
    rendered into the hotline-outbound context and checked where a callback number is accepted.
    """

    #: the carrier trunk outbound calls leave by; None: the first under carriers
    carrier: str | None = None
    #: dial string for an allowed number ({number}); default PJSIP/{number}@<carrier>
    dial: DialString | None = None
    #: domestic only by default: mobiles, long distance with area code, local 7/8-digit numbers
    allow: list[str] = Field(default_factory=lambda: [
        "_1[3-9]XXXXXXXXX", "_0[1-9]XXXXXXXXX", "_0[1-9]XXXXXXXXXX", "_[2-8]XXXXXXX", "_[2-8]XXXXXX"])
    #: also allow the digits of the configured emergency and utility transfer targets (110, 95598, …)
    allow_transfer_targets: bool = True
    ring_s: int = 30


class Hours(_M):
    """Weekly opening hours plus a holiday calendar with make-up working days (调休)."""

    weekly: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[str]] = Field(default_factory=dict)
    holidays: list[dt.date] = Field(default_factory=list)
    workdays: list[dt.date] = Field(default_factory=list)

    @field_validator("weekly")
    @classmethod
    def _ranges(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, ranges in v.items():
            for r in ranges:
                if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d", r):
                    raise ValueError(f"{day}: {r!r} is not HH:MM-HH:MM")
        return v


class Survey(_M):
    enabled: bool = True
    scale: Literal[3, 5] = 5
    prompt: str = "survey"
    thanks: str = "survey_thanks"
    timeout_s: float = 8.0


class Recording(_M):
    """Call recording (MixMonitor when an agent answers) and how long recordings are kept."""

    #: prompt played to the caller once before the first queue (so before any recording starts); None: none
    notice: str | None = None
    #: `hotline recordings purge` without --older-than deletes recordings older than this many days
    retention_days: int | None = Field(None, ge=1)
    #: where Asterisk writes recordings (its monitor spool) on this machine
    dir: str = "/var/spool/hotline12345-asterisk/monitor"


class ApiSettings(_M):
    """The live API (live/api.py) served by the controller: off until a token exists (`hotline tokens create`)."""

    #: the address it listens on (127.0.0.1: this machine only; a LAN address for the wallboard's PC)
    bind: str = "127.0.0.1"
    port: int = Field(8345, ge=1, le=65535)
    #: false: never served, tokens or not
    enabled: bool = True
    #: how often a controller without tokens looks for the first one (s)
    token_check_s: float = Field(5.0, gt=0)


class SelfQuery(_M):
    max_attempts: int = 3
    ticket_digits: int = 12
    #: guess limits across calls, over the last `guess_window_h` hours: wrong tries from one caller
    #: number, and on one ticket (the ticket's own caller number is never held back by the latter, so
    #: nobody can lock a citizen out of their own ticket); a limited caller still reaches an agent
    guess_window_h: float = Field(24.0, gt=0)
    max_failures_per_caller: int = Field(10, ge=1)
    max_failures_per_ticket: int = Field(5, ge=1)


class Speech(_M):
    #: path to an unpacked vosk model; None disables speech navigation
    model: str | None = None
    min_confidence: float = 0.6
    listen_s: float = 4.0
    #: recognise only the menu's words (vosk's runtime grammar) when the model supports it (small models:
    #: graph/Gr.fst); far fewer misheard keywords than free text. false: free text, then keyword matching
    grammar: bool = True


class QualityRules(_M):
    """质检: what `hotline qa` checks in each transcribed call (ticketbridge/quality.py); each failed check
    takes its `points` off 100. Empty word lists switch their check off."""

    #: the agent says one of these within `greeting_within_s` of the recording's start (e.g. 您好 / 很高兴为您服务)
    greeting: list[str] = Field(default_factory=list)
    greeting_within_s: float = Field(15.0, gt=0)
    #: words an agent never says (each one said counts once)
    forbidden: list[str] = Field(default_factory=list)
    #: the agent reads the ticket number back (its last `readback_digits` digits, spoken digits accepted)
    readback: bool = True
    readback_digits: int = Field(4, ge=1, le=20)
    #: nobody speaks for longer than this (s) between two utterances
    max_silence_s: float = Field(10.0, gt=0)
    #: the agent starts speaking while the caller still speaks, overlapping by more than this (s)
    talk_over_s: float = Field(1.0, gt=0)
    #: points taken off per failed check: greeting, forbidden, readback, silence, talk_over
    points: dict[Literal["greeting", "forbidden", "readback", "silence", "talk_over"], float] = Field(
        default_factory=lambda: {"greeting": 20.0, "forbidden": 30.0, "readback": 20.0, "silence": 10.0,
                                 "talk_over": 5.0})


class Transcripts(_M):
    """Recordings become text (ticketbridge/transcript.py, hotline/transcriber.py): off the call path, in
    worker processes, each direction of the call separately, onto the ticket as a dialogue."""

    enabled: bool = False
    #: a vosk model directory for transcripts; None: speech.model (a larger model suits the offline work)
    model: str | None = None
    #: worker processes decoding at once (each one core of CPU and one copy of the model in memory)
    workers: int = Field(1, ge=1, le=32)
    #: their CPU priority (0-19, nice): calls always come first on a busy machine
    nice: int = Field(10, ge=0, le=19)
    #: at night (`night`, HH:MM-HH:MM in the center's time zone, may wrap midnight) this many work a backlog
    #: off; None: `workers` all day
    night_workers: int | None = Field(None, ge=1, le=32)
    night: str = "22:00-07:00"
    #: calls waiting to be transcribed; beyond it the newest is left untranscribed (logged, never blocks)
    queue_max: int = Field(500, ge=1)
    #: keep the per-direction files after transcription (the mixed recording is always kept)
    keep_direction_files: bool = False
    #: what suggests a category, sub-classification and department from the transcript (ticketbridge/
    #: categorize.py): "keywords" (built in: the rules of `categories`), a `module:attr` path, or a name in
    #: the Python entry-point group hotline12345.classifiers (trusted code); shown, never applied without the agent
    classifier: str = Field(KEYWORDS, min_length=1, max_length=200)
    #: the keyword classifier's rules (the city's classification standard), most specific first
    categories: list[CategoryRule] = Field(default_factory=list)
    #: a word the caller says counts this many times one the agent says
    caller_weight: float = Field(2.0, ge=0)
    #: no suggestion below this score (the sum of the weights of the words heard)
    min_score: float = Field(1.0, gt=0)
    #: the summary fields shown beside the suggestion (诉求摘要, 地点, 时间, 提及的号码)
    summary: SummaryRules = SummaryRules()
    qa: QualityRules = QualityRules()

    @field_validator("night")
    @classmethod
    def _night(cls, v: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError(f"{v!r} is not HH:MM-HH:MM")
        return v

    def workers_at(self, hhmm: str) -> int:
        """How many workers decode at local time `hhmm` ("HH:MM"): `night_workers` inside `night`."""
        if self.night_workers is None:
            return self.workers
        start, end = self.night.split("-")
        inside = start <= hhmm < end if start <= end else (hhmm >= start or hhmm < end)
        return self.night_workers if inside else self.workers

    @field_validator("categories")
    @classmethod
    def _rule_names(cls, v: list[CategoryRule]) -> list[CategoryRule]:
        seen: set[str] = set()
        for rule in v:
            if rule.name in seen:
                raise ValueError(f"rule {rule.name!r} is given twice")
            seen.add(rule.name)
        return v


class Deadline(_M):
    """Handling limit of a category, in working days (or hours when urgent)."""

    working_days: int | None = None
    hours: float | None = None


class Wallboard(_M):
    """When the wallboard (大屏, live/pages) turns red: a queue's longest wait above `wait_red_s`, 接通率 below
    `answer_rate_min` — GB/T 33358-2016's answer within 15 s and call completion ≥ 95 % by default."""

    wait_red_s: float = Field(15.0, gt=0)
    answer_rate_min: float = Field(0.95, ge=0, le=1)


#: espeak-ng voices by language code (ivr/prompts.py); `zh` is the center's own (Mandarin)
LANGUAGE_VOICES = {"zh": "cmn-latn-pinyin", "en": "en-us", "yue": "yue", "ja": "ja", "ko": "ko", "ru": "ru",
                   "fr": "fr", "de": "de", "es": "es"}


def priority_key(number: str) -> str:
    """A caller number compared with the priority list: digits only, a leading 0086/86/+86 off a mobile."""
    digits = "".join(c for c in str(number) if c.isdigit())
    for cc in ("0086", "86"):
        if digits.startswith(cc) and len(digits) - len(cc) == 11 and digits[len(cc)] == "1":
            return digits[len(cc):]
    return digits


class PriorityAccess(_M):
    """老年人优先 (适老化): listed callers, or any caller pressing `key` during the greeting, skip the menu
    and join `queue` ahead of callers without priority (app_queue's QUEUE_PRIO)."""

    #: a text file the center maintains, one number per line (# comments); relative to the config file
    numbers_file: str | None = None
    #: numbers given here directly (tests, a small center); the file's are added at load time
    numbers: list[str] = Field(default_factory=list, repr=False)
    #: the key any caller presses during the greeting (or an access offer) for the same; None: none
    key: str | None = None
    #: the queue they join (None: center.general_queue)
    queue: SafeName | None = None
    #: app_queue priority (higher is served first; callers without priority have 0)
    priority: int = Field(10, ge=1, le=1000)
    #: a prompt offering the key, played after the emergency notice while keys are accepted (None: none;
    #: the greeting's own text may offer it instead, costing no extra seconds)
    offer: str | None = None
    #: a prompt played when the priority path is taken (None: none)
    prompt: str | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 1 or v not in "123456789"):
            raise ValueError(f"key {v!r} must be a single digit 1-9 (0 is the agent key of every menu)")
        return v

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        out = []
        for n in v:
            k = priority_key(str(n))
            if not 3 <= len(k) <= 20:
                raise ValueError("a listed number must have 3-20 digits (one of them has not)")
            out.append(k)
        return out

    _lookup: tuple[int, frozenset[str]] | None = PrivateAttr(None)

    def listed(self, caller: str) -> bool:
        """Is `caller` on the list? (the set is rebuilt when the list changed length)"""
        if not caller or not self.numbers:
            return False
        if self._lookup is None or self._lookup[0] != len(self.numbers):
            self._lookup = (len(self.numbers), frozenset(self.numbers))
        return priority_key(caller) in self._lookup[1]


class LanguageSeats(_M):
    """A language path (foreign-language or dialect seats): offered by `key` in the greeting, or chosen in a
    menu by `queue:NAME`; the ticket records `code`."""

    #: what the language is called, for explain and the ticket's readers (English, 闽南话)
    name: SafeText
    #: espeak-ng voice for this path's prompts (offer, prompts, recording_notice); None: by `voice_of` the code
    voice: str | None = None
    #: the key pressed during the greeting or the offer; None: reached only from a menu or a transfer
    key: str | None = None
    #: a prompt played after the emergency notice while keys are accepted ("For English service, press 8")
    offer: str | None = None
    #: the queue of this language's seats
    queue: SafeName
    #: prompts played, in order, once the path is taken (in this language)
    prompts: list[str] = Field(default_factory=list)
    #: the recording notice in this language (then the center's is not played again)
    recording_notice: str | None = None
    #: sign-language seats (手语视频座席): a call that arrives with video (the caller's client offered a video
    #: stream Asterisk accepted) goes straight to this queue with no spoken greeting or menu, and its seats
    #: (`seats.<ext>.video`) get the call with video; audio-only callers reach it from a menu or a transfer
    video: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 1 or v not in "123456789"):
            raise ValueError(f"key {v!r} must be a single digit 1-9 (0 is the agent key of every menu)")
        return v


class Campaign(_M):
    """A 专席 campaign queue, on between `start` and `end` (dates, inclusive, the center's time zone):
    meanwhile the key in the greeting (and `queue:` destinations naming it) reach it; outside, its callers
    go to `otherwise`."""

    name: SafeText
    queue: SafeName
    start: dt.date
    end: dt.date
    key: str | None = None
    offer: str | None = None
    #: where its callers go outside the dates (never nowhere)
    otherwise: SafeName | None = None

    @model_validator(mode="after")
    def _dates(self) -> "Campaign":
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self

    def on(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


class Access(_M):
    """Every caller in their language and ability (issue 18): priority callers, language and dialect seats,
    dated campaign queues."""

    priority: PriorityAccess = PriorityAccess()
    #: language code (en, nan = 闽南话, yue = 粤语, …) → its seats
    languages: dict[SafeName, LanguageSeats] = Field(default_factory=dict)
    campaigns: dict[SafeName, Campaign] = Field(default_factory=dict)

    def voice_of(self, code: str) -> str:
        lang = self.languages.get(code)
        return (lang.voice if lang and lang.voice else None) or LANGUAGE_VOICES.get(code, LANGUAGE_VOICES["zh"])

    def prompt_voices(self) -> dict[str, str]:
        """Prompt id → espeak voice for the prompts of a language path (the rest speak Mandarin)."""
        out: dict[str, str] = {}
        for code, lang in self.languages.items():
            for pid in [lang.offer, *lang.prompts, lang.recording_notice]:
                if pid:
                    out[pid] = self.voice_of(code)
        return out


#: Asterisk's `systemname`: it prefixes every uniqueid and linkedid (`a-1764470000.12`), so two nodes never
#: make the same linkedid (the ticket store's unique key); letters and digits only (the id stays one token)
SYSTEMNAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,15}")


class ClusterNode(_M):
    """One Asterisk node of a multi-node center (cluster.nodes.<name>)."""

    #: the address the node's SIP listens on and Kamailio sends to (the node's own LAN address)
    host: SafeName
    sip_port: int = Field(5060, ge=1, le=65535)
    #: the node's AMI port (its controller connects to it on asterisk.ami.host); None: asterisk.ami.port
    ami_port: int | None = Field(None, ge=1, le=65535)
    #: Asterisk's systemname (prefix of its linkedids); None: the node's key
    systemname: str | None = None
    #: inbound: Kamailio dispatches calls from carriers and seats to it; a node without it only takes what is
    #: sent to it on purpose (a standby being drained before maintenance)
    roles: list[Literal["inbound"]] = Field(default_factory=lambda: ["inbound"])

    @field_validator("systemname")
    @classmethod
    def _systemname(cls, v: str | None) -> str | None:
        if v is not None and not SYSTEMNAME.fullmatch(v):
            raise ValueError(f"systemname {v!r} must be 1-16 letters and digits, starting with a letter")
        return v


class ClusterProxy(_M):
    """Kamailio, the SIP front: carriers and seat phones talk to it, it dispatches over the nodes."""

    #: the address Kamailio listens on (carriers and phones send here; the nodes reach seats through it)
    host: SafeName = "127.0.0.1"
    port: int = Field(5060, ge=1, le=65535)
    #: the digest realm seats authenticate their REGISTER with (Kamailio keeps only HA1 hashes)
    realm: SafeName = "hotline12345"
    #: how often each node is probed with SIP OPTIONS (dispatcher ds_ping_interval, s)
    probe_interval_s: int = Field(5, ge=1, le=300)
    #: failed probes before a node takes no new calls (ds_probing_threshold); it comes back at its first answer
    probe_failures: int = Field(1, ge=1, le=10)
    #: how often each call through a node is probed in-dialog (s; Kamailio's minimum is 30): a call whose node
    #: no longer answers is ended towards the caller and the seat (BYE), freeing the seat for other nodes
    call_probe_s: int = Field(30, ge=30, le=3600)
    #: how long Kamailio waits for a node's first answer to an INVITE before trying the next node (ms)
    node_timeout_ms: int = Field(2000, ge=500, le=30000)
    #: longest registration a seat phone may ask for (s)
    max_expires_s: int = Field(3600, ge=60, le=86400)
    #: Kamailio worker processes per listening socket
    children: int = Field(4, ge=1, le=64)


class Cluster(_M):
    """Several Asterisk nodes behind Kamailio (docs/cluster.md). Absent: one Asterisk, as before."""

    proxy: ClusterProxy = ClusterProxy()
    nodes: dict[SafeName, ClusterNode]
    #: how often each node's controller reads the agents' states the other nodes' controllers saved and applies
    #: those that changed to its own node's queues (s; routing/agent_sync.py)
    agent_sync_s: float = Field(1.0, ge=0.2, le=60)

    @model_validator(mode="after")
    def _distinct(self) -> "Cluster":
        if not self.nodes:
            raise ValueError("cluster.nodes is empty: name at least one Asterisk node")
        names: dict[str, str] = {}
        addrs: dict[tuple[str, int], str] = {(self.proxy.host, self.proxy.port): "the proxy (cluster.proxy)"}
        for key, node in self.nodes.items():
            sysname = self.systemname_of(key)
            if not SYSTEMNAME.fullmatch(sysname):
                raise ValueError(f"node {key!r}: its key is no valid systemname (1-16 letters and digits, "
                                 "starting with a letter); set systemname:")
            if sysname.lower() in names:
                raise ValueError(f"nodes {names[sysname.lower()]} and {key} have the same systemname {sysname!r}: "
                                 "their linkedids would collide in the ticket store")
            names[sysname.lower()] = key
            addr = (node.host, node.sip_port)
            if addr in addrs:
                raise ValueError(f"node {key!r} listens on {node.host}:{node.sip_port}, as {addrs[addr]} does")
            addrs[addr] = f"node {key!r}"
        if not any("inbound" in n.roles for n in self.nodes.values()):
            raise ValueError("no node has the role inbound: Kamailio would have nowhere to send a call")
        return self

    def systemname_of(self, node: str) -> str:
        return self.nodes[node].systemname or node


class Config(_M):
    center: Center = Center()
    asterisk: AsteriskSettings = AsteriskSettings()
    store: StoreSettings = StoreSettings()
    outbox: OutboxSettings = OutboxSettings()
    callbacks: CallbackSettings = CallbackSettings()
    #: 回访 after 办结 (automated follow-up calls)
    followups: FollowupSettings = FollowupSettings()
    prompts: dict[str, str] = Field(default_factory=dict)
    menus: dict[SafeName, Menu] = Field(default_factory=dict)
    queues: dict[SafeName, Queue] = Field(default_factory=dict)
    seats: dict[SeatKey, Seat] = Field(default_factory=dict)
    legacy_lines: dict[LineNumber, LegacyLine] = Field(default_factory=dict)
    branch_centers: dict[SafeName, Trunk] = Field(default_factory=dict)
    transfer_targets: dict[SafeName, Trunk] = Field(default_factory=dict)
    #: carriers' SIP trunks (the PSTN side): inbound DIDs, outbound calls
    carriers: dict[SafeName, Carrier] = Field(default_factory=dict)
    outbound: OutboundPolicy = OutboundPolicy()
    hours: dict[SafeName, Hours] = Field(default_factory=dict)
    survey: Survey = Survey()
    self_query: SelfQuery = SelfQuery()
    recording: Recording = Recording()
    speech: Speech = Speech()
    #: call transcripts, the suggested category and quality checks (质检)
    transcripts: Transcripts = Transcripts()
    deadlines: dict[str, Deadline] = Field(default_factory=dict)
    #: urgent categories and deadline reminders (model/caller_loop.py)
    deadline_rules: DeadlineRules = DeadlineRules()
    #: the ticket number and query password told after the agent hangs up (model/caller_loop.py)
    ticket_notice: TicketNotice = TicketNotice()
    #: the same as an SMS through the outbox; off without a url (model/caller_loop.py)
    sms: SmsSettings = SmsSettings()
    #: transfer no-answer time before the caller returns to the agent (s)
    transfer_timeout_s: int = 20
    #: seat agents' states, feature codes and busy reasons (each queue's `members` are the seats that may serve it)
    agents: AgentSettings = AgentSettings()
    #: the live API (snapshot, SSE stream, supervisors' actions); off until a token exists
    api: ApiSettings = ApiSettings()
    #: 承办单位 the agent's intake form offers for 派单 (besides the legacy lines' departments)
    departments: list[SafeText] = Field(default_factory=list)
    #: the wallboard's red thresholds
    wallboard: Wallboard = Wallboard()
    #: supervisors' listen / whisper / barge / force release (seats with role: supervisor)
    supervision: SupervisionSettings = SupervisionSettings()
    #: priority (elderly) callers, language and dialect seats, campaign queues (issue 18)
    access: Access = Access()
    #: several Asterisk nodes behind Kamailio (docs/cluster.md); None: one Asterisk
    cluster: Cluster | None = None

    @model_validator(mode="after")
    def _general_queue_exists(self) -> "Config":
        if self.center.general_queue not in self.queues:
            raise ValueError(
                f"center.general_queue {self.center.general_queue!r} is not defined under queues: "
                "every fail-open path ends there"
            )
        return self

    @field_validator("seats")
    @classmethod
    def _agent_ids_distinct(cls, v: dict[str, Seat]) -> dict[str, Seat]:
        seen: dict[str, str] = {}
        for key, seat in v.items():
            aid = seat.agent_id or key
            if aid in seen:
                raise ValueError(f"seats {seen[aid]} and {key} both have agent ID {aid}: one agent, one seat")
            seen[aid] = key
        return v

    def agent_id_of(self, seat: str) -> str:
        """The agent ID (工号) a seat stands for when nobody hot-desked onto it: `agent_id`, else its key."""
        s = self.seats.get(seat)
        return (s.agent_id if s is not None and s.agent_id else None) or seat

    #: which node of `cluster:` this process is (for_node; $HOTLINE_NODE on the command line), never in the YAML
    _node: str | None = PrivateAttr(None)

    @property
    def node(self) -> str | None:
        return self._node

    def for_node(self, node: str) -> "Config":
        """This configuration as node `node` of the cluster runs it: its SIP on the node's address and port,
        its AMI on the node's port. Unknown node: KeyError naming the known ones."""
        if self.cluster is None:
            raise KeyError(f"no cluster: section, so no node {node!r}")
        if node not in self.cluster.nodes:
            raise KeyError(f"node {node!r} is not under cluster.nodes ({', '.join(self.cluster.nodes)})")
        n = self.cluster.nodes[node]
        cfg = self.model_copy(deep=True)
        cfg._node = node
        cfg.asterisk.sip.bind = n.host
        cfg.asterisk.sip.port = n.sip_port
        if n.ami_port is not None:
            cfg.asterisk.ami.port = n.ami_port
        return cfg

    def trunk(self, key: str) -> Trunk | None:
        return self.transfer_targets.get(key) or self.branch_centers.get(key)
