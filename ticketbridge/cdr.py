"""Replaying Asterisk's CDR file: tickets for calls the controller never saw (it was down or lost AMI).

Asterisk appends one JSON line per CDR (cdr_custom.conf) to a file. This module holds:

* the pure part, without I/O or clock: `read_start` (a file that shrank was rotated or
  truncated: read it again from the start), `parse_chunk` (bytes → complete JSON lines),
  and `CdrReplay`, the bookkeeping of one replay — rows gathered per linkedid, which calls
  have settled and are due a look, which are forgotten, and that each call is looked at
  once (`conclude` turns a missed call into a `CallRecord`);
* a thin asyncio adapter, `CdrReplayer`, that reads only what was appended since the
  last read, in a worker thread (off the event loop), and asks the ticket store whether a
  call already has a complete ticket. The controller calls it at start-up and then every
  `interval_s` (half the settle time, at least a second).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from model.contract import CdrVar
from ticketbridge.assembler import CallRecord, record_from_cdr
from ticketbridge.callbacks import CALLBACK_PREFIX
from ticketbridge.recent_ids import RecentIds

log = structlog.get_logger("ticketbridge.cdr")

#: CDR rows younger than this are left to the live AMI path (avoids racing the assembler).
CDR_SETTLE_S = 20.0
#: rows of a call that never shows a hotline leg are forgotten after this long.
CDR_FORGET_S = 600.0
#: calls already looked at are remembered this long (their late rows ignored; ticketbridge/recent_ids.py),
#: and never more than DONE_MEMORY of them: a call's rows come within seconds of each other, so only a row
#: later than this could be looked at again (and its complete ticket found: nothing saved twice).
DONE_KEEP_S = 300.0
DONE_MEMORY = 50_000

Row = dict[str, Any]


# --------------------------------------------------------------------------- pure part


def read_start(offset: int, size: int) -> int:
    """Where the next read begins: at `offset`, or at 0 when the file is now shorter (rotated or truncated)."""
    return 0 if size < offset else offset


@dataclass
class Chunk:
    """What the bytes appended to the CDR file hold: only complete lines count."""

    #: bytes consumed (up to and including the last newline); 0 when no line is complete yet
    consumed: int = 0
    rows: list[Row] = field(default_factory=list)
    #: lines that were not JSON objects (skipped)
    unreadable: int = 0


def parse_chunk(data: bytes) -> Chunk:
    """The complete JSON lines in `data`; a partial last line is left for the next read."""
    end = data.rfind(b"\n")
    if end < 0:
        return Chunk()  # no complete line yet
    chunk = Chunk(consumed=end + 1)
    for raw in data[: end + 1].splitlines():
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            chunk.unreadable += 1
            continue
        if not isinstance(row, dict):
            chunk.unreadable += 1
            continue
        chunk.rows.append(row)
    return chunk


def _end_of(row: Row) -> float | None:
    try:
        return float(row.get("end") or 0.0)
    except (TypeError, ValueError):
        return None


class CdrReplay:
    """The state of one replay: how far the file was read, the rows of calls not yet looked at, and
    the calls already looked at (never again). Pure: the caller reads the file and the clock."""

    def __init__(self, *, settle_s: float = CDR_SETTLE_S, forget_s: float = CDR_FORGET_S,
                 instance: str = "main") -> None:
        self.settle_s = settle_s
        #: the Asterisk instance this replay serves: calls tagged with another (a test run's) are ignored
        self.instance = instance
        self.forget_s = forget_s
        #: bytes of the file already taken in
        self.offset = 0
        self.rows: dict[str, list[Row]] = {}
        #: per linkedid, the latest `end` among its rows (0.0 when none parses)
        self.newest: dict[str, float] = {}
        #: linkedids looked at once: their later rows are ignored (for DONE_KEEP_S of the replay's clock)
        self.done = RecentIds(DONE_KEEP_S, DONE_MEMORY)
        #: the replay's clock as `due` was last given it (what `done` is stamped with)
        self.now: float | None = None
        #: rows of callbacks we placed (never tickets; they tell a restarted controller how a callback
        #: it was waiting on when it died ended)
        self.callback_rows: dict[str, list[Row]] = {}

    def take(self, start: int, chunk: Chunk) -> None:
        """Take in what was read from byte `start` on (`start` comes from `read_start`)."""
        self.offset = start + chunk.consumed
        for row in chunk.rows:
            lid = str(row.get("linkedid") or "")
            if not lid or lid in self.done:
                continue
            tag = row.get(CdrVar.INSTANCE)
            if tag and tag != self.instance:
                # another Asterisk's call (e.g. a test run writing the same file): never a ticket here
                if lid not in self.rows:
                    log.warning("cdr_foreign_instance_ignored", linkedid=lid, instance=str(tag), own=self.instance)
                self._done(lid)
                self._drop(lid)
                continue
            if lid.startswith(CALLBACK_PREFIX):
                self.callback_rows.setdefault(lid, []).append(row)
                continue
            self.rows.setdefault(lid, []).append(row)
            end = _end_of(row)
            if end is None:
                self.newest.setdefault(lid, 0.0)
            else:
                self.newest[lid] = max(self.newest.get(lid, 0.0), end)

    def due(self, now: float, open_ids: Iterable[str] = ()) -> list[str]:
        """The calls to look at now: settled (no row newer than `settle_s`), not in progress live
        (`open_ids`), and with a hotline leg. A call without one — a seat-to-seat call, a test leg,
        or a caller's row that has not come yet — waits, and is forgotten after `forget_s`."""
        self.now = now
        live = set(open_ids)
        out: list[str] = []
        for lid in list(self.rows):
            rows = self.rows[lid]
            age = now - self.newest.get(lid, 0.0)
            if lid in live or age < self.settle_s:
                continue
            if not any(r.get(CdrVar.DIALED) for r in rows):
                if age > self.forget_s:
                    self._drop(lid)
                continue
            out.append(lid)
        return out

    def conclude(self, lid: str, ticket_outcome: str | None, cdr_due: bool = False) -> CallRecord | None:
        """Look at a due call once, given the outcome of its stored ticket (None: no ticket): the
        record to save when it has no ticket, only an in-progress one, or one the live events saw
        only in part (`cdr_due`: the ticket's cdr_check is `due`), else None. Either way the call is
        done (its later rows are ignored) and its rows are let go."""
        rows = self.rows.get(lid, [])
        record = record_from_cdr(rows) if cdr_due or ticket_outcome in (None, "in_progress") else None
        self._done(lid)
        self._drop(lid)
        return record

    def take_callbacks(self) -> dict[str, list[Row]]:
        """The callback calls' rows gathered since the last call (each handed out once)."""
        out, self.callback_rows = self.callback_rows, {}
        return out

    def _done(self, lid: str) -> None:
        if lid not in self.done:
            self.done.add(lid, self.now)

    def _drop(self, lid: str) -> None:
        self.rows.pop(lid, None)
        self.newest.pop(lid, None)


