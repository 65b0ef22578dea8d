"""Real calls through the project's Asterisk: controller CPU per call, AMI events per call, and — past
saturation — whether every call still ends with exactly one complete, correct ticket (issue 15).

Needs root (Asterisk runs in its sandbox, as in the end-to-end tests) and its own instance:
HOTLINE_INSTANCE / HOTLINE_PORT_OFFSET (default: instance `bench`, offset 700).

What it does: renders and starts the instance's Asterisk with the simulated world (as tests/e2e do),
runs the real controller as its own process (tests/e2e/fault_controller.py: `hotline run`'s code,
SQLite store, CDR replay every second), puts `--agents` scripted agents (Local/…@agent-robot, talking
`--talk` s) in the general queue and places `--calls` Local-channel callers, `--concurrency` at a time
(each holds `--hold` s, keys nothing: greeting, menu timeout, general queue, an agent or not, then
the survey). A second login with the controller's own AMI account counts what that account is sent.

Figures printed:
* controller CPU per call: the controller process's CPU time (/proc) over the calls, less its idle
  rate measured beforehand, divided by the calls (`--profile`: a cProfile of the controller's loop thread
  during the calls too, `--profile-out F` keeps it);
* AMI events per call that the controller's account received, by name; and the events the account
  would get without its include filters (from the sim account's stream, by class);
* AMI link drops (`ami_disconnected` in the controller's log);
* wrong tickets: for every call, Asterisk's own CDR says how it ended (record_from_cdr); a call is
  wrong when it has no ticket, more than one, a ticket still `in_progress`, a ticket whose outcome or
  caller differs from the CDR's, or whose correction from the CDR is still due at the end.

Run (as root):
  HOTLINE_INSTANCE=bench HOTLINE_PORT_OFFSET=700 .venv/bin/python bench/ami_saturation.py --calls 40 --concurrency 10
  … --calls 600 --concurrency 400 --agents 60          # 2x what the box serves: saturation
  … --quick                                            # 12 calls, 6 at a time (CI)
  … --pg                                               # the store on PostgreSQL instead of SQLite
  … --api                                              # a token first: the live API listens, as in production
Exit code 1 when any ticket is wrong. Results in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HOTLINE_INSTANCE", "bench")
os.environ.setdefault("HOTLINE_PORT_OFFSET", "700")

from bench.procstat import Usage, cpu_s  # noqa: E402
from model.contract import AMI_EXCLUDED_EVENTS, AmiRights  # noqa: E402
from model.secrets import ami_secret  # noqa: E402
from tests.e2e.conftest import INSTANCE, OFFSET, e2e_config  # noqa: E402
from tests.e2e.faults import ControllerProcess  # noqa: E402
from ticketbridge.assembler import record_from_cdr  # noqa: E402
from ticketbridge.cdr import CDR_SETTLE_S  # noqa: E402
from wire.ami import AmiClient  # noqa: E402

CONTROLLER_CLASSES = set(AmiRights.CONTROLLER["read"].split(","))


def start_asterisk(cfg: Any) -> Any:
    from hotline.install import install_everything
    from hotline.sandbox import Sandbox

    if os.geteuid() != 0:
        sys.exit("run as root: Asterisk runs in its sandbox")
    sb = Sandbox.discover(ami_host=cfg.asterisk.ami.host, ami_port=cfg.asterisk.ami.port, instance=INSTANCE)
    if sb.running():
        sb.stop()
    rtp = 10000 + OFFSET * 10
    install_everything(cfg, sb, with_sim=True, demo_secrets=True, rtp_range=(rtp, rtp + 999),
                       prompts_dir=Path(os.environ.get("HOTLINE_STATE", "/var/lib/hotline12345")) / "prompts")
    if sb.cdr_csv.exists():
        sb.cdr_csv.unlink()
    sb.start(sip_port=cfg.asterisk.sip_port)
    return sb


async def login(cfg: Any, account: str) -> AmiClient:
    a = cfg.asterisk.ami
    c = AmiClient(a.host, a.port, a.account_username(account), ami_secret(cfg, account), action_timeout=30)
    await c.start()
    await c.wait_connected(10)
    return c


async def ami_share(cfg: Any, events: list[dict[str, str]]) -> float:
    """CPU seconds this process spends taking `events` off the wire (framing, parsing, dispatch) and
    through the controller's pure AMI consumers: the call assembler, the live model, the transfer
    correlator. The AMI part of the controller's work on these calls, without the network or the store."""
    from live.reducer import LiveModel
    from routing.transfer_correlation import Correlator
    from tests.fakes import FakeAmiServer
    from ticketbridge.assembler import Assembler

    wire = b"".join(("".join(f"{k}: {v}\r\n" for k, v in e.items()) + "\r\n").encode("utf-8") for e in events)
    fake = await FakeAmiServer().start()

    async def replay(conn: Any, a: dict[str, str]) -> None:
        await conn.respond(a)
        conn.writer.write(wire)
        await conn.writer.drain()

    fake.on("Replay", replay)
    client = AmiClient("127.0.0.1", fake.port, "hotline", "s3cret", ping_interval=600)
    from model.contract import Context

    asm, live = Assembler(cfg.center.timezone), LiveModel(cfg.center.timezone)
    corr = Correlator(cfg, context=Context.TRANSFER, agent_context=Context.AGENT_TRANSFER)
    done = asyncio.get_running_loop().create_future()
    count = [0]

    def consume(e: dict[str, str]) -> None:
        now = time.time()
        asm.feed(e, now)
        live.feed(e, now)
        corr.route(e, now)
        count[0] += 1
        if count[0] == len(events) and not done.done():
            done.set_result(None)

    client.on_event("*", consume)
    await client.start()
    await client.wait_connected(5)
    t0 = time.process_time()
    await client.action("Replay")
    if events:
        await asyncio.wait_for(done, 60)
    spent = time.process_time() - t0
    await client.close()
    await fake.stop()
    return spent


