"""The controller process: FastAGI server + AMI client + ticket store in one asyncio loop.

Wiring only. Decisions live in the pure cores (numberplan, menu engine, call
assembler, CDR replay); this module carries AMI events into the assembler, finished
call records into the store, and keeps tickets complete across restarts by running
the CDR replay (ticketbridge.cdr) at start-up and then periodically. Why one module: it is the one
place every part is wired to every other (FastAGI, AMI, store, CDR replay, agents, transfers,
callbacks, the live API, health); each part's logic lives in its own module, and splitting the
wiring would only scatter who starts and stops what. The background
tasks it starts are its own: `stop` cancels and awaits every one of them, and a task
that dies of an exception is logged.

Why one module (≈700 lines): it is the one composition root of the running process: every service
is built, attached to the AMI client and the FastAGI server, started and stopped here, in one
order that matters (the live model before the agents, the store before either). Each service's
logic lives in its own module; what stays here is the wiring and the control socket's dispatch.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import gc
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from hotline.control import ControlServer, actor_of, control_socket_path
from wire.ami import AmiClient
from model.config import Config
from model.contract import Context, ControlEvent, ControlHeader, Event
from admin.live_config import ERROR, LOADED, RESTART, load_snapshot, restart_fields
from model.secrets import ami_secret
from model.privacy import mask_number
from ivr.calls import CallScripts
from wire.channels import endpoint
from ivr.outbound_calls import OutboundScripts
from wire.fastagi import FastAgiServer
from ivr.speech import load_recognizer
from routing.dialplan import MAIN_INSTANCE, config_queue
from model.hours import Clock, system_clock
from routing.transfer_service import TransferService
from hotline.agent_control import AgentControl
from hotline.agent_help_op import help_request
from routing.agent_service import AgentService
from ivr.agent_phone import AgentPhone
from ivr.supervisor_phone import SupervisorPhone
from routing.supervise import Release
from routing.supervise_service import NO_UID, SupervisionService
from ticketbridge.assembler import Assembler, CallRecord
from ticketbridge.callbacks import CallbackDialer, CallbackError, CallbackResult, controller_id, is_callback_call
from ticketbridge.cdr import CDR_SETTLE_S, CdrReplayer
from ticketbridge.leases import JobLease, job_scope
from ticketbridge.outbox import OutboxPusher
from ticketbridge.pending import PendingSaves
from ticketbridge.save_queue import SaveQueue
from ticketbridge.scheduler import OutreachScheduler
from ticketbridge.sms import SMS_ENDPOINT, Sealer, sms_renderer
from ticketbridge.store import TicketStore
from live.api import LiveApi
from live.intervention import Intervention
from live.service import LiveService
from hotline.live_api import serve_api
from hotline.heapwatch import HeapWatch
from hotline.glibc_malloc import interval_from_env as trim_interval_from_env
from hotline.glibc_malloc import limit_arenas, trim_periodically
from hotline.transcriber import Transcriber, model_path, transcripts_model_ok

log = structlog.get_logger("hotline.controller")

#: the longest one step of `stop` (a task ending, the AMI link closing, the store closing) may take
STOP_STEP_S = 15.0
#: the shortest lease on the CDR replay: a controller that died hands it over after at most this long
CDR_LEASE_MIN_S = 15.0
#: the agents' lease (several controllers on one Asterisk): renewed every third of it; a dead holder's agents
#: are taken over after at most this long (at once by a lower-ranked controller or a restart on the same host)
AGENTS_LEASE_S = 10.0
#: the cluster's agent sync re-reads rows saved this long before its last look (controllers' clocks differ a little;
#: re-reading is harmless: a state this node already has is not applied again)
AGENT_SYNC_SLACK_S = 5.0
#: how often the controller logs its health (`controller_health`; `hotline status` asks for it any time)
HEALTH_LOG_S = 60.0
#: ticket numbers kept in `Controller.saved` (the newest; it once grew by one a call: issue 15's soak)
SAVED_MEMORY = 1000
#: how often the calls held open are compared with Asterisk's channels (besides at every AMI login)
CHANNEL_SWEEP_S = 30.0
#: how long after Asterisk's channel list the sweep judges (events written just after the list come first)
SWEEP_GRACE_S = 1.0


class Controller:
    def __init__(self, config: Config, *, store_url: str | None = None, cdr_path: Path | None = None,
                 clock: Clock | None = None, recognizer: Any = None,
                 cdr_settle_s: float = CDR_SETTLE_S, asterisk_root: str | os.PathLike[str] = "/",
                 asterisk_spool: str = "/var/spool/asterisk", instance: str = MAIN_INSTANCE,
                 control_path: Path | None = None) -> None:
        """`asterisk_root`/`asterisk_spool`: where Asterisk runs (Sandbox.root, Sandbox.layout.spool),
        so speech recordings made inside its (chrooted) filesystem can be read here. `instance`: which
        Asterisk's CDR rows are ours (Layout.instance); rows another instance tagged are ignored."""
        self.config = config
        self.clock = clock or system_clock(config.center.timezone)
        self.store = TicketStore(store_url or config.store.url, config)
        self.assembler = Assembler(config.center.timezone, agent_id_of=self._agent_id_of)
        a = config.asterisk
        self.ami = AmiClient(a.ami.host, a.ami.port, a.ami.username, ami_secret(config),
                             ping_interval=a.ami.ping_interval_s, action_timeout=a.ami.action_timeout_s,
                             connect_timeout=a.ami.connect_timeout_s)
        self._own_recognizer = recognizer is None
        if recognizer is None:
            recognizer = load_recognizer(config)  # None: speech off (no model configured or found)
        self.recognizer = recognizer
        self.scripts = CallScripts(config, self.clock, self.store, recognizer, recordings_root=asterisk_root,
                                   record_dir=f"{asterisk_spool.rstrip('/')}/tmp")
        self.agi = FastAgiServer(a.fastagi.host, a.fastagi.port, backlog=a.fastagi.backlog,
                                 command_timeout=a.fastagi.command_timeout_s)
        self.agi.route("inbound", self.scripts.inbound)
        self.agi.route("survey", self.scripts.survey)
        #: the generation of the configuration `hotline apply` last handed over (0: the one started with)
        self.generation = "0"
        self.cdr_path = cdr_path or (Path(a.cdr_csv) if a.cdr_csv else None)
        self.cdr_settle_s = cdr_settle_s
        #: tickets for calls the controller never saw, from Asterisk's CDR file (None: no file configured)
        self.cdr: CdrReplayer | None = None
        #: who this controller is in the shared store: the owner of its claims and leases
        self.owner = controller_id()
        #: the CDR replay of this Asterisk node runs on one controller at a time (ticketbridge/leases.py)
        self.cdr_lease: JobLease | None = None
        #: the node those jobs are about, naming their leases: the cluster node, else the instance (leases.py)
        self.scope = job_scope(config, instance)
        a = config.asterisk
        if self.cdr_path:
            self.cdr = CdrReplayer(self.cdr_path, lookup=self._tickets_of, save=self._save_from_cdr,
                                   open_ids=self._open_linkedids, settle_s=cdr_settle_s, instance=instance,
                                   on_callback=self._callback_from_cdr, gate=self._cdr_gate)
            self.cdr_lease = JobLease(self.store, f"cdr-replay:{self.scope}", self.owner,
                                      ttl_s=max(CDR_LEASE_MIN_S, 3 * self.cdr.interval_s), rank=a.fastagi.rank())
        #: every background task this controller started and has not seen finish (stop() awaits them)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._cdr_task: asyncio.Task[None] | None = None
        #: one writer at a time; calls ending together share one transaction (group commit, acknowledged
        #: only once committed: ticketbridge.save_queue)
        self.save_queue = SaveQueue(self.store)
        self._saving: set[asyncio.Task[Any]] = set()
        #: call records the store could not take (down, disk full): written when it comes back
        self.pending = PendingSaves()
        #: the ticket numbers this process saved last (for the demo and tests): the newest SAVED_MEMORY
        self.saved: collections.deque[str] = collections.deque(maxlen=SAVED_MEMORY)
        self.on_saved: list[Callable[[CallRecord, Any], Any]] = []
        # missed-call callbacks (漏接电话回拨) and the outbox pusher (None unless outbox.url is set)
        self.callbacks = CallbackDialer(self.store, self.ami, config.callbacks, policy=config, owner=self.owner)
        #: automatic callbacks and 回访 (callbacks.auto, followups.auto; each off unless enabled): the rules
        #: (ticketbridge/outreach_rules.py) on the store's clock, claims in the store, calls by the dialer above
        self.scheduler = OutreachScheduler(self.store, self.callbacks, lambda: self.config, self.store.now)
        self._scheduler_task: asyncio.Task[None] | None = None
        #: the IVR of the calls the hotline places: the 回访 questions, the callback's "press 1 for an agent"
        self.outbound_scripts = OutboundScripts(lambda: self.config, self.store)
        self.agi.route("followup", self.outbound_scripts.followup)
        self.agi.route("callback_offer", self.outbound_scripts.callback_offer)
        self.outbox = OutboxPusher.from_config(self.store, config.outbox)
        self._outbox_task: asyncio.Task[None] | None = None
        self._sms_task: asyncio.Task[None] | None = None
        self._reminder_task: asyncio.Task[None] | None = None
        #: the ticket notice by SMS (config `sms:`): the store seals each password for its outbox row, this
        #: pusher opens it for the one message to the gateway (ticketbridge/sms.py); None without sms.url
        self.sms: OutboxPusher | None = None
        if config.sms.enabled:
            self.store.sealer = Sealer.from_env(config.sms)
            self.sms = OutboxPusher.from_config(self.store, config.sms, endpoint=SMS_ENDPOINT, echo_body=False,
                                                render=sms_renderer(config.sms, self.store.sealer, self._caller_of))
        #: agents' transfers (feature codes *71/*810…, or the API): Asterisk's Atxfer does the call
        #: handling; each outcome reaches the ticket as UserEvent HotlineTransfer (Linkedid of the call)
        self.transfers = TransferService(self.ami, config, self._on_transfer_outcome,
                                         agent_context=Context.AGENT_TRANSFER)
        self._work_orders: dict[str, str] = {}  # linkedid -> target not reached (工单派转)
        self._recover_task: asyncio.Task[Any] | None = None
        self._pending_task: asyncio.Task[Any] | None = None
        self._health_task: asyncio.Task[Any] | None = None
        self._sweep_task: asyncio.Task[Any] | None = None
        #: the opt-in heap profiler ($HOTLINE_TRACEMALLOC=N seconds, hotline/heapwatch.py); None: off, no cost
        self.heap_watch = HeapWatch.from_env()
        self._heap_task: asyncio.Task[Any] | None = None
        self._trim_task: asyncio.Task[Any] | None = None
        #: a cluster: other nodes' controllers' agent changes, applied to this node (routing/agent_sync.py)
        self._agent_sync_task: asyncio.Task[Any] | None = None
        self._dropped_seen = 0  # AmiClient.events_dropped when last looked at
        #: seat agents' states (routing/agent.py): queue events in, QueuePause of the static members out,
        #: persisted in the store and put back at every AMI login (an Asterisk restart unpauses everyone)
        self.agents = AgentService(self.ami, config, save=self.store.save_agent, save_help=self.store.save_help)
        self.agents.attach()
        #: several controllers on one Asterisk (asterisk.fastagi.controllers): one acts for the agents (their
        #: automatic pauses), under a lease the lowest-ranked live controller holds; the others stand by
        self.agents_lease: JobLease | None = None
        self._agents_lease_task: asyncio.Task[Any] | None = None
        if len(a.fastagi.controllers) > 1:
            lease = self.agents_lease = JobLease(self.store, f"agents:{self.scope}", self.owner, ttl_s=AGENTS_LEASE_S,
                                                 rank=a.fastagi.rank())
            self.agents.active = lambda: lease.held
        self.agi.route("agent", AgentPhone(self.agents).script)
        self.agent_control = AgentControl(self.agents, self.store, self.clock)
        #: supervisors' listen / whisper / barge / force release (routing/supervise.py), from a seat's feature
        #: code (AGI `supervise`) or `supervise()` (the control socket, the API); every use in the audit log
        self.supervision = SupervisionService(self.ami, config, self._audit, on_release=self._on_release)
        self.supervision.attach()
        self.agi.route("supervise", SupervisorPhone(self.supervision).script)
        self._releases: dict[str, str] = {}  # linkedid -> who force-released the call (for its ticket)
        #: supervisors' commands ask for callbacks here instead of holding an AMI secret (hotline/control.py)
        self.control = ControlServer(control_path or control_socket_path(instance), self._on_control_request)
        #: the live model (live/reducer.py) fed by every AMI event; agents' states asked of self.agents
        self.live = LiveService(self.ami, config, self.agents, today_rows=self._today_rows)
        self.live.attach()
        self.on_saved.append(lambda record, saved: self.live.note_saved(record.to_dict()))
        #: listen/whisper/barge/force release for the API (live/intervention.py): this controller's own
        #: `supervise` (routing/supervise_service.py), the same rules and audit rows as the seat codes and the CLI
        self.intervention: Intervention | None = self
        #: the live API (live/api.py): listening once a token exists (config api:)
        self.api: LiveApi | None = None
        self._api_task: asyncio.Task[None] | None = None
        #: recordings become transcripts on their tickets (transcripts.enabled), off the call path
        monitor = (Path(asterisk_root) / asterisk_spool.lstrip("/") / "monitor" if str(asterisk_root) != "/"
                   else Path(config.recording.dir))
        self.transcriber: Transcriber | None = None
        self._transcriber_task: asyncio.Task[None] | None = None
        if config.transcripts.enabled:
            if transcripts_model_ok(config):
                self.transcriber = Transcriber(config, self.store, monitor)
                self.on_saved.append(self.transcriber.offer)
            else:  # calls go on, untranscribed; the per-direction files are left to the retention rule
                log.warning("transcripts_model_missing", path=model_path(config),
                            hint="set transcripts.model or speech.model to an unpacked vosk model (README)")

    @classmethod
    def for_sandbox(cls, config: Config, sandbox: Any, **kw: Any) -> "Controller":
        """A controller wired to a local Asterisk: its CDR file and its (chrooted) filesystem."""
        return cls(config, cdr_path=sandbox.cdr_csv, asterisk_root=sandbox.root,
                   asterisk_spool=sandbox.layout.spool, instance=sandbox.layout.instance, **kw)

    async def start(self) -> None:
        """Start every part; when one fails, the agents' after-call-work and 离线 pauses are released
        (`_abort_start`) before the error is raised, so no seat stays paused with nobody to unpause it."""
        try:
            await self._start()
        except Exception as e:
            log.error("controller_start_failed", error=f"{type(e).__name__}: {e}")
            await self._abort_start()
            raise

    async def _start(self) -> None:
        self._stopping = False
        if self.recognizer is not None:
            await self.recognizer.load()  # seconds of work, done before the first caller waits on it
            self.scripts.prepare_recordings()
        await self.store.open()
        await self.agi.start()
        self.ami.on_event("*", self._on_event)
        # FullyBooted arrives on every AMI login: re-attach transfers after a (re)connect
        self.ami.on_event("FullyBooted", self._on_ami_login)
        self.ami.on_event("UserEvent", self._on_control)
        # before the AMI login, so its FullyBooted finds the agents as they were saved
        await self.live.start()  # today's tickets; Asterisk's calls come at the AMI login (FullyBooted)
        await self._start_agents()
        if self.agents_lease is not None:
            self._agents_lease_task = self._spawn(self._hold_agents(), "agents-lease")
        await self.ami.start()
        await self.control.start()
        if self.config.api.enabled:
            self._api_task = self._spawn(serve_api(self), "live-api")
        self.transfers.start_timer()
        if self.cdr is not None:
            await self.reconcile_cdr()
            self._cdr_task = self._spawn(self.cdr.run(), "cdr-reconcile")
        if self.outbox is not None:  # its own task: a slow or absent platform never delays a call
            self._outbox_task = self._spawn(self.outbox.run(), "outbox-pusher")
        if self.transcriber is not None:  # its own task and processes: decoding never delays a call
            self._transcriber_task = self._spawn(self.transcriber.run(), "transcriber")
        # always running (cheap when both kinds are off): it reads the rules of the configuration in force
        self._scheduler_task = self._spawn(self.scheduler.run(), "outreach-scheduler")
        if self.sms is not None:
            self._sms_task = self._spawn(self.sms.run(), "sms-pusher")
        if self.config.deadline_rules.remind_before_h:
            self._reminder_task = self._spawn(self._remind_deadlines(), "deadline-reminders")
        self._pending_task = self._spawn(self.pending.run(self._write), "pending-tickets")
        self._health_task = self._spawn(self._log_health(), "health-log")
        self._sweep_task = self._spawn(self._sweep_periodically(), "channel-sweep")
        if self.heap_watch is not None:
            self._heap_task = self._spawn(self.heap_watch.run(), "heap-watch")
        # glibc's free-but-kept memory back to the system every minute (RSS follows what is in use)
        self._trim_task = self._spawn(trim_periodically(trim_interval_from_env()), "malloc-trim")
        if self.config.cluster is not None:
            self._agent_sync_task = self._spawn(self._sync_agents(self.config.cluster.agent_sync_s), "agent-sync")
        log.info("controller_started", fastagi_port=self.agi.port, ami=f"{self.config.asterisk.ami.host}:"
                 f"{self.config.asterisk.ami.port}", store=_redact_url(self.store.url))

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls, let running scripts finish, and keep the tickets of calls in progress.

        Returns only once every background task this controller started has finished.
        """
        log.info("controller_stopping")
        self._stopping = True
        await self._bounded(self.control.stop(), "control")
        await self._end_task(self._api_task)
        # a stream task that swallowed its cancellation, or a browser holding a response open, never holds the stop
        await self._bounded(self.live.stop(), "live")  # ends the SSE streams
        if self.api is not None:
            await self._bounded(self.api.stop(), "api")
            self.api = None
        await self._end_task(self._scheduler_task)  # calls being placed end; their claims' leases expire
        await self._end_task(self._agents_lease_task)  # no take-over while stopping
        await self._end_task(self._health_task)
        await self._end_task(self._sweep_task)
        await self._end_task(self._heap_task)
        await self._end_task(self._trim_task)
        await self._end_task(self._agent_sync_task)
        await self._end_task(self._cdr_task)
        if self.cdr_lease is not None:  # the other controller replays from its next round on
            await self._bounded(self.cdr_lease.release(), "cdr-lease")
        await self._end_task(self._transcriber_task)  # calls not transcribed yet stay untranscribed
        await self.agi.stop(grace_s)
        await self._saves_done()
        for record in self.assembler.open_records():
            await self._save(record)
        await self._end_task(self._pending_task)
        if len(self.pending) and not await self.pending.flush(self._write):
            log.error("tickets_unsaved_at_stop", held=len(self.pending), reason=self.pending.reason,
                      note="the CDR replay rebuilds them at the next start")
        await self._end_task(self._recover_task)
        await self._bounded(self.transfers.close(), "transfers")
        await self._bounded(self._stop_agents(), "agents")
        await self._release_agents()
        if self.agents_lease is not None:  # the standby takes the agents over at its next renewal
            await self._bounded(self.agents_lease.release(), "agents-lease")
        await self._end_task(self._outbox_task)  # undelivered rows stay in the outbox for the next start
        await self._end_task(self._sms_task)
        await self._end_task(self._reminder_task)
        await self._bounded(self.ami.close(), "ami")
        await self._saves_done()  # calls that ended during the stop
        if len(self.pending) and not await self.pending.flush(self._write):  # one of those saves failed
            log.error("tickets_unsaved_at_stop", held=len(self.pending), reason=self.pending.reason,
                      note="the CDR replay rebuilds them at the next start")
        while self._tasks:  # anything else still running (none expected once AMI is closed)
            for task in list(self._tasks):
                await self._end_task(task)
        await self._bounded(self.store.close(), "store")
        if self.recognizer is not None and self._own_recognizer:
            self.recognizer.close()
        log.info("controller_stopped")

    # ------------------------------------------------------------------ background tasks
    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a background task this controller owns: tracked until it finishes, its failure logged."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so it is never lost as "exception was never retrieved"
        if exc is not None:
            log.error("controller_task_failed", task=task.get_name(), error=repr(exc), exc_info=exc)

    async def _end_task(self, task: asyncio.Task[Any] | None) -> None:
        """Cancel `task` (when still running) and wait until it has finished; its failure is logged by
        `_task_done`, not raised here. A cancellation of the caller itself still propagates."""
        if task is None:
            return
        if not task.done():
            task.cancel()
        done, _ = await asyncio.wait({task}, timeout=STOP_STEP_S)
        if not done:  # a task that swallows its cancellation never holds the stop (systemd would kill us)
            log.error("controller_task_stuck", task=task.get_name(), seconds=STOP_STEP_S,
                      where=[f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack(limit=5)])
        self._tasks.discard(task)

    async def _bounded(self, step: Coroutine[Any, Any, Any], name: str) -> None:
        """One step of `stop` that talks to something outside (Asterisk, the store): at most STOP_STEP_S,
        then the stop goes on with the next step (logged), so a stop always ends."""
        try:
            async with asyncio.timeout(STOP_STEP_S):
                await step
        except TimeoutError:
            log.error("controller_stop_step_stuck", step=name, seconds=STOP_STEP_S)

    # ------------------------------------------------------------------ AMI → tickets
    def _on_event(self, event: dict[str, str]) -> None:
        """Every AMI event into the assembler, synchronously (the AMI dispatcher makes no task for it and
        never waits on the store, issue 15): the records of calls that just ended are saved by tasks of their
        own (`_save_soon`)."""
        if is_callback_call(event):
            return  # a callback we placed belongs to the missed call's ticket, never a new one
        if "Queue" in event:
            event = {**event, "Queue": config_queue(event["Queue"])}
        try:
            finished = self.assembler.feed(event, time.time())
        except Exception:  # a malformed event never takes the controller down
            log.exception("assembler_failed", event=event.get("Event"))
            return
        for record in finished:
            self._save_soon(record)

    def _save_soon(self, record: CallRecord) -> None:
        """Save `record` without holding the AMI dispatcher: calls ending together then share one transaction
        (the save queue). Awaited by `stop` before the store closes; until committed, nothing is acknowledged
        (a controller dying meanwhile leaves the call to the CDR replay, as a save under way always did)."""
        task = self._spawn(self._save(record), f"save-{record.linkedid}")
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    async def _saves_done(self) -> None:
        """Wait for the saves under way (never cancels them: each ends committed, or held in `pending`)."""
        while self._saving:
            done, _ = await asyncio.wait(set(self._saving), timeout=STOP_STEP_S)
            if not done:
                log.error("ticket_saves_stuck", saves=len(self._saving), seconds=STOP_STEP_S)
                return

    async def _save(self, record: CallRecord) -> None:
        """Save `record`; when the store cannot take it, keep it for later (ticketbridge.pending)."""
        released = self._releases.pop(record.linkedid, None) if record.complete else None
        if released is not None:  # the 强拆 note is written with the ticket, and waits with it when the store fails
            record = replace(record, released_by=released)
        try:
            await self._write(record)
        except Exception as e:  # noqa: BLE001 - the store is away or full: calls go on, the ticket waits
            self.pending.defer(record, e)
            return
        self.pending.saved(record)
        self.pending.recovered()

    async def _write(self, record: CallRecord) -> None:
        """Write `record` to the store (raises when the store fails) and do what follows a saved ticket."""
        saved = await self.save_queue.save(record)
        self.saved.append(saved.ticket_no)
        if self.sms is not None and record.outcome == "answered" and record.complete:
            await self._sms_notice(saved.ticket_no)
        if self.outbox is not None:
            self.outbox.notify()
        log.info("ticket_saved", ticket=saved.ticket_no, linkedid=record.linkedid, outcome=record.outcome,
                 handled_by=record.handled_by, caller=mask_number(record.caller), created=saved.created)
        target = self._work_orders.pop(record.linkedid, None) if record.complete else None
        if target is not None:
            await self._dispatch_work_order(saved.ticket_no, target)
        for cb in self.on_saved:
            cb(record, saved)

    # ------------------------------------------------------------------ the caller's loop
    async def _caller_of(self, ticket_no: str) -> str | None:
        t = await self.store.get_ticket(ticket_no)
        return t.caller if t is not None else None

    async def _sms_notice(self, ticket_no: str) -> None:
        """An answered call whose caller hung up before the IVR's notice still gets it by SMS (a password is
        made for it now); a ticket whose password was already told (and so sent) gets nothing more."""
        try:
            if await self.store.issue_password(ticket_no, actor="sms") is not None:
                log.info("ticket_notice_by_sms", ticket=ticket_no)
        except Exception:  # noqa: BLE001 - never in a call's way
            log.exception("ticket_sms_notice_failed", ticket=ticket_no)
        assert self.sms is not None
        self.sms.notify()

    async def _remind_deadlines(self) -> None:
        """Every `deadline_rules.poll_s`: one `deadline_reminder` outbox event per ticket nearing its deadline."""
        rules = self.config.deadline_rules
        while True:
            try:
                if rules.remind_before_h and await self.store.write_deadline_reminders(
                        dt.timedelta(hours=rules.remind_before_h)) and self.outbox is not None:
                    self.outbox.notify()
            except Exception:  # noqa: BLE001 - the database may be briefly away; the next round tries again
                log.exception("deadline_reminders_failed")
            await asyncio.sleep(rules.poll_s)
    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        """What `hotline status` shows and the periodic `controller_health` log line holds: the AMI link
        (wire.ami.AmiClient.health), tickets waiting for the store, calls in progress; `healthy` is
        False when AMI is down, its dispatcher dead, or tickets are waiting for the store."""
        ami = self.ami.health()
        p = self.pending
        store = {"held_tickets": len(p), "reason": p.reason if p.down_since is not None else "",
                 "down_for_s": None if p.down_since is None else round(time.monotonic() - p.down_since, 1),
                 "left_to_cdr": p.let_go}
        healthy = bool(ami["connected"] and ami["dispatcher_alive"] and not len(p))
        return {"healthy": healthy, "ami": ami, "store": store,
                "calls_in_progress": self.assembler.open_count(), "config_generation": self.generation,
                "fastagi_port": self.agi.port, "owner": self.owner,
                "agents": None if self.agents_lease is None else ("active" if self.agents_lease.held else "standby"),
                "cdr_replay": None if self.cdr_lease is None else ("held" if self.cdr_lease.held else "standby")}

    async def _log_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_LOG_S)
            h = self.health()
            (log.info if h["healthy"] else log.warning)("controller_health", **h)

    # ------------------------------------------------------------------ seat agents
    async def _start_agents(self) -> None:
        """Saved states back (none saved: every configured member signs in, ready); calls never wait on this.
        Several controllers on one Asterisk: this one acts for them only when it holds their lease."""
        if self.agents_lease is not None:
            await self.agents_lease.hold()
            log.info("agents_role", role="active" if self.agents_lease.held else "standby", rank=self.agents_lease.rank)
        try:
            saved = await self.store.agent_states()
            helping = await self.store.help_periods()
        except Exception:  # noqa: BLE001 - the static members still take calls
            log.exception("agent_states_load_failed")
            saved, helping = {}, []
        self.agents.start_from(saved, helping)
        try:  # wrong hot-desk PINs still count across a restart (routing/agent_login.py)
            since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=self.config.agents.pin_lock_s)
            events = await self.store.agent_events(since=since)
            self.agents.recall_pin_failures({"agent": e.agent, "at": e.at.timestamp(), "cause": e.cause, "new": e.new}
                                            for e in events)
        except Exception:  # noqa: BLE001 - only the lock count is lost
            log.exception("agent_pin_failures_load_failed")
        await self.agents.start()

    async def _hold_agents(self) -> None:
        """Renew the agents' lease every third of it; on taking it (the active controller died, stopped, or this
        one ranks first), load the agents' states as the other saved them and put them back in Asterisk."""
        lease = self.agents_lease
        assert lease is not None
        while True:
            await asyncio.sleep(lease.ttl_s / 3)
            was = lease.held
            if not await lease.hold() or was:
                continue
            try:
                saved = await self.store.agent_states()
                helping = await self.store.help_periods()
            except Exception:  # noqa: BLE001 - never act on blank machines: try again next round
                log.exception("agents_take_over_failed")
                lease.held = False
                continue
            self.agents.take_over(saved, helping)
            log.info("agents_taken_over", agents=len(saved), rank=lease.rank)

    async def _sync_agents(self, every_s: float) -> None:
        """A cluster: every `every_s`, the agents' states saved since the last look (by any node's controller)
        that differ from this node's are applied here — only by the controller active for this node's agents."""
        last = self.store.now()
        while True:
            await asyncio.sleep(every_s)
            if not self.agents.active():
                last = self.store.now()
                continue
            look = self.store.now()
            try:
                saved = await self.store.agent_states(changed_since=last - dt.timedelta(seconds=AGENT_SYNC_SLACK_S))
            except Exception as e:  # noqa: BLE001 - the store is away: the next look reads from the same point
                log.warning("agent_sync_failed", error=f"{type(e).__name__}: {e}")
                continue
            last = look
            self.agents.mirror_saved(saved)

    async def _stop_agents(self) -> None:
        try:  # what was decided is sent and saved before the AMI link closes
            await asyncio.wait_for(self.agents.drain(), 5)
        except (asyncio.TimeoutError, TimeoutError):
            log.warning("agent_actions_not_drained")
        await self.agents.stop()

    async def _release_agents(self, connect_s: float = 0.0) -> None:
        """Unpause the seats paused for after-call work or 离线 (routing.agent_service.AgentService.release):
        without the controller nobody would end those pauses. Busy and signed-out agents stay paused."""
        try:
            if connect_s:
                await self.ami.wait_connected(connect_s)
            released = await asyncio.wait_for(self.agents.release(), 10)
            log.info("agents_released", members=released)
        except Exception as e:  # noqa: BLE001 - AMI unreachable: nothing can be released
            log.warning("agents_release_failed", error=f"{type(e).__name__}: {e}")

    async def _abort_start(self) -> None:
        """A start that failed part-way: log in to AMI if it was not yet (the agents' machines, maybe not
        loaded, never act on that login), release the pauses, then stop what did start."""
        try:
            await self.ami.start()
        except Exception:  # noqa: BLE001 - reported by _release_agents
            pass
        await self._release_agents(connect_s=5.0)
        self._stopping = True
        try:
            await self.stop()
        except Exception:  # noqa: BLE001 - the start's own error is the one raised
            log.warning("controller_abort_cleanup_failed", exc_info=True)

    # ------------------------------------------------------------------ the live API
    async def _today_rows(self, since: dt.datetime) -> list[dict[str, Any]]:
        return await self.store.kpi_rows(since=since.astimezone(dt.timezone.utc), linkedid=True)

    # ------------------------------------------------------------------ applied configuration
    def take_config(self, config: Config, generation: str) -> None:
        """Swap in a new configuration between calls: each new call reads it once, at its start (a new
        CallScripts); calls in progress keep running the scripts, and so the config, they started with.
        No await in here: the swap is atomic on the event loop."""
        scripts = CallScripts(config, self.clock, self.store, self.recognizer,
                              recordings_root=self.scripts.recordings_root, record_dir=self.scripts.record_dir)
        self.agi.route("inbound", scripts.inbound)
        self.agi.route("survey", scripts.survey)
        self.scripts, self.config, self.generation = scripts, config, generation
        log.info("controller_config_loaded", generation=generation)

    def _on_control(self, event: dict[str, str]) -> Coroutine[Any, Any, None] | None:
        """`hotline apply` announced a configuration (admin/live_config.py): the AMI dispatcher awaits taking it.
        Every other UserEvent (several per call) is passed over here, synchronously: an async handler would
        cost the dispatcher a task and a timer for each (issue 15)."""
        if event.get("UserEvent") != ControlEvent.CONFIG_APPLIED:
            return None
        return self._take_control(event)

    async def _take_control(self, event: dict[str, str]) -> None:
        """Take the announced configuration, or say why not."""
        generation = event.get(ControlHeader.GENERATION, "")
        try:
            new = load_snapshot(event.get(ControlHeader.FILE, ""), event.get(ControlHeader.DIGEST, ""))
            cold = restart_fields(self.config, new)
        except Exception as e:  # noqa: BLE001 - a bad announcement never takes the controller down
            result, detail = ERROR, f"{type(e).__name__}: {e}".replace("\n", " ")[:300]
        else:
            result, detail = (RESTART, "changed: " + ", ".join(cold)) if cold else (LOADED, "")
            if not cold:
                self.take_config(new, generation)
            else:
                log.warning("controller_config_needs_restart", generation=generation, fields=cold)
        try:
            await self.ami.action("UserEvent", UserEvent=ControlEvent.CONFIG_LOADED.value,
                                  **{ControlHeader.GENERATION.value: generation, ControlHeader.RESULT.value: result,
                                     ControlHeader.DETAIL.value: detail or "-"})
        except Exception:  # noqa: BLE001 - apply then reports the controller as not reached
            log.warning("controller_config_answer_failed", generation=generation, exc_info=True)

    # ------------------------------------------------------------------ callbacks
    async def call_back(self, ticket_no: str, actor: str = "controller") -> CallbackResult:
        """Ring the citizen of a missed call back into `callbacks.queue`; the result joins the same ticket
        (raises ticketbridge.callbacks.CallbackError when the ticket owes no callback)."""
        return await self.callbacks.call_back(ticket_no, actor=actor)

    # ------------------------------------------------------------------ supervisors' intervention
    async def supervise(self, mode: str, seat: str, agent: str, *, actor: str, uid: int = NO_UID,
                        user: str = "", via: str = "api", call: str = "") -> dict[str, Any]:
        """监听/耳语/强插: ring supervisor seat `seat` into a ChanSpy session on `agent`'s call; 强拆 (`release`):
        hang the call up. `uid`/`user`/`actor` are who asked (the audit row, written first; an API token:
        uid NO_UID, `user` its name). The answer:
        {"ok": True, "mode", "seat", "agent", "linkedid", …} or {"ok": False, "reason", "error"}."""
        return await self.supervision.intervene(mode, seat, agent, actor=actor, uid=uid, user=user, via=via,
                                                call=call)

    async def _audit(self, action: str, asked: dict[str, Any], uid: int, user: str) -> None:
        await self.store.audit(action, asked, 1, uid=uid, user=user)

    async def _on_release(self, release: Release, actor: str) -> None:
        self._releases[release.linkedid] = f"{actor} (seat {release.seat}, agent {release.agent})"
        while len(self._releases) > 1000:  # a released call that never became a ticket (seat to seat)
            self._releases.pop(next(iter(self._releases)))

    async def _on_control_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request on the control socket (hotline/control.py): `status`, `callback`, `agents` (list), `agent` (change),
        `help` (多援一: start, end, list), `supervise` (listen/whisper/barge/release). Who asked is the socket's
        `peer` (the kernel's word, SO_PEERCRED), never the client's."""
        if request.get("op") == "status":
            return {"ok": True, **self.health()}
        if request.get("op") == "supervise":
            peer = request.get("peer") if isinstance(request.get("peer"), dict) else {}
            uid = peer.get("uid")
            return await self.supervise(str(request.get("mode") or ""), str(request.get("seat") or ""),
                                        str(request.get("agent") or ""), actor=actor_of(request)[:64],
                                        uid=uid if isinstance(uid, int) else NO_UID, user=str(peer.get("user") or ""),
                                        via="cli")
        if (request.get("op") == "agent" or (request.get("op") == "help" and str(request.get("action") or "list")
                                             != "list")) and not self.agents.active():
            return {"ok": False, "error": "this controller stands by for the agents of this Asterisk (another "
                                          "controller acts for them: hotline status there says agents active)"}
        answer = await self.agent_control.handle(request)  # agents (list), agent (change): hotline/agent_control.py
        if answer is not None:
            return answer
        if request.get("op") == "help":
            return await help_request(self.agents, self.store, request)
        if request.get("op") != "callback":
            return {"ok": False, "error": f"unknown op {request.get('op')!r}"}
        ticket = str(request.get("ticket") or "")
        try:
            r = await self.call_back(ticket, actor=actor_of(request, "supervisor"))
        except CallbackError as e:
            return {"ok": False, "error": str(e)}
        return {"ok": True, "ticket": r.ticket_no, "status": r.status, "attempts": r.attempts, "result": r.result}

    # ------------------------------------------------------------------ CDR replay
    async def reconcile_cdr(self) -> int:
        """Tickets for calls that ended while the controller was away, from Asterisk's CDR lines
        (ticketbridge.cdr); returns how many were saved, 0 without a CDR file."""
        if self.cdr is None:
            return 0
        return await self.cdr.reconcile()

    async def _cdr_gate(self) -> bool:
        """Replay this round only while this controller holds the node's CDR replay (several controllers)."""
        return self.cdr_lease is None or await self.cdr_lease.hold()

    async def _tickets_of(self, linkedids: list[str]) -> dict[str, Any]:
        return await self.store.cdr_statuses(linkedids)

    def _open_linkedids(self) -> set[str]:
        """Calls the CDR replay leaves alone: those still followed live, and those whose records wait for the
        store (ticketbridge/pending.py), which hold more than a CDR rebuild and are saved when it is back."""
        return self.assembler.open_linkedids() | set(self.pending.records)

    def _agent_id_of(self, seat: str) -> str | None:
        """The agent ID working a seat now (tickets name it); None for anything that is no seat."""
        return self.agents.agent_id_of(seat) if seat in self.config.seats else None

    async def _callback_from_cdr(self, linkedid: str, rows: list[dict[str, Any]]) -> bool:
        try:
            return await self.callbacks.settle_from_cdr(linkedid, rows)
        except Exception:  # noqa: BLE001 - the store may be away: looked at again next round
            log.warning("callback_settle_failed", linkedid=linkedid, exc_info=True)
            return False

    async def _save_from_cdr(self, record: CallRecord) -> None:
        if record.queue:
            record.queue = config_queue(record.queue)
        if record.agent and record.agent.upper().startswith("PJSIP/"):  # CDR names the device: the agent now
            aid = self._agent_id_of(endpoint(record.agent))
            if aid:
                record.agent = aid
                if (record.actual_dest or "").startswith("agent:"):
                    record.actual_dest = f"agent:{aid}"
        await self._save(record)

    # ------------------------------------------------------------------ transfers → tickets
    def _on_ami_login(self, event: dict[str, str]) -> None:
        if self._stopping:
            return  # a login while shutting down re-attaches nothing that would be awaited
        gapped = self.assembler.mark_gap()  # events of calls in progress may have been missed meanwhile
        if gapped:
            log.info("ami_login_calls_in_progress", calls=gapped)
        if self._recover_task is None or self._recover_task.done():
            self._recover_task = self._spawn(self._after_login(), "after-ami-login")

    async def _after_login(self) -> None:
        """After a (re)connect: re-attach transfers, and close calls that ended while AMI was down."""
        await self.transfers.recover()
        await self._sweep_channels(after_login=True)

    async def _sweep_channels(self, *, after_login: bool = False) -> None:
        """Compare the calls the assembler holds open with the channels Asterisk has (CoreShowChannels):
        a call whose channels are all gone is closed now (its ticket then corrected from the CDR), a
        vanished leg counts as hung up. At every login, and every CHANNEL_SWEEP_S while calls are open:
        events can also be lost without a reconnect (the event queue full on a saturated box)."""
        dropped = self.ami.events_dropped
        if dropped != self._dropped_seen:
            self._dropped_seen = dropped
            log.warning("ami_events_lost_calls_gapped", calls=self.assembler.mark_gap(), dropped=dropped)
        asked_at = time.time()
        try:
            channels = await self.ami.action_list("CoreShowChannels", timeout=30)
        except Exception:  # noqa: BLE001 - the CDR replay still completes those tickets later
            log.warning("ami_channel_sweep_failed", exc_info=True)
            return
        # judge only once every event that came before the list is in the assembler (a busy dispatcher is
        # behind the wire), and a moment later: Asterisk may write a hang-up just after the list
        await asyncio.sleep(SWEEP_GRACE_S)
        if not await self.ami.caught_up(STOP_STEP_S):
            log.warning("ami_channel_sweep_skipped", reason="event dispatch behind", queued=self.ami.health()["queued_events"])
            return
        live = {c.get("Uniqueid", "") for c in channels} - {""}
        if after_login:
            self.agents.calls_gone({c.get("Linkedid", "") for c in channels} - {""},
                                   {endpoint(c.get("Channel", "")) for c in channels
                                    if c.get("Channel", "").startswith("PJSIP/")}, asked_at)
        closed = self.assembler.expire(live, asked_at)
        for record in closed:
            log.info("call_closed_after_reconnect" if after_login else "call_closed_by_sweep",
                     linkedid=record.linkedid)
        for record in closed:
            self._save_soon(record)

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(CHANNEL_SWEEP_S)
            if self.ami.connected.is_set() and self.assembler.open_count():
                await self._sweep_channels()

    async def _on_transfer_outcome(self, record: dict[str, Any]) -> None:
        """A transfer ended (or became three-way): straight into the assembler too, so the ticket has it
        even if the UserEvent over AMI was lost (the assembler drops the echo as the same report)."""
        lid = str(record.get("linkedid") or "")
        if not lid:
            return
        if record.get("work_order"):
            self._work_orders[lid] = str(record.get("target") or "")
        self._on_event({"Event": "UserEvent", "UserEvent": Event.TRANSFER.value, "Linkedid": lid,
                        "Target": str(record.get("target") or ""), "Kind": str(record.get("kind") or ""),
                        "Mode": str(record.get("mode") or ""), "Outcome": str(record.get("outcome") or ""),
                        "Agent": str(record.get("agent") or "")})

    async def _dispatch_work_order(self, ticket_no: str, target: str) -> None:
        """工单派转: the transfer target was not reached, so the ticket goes to it as a work order (派单)."""
        try:
            await self.store.change_state(ticket_no, "dispatched", actor="transfer",
                                          note=f"work order to {target}: transfer not answered")
            log.info("ticket_work_order", ticket=ticket_no, target=target)
        except Exception:
            log.exception("ticket_work_order_failed", ticket=ticket_no, target=target)


def _redact_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


async def serve(controller: Controller, stop_event: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop_event`), then shut down without losing tickets."""
    stop_event = stop_event or asyncio.Event()
    limit_arenas()  # before the controller's threads (hotline/glibc_malloc.py)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop_event.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await controller.start()
        # what start-up built (config, compiled statements, imported modules) lives as long as the controller: out
        # of the cyclic garbage collector's sight, a full collection walks only what calls make. Start-up's own
        # garbage is collected first (frozen, it would never be); thawed when serving ends (a test process goes on).
        gc.collect()
        gc.freeze()
        log.info("gc_frozen", objects=gc.get_freeze_count())
        await stop_event.wait()
        await controller.stop()
    finally:
        gc.unfreeze()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
