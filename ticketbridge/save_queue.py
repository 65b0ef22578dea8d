"""Group commit of call records: when many calls end at once, one transaction writes them all.

`SaveQueue.save(record)` returns only once the record's transaction has committed (what it
acknowledges is in the database, so a controller that dies a moment later has lost nothing it
was told was saved; a record not yet acknowledged stays where it was: in the assembler, or in
ticketbridge.pending, and the CDR replay still covers the call). Records handed in while a
transaction is under way wait for it, then the next writer takes every record waiting (up to
`max_batch`) in one transaction (`TicketStore.save_calls`); a lone record is written as before
(`save_call`). No background task: whoever holds the lock writes, so nothing has to be started or
stopped, and a writer cancelled mid-way fails the records of its batch (they are kept for a retry,
which is safe: saves are idempotent by linkedid), never leaves them waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import structlog

from ticketbridge.assembler import CallRecord

log = structlog.get_logger("ticketbridge.save_queue")

#: records per transaction at most: large enough for a burst, small enough to keep a transaction short
MAX_BATCH = 200


class BatchStore(Protocol):
    async def save_call(self, record: CallRecord) -> Any: ...

    async def save_calls(self, records: Sequence[CallRecord]) -> list[Any]: ...


class SaveInterrupted(Exception):
    """The writer carrying this record was cancelled before its transaction ended: save it again."""


class SaveQueue:
    def __init__(self, store: BatchStore, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._waiting: list[tuple[CallRecord, asyncio.Future[Any]]] = []
        self._lock = asyncio.Lock()
        #: transactions and records written (health, benchmarks)
        self.batches = 0
        self.written = 0

    def __len__(self) -> int:
        return len(self._waiting)

    async def save(self, record: CallRecord) -> Any:
        """Write `record` (with whatever else is waiting); its SavedTicket once committed, or the store's error."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((record, fut))
        while not fut.done():
            async with self._lock:
                if not fut.done():
                    batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                    await self._write(batch)
        return fut.result()

    async def _write(self, batch: list[tuple[CallRecord, asyncio.Future[Any]]]) -> None:
        records = [r for r, _ in batch]
        try:
            results = ([await self.store.save_call(records[0])] if len(records) == 1
                       else await self.store.save_calls(records))
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(SaveInterrupted("the writer was cancelled"))
            raise
        except Exception as e:  # noqa: BLE001 - every record of the batch gets the store's error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        self.batches += 1
        self.written += len(records)
        if len(records) > 1:
            log.debug("ticket_batch_saved", records=len(records))
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
