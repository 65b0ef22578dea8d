"""Several controllers sharing one store (issue 16 item 3), on real SQLite and real PostgreSQL (a schema per test):
job leases (two claimers, one wins; the holder renews; expiry hands over; a clean stop gives it back), the CDR
replay gated by its lease, and the same call saved by two controllers at once → one ticket, one push."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from ticketbridge.cdr import CdrReplayer
from ticketbridge.leases import JobLease, job_scope
from ticketbridge.store import TicketStore
from tests.unit.test_cdr import FakeStore, lines, row
from tests.unit.test_store import T0, StoreFactory, make_store, rec, store  # noqa: F401 - fixtures


async def test_two_claimers_one_wins(make_store: StoreFactory) -> None:  # noqa: F811
    a, b = await make_store(), await make_store()
    for _ in range(5):  # several races, each on a fresh job
        name = f"job-{_}"
        got = await asyncio.gather(a.take_lease(name, "ctl-a", 30), b.take_lease(name, "ctl-b", 30))
        assert sorted(got) == [False, True], got
    rows = await a.leases()
    assert len(rows) == 5 and all(r.owner in ("ctl-a", "ctl-b") for r in rows)


async def test_the_holder_renews_the_other_waits_then_takes_over_when_it_runs_out(
        make_store: StoreFactory) -> None:  # noqa: F811
    a, b = await make_store(), await make_store()
    clock = make_store.clock  # type: ignore[attr-defined]
    start = clock.now
    assert await a.take_lease("cdr-replay:n1", "ctl-a", 30)
    clock.now = start + dt.timedelta(seconds=20)
    assert not await b.take_lease("cdr-replay:n1", "ctl-b", 30)
    assert await a.take_lease("cdr-replay:n1", "ctl-a", 30)  # renewed: now held until +50 s
    clock.now = start + dt.timedelta(seconds=45)
    assert not await b.take_lease("cdr-replay:n1", "ctl-b", 30)
    [held] = await a.leases()
    assert held.owner == "ctl-a" and held.since == start and held.until == start + dt.timedelta(seconds=50)
    clock.now = start + dt.timedelta(seconds=51)  # ctl-a stopped renewing (died): ctl-b takes over
    assert await b.take_lease("cdr-replay:n1", "ctl-b", 30)
    assert not await a.take_lease("cdr-replay:n1", "ctl-a", 30)  # the old holder, back, does not steal it
    [held] = await a.leases()
    assert held.owner == "ctl-b" and held.since == clock.now


async def test_a_released_lease_is_taken_at_once_and_only_its_owner_releases_it(
        make_store: StoreFactory) -> None:  # noqa: F811
    a, b = await make_store(), await make_store()
    assert await a.take_lease("j", "ctl-a", 600)
    assert not await b.release_lease("j", "ctl-b")  # not its lease
    assert not await b.take_lease("j", "ctl-b", 600)
    assert await a.release_lease("j", "ctl-a")
    assert await b.take_lease("j", "ctl-b", 600)


async def test_job_lease_adapter_and_a_store_that_is_away(store: TicketStore) -> None:  # noqa: F811
    mine, theirs = JobLease(store, "j", "ctl-a", 30), JobLease(store, "j", "ctl-b", 30)
    assert await mine.hold() and mine.held
    assert not await theirs.hold() and not theirs.held
    await mine.release()
    assert await theirs.hold()

    class Away:
        async def take_lease(self, *a: object) -> bool:
            raise ConnectionRefusedError("the store is away")

    theirs.store = Away()  # unknown: as it was (acting for the agents through an outage; a standby stays one)
    assert await theirs.hold() and theirs.held
    mine.store = Away()
    assert not await mine.hold() and not mine.held


async def test_cdr_replay_runs_only_behind_its_gate_and_reads_everything_once_the_gate_opens(
        tmp_path: Path) -> None:
    path = tmp_path / "Master.json"
    path.write_bytes(lines(row("1.1", T0), row("2.1", T0)))
    fake = FakeStore()
    gate_open = False

    async def gate() -> bool:
        return gate_open

    rp = CdrReplayer(path, lookup=fake.lookup, save=fake.save, open_ids=set, settle_s=20.0,
                     clock=lambda: T0 + 100, gate=gate)
    assert await rp.reconcile() == 0 and fake.lookups == [] and rp.replay.offset == 0  # the other one replays
    gate_open = True  # the other controller died: its lease ran out, this one took it
    assert await rp.reconcile() == 2
    assert sorted(r.linkedid for r in fake.saved) == ["1.1", "2.1"]


async def test_two_controllers_saving_the_same_call_make_one_ticket_and_one_push(
        make_store: StoreFactory) -> None:  # noqa: F811
    """Both controllers' assemblers see every AMI event of the node and each saves the finished call; they
    stamp the events a few milliseconds apart. One ticket (unique linkedid; the losing insert retries as a
    merge), one outbox row: the second save adds nothing."""
    a, b = await make_store(), await make_store()
    for i in range(8):
        lid = f"1772472600.{500 + i}"
        first, second = rec(lid), rec(lid, started_at=T0 + 0.004, answered_at=T0 + 20.006, ended_at=T0 + 120.003)
        got = await asyncio.gather(a.save_call(first), b.save_call(second))
        assert len({g.ticket_no for g in got}) == 1 and sorted(g.created for g in got) == [False, True], got
        pushes = await a.outbox_for(got[0].ticket_no)
        assert [p.payload["event"] for p in pushes] == ["created"], [p.payload for p in pushes]
        history = await a.history(got[0].ticket_no)
        assert [h.field for h in history] == ["state"], [(h.field, h.note) for h in history]
    assert await a.count_tickets() == 8


@pytest.mark.parametrize("n", [4])
async def test_many_controllers_racing_for_one_lease(make_store: StoreFactory, n: int) -> None:  # noqa: F811
    stores = [await make_store() for _ in range(n)]
    got = await asyncio.gather(*[s.take_lease("race", f"ctl-{i}", 30) for i, s in enumerate(stores)])
    assert sum(got) == 1, got


async def test_two_controllers_racing_on_reminders_and_passwords_do_each_once(
        make_store: StoreFactory) -> None:  # noqa: F811
    """The other scheduled and after-save work claims row by row: deadline reminders (SKIP LOCKED + reminded_for)
    and the query password the SMS notice carries (the ticket row locked) are made once when both try at once."""
    a, b = await make_store(), await make_store()
    urgent = []
    for i in range(4):
        no = (await a.save_call(rec(f"r.{i}"))).ticket_no
        await a.set_urgent(no, True, actor="agent")
        urgent.append(no)
    got = await asyncio.gather(a.write_deadline_reminders(dt.timedelta(hours=3)),
                               b.write_deadline_reminders(dt.timedelta(hours=3)))
    assert sorted(got[0] + got[1]) == sorted(urgent), got
    for no in urgent:
        events = [o.payload["event"] for o in await a.outbox_for(no)]
        assert events.count("deadline_reminder") == 1, events
        pw = await asyncio.gather(a.issue_password(no, sms=False, actor="sms"),
                                  b.issue_password(no, sms=False, actor="sms"))
        assert len([p for p in pw if p is not None]) == 1, pw


async def test_a_lower_rank_takes_the_job_over_and_a_dead_local_holder_is_replaced_at_once(
        make_store: StoreFactory) -> None:  # noqa: F811
    import os
    import socket
    import subprocess
    import sys

    a, b = await make_store(), await make_store()
    assert await b.take_lease("agents:n1", "ctl-second", 30, rank=1)
    assert not await a.take_lease("agents:n1", "ctl-third", 30, rank=2)  # higher rank: waits
    assert await a.take_lease("agents:n1", "ctl-first", 30, rank=0)  # the dialplan's first: takes it over now
    assert not await b.take_lease("agents:n1", "ctl-second", 30, rank=1)  # the second learns it stands by
    # a controller of this host killed (its pid gone) and restarted: its old lease is taken at once
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = f"{socket.gethostname()[:32]}:{gone.stdout.strip()}:abcdef"
    assert await a.take_lease("cdr-replay:n1", dead_owner, 30)
    restarted = JobLease(b, "cdr-replay:n1", f"{socket.gethostname()[:32]}:{os.getpid()}:123456", 30)
    assert await restarted.hold()
    alive = JobLease(a, "cdr-replay:n1", "other-host:1:aaaaaa", 30)  # a live holder elsewhere is never replaced
    assert not await alive.hold()


CLUSTER_YAML = """
cluster:
  nodes:
    a: {host: 10.0.0.11}
    b: {host: 10.0.0.12, systemname: node2}
