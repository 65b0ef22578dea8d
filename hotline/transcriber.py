"""The transcription worker: answered calls' recordings become transcripts on their tickets, off the call path.

The controller hands over each saved, complete, answered call with a recording (`offer`, synchronous and
never blocking: a bounded queue; when it is full the call is left untranscribed and logged). `run` drains
the queue with `transcripts.workers` consumers, each waiting for MixMonitor to close the call's two
per-direction files, then decoding them in a process pool of the same size (ivr/transcribe.py; spawned
processes at `transcripts.nice` CPU priority, the model loaded once per process) — so decoding never
holds the event loop nor takes a core from a call's AGI work while the machine is busy. With
`night_workers`, that many consumers work inside `night` (a backlog is worked off then), `workers` by
day. The dialogue (ticketbridge/transcript.py), the suggestion of `transcripts.classifier` and the summary
fields (ticketbridge/categorize.py; the classifier runs in a thread, so a slow plugin never holds the loop,
and one that fails or cannot be loaded costs only the suggestion) go onto the ticket (store.save_transcript);
the per-direction files are then deleted (unless `keep_direction_files`): the mixed recording stays the record.

Logs say which ticket was transcribed, how many utterances and how long it took — never what was said.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from ivr.transcribe import init_worker, transcribe_pair
from model.config import Config
from model.contract import side_recording
from ticketbridge.assembler import CallRecord
from ticketbridge.retention import recording_name
from ticketbridge.categorize import BadSuggestion, Classifier, load_classifier, suggest
from ticketbridge.transcript import Transcript, Utterance, merge, to_json

log = structlog.get_logger("hotline.transcriber")

#: MixMonitor closes a call's files a moment after the hangup: a file is taken once unchanged this long (s)
SETTLE_S = 1.0
#: ...and given up waiting for after this long (s)
WAIT_MAX_S = 60.0


@dataclass(frozen=True)
class Job:
    linkedid: str
    ticket_no: str
    recording: str
    queued_at: float


def model_path(config: Config) -> str | None:
    return config.transcripts.model or config.speech.model


def transcripts_model_ok(config: Config) -> bool:
    """A vosk model is where the config says (am/final.mdl in it)."""
    path = model_path(config)
    return bool(path) and (Path(path).expanduser() / "am" / "final.mdl").is_file()


class Transcriber:
    def __init__(self, config: Config, store: Any, monitor_dir: Path, *, executor: Executor | None = None,
                 clock: Callable[[], float] = time.monotonic, settle_s: float = SETTLE_S,
                 decode: Callable[[str, str], dict[str, Any]] = transcribe_pair,
                 wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        """`executor`/`decode`: the pool and the function run in it (tests pass threads and a stand-in)."""
        self.config = config
        self.store = store
        self.monitor_dir = Path(monitor_dir)
        t = config.transcripts
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=t.queue_max)
        self._executor = executor
        self._own_executor = executor is None
        self._clock = clock
        self.settle_s = settle_s
        self._decode = decode
        self._wall = wall
        self._seen: set[str] = set()
        #: the classifier making suggestions; None when it cannot be loaded (`hotline check` says why)
        self.classifier: Classifier | None = None
        try:
            self.classifier = load_classifier(t)
        except Exception as e:  # noqa: BLE001 - transcripts go on without suggestions; `hotline check` says why
            log.error("transcript_classifier_unavailable", classifier=t.classifier, error=f"{type(e).__name__}: {e}"[:300])
        #: ticket numbers transcribed by this process, in order (for tests and the demo)
        self.done: list[str] = []
        self.dropped = 0

    # ------------------------------------------------------------------ the controller's side
    def offer(self, record: CallRecord, saved: Any) -> bool:
        """A saved call: queue it when it is complete, answered and recorded; never waits. True: queued."""
        if not (record.complete and record.outcome == "answered" and record.recording):
            return False
        if record.linkedid in self._seen:
            return False
        try:
            self.queue.put_nowait(Job(record.linkedid, saved.ticket_no, record.recording, self._clock()))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("transcript_queue_full", ticket=saved.ticket_no, queued=self.queue.qsize())
            return False
        self._seen.add(record.linkedid)
        if len(self._seen) > 100_000:
            self._seen.clear()
        return True

    # ------------------------------------------------------------------ the workers
    def _pool(self) -> Executor:
        if self._executor is None:
            path = model_path(self.config)
            if not path:
                raise ValueError("transcripts.enabled needs transcripts.model or speech.model (a vosk model dir)")
            t = self.config.transcripts
            self._executor = ProcessPoolExecutor(max_workers=max(t.workers, t.night_workers or 0),
                                                 mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=init_worker, initargs=(str(Path(path).expanduser()), t.nice))
        return self._executor

    async def run(self) -> None:
        """Drain the queue until cancelled (the controller's stop); the pool is shut down then."""
        pool = self._pool()
        try:
            t = self.config.transcripts
            async with asyncio.TaskGroup() as tg:
                for i in range(max(t.workers, t.night_workers or 0)):
                    tg.create_task(self._consume(pool, i), name=f"transcriber-{i}")
        finally:
            if self._own_executor:
                pool.shutdown(wait=False, cancel_futures=True)

    async def _consume(self, pool: Executor, index: int = 0) -> None:
        while True:
            while index >= self.config.transcripts.workers_at(self._local_hhmm()):
                await asyncio.sleep(60)  # a night-only worker waits for the night
            job = await self.queue.get()
            try:
                await self.transcribe(job, pool)
            except Exception as e:  # noqa: BLE001 - one bad recording never stops the others
                log.error("transcript_failed", ticket=job.ticket_no, error=f"{type(e).__name__}")
            finally:
                self.queue.task_done()

    def _local_hhmm(self) -> str:
        return self._wall().astimezone(ZoneInfo(self.config.center.timezone)).strftime("%H:%M")

    def _files(self, job: Job) -> tuple[Path, Path] | None:
        name = recording_name(job.recording, str(self.monitor_dir))
        if name is None:
            return None
        return (self.monitor_dir / side_recording(name, "caller"), self.monitor_dir / side_recording(name, "agent"))

    async def _settled(self, files: tuple[Path, ...]) -> bool:
        """Wait until the files exist and stopped changing (MixMonitor closed them); False after WAIT_MAX_S."""
        deadline = self._clock() + WAIT_MAX_S
        while True:
            now_wall = time.time()
            try:
                if all(now_wall - f.stat().st_mtime >= self.settle_s for f in files):
                    return True
            except FileNotFoundError:
                pass
            if self._clock() > deadline:
                return False
            await asyncio.sleep(min(0.5, self.settle_s))

    async def transcribe(self, job: Job, pool: Executor) -> str | None:
        files = self._files(job)
        if files is None:
            log.warning("transcript_skipped", ticket=job.ticket_no, why="recording outside the recordings dir")
            return None
        if not await self._settled(files):
            log.warning("transcript_skipped", ticket=job.ticket_no, why="no per-direction recording")
            return None
        started = self._clock()
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(pool, self._decode, str(files[0]), str(files[1]))
        sides = {side: [Utterance(side, u["start"], u["end"], u["text"], u.get("conf", 0.0)) for u in raw[side]]
                 for side in ("caller", "agent")}
        t = await self.annotate(Transcript(tuple(merge(sides["caller"], sides["agent"])),
                                           duration_s=raw["duration_s"]), job)
        ticket = await self.store.save_transcript(job.linkedid, to_json(t),
                                                  note=f"{len(t.utterances)} utterance(s)")
        if not self.config.transcripts.keep_direction_files:
            for f in files:
                f.unlink(missing_ok=True)
        decode_s = self._clock() - started
        log.info("transcript_saved", ticket=ticket or job.ticket_no, utterances=len(t.utterances),
                 decode_s=round(decode_s, 2), waited_s=round(started - job.queued_at, 2),
                 suggested=t.suggested_category is not None)
        if ticket:
            self.done.append(ticket)
        return ticket

    async def annotate(self, t: Transcript, job: Job) -> Transcript:
        """The suggestion and summary fields; a classifier that fails costs only the suggestion."""
        settings = self.config.transcripts
        try:
            return await asyncio.to_thread(suggest, t, self.classifier, settings)
        except Exception as e:  # noqa: BLE001 - plugin code: the transcript is kept without its suggestion
            # a plugin's own message may quote the transcript: only ours (BadSuggestion) is logged in full
            log.error("transcript_classifier_failed", ticket=job.ticket_no, classifier=settings.classifier,
                      error=str(e)[:300] if isinstance(e, BadSuggestion) else type(e).__name__)
            return suggest(t, None, settings)
