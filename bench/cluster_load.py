"""Calls through Kamailio over two Asterisk nodes: what each part spends per call (docs/cluster.md, Sizing).

Starts the one-machine cluster (hotline/cluster.py: two sandboxed Asterisk nodes, Kamailio, a controller per
node in this process, a PostgreSQL database of its own), registers seat phones with Kamailio and places
`--calls` carrier calls (SIPp) at `--rate` per second; each goes straight to the general queue, is answered
by a seat and talks `--talk-s` seconds. Prints, per part, the CPU seconds it used during the calls and per
call, and the calls each node took. As root:

    HOTLINE_PORT_OFFSET=600 .venv/bin/python bench/cluster_load.py --calls 30 --rate 1 --seats 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from hotline.cluster import LocalCluster, straight_to_seats  # noqa: E402
from hotline.controller import Controller  # noqa: E402
from hotline.sipcarrier import carrier_calls  # noqa: E402
from hotline.sipseat import BaresipSeat  # noqa: E402
from model.loading import default_config_path, load_config  # noqa: E402
from model.secrets import seat_secret, state_dir  # noqa: E402

PG = os.environ.get("HOTLINE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of_group(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in process group `pgid`."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp …
            total += int(fields[11]) + int(fields[12])  # utime stime
    return total / TICK


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def fresh_db(name: str) -> str:
    admin = create_async_engine(PG, isolation_level="AUTOCOMMIT")
    async with admin.connect() as c:
        await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await c.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return PG.rsplit("/", 1)[0] + f"/{name}"


async def main(args: argparse.Namespace) -> None:
    offset = int(os.environ.get("HOTLINE_PORT_OFFSET", "600"))
    seats = tuple(str(2001 + i) for i in range(args.seats))
    carrier_port = 5090 + offset + 45
    cfg = straight_to_seats(load_config(default_config_path()), seats=seats, carrier="benchcarrier",
                            carrier_host="127.0.0.2", carrier_port=carrier_port)
    for ext in seats:
        os.environ.setdefault(f"HOTLINE_SEAT_{ext}_SECRET", f"Bench-{ext}-k7Qm2xZp")
    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    lc = LocalCluster.create(cfg, instance="clusterbench", offset=offset + 20, prompts_dir=state_dir() / "prompts",
                             workdir=work)
    store = await fresh_db("cluster_bench")
    controllers: list[Controller] = []
    phones: list[BaresipSeat] = []
    try:
        lc.start()
        lc.wait_nodes_active()
        for node in lc.nodes.values():
            c = Controller.for_sandbox(node.cfg, node.sandbox, store_url=store)
            await c.start()
            await c.ami.wait_connected(10)
            await c.agents.drain()
            controllers.append(c)
        for ext in seats:
            s = BaresipSeat(ext, seat_secret(ext, lc.cfg.seats[ext]), sip_port=lc.kamailio.port)
            s.start()
            phones.append(s)
        for s in phones:
            s.wait_registered(15)
        await asyncio.sleep(6)  # the nodes' first qualify of every seat (seat_qualify_s)
        parts = {"kamailio": lc.kamailio.proc.pid, **{f"asterisk {n}": node.sandbox.pid()
                                                       for n, node in lc.nodes.items()}}
        before = {k: cpu_of_group(os.getpgid(pid)) for k, pid in parts.items()}
        before["controllers (this process)"] = self_cpu()
        load0 = os.getloadavg()
        t0 = time.monotonic()
        rc, log = await carrier_calls(work, lc.kamailio.port, calls=args.calls, rate_per_s=args.rate,
                                      talk_ms=int(args.talk_s * 1000), carrier_host="127.0.0.2",
                                      carrier_port=carrier_port, media_port=16000 + offset * 10, prefix="1380000")
        wall = time.monotonic() - t0
        await asyncio.sleep(3)
        after = {k: cpu_of_group(os.getpgid(pid)) for k, pid in parts.items()}
        after["controllers (this process)"] = self_cpu()
        tickets = await controllers[-1].store.list_tickets(limit=100000)
        answered = [t for t in tickets if t.outcome == "answered"]
        by_node: dict[str, int] = {}
        for t in tickets:
            by_node[t.linkedid.split("-", 1)[0]] = by_node.get(t.linkedid.split("-", 1)[0], 0) + 1
        print(f"calls {args.calls} at {args.rate}/s, talk {args.talk_s} s, {args.seats} seats; SIPp exit {rc}; "
              f"wall {wall:.1f} s; load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f}")
        print(f"tickets {len(tickets)} (answered {len(answered)}), unique numbers "
              f"{len({t.ticket_no for t in tickets})}; per node {by_node}")
        print("| part | CPU s during the calls | CPU ms per call |")
        print("|---|---|---|")
        for k in after:
            used = after[k] - before[k]
            print(f"| {k} | {used:.2f} | {1000 * used / max(1, args.calls):.1f} |")
        if rc != 0:
            print("SIPp errors (tail):\n" + log[-1500:])
    finally:
        for s in phones:
            s.stop()
        for c in controllers:
            await c.stop()
        lc.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--talk-s", type=float, default=6.0)
    p.add_argument("--seats", type=int, default=10)
    asyncio.run(main(p.parse_args()))