async def api_token(url: str, cfg: Any) -> None:
    """A supervisor's API token in the store (migrated here first), so the controller's live API starts."""
    from live.tokens import new_token, token_hash
    from ticketbridge.store import TicketStore

    store = TicketStore(url, cfg)
    await store.open()
    try:
        await store.create_token(name="bench", role="supervisor", seat=None, token_hash=token_hash(new_token()))
    finally:
        await store.close()


def module_of(path: str) -> str:
    """A profile entry's file → what to sum it under: our module, a library, the standard library."""
    if "site-packages/" in path:
        return "lib " + path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith(str(ROOT)):
        return path[len(str(ROOT)) + 1:]
    if path.startswith("~") or path.startswith("<"):
        return "builtins (C)"
    return "stdlib " + "/".join(path.split("/")[-2:])


def cdr_rows(path: Path, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("linkedid") in ids:
            out[row["linkedid"]].append(row)
    return out


async def run(a: argparse.Namespace) -> int:
    cfg = e2e_config()
    t_setup = time.monotonic()
    sb = start_asterisk(cfg)
    work = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    url = f"sqlite+aiosqlite:///{work}/tickets.db"
    pg_db = ""
    if a.pg:  # a throwaway database on the local PostgreSQL (127.0.0.1:5432, trust), dropped at the end
        from sqlalchemy import text
        from sqlalchemy.engine import make_url
        from sqlalchemy.ext.asyncio import create_async_engine

        from tests.conftest import PG_URL

        pg_db = f"hl_bench_{uuid.uuid4().hex[:10]}"
        admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
        async with admin.connect() as c:
            await c.execute(text(f'CREATE DATABASE "{pg_db}"'))
        await admin.dispose()
        url = make_url(PG_URL).set(database=pg_db).render_as_string(hide_password=False)
    prof = work / "controller.prof" if a.profile else None
    extra = ["--cdr-settle", str(a.cdr_settle)] + (["--profile-on-signal"] if prof else [])
    if a.api:  # as production: a token exists, so the live API listens and its pages follow the live deltas
        await api_token(url, cfg)
        extra += ["--api-port", str(cfg.api.port)]
    ctl = ControllerProcess(url, work / "controller.log", profile=prof, extra=extra)
    sim = view = None
    try:
        await ctl.start(60)
        assert ctl.proc is not None
        pid = ctl.proc.pid
        if a.api:
            await ctl.wait_log("live_api_listening", 30)
        sim = await login(cfg, "sim")
        view = await login(cfg, "controller")
        seen: collections.Counter[str] = collections.Counter()
        would: collections.Counter[str] = collections.Counter()
        ended: dict[str, asyncio.Future[None]] = {}

        captured: list[dict[str, str]] = []

        def on_view(e: dict[str, str]) -> None:
            seen[e.get("Event", "")] += 1
            captured.append(e)

        def on_sim(e: dict[str, str]) -> None:
            name = e.get("Event", "")
            classes = set(e.get("Privilege", "").split(",")) - {"all"}
            if classes & CONTROLLER_CLASSES and name not in AMI_EXCLUDED_EVENTS:
                would[name] += 1
            if name == "Hangup":
                f = ended.get(e.get("Uniqueid", ""))
                if f is not None and not f.done():
                    f.set_result(None)

        view.on_event("*", on_view)
        sim.on_event("*", on_sim)
        members = []
        for k in range(a.agents):
            iface = f"Local/{'0' * k}{a.talk}@agent-robot/n"
            await sim.action("QueueAdd", Queue="hotline-general", Interface=iface, MemberName=f"bench{k}")
            members.append(iface)
        await asyncio.sleep(2)
        seen.clear()
        would.clear()
        captured.clear()
        cpu0, t0 = cpu_s(pid), time.monotonic()
        await asyncio.sleep(a.idle_s)
        idle_rate = (cpu_s(pid) - cpu0) / (time.monotonic() - t0)
        drops0 = len(ctl.events("ami_disconnected"))
        calls: dict[str, str] = {}  # linkedid -> caller number
        sem = asyncio.Semaphore(a.concurrency)
        run_id = uuid.uuid4().int % 10**5

        async def one(i: int) -> None:
            async with sem:
                lid = f"bench-{uuid.uuid4().hex[:16]}"
                caller = f"139{run_id:05d}{i:03d}"[-11:]
                calls[lid] = caller
                ended[lid] = asyncio.get_running_loop().create_future()
                try:
                    await sim.action("Originate", Channel=f"Local/{cfg.center.number}@hotline-inbound",
                                     Context="caller-robot", Exten="s", Priority="1",
                                     CallerID=f'"bench" <{caller}>', Variable=f"ROBOT_PRE=0,ROBOT_HOLD={a.hold}",
                                     ChannelId=lid, Async="true", Timeout="10000")
                except Exception as e:  # noqa: BLE001 - counted: Asterisk refused the call
                    print(f"originate {i} failed: {e}", file=sys.stderr)
                    calls.pop(lid, None)
                    return
                try:
                    await asyncio.wait_for(ended[lid], a.hold + 30)
                except asyncio.TimeoutError:
                    pass

        if prof is not None:
            os.kill(pid, signal.SIGUSR1)  # the profile covers the calls only
        used_start, t_start = Usage.of(pid), time.monotonic()
        tasks = []
        for i in range(a.calls):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(1 / a.rate)
        await asyncio.gather(*tasks)
        t_calls = time.monotonic() - t_start
        # tickets: complete and, where the live events had a gap, corrected from the CDR
        from ticketbridge.store import TicketStore

        store = TicketStore(url, cfg)
        await store.open()
        try:
            deadline = time.monotonic() + a.settle_s
            while True:
                tickets = {lid: await store.get_by_linkedid(lid) for lid in calls}
                pending = [lid for lid, t in tickets.items()
                           if t is None or t.outcome == "in_progress" or t.cdr_check == "due"]
                if not pending or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            used, t_end = Usage.of(pid) - used_start, time.monotonic()
            if prof is not None:
                os.kill(pid, signal.SIGUSR2)
            rows = cdr_rows(sb.cdr_csv, set(calls))
            wrong: list[str] = []
            outcomes: collections.Counter[str] = collections.Counter()
            for lid, caller in calls.items():
                t = tickets[lid]
                truth = record_from_cdr(rows[lid]) if rows.get(lid) else None
                mine = await store.list_tickets(caller=caller)
                if truth is not None:
                    outcomes[truth.outcome] += 1
                if t is None:
                    wrong.append(f"{lid}: no ticket (CDR: {truth.outcome if truth else 'no row'})")
                elif len(mine) != 1:
                    wrong.append(f"{lid}: {len(mine)} tickets for caller {caller}")
                elif t.outcome == "in_progress" or t.cdr_check == "due":
                    wrong.append(f"{lid}: ticket {t.ticket_no} {t.outcome}, cdr_check {t.cdr_check}")
                elif truth is None:
                    wrong.append(f"{lid}: no CDR row to check ticket {t.ticket_no} against")
                elif t.outcome != truth.outcome or t.caller != caller:
                    wrong.append(f"{lid}: ticket {t.ticket_no} {t.outcome}/{t.caller}, CDR {truth.outcome}/{caller}")
        finally:
            await store.close()
        drops = len(ctl.events("ami_disconnected")) - drops0
        busy = used.cpu - idle_rate * (t_end - t_start)
        n = len(calls)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"instance {INSTANCE} (offset {OFFSET}), live API {'on' if a.api else 'off (no token)'}, "
              f"{os.cpu_count()} CPUs, load average now {load}; "
              f"setup {t_start - t_setup:.0f} s")
        print(f"calls placed {n}/{a.calls}, {a.concurrency} at a time, {a.agents} agents talking {a.talk} s, "
              f"callers hold {a.hold} s; calls took {t_calls:.0f} s; CDR outcomes {dict(outcomes)}")
        print(f"controller CPU: {used.cpu:.2f} s over {t_end - t_start:.0f} s (idle rate "
              f"{idle_rate * 1000:.1f} ms/s); per call {busy / max(1, n) * 1000:.1f} ms (idle removed), "
              f"{used.cpu / max(1, n) * 1000:.1f} ms raw")
        print(f"  of it (raw, per call): {used.per_call(n)}")
        got = sum(seen.values())
        print(f"AMI events to the controller's account: {got / max(1, n):.1f} per call "
              f"(without its include filters: {sum(would.values()) / max(1, n):.1f} per call)")
        print("  sent:    " + ", ".join(f"{k} {v / max(1, n):.1f}" for k, v in seen.most_common()))
        print("  without: " + ", ".join(f"{k} {v / max(1, n):.1f}" for k, v in would.most_common(12)))
        share = await ami_share(cfg, captured)
        print(f"AMI share of the controller's CPU, replayed offline (the same {len(captured)} events through "
              f"wire.ami.AmiClient into the assembler, the live model and the transfer correlator): "
              f"{share / max(1, n) * 1000:.2f} ms per call")
        print(f"AMI link drops of the controller: {drops}")
        for w in wrong[:20]:
            print("  wrong: " + w)
        print(f"wrong tickets: {len(wrong)} of {n}")
        for iface in members:
            await sim.action("QueueRemove", Queue="hotline-general", Interface=iface, raise_on_error=False)
        return 1 if wrong else 0
    finally:
        for c in (view, sim):
            if c is not None:
                await c.close()
        await ctl.stop(60)
        if prof is not None and prof.exists():
            import pstats

            print(f"\ncProfile of the controller's loop thread, CPU time ({prof}); own time by module "
                  f"(the calls only; the profiler inflates pure-Python code most):")
            stats = pstats.Stats(str(prof))
            if a.profile_out:
                shutil.copy(prof, a.profile_out)
            by: collections.Counter[str] = collections.Counter()
            for (path, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
                by[module_of(path)] += tottime
            total = sum(by.values())
            for name, t in by.most_common(25):
                print(f"  {t:7.2f} s {t / total * 100:5.1f} %  {name}")
            stats.sort_stats("tottime").print_stats(25)
        sb.stop()
        if pg_db:
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import create_async_engine

            from tests.conftest import PG_URL

            admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
            async with admin.connect() as c:
                await c.execute(text(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)'))
            await admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--rate", type=float, default=20.0, help="new calls per second at most")
    ap.add_argument("--agents", type=int, default=10)
    ap.add_argument("--talk", type=int, default=3, help="seconds an agent talks")
    ap.add_argument("--hold", type=int, default=40, help="seconds a caller stays on before hanging up")
    ap.add_argument("--idle-s", type=float, default=5.0, help="idle CPU sampled this long first")
    ap.add_argument("--settle-s", type=float, default=90.0, help="how long tickets may take to be final")
    ap.add_argument("--cdr-settle", type=float, default=CDR_SETTLE_S,
                    help=f"the controller's CDR replay settle time (default {CDR_SETTLE_S:g} s, production's: a "
                         "replay every 10 s; 0 replays every second, as the e2e tests do)")
    ap.add_argument("--profile", action="store_true", help="cProfile the controller's loop thread during the calls")
    ap.add_argument("--profile-out", default=None, help="with --profile: keep the profile (pstats) in this file")
    ap.add_argument("--pg", action="store_true", help="the store on the local PostgreSQL (a throwaway database) "
                    "instead of SQLite")
    ap.add_argument("--api", action="store_true", help="a token in the store first, so the controller's live API "
                    "listens and publishes deltas to its pages, as in production (default: no token, API off)")
    ap.add_argument("--quick", action="store_true", help="12 calls, 6 at a time (CI)")
    a = ap.parse_args()
    if a.quick:
        a.calls, a.concurrency, a.agents = 12, 6, 6
    sys.exit(asyncio.run(run(a)))


if __name__ == "__main__":
    main()
