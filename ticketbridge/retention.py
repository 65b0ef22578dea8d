"""Recording retention (录音保存期限): which recordings are due for deletion. Pure: no I/O.

A ticket names its recording (`recording`, e.g. `hotline/20260303/1772472600.1.wav`) relative to
Asterisk's monitor dir, where MixMonitor writes it. Past the retention period — judged by the
call's start (`started_at`, else the ticket's `created_at`) — the file is deleted and the ticket is
marked: it keeps the name (the fact that a recording existed) and gets `recording_purged_at`.
A file no unpurged ticket names (a call whose ticket was never written, a leftover) goes by its
modification time. A ticket whose file is already gone is still marked.

Nothing outside the monitor dir is ever chosen: a name that climbs out (`..`) or an absolute
path elsewhere is refused and reported, its ticket left unmarked.
"""

from __future__ import annotations

import re

import datetime as dt
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

#: the shape of a call recording's name under the monitor dir (extensions.conf.j2's MONITOR_FILENAME)
RECORDING_NAME = re.compile(r"hotline/[0-9]{8}/[A-Za-z0-9._;-]+\.wav")


@dataclass(frozen=True)
class TicketRecording:
    """A ticket with a recording not purged yet."""

    ticket_no: str
    recording: str
    #: when the call started (its ticket's creation when the start is unknown)
    call_at: dt.datetime


@dataclass(frozen=True)
class FoundFile:
    """A regular file found under the monitor dir: its '/'-separated name there and its mtime (epoch s)."""

    name: str
    mtime: float


@dataclass(frozen=True)
class TicketPurge:
    ticket_no: str
    #: the recording's name relative to the monitor dir
    name: str
    #: the file is there to delete; False: it is already gone (or a newer ticket names it): only marked
    exists: bool


@dataclass(frozen=True)
class Refused:
    ticket_no: str
    recording: str
    why: str


@dataclass(frozen=True)
class PurgePlan:
    tickets: tuple[TicketPurge, ...]
    #: files no unpurged ticket names, older than the cutoff by mtime
    orphans: tuple[str, ...]
    refused: tuple[Refused, ...]

    @property
    def files(self) -> tuple[str, ...]:
        """Every file to delete (names relative to the monitor dir)."""
        return tuple(t.name for t in self.tickets if t.exists) + self.orphans


def cutoff(now: dt.datetime, days: int) -> dt.datetime:
    """Recordings of calls before this moment are due."""
    if days < 1:
        raise ValueError(f"retention of {days} days: at least 1")
    return now - dt.timedelta(days=days)


def recording_name(recording: str, monitor_dir: str) -> str | None:
    """The recording's name relative to the monitor dir, or None when it would lie outside it."""
    rec = (recording or "").strip()
    if not rec:
        return None
    base = posixpath.normpath(monitor_dir)
    if posixpath.isabs(rec):
        full = posixpath.normpath(rec)
        if not full.startswith(base.rstrip("/") + "/"):
            return None
        rec = full[len(base.rstrip("/")) + 1:]
    name = posixpath.normpath(rec)
    if name in (".", "") or name == ".." or name.startswith("../") or posixpath.isabs(name):
        return None
    return name


def plan_purge(tickets: Iterable[TicketRecording], files: Iterable[FoundFile], *, monitor_dir: str,
               before: dt.datetime, in_use: Iterable[str] = ()) -> PurgePlan:
    """What to delete and which tickets to mark for recordings of calls before `before`.

    `tickets`: tickets with an unpurged recording (those not yet due are ignored here, so a caller
    may pass more); `files`: what lies under the monitor dir; `in_use`: names that tickets not yet
    due still hold (never deleted by mtime).
    """
    found = {f.name: f for f in files}
    tickets = list(tickets)
    recent = [t.recording for t in tickets if t.call_at >= before]
    keep = {n for n in (recording_name(r, monitor_dir) for r in [*in_use, *recent]) if n}
    due: list[TicketPurge] = []
    refused: list[Refused] = []
    for t in tickets:
        if t.call_at >= before:
            continue
        name = recording_name(t.recording, monitor_dir)
        if name is None:
            refused.append(Refused(t.ticket_no, t.recording, f"not inside the recordings dir {monitor_dir}"))
            continue
        # a file a newer ticket still names stays; this ticket is marked all the same
        due.append(TicketPurge(t.ticket_no, name, name in found and name not in keep))
    claimed = {t.name for t in due} | keep
    limit = before.timestamp()
    # only what Asterisk's MONITOR_FILENAME makes (hotline/YYYYMMDD/<linkedid>.wav): a --dir one level
    # too high must never sweep voicemail, call files or anything else that happens to be old
    orphans = tuple(sorted(f.name for f in found.values()
                           if f.mtime < limit and f.name not in claimed and RECORDING_NAME.fullmatch(f.name)))
    return PurgePlan(tuple(due), orphans, tuple(refused))
