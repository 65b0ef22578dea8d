"""Jobs only one controller runs at a time, when several share one database: named leases.

Several controllers (README "Several controllers") each see every AMI event of their Asterisk and share
one PostgreSQL. Per-row work is claimed row by row where it lives (owed calls: `claim_owed`; outbox rows:
`outbox_claim`; deadline reminders: `SKIP LOCKED` + `reminded_for`; tickets: one per linkedid, saved
idempotently). What is left is whole jobs about something outside the database — the CDR replay reads
one Asterisk node's CDR file; the agents' automatic pauses act on one node's queues — and those run under
a lease here: a row in `leases` (migration 0013) naming the job, its owner, until when it holds it and
its rank.

**Rank.** A controller's rank is its place in `asterisk.fastagi.controllers` (0: the first, the one the
dialplan tries first). A lower rank takes a job over from a higher one even before its lease ran out, so
the controller that answers the agents' feature codes is, whenever it is up, the one acting for the agents;
the higher-ranked holder learns it at its next renewal and stands by.

`take_lease` is one statement on both databases: INSERT … ON CONFLICT (name) DO UPDATE … WHERE the lease
ran out or is already the owner's … RETURNING. PostgreSQL decides a conflicting insert atomically (the
second waits for the first to commit, then sees its row); SQLite serialises writers (BEGIN IMMEDIATE).
So exactly one controller holds a job; the holder renews it every round; a controller that dies
(kill -9, host gone) stops renewing and another takes the job once `until` has passed; one that stops
cleanly gives it back at once (`release_lease`). Times are the store's clock (the controllers' clocks are
assumed NTP-synchronised, as for the owed calls' leases).

`JobLease` is the adapter a job asks before each round: `await lease.hold()` is True while this controller
holds (or just took) the job. A store that cannot be reached leaves it as it was (a controller acting for
the agents keeps unpausing them through a database outage; a standby does not start). A lease whose holder
is a process of this same host that no longer exists (a controller killed and restarted) is taken at once.

**Per node.** A job is about one Asterisk node, so its lease is named after the node (`job_scope`):
`cdr-replay:<node>`, `agents:<node>`. In a cluster (`cluster:`) that is the node the controller runs for
(`Config.node`, $HOTLINE_NODE) — every node's controllers may be started with the same $HOTLINE_INSTANCE
(`main`) and share one PostgreSQL, and still each node's CDR is replayed and each node's agents are driven.
Without `cluster:` (one Asterisk), or a controller not started for a node, it is the instance, as before.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import bindparam, delete, select, text
from sqlalchemy.exc import OperationalError

from model.config import Config
from ticketbridge.call_db import CallDb
from ticketbridge.schema import Lease

log = structlog.get_logger("ticketbridge.leases")

_RETRIES = 10


@dataclass(frozen=True)
class LeaseRow:
    name: str
    owner: str
    until: dt.datetime
    since: dt.datetime
    rank: int = 0


#: take or renew a lease: the same SQL on SQLite (3.35+) and PostgreSQL (as ticketbridge/call_db.py's sequence
#: step); the existing row is `leases`, the one offered `excluded`; `since` moves only when the owner changes
_TAKE = text(
    'INSERT INTO leases (name, owner, "until", since, "rank") VALUES (:name, :owner, :until, :since, :rank) '
    'ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "until" = excluded."until", "rank" = excluded."rank", '
    'since = CASE WHEN leases.owner = excluded.owner THEN leases.since ELSE excluded.since END '
    'WHERE leases."until" < :now OR leases.owner = :owner OR leases."rank" > :rank OR leases.owner = :replacing '
    'RETURNING owner'
).bindparams(*[bindparam(n, type_=Lease.__table__.c[c].type)
               for n, c in (("until", "until"), ("since", "since"), ("now", "until"))])


def _take(db: CallDb, params: dict[str, Any], ttl_s: float, now: Callable[[], dt.datetime]) -> str | None:
    """(In the call writer, one transaction.) `params["owner"]` when the lease was taken or renewed, else None. The
    store's clock is read here, once the transaction holds the write lock: a wait for the call writer does not
    shorten the lease."""
    at = now()
    row = db.first(_TAKE, {**params, "until": at + dt.timedelta(seconds=ttl_s), "since": at, "now": at})
    return None if row is None else str(row[0])


class LeaseMixin:
    """Mixed into TicketStore: uses its sessions, its call writer and its clock."""

    _sessions: Any
    _call_tx: Any
    _now: Any

    async def take_lease(self, name: str, owner: str, ttl_s: float, *, rank: int = 0,
                         replacing: str | None = None) -> bool:
        """Take job `name` for `owner` for `ttl_s` seconds, or renew it when `owner` holds it already.
        False while another owner of the same or a lower `rank` holds it (its `until` not yet passed) —
        unless that owner is `replacing` (known dead).

        One statement (`_TAKE`) in one write transaction of the store's call writer (`TicketStore._call_tx`):
        every CDR replay round and agents' renewal takes it, and through an ORM session it cost an idle
        controller about a third of its CPU (issue 15)."""
        if ttl_s <= 0:
            raise ValueError("a lease lasts a positive time")
        # ('' is no controller's id: ticketbridge.callbacks.controller_id)
        params = {"name": name[:64], "owner": owner[:64], "rank": rank, "replacing": (replacing or "")[:64]}
        for attempt in range(_RETRIES):
            try:
                got = await self._call_tx(_take, params, ttl_s, self._now)
            except OperationalError:
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            return got == owner[:64]
        raise RuntimeError("unreachable")

    async def release_lease(self, name: str, owner: str) -> bool:
        """Give job `name` back (only `owner`'s own lease): another controller may take it at once."""
        _, write = self._sessions()
        async with write() as s, s.begin():
            done = await s.execute(delete(Lease).where(Lease.name == name[:64], Lease.owner == owner[:64]))
            return bool(done.rowcount)

    async def leases(self) -> list[LeaseRow]:
        """Every job's lease (held or run out), by name."""
        read, _ = self._sessions()
        async with read() as s:
            rows = (await s.execute(select(Lease).order_by(Lease.name))).scalars()
            return [LeaseRow(r.name, r.owner, r.until, r.since, r.rank) for r in rows]

    async def lease_holder(self, name: str) -> LeaseRow | None:
        read, _ = self._sessions()
        async with read() as s:
            r = (await s.execute(select(Lease).where(Lease.name == name[:64]))).scalar_one_or_none()
            return None if r is None else LeaseRow(r.name, r.owner, r.until, r.since, r.rank)


def job_scope(config: Config, instance: str) -> str:
    """Which Asterisk node the jobs of a controller of `config` are about, for their lease names
    (`cdr-replay:<scope>`): in a cluster, the node the controller runs for (its key under cluster.nodes);
    else `instance` (one Asterisk: `main` unless $HOTLINE_INSTANCE says otherwise)."""
    if config.cluster is not None and config.node:
        return config.node
    return instance


def dead_here(owner: str) -> bool:
    """Whether `owner` (ticketbridge.callbacks.controller_id: host:pid:random) was a process of this host that
    no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname()[:32] or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, someone else's
        return False
    return False


class JobLease:
    """One job's lease for one controller: ask `hold()` before each round of the job."""

    def __init__(self, store: Any, name: str, owner: str, ttl_s: float, *, rank: int = 0) -> None:
        self.store = store
        self.name = name
        self.owner = owner
        self.ttl_s = ttl_s
        self.rank = rank
        #: whether the last `hold()` found this controller holding the job
        self.held = False

    async def hold(self) -> bool:
        """Take or renew the job; True when this controller runs it this round."""
        try:
            held = await self.store.take_lease(self.name, self.owner, self.ttl_s, rank=self.rank)
            if not held:
                holder = await self.store.lease_holder(self.name)
                if holder is not None and dead_here(holder.owner):
                    held = await self.store.take_lease(self.name, self.owner, self.ttl_s, rank=self.rank,
                                                       replacing=holder.owner)
                    if held:
                        log.info("lease_taken_from_dead_process", job=self.name, dead=holder.owner)
        except Exception as e:  # noqa: BLE001 - the store is away: stay as we were (see the module's doc)
            log.warning("lease_unknown", job=self.name, held=self.held, error=f"{type(e).__name__}: {e}"[:200])
            return self.held
        if held != self.held:
            (log.info if held else log.warning)("lease_taken" if held else "lease_lost", job=self.name,
                                                owner=self.owner)
        self.held = held
        return held

    async def release(self) -> None:
        """Give the job back (a clean stop): another controller takes it at its next round."""
        if not self.held:
            return
        self.held = False
        try:
            await self.store.release_lease(self.name, self.owner)
            log.info("lease_released", job=self.name, owner=self.owner)
        except Exception as e:  # noqa: BLE001 - it runs out by itself
            log.warning("lease_release_failed", job=self.name, error=f"{type(e).__name__}: {e}"[:200])
