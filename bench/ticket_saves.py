"""Ticket saves per second: the store's write path, on SQLite and PostgreSQL, one writer and many.

What a call costs the store, in the order a call does it (ticketbridge/store.py):
- `open`   — the IVR numbers the call as it enters (`open_ticket`: a new in-progress ticket);
- `issue`  — the agent hung up, the IVR tells the query password (`issue_password`: 6 digits, hashed);
- `save`   — the call ended: the controller saves its complete record (`save_call`), merging into the
             ticket opened at entry; with `--fresh` a ticket the IVR never opened (insert);
- `call`   — the three above for one call, one after another (the store work of one answered call).

"1 writer" awaits each save before the next (no batching possible); "N writers" are N calls ending
at once, each through the controller's own save path (ticketbridge.save_queue.SaveQueue: one
transaction for whatever is waiting) for `save`, and concurrently for the others. Figures are saves
per second of wall time, the benchmark process's CPU seconds (our side: SQLAlchemy, the driver, and
for SQLite the database itself) and saves per CPU second — the figure a shared machine disturbs least
(PostgreSQL's own work, its commit's fsync above all, is in the wall time only).

Run:  .venv/bin/python bench/ticket_saves.py [--backends sqlite,pg] [--tickets 1000] [--writers 1,200]
      [--quick]   (60 tickets, 1 and 20 writers; prints the same table)
PostgreSQL: $HOTLINE_TEST_PG (default postgresql+asyncpg://postgres@127.0.0.1:5432/test), in a schema
of its own dropped afterwards. Results of a run are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from model.loading import load_config  # noqa: E402
from ticketbridge.assembler import CallRecord  # noqa: E402
from ticketbridge.store import TicketStore  # noqa: E402

try:  # the controller's save path (absent before group commit: a lock and one transaction per save)
    from ticketbridge.save_queue import SaveQueue
except ImportError:  # pragma: no cover - measuring an older tree
    SaveQueue = None  # type: ignore[assignment,misc]

PG_URL = os.environ.get("HOTLINE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
KINDS = ("open", "issue", "save", "call")


def record(run: str, i: int, *, complete: bool = True) -> CallRecord:
    t0 = time.time() - 300
    if not complete:
        return CallRecord(linkedid=f"{run}.{i}", caller=f"138{i:08d}", dialed="12345", started_at=t0)
    return CallRecord(linkedid=f"{run}.{i}", caller=f"138{i:08d}", dialed="12345", mode="center",
                      requested_dest="queue:general/咨询", actual_dest="agent:seat1001", category="咨询",
                      ivr_path=["menu:main", "key:1"], queue="general", queue_wait_s=12.0, agent="1001",
                      answered_at=t0 + 20, talk_s=95.0,
                      participants=[("caller", "PJSIP/trunk-1"), ("agent", "PJSIP/1001-2")],
                      outcome="answered", started_at=t0, ended_at=t0 + 120, survey_rating=1, survey_scale=5)


class Saver:
    """The controller's save path (hotline/controller.py `_write`), without the controller."""

    def __init__(self, store: TicketStore) -> None:
        self.store = store
        self.queue = SaveQueue(store) if SaveQueue is not None else None
        self.lock = asyncio.Lock()

    async def save(self, rec: CallRecord) -> Any:
        if self.queue is not None:
            return await self.queue.save(rec)
        async with self.lock:
            return await self.store.save_call(rec)


async def run_kind(store: TicketStore, kind: str, n: int, writers: int, fresh: bool) -> tuple[float, float, int]:
    """Saves/s, CPU s and transactions for `n` operations of `kind` by `writers` concurrent writers."""
    run = uuid.uuid4().hex[:8]
    saver = Saver(store)
    numbers: list[str] = []
    if kind in ("issue", "save") and not (kind == "save" and fresh):  # the tickets opened at entry (untimed)
        for i in range(n):
            numbers.append((await store.open_ticket(f"{run}.{i}", caller=f"138{i:08d}", dialed="12345")).ticket_no)

    async def one(i: int) -> None:
        if kind == "open":
            await store.open_ticket(f"{run}.{i}", caller=f"138{i:08d}", dialed="12345")
        elif kind == "issue":
            await store.issue_password(numbers[i], sms=False)
        elif kind == "save":
            await saver.save(record(run, i))
        else:
            no = (await store.open_ticket(f"{run}.{i}", caller=f"138{i:08d}", dialed="12345")).ticket_no
            await store.issue_password(no, sms=False)
            await saver.save(record(run, i))

    next_i = iter(range(n))

    async def writer() -> None:
        for i in next_i:
            await one(i)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return n / wall, cpu, saver.queue.batches if saver.queue is not None else n


async def with_store(backend: str, work: Callable[[TicketStore], Awaitable[None]]) -> None:
    cfg = load_config(ROOT / "config" / "hotline.yaml")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="ticket-saves-") as tmp:
        if backend == "sqlite":
            url, options = f"sqlite+aiosqlite:///{tmp}/tickets.db", {}
        else:
            url = PG_URL
            admin = create_async_engine(PG_URL)
            async with admin.begin() as c:
                await c.execute(text(f'CREATE SCHEMA "{schema}"'))
            await admin.dispose()
            options = {"connect_args": {"server_settings": {"search_path": schema}}, "pool_size": 10}
        store = TicketStore(url, cfg, engine_options=options, query_key=b"bench-query-key")
        await store.open()
        try:
            await work(store)
        finally:
            await store.close()
            if backend == "pg":
                admin = create_async_engine(PG_URL)
                async with admin.begin() as c:
                    await c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                await admin.dispose()


async def main_async(a: argparse.Namespace) -> None:
    print(f"ticket saves: {a.tickets} per figure, load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, save path: "
          f"{'SaveQueue (group commit)' if SaveQueue is not None else 'lock + one transaction per save'}")
    print(f"{'backend':8} {'kind':6} {'writers':>7} {'per s':>8} {'CPU s':>7} {'per CPU s':>9} {'transactions':>12}")
    for backend in a.backends.split(","):
        async def work(store: TicketStore, backend: str = backend) -> None:
            for kind in a.kinds.split(","):
                for w in (int(x) for x in a.writers.split(",")):
                    n = a.tickets if kind != "call" else max(1, a.tickets // 2)
                    rate, cpu, txns = await run_kind(store, kind, n, w, a.fresh)
                    label = kind + ("*" if kind == "save" and a.fresh else "")
                    print(f"{backend:8} {label:6} {w:>7} {rate:>8.0f} {cpu:>7.2f} {n / max(cpu, 1e-9):>9.0f} "
                          f"{txns:>12}", flush=True)

        await with_store(backend, work)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="sqlite,pg")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--tickets", type=int, default=1000)
    ap.add_argument("--writers", default="1,200")
    ap.add_argument("--fresh", action="store_true", help="`save` inserts tickets the IVR never opened")
    ap.add_argument("--quick", action="store_true", help="small sizes (CI): 60 tickets, 1 and 20 writers")
    a = ap.parse_args()
    if a.quick:
        a.tickets, a.writers = min(a.tickets, 60), "1,20"
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main_async(a))


if __name__ == "__main__":
    main()