"""


def test_job_scope_is_the_cluster_node_else_the_instance() -> None:
    from model.loading import default_config_path, parse_config

    shipped = default_config_path().read_text(encoding="utf-8")
    single = parse_config(shipped, "t.yaml")
    cluster = parse_config(shipped + "\n" + CLUSTER_YAML, "t.yaml")
    assert job_scope(single, "main") == "main"  # one Asterisk: as before
    assert job_scope(single, "x") == "x"
    assert job_scope(cluster, "main") == "main"  # a cluster tool not run for a node
    assert job_scope(cluster.for_node("a"), "main") == "a"
    assert job_scope(cluster.for_node("b"), "main") == "b"  # the node's key (its systemname is node2)


async def test_two_nodes_named_main_keep_their_own_leases_in_one_store(
        make_store: StoreFactory, tmp_path: Path) -> None:  # noqa: F811
    """Each node's controllers started with the default instance `main` on one database: the controllers of
    node a contend for a's CDR replay and a's agents, node b's controller holds b's at the same time."""
    from hotline.controller import Controller
    from model.loading import default_config_path, parse_config

    cluster = parse_config(default_config_path().read_text(encoding="utf-8") + "\n" + CLUSTER_YAML, "t.yaml")
    cluster.asterisk.fastagi.controllers = ["127.0.0.1:4573", "127.0.0.1:4574"]
    a1, b1 = cluster.for_node("a"), cluster.for_node("b")
    a2 = cluster.for_node("a")
    a2.asterisk.fastagi.port = 4574
    store = await make_store()
    made = [Controller(c, store_url="sqlite+aiosqlite:///" + str(tmp_path / "unused.db"), cdr_path=tmp_path / "m.csv",
                       instance="main", control_path=tmp_path / f"c{i}.sock") for i, c in enumerate((a1, a2, b1))]
    try:
        names = [(c.cdr_lease.name, c.agents_lease.name) for c in made]  # type: ignore[union-attr]
        assert names == [("cdr-replay:a", "agents:a"), ("cdr-replay:a", "agents:a"), ("cdr-replay:b", "agents:b")]
        ranks = [c.agents_lease.rank for c in made]  # type: ignore[union-attr]
        assert ranks == [0, 1, 0]
        leases = [JobLease(store, lease.name, c.owner, 30, rank=lease.rank)
                  for c in made for lease in (c.cdr_lease, c.agents_lease)]  # type: ignore[union-attr]
        held = [await lease.hold() for lease in leases]
        # a's first controller holds a's jobs, a's second stands by, b's controller holds b's jobs
        assert held == [True, True, False, False, True, True], held
        assert {r.name: r.owner for r in await store.leases()} == {
            "agents:a": made[0].owner, "cdr-replay:a": made[0].owner,
            "agents:b": made[2].owner, "cdr-replay:b": made[2].owner}
    finally:
        for c in made:
            await c.store.close()


async def test_a_lease_of_a_known_dead_owner_is_taken_before_it_runs_out_and_keeps_its_rank_rule(
        make_store: StoreFactory) -> None:  # noqa: F811
    a, b = await make_store(), await make_store()
    clock = make_store.clock  # type: ignore[attr-defined]
    assert await a.take_lease("j", "host:1:dead", 600, rank=0)
    assert not await b.take_lease("j", "ctl-b", 600, rank=1)  # held, not run out, a lower rank
    assert not await b.take_lease("j", "ctl-b", 600, rank=1, replacing="host:1:other")  # not the holder
    clock.now += dt.timedelta(seconds=5)
    assert await b.take_lease("j", "ctl-b", 600, rank=1, replacing="host:1:dead")
    [held] = await b.leases()
    assert (held.owner, held.rank, held.since) == ("ctl-b", 1, clock.now)  # a new owner: held since now
    assert await a.take_lease("j", "ctl-a", 30, rank=0)  # a lower rank takes it over at once
    [held] = await a.leases()
    assert (held.owner, held.rank, held.until) == ("ctl-a", 0, clock.now + dt.timedelta(seconds=30))
