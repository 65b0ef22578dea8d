"""`hotline cluster render | up`: Kamailio's files from the config, and the whole cluster on one machine.

`render` writes what a real Kamailio server runs (kamailio.cfg, dispatcher.list); each Asterisk node renders
its own files with `HOTLINE_NODE=<name> hotline apply` (or `asterisk start`). `up` starts two Asterisk nodes,
a controller each, Kamailio and a PostgreSQL database on this machine (docs/cluster.md), and with `--demo`
registers two seat phones with Kamailio and places two carrier calls through it (one lands on each node).
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path

import click

from hotline.cli_base import EXIT_BAD, EXIT_ENV, config_option, explained, fail, load, setup_logging
from model.config import Carrier, Config
from model.secrets import SecretMissing, seat_secret, state_dir
from routing.kamailio import KamailioPaths, render_kamailio


def register(main: click.Group) -> None:
    main.add_command(cluster)


@click.group("cluster")
def cluster() -> None:
    """Several Asterisk nodes behind Kamailio (the config's `cluster:` section)."""


@cluster.command("render")
@config_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="folder to write kamailio.cfg and dispatcher.list into")
@click.option("--dispatcher-list", default=KamailioPaths.dispatcher_list, show_default=True,
              help="where kamailio.cfg will find dispatcher.list on the Kamailio server")
@explained
def render_cmd(config_path: str | None, out: Path, dispatcher_list: str) -> None:
    """Write Kamailio's configuration for the config's cluster (seats' HA1 hashes: keep the folder private)."""
    cfg = load(config_path)
    if cfg.cluster is None:
        fail("the config has no cluster: section (one Asterisk needs no Kamailio)", EXIT_BAD)
    secrets: dict[str, str] = {}
    missing = []
    for ext, seat in cfg.seats.items():
        try:
            secrets[ext] = seat_secret(ext, seat)
        except SecretMissing:
            missing.append(ext)
    if missing:
        fail(f"seats without a secret in this environment (Kamailio checks their registrations): "
             f"{', '.join(missing)}", EXIT_BAD)
    files = render_kamailio(cfg, secrets, paths=KamailioPaths(dispatcher_list=dispatcher_list))
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    for name, text in files.items():
        fd = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    click.echo(f"wrote {', '.join(files)} to {out}; check with `kamailio -c -f {out / 'kamailio.cfg'}`")


@cluster.command("up")
@config_option
@click.option("--offset", type=int, default=int(os.environ.get("HOTLINE_PORT_OFFSET", "0")), show_default=True,
              help="port offset: node a's ports are the config's + offset + 20, node b's + 70, Kamailio 5060 + "
                   "offset + 45")
@click.option("--store", "store_url", default=None,
              help="the shared ticket store (default: PostgreSQL database hotline_cluster on 127.0.0.1)")
@click.option("--demo", is_flag=True, help="register seats 1001 and 1002 with Kamailio and place 2 carrier calls")
@click.option("--once", is_flag=True, help="with --demo: stop after the demo calls instead of serving")
@explained
def up_cmd(config_path: str | None, offset: int, store_url: str | None, demo: bool, once: bool) -> None:
    """Two Asterisk nodes, a controller each, Kamailio in front, one PostgreSQL: all on this machine, until
    Ctrl-C (as root). Everything it started is stopped on the way out."""
    setup_logging(json_logs=False)
    cfg = load(config_path)
    if os.geteuid() != 0:
        fail("the cluster's nodes run Asterisk in a chroot: run as root", EXIT_ENV)
    rc = asyncio.run(_up(cfg, offset, store_url, demo=demo, once=once))
    raise SystemExit(rc)


async def _ensure_database(url: str) -> None:
    """Create the PostgreSQL database of `url` when it does not exist yet."""
    from sqlalchemy import make_url, text
    from sqlalchemy.ext.asyncio import create_async_engine

    u = make_url(url)
    if u.get_backend_name() != "postgresql" or not u.database:
        return
    admin = create_async_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT",
                                connect_args={"timeout": 5})
    try:
        async with admin.connect() as c:
            found = await c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database})
            if found.scalar() is None:
                await c.execute(text(f'CREATE DATABASE "{u.database}"'))
    finally:
        await admin.dispose()