# --------------------------------------------------------------------------- asyncio adapter


def _read_appended(path: Path, offset: int) -> tuple[int, Chunk] | None:
    """Read and parse what follows `offset` (runs in a worker thread); None when there is no file."""
    try:
        size = path.stat().st_size
        start = read_start(offset, size)
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return None
    return start, parse_chunk(data)


class CdrReplayer:
    """Reads the CDR file incrementally off the event loop and saves tickets for settled missed calls.

    `lookup(linkedids)` returns the stored tickets of these calls (anything with `.outcome` and
    `.cdr_check`) by linkedid, a call without one absent: one read for a round's calls; `save(record)`
    stores a rebuilt record; `open_ids()` names the calls the live assembler still follows.
    """

    def __init__(self, path: Path, *, lookup: Callable[[list[str]], Awaitable[Mapping[str, Any]]],
                 save: Callable[[CallRecord], Awaitable[None]], open_ids: Callable[[], Iterable[str]],
                 settle_s: float = CDR_SETTLE_S, clock: Callable[[], float] = time.time,
                 instance: str = "main",
                 on_callback: Callable[[str, list[Row]], Awaitable[bool]] | None = None,
                 gate: Callable[[], Awaitable[bool]] | None = None) -> None:
        """`on_callback(linkedid, rows)`: the CDR rows of a callback call we placed; False: hand them
        again at the next round. `gate()`: asked before each round; False skips it (another controller
        holds the replay of this file: ticketbridge/leases.py), and the file is read from where this
        replayer left it once the gate opens."""
        self.path = path
        self.replay = CdrReplay(settle_s=settle_s, instance=instance)
        self._lookup = lookup
        self._save = save
        self._open_ids = open_ids
        self._clock = clock
        self._lock = asyncio.Lock()
        self._on_callback = on_callback
        self._gate = gate

    @property
    def interval_s(self) -> float:
        """How often `run` replays: half the settle time, at least a second."""
        return max(1.0, self.replay.settle_s / 2)

    async def read(self) -> None:
        """Take in the lines Asterisk appended since the last read."""
        got = await asyncio.to_thread(_read_appended, self.path, self.replay.offset)
        if got is None:
            return
        start, chunk = got
        if chunk.unreadable:
            log.warning("cdr_line_unreadable", file=str(self.path), lines=chunk.unreadable)
        self.replay.take(start, chunk)

    async def reconcile(self) -> int:
        """Tickets for calls that ended while the controller was away; returns how many were saved.

        Each call is looked at once it has settled, and never again.
        """
        async with self._lock:
            if self._gate is not None and not await self._gate():
                return 0
            await self.read()
            now = self._clock()
            done = 0
            due = self.replay.due(now, self._open_ids())
            found = await self._lookup(due) if due else {}
            for lid in due:
                known = found.get(lid)
                record = self.replay.conclude(lid, None if known is None else str(known.outcome),
                                              cdr_due=getattr(known, "cdr_check", None) == "due")
                if record is not None:
                    await self._save(record)
                    done += 1
            if done:
                log.info("cdr_reconciled", tickets=done)
            if self._on_callback is not None:
                for lid, rows in self.replay.take_callbacks().items():
                    if not await self._on_callback(lid, rows):  # not yet: looked at again next round
                        self.replay.callback_rows.setdefault(lid, []).extend(rows)
            else:
                self.replay.take_callbacks()
            return done

    async def run(self) -> None:
        """Replay every `interval_s` until cancelled; a failed round is logged and the next one tries again."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.reconcile()
            except Exception:
                log.exception("cdr_reconcile_failed")
