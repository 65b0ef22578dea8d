"""Issue 16: several Asterisk nodes behind Kamailio, one PostgreSQL, on this machine.

Two sandboxed Asterisk nodes (each its own systemname), a controller each, Debian's Kamailio rendered from
the same config (hotline/cluster.py) and a PostgreSQL database of this module's own. The carrier is SIPp
on 127.0.0.2 sending to Kamailio; the seats are baresip phones registered with Kamailio, so a call on
either node reaches them. Ports: node a at HOTLINE_PORT_OFFSET + 20, node b at + 70, Kamailio at
5060 + offset + 45 (hotline/cluster.py), inside the offset's block of 100.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import time
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hotline.cluster import LocalCluster, straight_to_seats
from hotline.controller import CDR_LEASE_MIN_S, Controller
from hotline.sipcarrier import carrier_calls as sipp_calls
from hotline.sipseat import BaresipSeat
from model.config import Config
from model.loading import load_config
from model.secrets import seat_secret
from tests.conftest import PG_URL, require
from tests.e2e.conftest import INSTANCE, OFFSET, ROOT
from tests.e2e.faults import ControllerProcess
from ticketbridge.schema import Ticket
from ticketbridge.store import TicketStore

pytestmark = pytest.mark.e2e

CARRIER_HOST = "127.0.0.2"
CARRIER_PORT = 5090 + OFFSET + 45
CLUSTER_OFFSET = OFFSET + 20
SEATS = ("1001", "1002", "1006", "1007")
DB = f"cluster_{INSTANCE}".replace("-", "_").lower()
#: each node's dialplan tries two controllers (asterisk.fastagi.controllers); the fixture starts the first of
#: each, test_first_controller_of_node_a_killed… runs node a's two as processes
CONTROLLERS_PER_NODE = 2


@pytest.fixture(scope="module", autouse=True)
def clean_world() -> None:
    """This module runs its own Asterisk nodes (the session's single Asterisk is not started for it)."""


def cluster_base() -> Config:
    # straight to the general queue: the cluster's parts are under test here, not the menu (test_ivr.py)
    return straight_to_seats(load_config(ROOT / "config" / "hotline.yaml"), seats=SEATS, carrier="simcarrier",
                             carrier_host=CARRIER_HOST, carrier_port=CARRIER_PORT)


async def _fresh_database() -> str:
    admin = create_async_engine(PG_URL, connect_args={"timeout": 3}, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as c:
            await c.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
            await c.execute(text(f'CREATE DATABASE "{DB}"'))
    except Exception as e:  # noqa: BLE001 - unreachable is a missing real part
        require(False, f"PostgreSQL unreachable at {PG_URL}: {e}")
    finally:
        await admin.dispose()
    return PG_URL.rsplit("/", 1)[0] + f"/{DB}"


def cluster_create(workdir: Path, *, controllers_per_node: int = 1) -> LocalCluster:
    """This module's cluster (also what tests/e2e/cluster_controller.py runs a node's controller for)."""
    return LocalCluster.create(cluster_base(), instance=f"{INSTANCE}", offset=CLUSTER_OFFSET,
                               prompts_dir=Path(os.environ.get("HOTLINE_STATE", "/var/lib/hotline12345")) / "prompts",
                               workdir=workdir, controllers_per_node=controllers_per_node)


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory):
    require(os.geteuid() == 0, "the cluster's nodes run Asterisk in a chroot: run as root")
    require(shutil.which("kamailio") is not None, "kamailio (Debian package kamailio) is the SIP front")
    require(shutil.which("sipp") is not None, "sipp (Debian package sip-tester) plays the carrier")
    require(shutil.which("baresip") is not None, "baresip plays the seat phones")
    lc = cluster_create(tmp_path_factory.mktemp("cluster"), controllers_per_node=CONTROLLERS_PER_NODE)
    try:
        lc.start()
        lc.wait_nodes_active()
        yield lc
    finally:
        lc.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def store_url(local_cluster: LocalCluster) -> str:
    return await _fresh_database()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def controllers(local_cluster: LocalCluster, store_url: str):
    """One controller per node, both on the same PostgreSQL."""
    started: dict[str, Controller] = {}
    try:
        for name, node in local_cluster.nodes.items():
            c = Controller.for_sandbox(node.cfg, node.sandbox, store_url=store_url)
            await c.start()
            await c.ami.wait_connected(10)
            # the agents' states live in the shared store: the next controller restores what this one saved,
            # and each running controller mirrors the others' changes on its node (routing/agent_sync.py)
            await c.agents.drain()
            started[name] = c
        yield started
    finally:
        for c in started.values():
            await c.stop()


@pytest.fixture(scope="module")
def seats(local_cluster: LocalCluster):
    """Seats 1001, 1002, 1006, 1007 (the general queue's), registered with Kamailio (not with any node)."""
    cfg = local_cluster.cfg
    phones = []
    try:
        for ext in SEATS:
            s = BaresipSeat(ext, seat_secret(ext, cfg.seats[ext]), sip_port=local_cluster.kamailio.port)
            s.start()
            phones.append(s)
        for s in phones:
            s.wait_registered(10)
        assert local_cluster.kamailio.registered() >= set(SEATS), local_cluster.kamailio.rpc("ul.dump")
        yield phones
    finally:
        for s in phones:
            s.stop()


async def carrier_calls(tmp_path: Path, proxy_port: int, **kw) -> tuple[int, str]:  # noqa: ANN003
    return await sipp_calls(tmp_path, proxy_port, carrier_host=CARRIER_HOST, carrier_port=CARRIER_PORT,
                            media_port=16000 + OFFSET * 10, **kw)


async def wait_tickets(store: TicketStore, callers: set[str], timeout: float = 40.0) -> list[Ticket]:
    """Until every caller has a finished ticket; the tickets of those callers (all of them, duplicates too)."""
    deadline = asyncio.get_running_loop().time() + timeout
    mine: list[Ticket] = []
    while asyncio.get_running_loop().time() < deadline:
        mine = [t for t in await store.list_tickets(limit=10000) if t.caller in callers]
        if {t.caller for t in mine if t.outcome != "in_progress"} >= callers:
            return mine
        await asyncio.sleep(0.5)
    raise AssertionError(f"tickets after {timeout} s: {[(t.caller, t.linkedid, t.outcome) for t in mine]}")


@pytest.mark.asyncio(loop_scope="module")
async def test_calls_spread_over_both_nodes_reach_seats_and_leave_one_ticket_each(
        local_cluster, controllers, seats, store_url, tmp_path):
    n = 4
    rc, log = await carrier_calls(tmp_path, local_cluster.kamailio.port, calls=n, rate_per_s=2, talk_ms=10000)
    assert rc == 0, f"SIPp (the carrier) failed, exit {rc}:\n{log[-3000:]}\n--- kamailio:\n{local_cluster.kamailio.tail()}"
    callers = {f"1390000{i}" for i in range(1, n + 1)}
    mine = await wait_tickets(controllers["b"].store, callers)
    assert len(mine) == n, [(t.caller, t.linkedid) for t in mine]  # exactly one ticket per call
    assert len({t.ticket_no for t in mine}) == n
    # each node's linkedids carry its systemname: both took calls
    by_node = {t.linkedid.split("-", 1)[0] for t in mine}
    assert by_node == {"a", "b"}, [t.linkedid for t in mine]
    # a call on either node reached a seat registered with Kamailio, not with that node
    answered = [t for t in mine if t.outcome == "answered"]
    assert {t.linkedid.split("-", 1)[0] for t in answered} == {"a", "b"}, [(t.linkedid, t.outcome) for t in mine]
    assert {t.agent for t in answered} <= set(SEATS)


def _active_channels(sb) -> int:  # noqa: ANN001
    out = sb.cli("core show channels count")
    for line in out.splitlines():
        if "active channel" in line:
            return int(line.split()[0])
    return 0


@pytest.mark.asyncio(loop_scope="module")
async def test_node_stopped_mid_load_new_calls_go_to_the_other_and_every_call_keeps_one_ticket(
        local_cluster, controllers, seats, tmp_path):
    """Node a stops while calls are up on both nodes: Kamailio sends every new call to b; a's calls end as
    a's Asterisk ends them, each with exactly one ticket; then a comes back and takes calls again."""
    kam = local_cluster.kamailio
    node_a = local_cluster.nodes["a"]
    before = asyncio.create_task(carrier_calls(tmp_path, kam.port, calls=4, rate_per_s=2, talk_ms=10000,
                                               prefix="1391000", tag="before"))
    channels: dict[str, int] = {}
    try:
        for _ in range(100):  # until both nodes have calls up: then a stops under them
            channels = {name: await asyncio.to_thread(_active_channels, node.sandbox)
                        for name, node in local_cluster.nodes.items()}
            if all(n > 0 for n in channels.values()) and sum(channels.values()) >= 4:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"calls did not come up on both nodes: {channels}")
        await asyncio.to_thread(node_a.sandbox.stop)
        # new calls while a is down: all to b, all answered by the seats
        rc, log = await carrier_calls(tmp_path, kam.port, calls=3, rate_per_s=2, talk_ms=10000, prefix="1392000",
                                      tag="after", run=1)
        assert rc == 0, f"calls after node a stopped failed, exit {rc}:\n{log[-3000:]}\n--- kamailio:\n{kam.tail()}"
        await asyncio.wait_for(before, 150)  # a's calls end in SIPp as a ended them; b's end well
    finally:
        if not before.done():
            before.cancel()
    store = controllers["b"].store
    after = await wait_tickets(store, {f"1392000{i}" for i in range(1, 4)})
    assert len(after) == 3 and {t.linkedid.split("-", 1)[0] for t in after} == {"b"}, [t.linkedid for t in after]
    assert all(t.outcome == "answered" for t in after), [(t.linkedid, t.outcome) for t in after]
    cut = await wait_tickets(store, {f"1391000{i}" for i in range(1, 5)}, timeout=60)
    assert len(cut) == 4 and len({t.linkedid for t in cut}) == 4, [(t.caller, t.linkedid) for t in cut]
    assert {t.linkedid.split("-", 1)[0] for t in cut} == {"a", "b"}
    assert kam.node_states()[f"sip:{node_a.cfg.asterisk.sip.bind}:{node_a.cfg.asterisk.sip.port}"].startswith("I")

    # a comes back: Kamailio's probe finds it and dispatches to it again
    await asyncio.to_thread(node_a.sandbox.start, sip_port=node_a.cfg.asterisk.sip.port)
    await asyncio.to_thread(local_cluster.wait_nodes_active, 20)
    await controllers["a"].ami.wait_connected(20)
    rc, log = await carrier_calls(tmp_path, kam.port, calls=2, rate_per_s=2, talk_ms=10000, prefix="1393000",
                                  tag="back")
    assert rc == 0, f"calls after node a came back failed, exit {rc}:\n{log[-3000:]}"
    back = await wait_tickets(store, {f"1393000{i}" for i in range(1, 3)})
    assert {t.linkedid.split("-", 1)[0] for t in back} == {"a", "b"}, [t.linkedid for t in back]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_seats_own_call_through_kamailio_reaches_a_node_and_is_authenticated(controllers, seats):
    """A seat's feature code (*52 sign out, *51 sign in) goes phone → Kamailio → a node (by Call-ID hash, so the
    digest retry reaches the node that challenged) → its controller's agent machine."""
    from routing.agent import AgentState

    phone = next(s for s in seats if s.ext == "1007")

    async def state_somewhere(want: AgentState, timeout: float = 20.0) -> str:
        for _ in range(int(timeout * 5)):
            for name, c in controllers.items():
                if c.agents.agents["1007"].state == want:
                    return name
            await asyncio.sleep(0.2)
        raise AssertionError(f"agent 1007 never {want.value}: "
                             f"{ {n: c.agents.agents['1007'].state.value for n, c in controllers.items()} }")

    await asyncio.to_thread(phone.dial, "*52")
    node = await state_somewhere(AgentState.SIGNED_OUT)
    await asyncio.sleep(3)
    await asyncio.to_thread(phone.hangup)
    await asyncio.to_thread(phone.dial, "*51")
    for _ in range(100):
        if controllers[node].agents.agents["1007"].state == AgentState.READY:
            break
        await asyncio.sleep(0.2)
    await asyncio.to_thread(phone.hangup)
    states = {n: c.agents.agents["1007"].state for n, c in controllers.items()}
    assert AgentState.READY in states.values(), states