async def _up(base: Config, offset: int, store_url: str | None, *, demo: bool, once: bool) -> int:
    from hotline.cluster import ClusterError, LocalCluster
    from hotline.controller import Controller
    from hotline.sandbox import SandboxError

    say = lambda line: click.echo(line, err=True)  # noqa: E731
    store_url = store_url or os.environ.get("HOTLINE_STORE",
                                            "postgresql+asyncpg://postgres@127.0.0.1:5432/hotline_cluster")
    try:
        await _ensure_database(store_url)
    except Exception as e:  # noqa: BLE001 - unreachable store: say so and stop
        say(f"the ticket store {store_url} is unreachable: {type(e).__name__}: {e}")
        return EXIT_ENV
    if demo:  # the demo's carrier is SIPp on 127.0.0.2, recognised by Kamailio by that address
        base = base.model_copy(deep=True)
        base.carriers["democarrier"] = Carrier(host="127.0.0.2", port=5090 + offset + 45)
    work = Path(tempfile.mkdtemp(prefix="hotline-cluster-"))
    lc = LocalCluster.create(base, instance="cluster", offset=offset + 20, prompts_dir=state_dir() / "prompts",
                             workdir=work)
    controllers: list[Controller] = []
    try:
        try:
            lc.start(say=say)
            lc.wait_nodes_active()
        except (ClusterError, SandboxError, SecretMissing) as e:
            say(f"the cluster did not start: {e}")
            return EXIT_ENV
        for name, node in lc.nodes.items():
            c = Controller.for_sandbox(node.cfg, node.sandbox, store_url=store_url)
            await c.start()
            await c.ami.wait_connected(10)
            await c.agents.drain()
            controllers.append(c)
            say(f"controller of node {name}: FastAGI {node.cfg.asterisk.fastagi.port}, "
                f"AMI {node.cfg.asterisk.ami.port}")
        kam = lc.kamailio
        assert kam is not None
        say(f"up: Kamailio {kam.host}:{kam.port} → nodes {lc.kamailio.node_states()}; store {store_url}")
        if demo:
            await _demo(lc, controllers, work, say)
            if once:
                return 0
        say("serving; Ctrl-C stops everything")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        for c in controllers:
            await c.stop()
        lc.stop()


async def _demo(lc, controllers, work: Path, say) -> None:  # noqa: ANN001
    from hotline.sipcarrier import carrier_calls
    from hotline.sipseat import BaresipSeat

    kam = lc.kamailio
    phones = []
    try:
        for ext in ("1001", "1002"):
            s = BaresipSeat(ext, seat_secret(ext, lc.cfg.seats[ext]), sip_port=kam.port)
            s.start()
            phones.append(s)
        for s in phones:
            s.wait_registered(10)
        say(f"seats registered with Kamailio: {sorted(kam.registered())}")
        carrier = lc.cfg.carriers["democarrier"]
        say("placing 2 carrier calls through Kamailio (the menu, then a seat; each hangs up 25 s after its "
            "last re-INVITE)…")
        rc, log = await carrier_calls(work, kam.port, calls=2, rate_per_s=1, talk_ms=25000, carrier_host=carrier.host,
                                      carrier_port=carrier.port, media_port=16000 + lc.offset * 10,
                                      prefix="1390000")
        if rc != 0:
            say(f"SIPp reported a failure (exit {rc}):\n{log[-1500:]}")
        await asyncio.sleep(2)
        for t in await controllers[-1].store.list_tickets(limit=10):
            say(f"  ticket {t.ticket_no}  node {t.linkedid.split('-', 1)[0]}  linkedid {t.linkedid}  "
                f"{t.outcome}  agent {t.agent or '-'}")
    finally:
        for s in phones:
            s.stop()
