"""Tickets the store could not take yet: kept in memory and written when the store comes back.

When the ticket store is unreachable (PostgreSQL stopped, a network cut) or cannot write (the
disk is full), calls go on — the dialplan never waits on the store — and each finished or
in-progress call record that failed to save is kept here, one per call (`linkedid`), the
newest live record winning over a CDR-rebuilt one. The controller retries them, oldest first,
with a back-off from `retry_s` doubling to `max_retry_s`; the first failure of an outage logs
`ticket_store_unavailable` with a plain reason (`disk full`, `unreachable`, …), the end of it
`ticket_store_recovered` with how long it lasted and how many tickets were written.

At most `limit` records are held: beyond that the oldest is let go (logged `ticket_left_to_cdr`)
and the CDR replay rebuilds its ticket once the store is back. What is still here when the
controller stops is left to the CDR replay as well (`tickets_unsaved_at_stop`).
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog

from ticketbridge.assembler import CallRecord

log = structlog.get_logger("ticketbridge.pending")

_NET_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
               errno.ECONNABORTED, errno.EPIPE}
#: records held while the store is away (a busy center makes about one a second)
PENDING_LIMIT = 10_000


def store_error_reason(exc: BaseException) -> str:
    """A plain word for why the store refused a write, from the exception and its causes."""
    seen: set[int] = set()
    e: BaseException | None = exc
    texts: list[str] = []
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return "disk full"
        if isinstance(e, (ConnectionError, TimeoutError)) or (isinstance(e, OSError) and e.errno in _NET_ERRNOS):
            return "unreachable"
        texts.append(f"{type(e).__name__} {e}".lower())
        e = e.__cause__ or e.__context__ or getattr(e, "orig", None)
    text = " ".join(texts)
    if "disk is full" in text or "no space left" in text or "diskfull" in text:
        return "disk full"
    if "readonly" in text or "read-only" in text:
        return "read-only"
    for word in ("connect", "refused", "timeout", "timed out", "closed", "unreachable", "cannot connect",
                 "unable to open"):
        if word in text:
            return "unreachable"
    return type(exc).__name__


class PendingSaves:
    """The records waiting for the store, and the outage bookkeeping (no I/O but `flush`'s `save`)."""

    def __init__(self, *, limit: int = PENDING_LIMIT, retry_s: float = 1.0, max_retry_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self._clock = clock
        self.records: dict[str, CallRecord] = {}
        #: when the current outage began (None: the store is fine) and why
        self.down_since: float | None = None
        self.reason = ""
        self.written_late = 0
        self.let_go = 0
        self.delay = retry_s

    def __len__(self) -> int:
        return len(self.records)

    def defer(self, record: CallRecord, exc: BaseException) -> None:
        """`record` failed to save because of `exc`: keep it (a live record is never replaced by a CDR one; who
        force-released the call is kept from either)."""
        if self.down_since is None:
            self.down_since = self._clock()
            self.reason = store_error_reason(exc)
            self.written_late = 0
            log.error("ticket_store_unavailable", reason=self.reason, error=type(exc).__name__,
                      detail=str(exc).splitlines()[0][:200] if str(exc) else "")
        held = self.records.get(record.linkedid)
        if held is not None:
            # who force-released the call (强拆) stays with it whichever record is kept
            released = record.released_by or held.released_by
            if held.source != "cdr" and record.source == "cdr":
                if released != held.released_by:
                    self.records[record.linkedid] = replace(held, released_by=released)
                return
            if released != record.released_by:
                record = replace(record, released_by=released)
        self.records.pop(record.linkedid, None)
        self.records[record.linkedid] = record  # newest last
        while len(self.records) > self.limit:
            lid = next(iter(self.records))
            del self.records[lid]
            self.let_go += 1
            log.error("ticket_left_to_cdr", linkedid=lid, held=len(self.records))
        log.warning("ticket_save_deferred", linkedid=record.linkedid, outcome=record.outcome,
                    held=len(self.records), reason=self.reason)

    def saved(self, record: CallRecord) -> None:
        """`record` was written: a held record of the same call is superseded unless it is live and
        `record` came from the CDR (the live one still adds the IVR path and the like)."""
        held = self.records.get(record.linkedid)
        if held is not None and (held is record or record.source != "cdr" or held.source == "cdr"):
            del self.records[record.linkedid]
            self.written_late += 1

    async def flush(self, save: Callable[[CallRecord], Awaitable[Any]]) -> bool:
        """Try the held records oldest first; stop at the first failure. True when none is left."""
        for lid, record in list(self.records.items()):
            try:
                await save(record)
            except Exception as e:  # noqa: BLE001 - still down: keep it, try later
                self.delay = min(self.delay * 2, self.max_retry_s)
                log.info("ticket_store_still_unavailable", held=len(self.records), reason=store_error_reason(e),
                         retry_in=self.delay)
                return False
            if self.records.get(lid) is record:
                del self.records[lid]
            self.written_late += 1
        self.recovered()
        return True

    def recovered(self) -> None:
        """A write succeeded: the outage (if any) is over."""
        self.delay = self.retry_s
        if self.down_since is not None and not self.records:
            log.warning("ticket_store_recovered", reason=self.reason, outage_s=round(self._clock() - self.down_since, 1),
                        written_late=self.written_late)
            self.down_since = None

    async def run(self, save: Callable[[CallRecord], Awaitable[Any]]) -> None:
        """Retry forever (the controller's task): every `retry_s` while nothing is held, backing off while
        the store stays away."""
        while True:
            await asyncio.sleep(self.delay)
            if self.records:
                await self.flush(save)
