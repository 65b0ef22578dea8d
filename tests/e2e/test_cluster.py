"""Issue 16: several Asterisk nodes behind Kamailio, one PostgreSQL, on this machine.

Two sandboxed Asterisk nodes (each its own systemname), a controller each, Debian's Kamailio rendered from
the same config (hotline/cluster.py) and a PostgreSQL database of this module's own. The carrier is SIPp
on 127.0.0.2 sending to Kamailio; the seats are baresip phones registered with Kamailio, so a call on
either node reaches them. Ports: node a at HOTLINE_PORT_OFFSET + 20, node b at + 70, Kamailio at
5060 + offset + 45 (hotline/cluster.py), inside the offset's block of 100.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hotline.cluster import LocalCluster
from hotline.controller import Controller
from hotline.sipseat import BaresipSeat
from model.config import Carrier, Config, Seat
from model.destinations import QueueDest
from model.loading import load_config
from model.secrets import seat_secret
from tests.conftest import PG_URL, require
from tests.e2e.conftest import INSTANCE, OFFSET, ROOT
from ticketbridge.schema import Ticket
from ticketbridge.store import TicketStore

pytestmark = pytest.mark.e2e

CARRIER_HOST = "127.0.0.2"
CARRIER_PORT = 5090 + OFFSET + 45
CLUSTER_OFFSET = OFFSET + 20
SEATS = ("1001", "1002", "1006", "1007")
DB = f"cluster_{INSTANCE}".replace("-", "_").lower()


@pytest.fixture(scope="module", autouse=True)
def clean_world() -> None:
    """This module runs its own Asterisk nodes (the session's single Asterisk is not started for it)."""


def cluster_base() -> Config:
    cfg = load_config(ROOT / "config" / "hotline.yaml")
    cfg.carriers["simcarrier"] = Carrier(host=CARRIER_HOST, port=CARRIER_PORT, dids={"057112345": "12345"})
    # straight to the general queue: the cluster's parts are under test here, not the menu (test_ivr.py)
    cfg.center.entry = QueueDest(queue="general")
    cfg.center.emergency_notice = None  # seconds of prompts nobody here listens to
    cfg.recording.notice = None
    cfg.agents.miss_limit = 0
    cfg.asterisk.sip.seat_qualify_s = 5
    cfg.survey.enabled = False
    for ext in SEATS:  # four general seats: the shipped config has two
        if ext not in cfg.seats:
            cfg.seats[ext] = Seat(name=f"话务员{ext}", skills=["general"], secret_env=f"HOTLINE_SEAT_{ext}_SECRET")
    cfg.queues["general"].members = list(SEATS)
    return cfg


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


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory):
    require(os.geteuid() == 0, "the cluster's nodes run Asterisk in a chroot: run as root")
    require(shutil.which("kamailio") is not None, "kamailio (Debian package kamailio) is the SIP front")
    require(shutil.which("sipp") is not None, "sipp (Debian package sip-tester) plays the carrier")
    require(shutil.which("baresip") is not None, "baresip plays the seat phones")
    lc = LocalCluster.create(cluster_base(), instance=f"{INSTANCE}", offset=CLUSTER_OFFSET,
                             prompts_dir=Path(os.environ.get("HOTLINE_STATE", "/var/lib/hotline12345")) / "prompts",
                             workdir=tmp_path_factory.mktemp("cluster"))
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
            # the agents' states live in the shared store: the next controller restores what this one saved
            # (agents' states are not yet carried between running controllers: docs/cluster.md)
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


def carrier_scenario(talk_ms: int, prefix: str) -> str:
    """The carrier calls 12345 (caller `prefix` + SIPp's call number), talks until `talk_ms` pass without a
    re-INVITE from Asterisk (it sends one when an agent answers), then hangs up."""
    frm = f'"{prefix}[call_number]" <sip:{prefix}[call_number]@[local_ip]:[local_port]>;tag=[call_number]'
    to = "<sip:12345@[remote_ip]:[remote_port]>"
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier calls through Kamailio">
  <send retrans="500">
    <![CDATA[
      INVITE sip:12345@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {frm}
      To: {to}
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{prefix}[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 0 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: {frm}
      To: {to}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:{prefix}[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <!-- while talking: answer Asterisk's re-INVITEs (connected-line updates once an agent answers); a BYE
       (Asterisk's, or Kamailio's for a node that died) ends the call -->
  <label id="1"/>
  <recv request="INVITE" optional="true" timeout="{talk_ms}" ontimeout="2" next="5"/>
  <recv request="BYE" next="3"/>
  <label id="5"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{prefix}[call_number]@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 1 2 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <recv request="ACK" next="1"/>
  <label id="2"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: {frm}
      To: {to}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:{prefix}[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true" next="4"/>
  <label id="3"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="4"/>
</scenario>
"""


async def carrier_calls(tmp_path: Path, proxy_port: int, *, calls: int, rate_per_s: float, talk_ms: int,
                        prefix: str = "1390000", tag: str = "load", run: int = 0) -> tuple[int, str]:
    """`calls` calls from the carrier (SIPp on 127.0.0.2) into Kamailio; SIPp's exit code and errors.
    SIPp runs at once need different `run`s (their own SIP and media ports)."""
    xml = tmp_path / f"carrier-{tag}.xml"
    xml.write_text(carrier_scenario(talk_ms, prefix), encoding="ascii")
    err = tmp_path / f"carrier-{tag}-errors.log"
    period_ms = int(1000 / rate_per_s)
    proc = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{proxy_port}", "-sf", str(xml), "-i", CARRIER_HOST, "-p", str(CARRIER_PORT + run),
        "-mi", CARRIER_HOST, "-mp", str(16000 + OFFSET * 10 + 100 * run), "-m", str(calls), "-l", str(calls),
        "-r", "1", "-rp", str(period_ms), "-base_cseq", "1", "-nostdin",
        "-timeout", "120s", "-timeout_error", "-trace_err", "-error_file", str(err),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    _, stderr = await asyncio.wait_for(proc.communicate(), 150)
    log = (err.read_text(errors="replace") if err.exists() else "") + stderr.decode(errors="replace")
    return proc.returncode or 0, log


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
async def test_every_call_of_the_run_has_exactly_one_ticket_with_a_unique_number(controllers):
    tickets = await controllers["b"].store.list_tickets(limit=10000)
    assert tickets
    assert len({t.linkedid for t in tickets}) == len(tickets)
    assert len({t.ticket_no for t in tickets}) == len(tickets)
    per_caller: dict[str, int] = {}
    for t in tickets:
        per_caller[t.caller] = per_caller.get(t.caller, 0) + 1
    assert all(n == 1 for n in per_caller.values()), per_caller