def test_a_node_refuses_sip_that_does_not_come_through_kamailio(local_cluster) -> None:
    """A carrier's INVITE sent straight to a node (the carrier header forged) is refused: only Kamailio's
    address may talk SIP to a node."""
    import socket

    node = local_cluster.nodes["b"].cfg.asterisk.sip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((CARRIER_HOST, 0))
        s.settimeout(5)
        port = s.getsockname()[1]
        msg = (f"INVITE sip:12345@{node.bind}:{node.port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {CARRIER_HOST}:{port};branch=z9hG4bK-forged-1;rport\r\n"
               f"From: <sip:13900009999@{CARRIER_HOST}>;tag=forged\r\n"
               f"To: <sip:12345@{node.bind}>\r\nCall-ID: forged-1@{CARRIER_HOST}\r\nCSeq: 1 INVITE\r\n"
               f"Contact: <sip:13900009999@{CARRIER_HOST}:{port}>\r\nMax-Forwards: 70\r\n"
               "X-Hotline-Trunk: simcarrier\r\nContent-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), (node.bind, node.port))
        status = ""
        for _ in range(5):
            reply = s.recv(4096).decode(errors="replace")
            status = reply.split("\r\n", 1)[0]
            if not status.startswith("SIP/2.0 1"):
                break
    assert status.startswith("SIP/2.0 403"), status


def served_by(ctl: ControllerProcess) -> set[str]:
    """The calls (the uniqueid of the inbound channel: the call's linkedid) whose IVR ran on this controller."""
    return {str(r.get("uniqueid")) for r in ctl.events("agi_session_started") if r.get("script") == "inbound"}


def completed(ctl: ControllerProcess) -> set[str]:
    """The calls whose IVR ran to its end on this controller."""
    return {str(r.get("uniqueid")) for r in ctl.events("agi_session_ended")
            if r.get("outcome") == "completed"} & served_by(ctl)


async def _member(c: Controller, seat: str, queue: str = "hotline-general") -> dict[str, str]:
    """Seat's member row in `queue` on the controller's node, as its Asterisk has it (AMI QueueStatus)."""
    rows = await c.ami.action_list("QueueStatus", Queue=queue)
    return next(r for r in rows if r.get("Event") == "QueueMember"
                and (r.get("StateInterface") or r.get("Location") or "").lower() == f"pjsip/{seat}")


async def _wait_member(c: Controller, seat: str, paused: bool,
                       timeout: float = 10.0) -> tuple[dict[str, str], float]:
    t0 = time.monotonic()
    row: dict[str, str] = {}
    while time.monotonic() - t0 < timeout:
        row = await _member(c, seat)
        if (row.get("Paused") == "1") == paused:
            return row, time.monotonic() - t0
        await asyncio.sleep(0.1)
    raise AssertionError(f"seat {seat} on node {c.config.node}: not paused={paused} after {timeout} s: {row}")


@pytest.mark.asyncio(loop_scope="module")
async def test_an_agent_busy_through_node_as_controller_is_paused_on_node_b_and_not_offered_there(
        local_cluster, controllers, seats, store_url, tmp_path):
    """Agent states hold on every node (routing/agent_sync.py): 示忙 set through node a's controller (its control
    path, as `hotline agents busy`) pauses seat 1001 on node b within cluster.agent_sync_s (+ a query); a carrier
    call landing on b is not offered to 1001; 示闲 through a unpauses it on b. Node b's mirror is never saved
    again (one agent_events row per change)."""
    from hotline.control import ask

    ca, cb = controllers["a"], controllers["b"]
    assert ca.config.cluster is not None and ca.config.cluster.agent_sync_s <= 2
    for _ in range(100):  # the phone registered with Kamailio is reachable (not 离线) on both nodes
        if not any(c.agents.agents["1001"].offline for c in (ca, cb)):
            break
        await asyncio.sleep(0.2)
    started = dt.datetime.now(dt.UTC)
    ok = await ask(ca.control.path, {"op": "agent", "agent": "1001", "action": "signin", "why": "e2e"})
    if ca.agents.agents["1001"].state.value != "ready":
        ok = await ask(ca.control.path, {"op": "agent", "agent": "1001", "action": "ready", "why": "e2e"})
    assert ca.agents.agents["1001"].state.value == "ready", ok
    await _wait_member(cb, "1001", paused=False)

    reason = next(iter(ca.config.agents.busy_reasons.values()))
    ok = await ask(ca.control.path, {"op": "agent", "agent": "1001", "action": "busy", "reason": reason,
                                     "why": "e2e 示忙"})
    assert ok["ok"] and ok["state"] == "busy", ok
    row, took_busy = await _wait_member(cb, "1001", paused=True)
    assert row.get("PausedReason") == reason, row
    assert cb.agents.agents["1001"].state.value == "busy"

    offered: list[str] = []

    def on_called(ev) -> None:  # noqa: ANN001
        offered.append((ev.get("Interface") or ev.get("DestChannel") or "").lower())
    cb.ami.on_event("AgentCalled", on_called)
    try:
        rc, log = await carrier_calls(tmp_path, local_cluster.kamailio.port, calls=2, rate_per_s=2, talk_ms=4000,
                                      prefix="1396000", tag="sync")
        assert rc == 0, f"SIPp (the carrier) failed, exit {rc}:\n{log[-3000:]}"
        mine = await wait_tickets(cb.store, {f"1396000{i}" for i in range(1, 3)})
    finally:
        cb.ami.off_event("AgentCalled", on_called)
    on_b = [t for t in mine if t.linkedid.split("-", 1)[0] == "b"]
    assert on_b and all(t.outcome == "answered" for t in on_b), [(t.linkedid, t.outcome) for t in mine]
    assert offered and not any("1001" in i for i in offered), offered  # node b offered the call, never to 1001
    assert all(t.agent != "1001" for t in mine), [(t.linkedid, t.agent) for t in mine]

    ok = await ask(ca.control.path, {"op": "agent", "agent": "1001", "action": "ready", "why": "e2e 示闲"})
    assert ok["ok"] and ok["state"] == "ready", ok
    _, took_ready = await _wait_member(cb, "1001", paused=False)
    assert cb.agents.agents["1001"].state.value == "ready"
    events = [e for e in await cb.store.agent_events(agent=ca.agents.agent_id_of("1001"), since=started)
              if e.new == "busy"]
    assert len(events) == 1, [(e.old, e.new, e.reason, e.seat) for e in events]
    print(f"\ncluster: 1001's 示忙 through node a paused on node b after {took_busy:.1f} s, 示闲 unpaused after "
          f"{took_ready:.1f} s (agent_sync_s {ca.config.cluster.agent_sync_s})")


@pytest.mark.asyncio(loop_scope="module")
async def test_first_controller_of_node_a_killed_mid_run_its_second_serves_node_as_calls(
        local_cluster, controllers, seats, store_url, tmp_path):
    """Issue 16 item 4: node a's dialplan tries two controllers (first, second); both run as processes; calls
    through Kamailio are up on the nodes when the first is killed -9; the calls that follow and reach node a
    are served by the second's IVR (not the no-controller fallback), which also takes over a's CDR replay and
    agents (leases `cdr-replay:a`, `agents:a`) — node b's controller keeps b's."""
    kam = local_cluster.kamailio
    node_a = local_cluster.nodes["a"]
    assert node_a.cfg.asterisk.fastagi.controllers[1].endswith(f":{node_a.cfg.asterisk.fastagi.port + 1}")
    await controllers.pop("a").stop()  # node a is handed to two controller processes (the fixture's is done)
    first, second = (ControllerProcess(store_url, tmp_path / f"a-{k}.log", module="tests.e2e.cluster_controller",
                                       extra=["--node", "a", "--nth", str(k),
                                              "--control-path", str(tmp_path / f"a-{k}.sock")]) for k in (0, 1))
    try:
        await first.start()
        await second.start()
        await first.wait_log("lease_taken", 20, job="cdr-replay:a")  # the in-process one gave it back
        # calls up on both nodes (node a's served by its first controller), then the first is killed
        during = asyncio.create_task(carrier_calls(tmp_path, kam.port, calls=4, rate_per_s=2, talk_ms=10000,
                                                   prefix="1394000", tag="kill"))
        try:
            for _ in range(150):
                if completed(first) and await asyncio.to_thread(_active_channels, node_a.sandbox) > 0:
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("no call of node a was served by its first controller: "
                                     f"{first.events('agi_session_ended')}")
            assert not served_by(second)  # the first answers while it lives
            first.kill9()
            killed = time.time()
            rc, log = await asyncio.wait_for(during, 150)  # the calls up at the kill end well
            assert rc == 0, f"calls up at the kill failed, exit {rc}:\n{log[-3000:]}\n--- kamailio:\n{kam.tail()}"
        finally:
            if not during.done():
                during.cancel()
        rc, log = await carrier_calls(tmp_path, kam.port, calls=4, rate_per_s=2, talk_ms=10000, prefix="1395000",
                                      tag="killed", run=1)
        assert rc == 0, f"calls after the kill failed, exit {rc}:\n{log[-3000:]}\n--- kamailio:\n{kam.tail()}"
        store = controllers["b"].store
        cut = await wait_tickets(store, {f"1394000{i}" for i in range(1, 5)}, timeout=60)
        after = await wait_tickets(store, {f"1395000{i}" for i in range(1, 5)}, timeout=60)
        on_a = [t for t in after if t.linkedid.split("-", 1)[0] == "a"]
        assert on_a, f"no call after the kill went to node a: {[t.linkedid for t in after]}"
        # every call after the kill that reached node a had its IVR from the second controller; each call of
        # node a in this test from exactly one of the two
        assert {t.linkedid for t in on_a} <= completed(second), (completed(second), [t.linkedid for t in on_a])
        assert not served_by(first) & served_by(second)
        all_a = {t.linkedid for t in cut + after if t.linkedid.split("-", 1)[0] == "a"}
        assert all_a == served_by(first) | served_by(second), (all_a, served_by(first), served_by(second))
        assert len(after) == 4 and all(t.outcome == "answered" and t.handled_by == "controller" for t in after), \
            [(t.linkedid, t.outcome, t.handled_by) for t in after]
        # the calls up at the kill: answered, one ticket each; the IVR of each ran to its end on a controller
        # (unless the kill cut it: then the dialplan's fallback queue took the caller, as without any controller)
        assert len(cut) == 4 and all(t.outcome == "answered" for t in cut), [(t.linkedid, t.outcome) for t in cut]
        whole = completed(first) | completed(second)
        assert all(t.handled_by == "controller" for t in cut if t.linkedid in whole or t.linkedid[0] == "b"), \
            [(t.linkedid, t.handled_by) for t in cut]
        # the second takes a's jobs once the dead one's leases run out; b's stay with b's controller
        taken = await second.wait_log("lease_taken", 30, job="cdr-replay:a")
        handover = dt.datetime.fromisoformat(taken["timestamp"]).timestamp() - killed
        assert 0 < handover < CDR_LEASE_MIN_S + 5, handover
        await second.wait_log("agents_taken_over", 30)
        owners = {r.name: r.owner for r in await store.leases()}
        assert owners["cdr-replay:b"] == owners["agents:b"] == controllers["b"].owner, owners
        assert owners["cdr-replay:a"] != controllers["b"].owner and owners["agents:a"] == owners["cdr-replay:a"], owners
        await second.stop()
    finally:
        for c in (first, second):
            if c.proc is not None:
                c.kill9()
    print(f"\ncluster: node a's first controller killed -9, {len(on_a)} of 4 new calls on node a served by its "
          f"second; CDR replay of a taken over {handover:.1f} s after the kill")


@pytest.mark.asyncio(loop_scope="module")
async def test_every_call_of_the_run_has_exactly_one_ticket_with_a_unique_number(controllers):
    tickets = await controllers["b"].store.list_tickets(limit=10000)
    assert tickets
    assert len({t.linkedid for t in tickets}) == len(tickets)
    assert len({t.ticket_no for t in tickets}) == len(tickets)
    per_caller: dict[str, int] = {}
    for t in tickets:
        per_caller[t.caller] = per_caller.get(t.caller, 0) + 1
    assert all(n == 1 for n in per_caller.values()), per_caller
