"""Our wire adapters against panoramisk's and a bare asyncio server, on the same work (loopback, stops by itself).

Why: pyproject.toml no longer lists panoramisk as a runtime dependency; we replaced its
FastAGI server and AMI client (wire/fastagi.py, wire/ami.py) for correctness (see
../shared/LIBRARIES.md). This measures what that costs or gains in CPU and memory.
panoramisk comes from the ``upstream`` extra (``pip install -e '.[test,upstream]'``).

FastAGI: each server under test runs alone in its own process with one route whose handler
sends the same ten AGI command lines (the shape of an inbound call: GET VARIABLE, UserEvent,
STREAM FILE, SET VARIABLE, GET DATA, …) and parses each reply:

* ``ours``       wire.fastagi.FastAgiServer, ``AgiSession.command`` (every guarantee on);
* ``panoramisk`` panoramisk.fast_agi.Application, ``Request.send_command``;
* ``bare``       a bare asyncio streams server written here (`bare_handler`): environment into a
                 dict, route by script, write + drain, readline (HANGUP lines skipped), parse
                 ``200 result=N (data)``; no timeouts, no bounds, no logging — the floor;
* ``ours+uvloop`` / ``bare+uvloop``: the same code on uvloop's loop (when uvloop is installed).

This process plays Asterisk: `--sessions` calls at each concurrency (1, 10, 100 by default),
sending the environment, answering every command at once, waiting for the server to close.
The figure is the **server process's CPU** (user + system, /proc schedstat of all its threads) per
call, not wall time; the median of `--repeat` runs. Every session must see all ten commands.

AMI: this process plays the Asterisk manager (banner, Login, FullyBooted, Ping; a
``BenchEvents`` action answered by a burst of `--events` VarSet events with Chinese
values, written as fast as the client reads). The client under test runs in its own
process: login, the burst (events/s delivered to a registered handler, and how many
arrived with damaged values), `--pings` sequential Ping round trips (p50/p99), then
`--pings` more with `--inflight` outstanding (actions/s). CPU seconds and peak RSS are
the client process's own.

Run:  .venv/bin/python bench/agi_compare.py [--sessions 2000 --concurrency 1,10,100 --repeat 3]
      [--events 100000 --pings 2000 --inflight 50] [--only agi|ami] [--quick]
      [--profile ours --profile-out FILE]   # cProfile of that server at the last concurrency
      [--base-tree DIR]   # also our server from an older checkout ("base"): before/after a change
Results of a run are kept in bench/RESULTS.md. `--quick` (CI) finishes in a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procstat import cpu_ns, peak_rss_mib  # noqa: E402
from tests.fakes import FakeAmiServer, agi_env  # noqa: E402

#: the shape of an inbound call's AGI conversation (ivr/calls.py): ten commands, three of them UserEvents
COMMANDS = [
    "GET VARIABLE CHANNEL(linkedid)",
    'EXEC UserEvent "HotlinePrompt,Prompt: greeting"',
    'STREAM FILE hotline/greeting "0123456789*#"',
    'SET VARIABLE HOTLINE_GREETED "1"',
    "GET DATA hotline/main_menu 2500 1",
    'EXEC UserEvent "HotlineIVR,Path: menu:main>1"',
    'SET VARIABLE HOTLINE_QUEUE "general"',
    'SET VARIABLE HOTLINE_CATEGORY "咨询"',
    'EXEC UserEvent "HotlineRoute,Line: ,Mode: center,Dest: queue:general/咨询,Category: 咨询,Fallback: 0"',
    'SET VARIABLE HOTLINE_ROUTE "queue"',
]
REPLIES = {
    "GET VARIABLE": b"200 result=1 (1700000000.1)\n",
    "EXEC": b"200 result=0\n",
    "STREAM FILE": b"200 result=0 endpos=16000\n",
    "SET VARIABLE": b"200 result=1\n",
    "GET DATA": b"200 result=1\n",  # GET DATA returns the digits themselves: the caller keyed 1
}
VALUE = "投诉举报·张三李四·朝阳区"  # non-ASCII in every event, as caller names and IVR steps are
IMPLS = ("ours", "ours+uvloop", "panoramisk", "bare", "bare+uvloop")


def quiet() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    logging.basicConfig(level=logging.ERROR)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# ============================================================================ FastAGI
_BARE_REPLY = re.compile(rb"^(\d{3})[ -](?:result=(\S*)(?: \((.*)\))?)?")


async def bare_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The floor: the same protocol work as the others with nothing else (no timeouts, bounds, logs)."""
    env: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n") or line == b"\n":
            break
        k, _, v = line.decode("utf-8", "replace").rstrip("\r\n").partition(": ")
        env[k] = v
    if env.get("agi_network_script", "").strip("/") == "bench":
        for c in COMMANDS:
            writer.write(c.encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
            while line == b"HANGUP\n":
                line = await reader.readline()
            m = _BARE_REPLY.match(line)
            if m is None:
                break
            _code, _result, _data = int(m.group(1)), m.group(2), m.group(3)
    writer.close()


def agi_server(impl: str, port_q: "mp.Queue[int]", profile: Any, stop: Any, profile_out: str | None,
               base_tree: str | None = None) -> None:
    if impl == "base" and base_tree:  # our server as an older checkout has it (before/after a change)
        sys.path.insert(0, base_tree)
        for name in [m for m in sys.modules if m == "wire" or m.startswith(("wire.", "model."))]:
            del sys.modules[name]
    quiet()

    async def main() -> None:
        if impl.startswith("ours") or impl == "base":
            from wire.fastagi import AgiSession, FastAgiServer

            async def bench(s: AgiSession) -> None:
                for c in COMMANDS:
                    await s.command(c)

            srv = FastAgiServer("127.0.0.1", 0, backlog=1024)
            srv.route("bench", bench)
            await srv.start()
            port_q.put(srv.port)
        elif impl == "panoramisk":
            from panoramisk.fast_agi import Application

            async def bench_p(request: Any) -> None:
                for c in COMMANDS:
                    await request.send_command(c)

            app = Application(loop=asyncio.get_running_loop())
            app.add_route("bench", bench_p)
            server = await asyncio.start_server(app.handler, "127.0.0.1", 0, backlog=1024)
            port_q.put(server.sockets[0].getsockname()[1])
        else:
            server = await asyncio.start_server(bare_handler, "127.0.0.1", 0, backlog=1024)
            port_q.put(server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        if profile_out:  # the parent says when the profiled run starts and ends
            import cProfile

            prof = cProfile.Profile()
            await loop.run_in_executor(None, profile.wait)
            prof.enable()
            await loop.run_in_executor(None, stop.wait)
            prof.disable()
            prof.dump_stats(profile_out)
        else:
            await loop.run_in_executor(None, stop.wait)

    factory = None
    if impl.endswith("+uvloop"):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


async def agi_session(port: int, env_bytes: bytes) -> bool:
    """One call as Asterisk: True when the server sent all ten commands and closed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5.0)
    except (OSError, asyncio.TimeoutError):
        return False
    seen = 0
    try:
        writer.write(env_bytes)
        while True:
            line = await reader.readline()
            if not line:
                break
            seen += 1
            cmd = line.decode("utf-8", "replace")
            reply = next((r for k, r in REPLIES.items() if cmd.startswith(k)), b"510 Invalid or unknown command\n")
            writer.write(reply)
    except OSError:
        return False
    finally:
        writer.close()
    return seen == len(COMMANDS)


async def agi_load(port: int, sessions: int, concurrency: int) -> tuple[float, int]:
    env = agi_env("bench")
    payloads = [("".join(f"{k}: {v}\n" for k, v in dict(env, agi_uniqueid=f"1700000000.{i}").items()) + "\n")
                .encode() for i in range(sessions)]
    ok = 0
    todo = iter(range(sessions))

    async def worker() -> None:
        nonlocal ok
        for i in todo:
            served = await agi_session(port, payloads[i])  # (not `ok += await …`: that reads ok before the await)
            ok += served

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 300)
    return time.perf_counter() - t0, ok


class AgiServerProc:
    """One server under test, alone in its own process."""

    def __init__(self, impl: str, profile_out: str | None = None, base_tree: str | None = None) -> None:
        ctx = mp.get_context("spawn")
        self.impl = impl
        self.profile_out = profile_out
        q: mp.Queue[int] = ctx.Queue()
        self.profile, self.stop = ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=agi_server, args=(impl, q, self.profile, self.stop, profile_out, base_tree),
                                daemon=True)
        self.proc.start()
        self.port = q.get(timeout=30)
        asyncio.run(agi_load(self.port, 200, 10))  # warm-up (imports, first allocations), not counted

    def measure(self, sessions: int, concurrency: int) -> tuple[float, int, float]:
        """(server CPU µs per served call, calls served, calls/s)."""
        cpu0 = cpu_ns(self.proc.pid)
        wall, ok = asyncio.run(agi_load(self.port, sessions, concurrency))
        cpu1 = cpu_ns(self.proc.pid)
        return (cpu1 - cpu0) / max(1, ok) / 1000, ok, ok / wall

    def rss_mib(self) -> float:
        return peak_rss_mib(self.proc.pid)

    def profiled_run(self, sessions: int, concurrency: int) -> None:
        self.profile.set()
        time.sleep(0.2)
        asyncio.run(agi_load(self.port, sessions, concurrency))
        self.stop.set()
        self.proc.join(30)

    def close(self) -> None:
        self.stop.set()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


def run_agi(impls: list[str], sessions: int, levels: list[int], repeat: int,
            profile: str | None = None, profile_out: str | None = None,
            base_tree: str | None = None) -> dict[str, dict[str, Any]]:
    """Every server in its own process, all started first; the runs interleave (each repeat, each
    level: every server in turn), so a change in the shared machine's load hits them all alike.
    CPU µs per call at each concurrency: the median of `repeat` runs."""
    servers = [AgiServerProc(i, profile_out if i == profile else None, base_tree) for i in impls]
    runs: dict[str, dict[int, list[tuple[float, int, float]]]] = {i: {c: [] for c in levels} for i in impls}
    try:
        for n in range(repeat):
            for c in levels:
                for k in range(len(servers)):  # a different server goes first each time
                    srv = servers[(n + k) % len(servers)]
                    runs[srv.impl][c].append(srv.measure(sessions, c))
        out: dict[str, dict[str, Any]] = {}
        for srv in servers:
            r = runs[srv.impl]
            out[srv.impl] = {
                "us": {c: statistics.median(x[0] for x in r[c]) for c in levels},
                "spread": {c: (min(x[0] for x in r[c]), max(x[0] for x in r[c])) for c in levels},
                "ok": {c: (sum(x[1] for x in r[c]), sessions * repeat) for c in levels},
                "per_s": {c: statistics.median(x[2] for x in r[c]) for c in levels},
                "rss_mib": srv.rss_mib(),
            }
            if srv.profile_out:
                srv.profiled_run(sessions, levels[-1])
    finally:
        for srv in servers:
            srv.close()
    return out


# ============================================================================ AMI
def ami_client(impl: str, port: int, events: int, pings: int, inflight: int, out: "mp.Queue[str]") -> None:
    quiet()

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        got = {"n": 0, "damaged": 0}
        all_in = loop.create_future()

        def count(value: str) -> None:
            got["n"] += 1
            if value != VALUE:
                got["damaged"] += 1
            if got["n"] == events and not all_in.done():
                all_in.set_result(None)

        if impl == "ours":
            from wire.ami import AmiClient

            c = AmiClient("127.0.0.1", port, "hotline", "s3cret", ping_interval=600, action_timeout=30)
            c.on_event("VarSet", lambda e: count(e.get("Value", "")))
            await c.start()
            await c.wait_connected(5)

            async def action(name: str) -> Any:
                return await c.action(name)

            async def close() -> None:
                await c.close()
        else:
            from panoramisk.manager import Manager

            m = Manager(loop=loop, host="127.0.0.1", port=port, username="hotline", secret="s3cret",
                        ping_delay=600, ping_interval=600)
            m.register_event("VarSet", lambda mgr, e: count(e.get("Value", "")))
            m.connect()
            deadline = time.monotonic() + 5
            while not m.authenticated:
                if time.monotonic() > deadline:
                    raise RuntimeError("panoramisk did not log in")
                await asyncio.sleep(0.01)

            async def action(name: str) -> Any:
                return await asyncio.wait_for(m.send_action({"Action": name}), 30)

            async def close() -> None:
                m.close()

        res: dict[str, Any] = {"impl": impl}
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await action("BenchEvents")
        try:
            await asyncio.wait_for(all_in, 60)
        except asyncio.TimeoutError:
            pass
        t_ev = time.perf_counter() - t0
        await asyncio.sleep(0.2)  # anything still arriving is counted (or not) by now
        res.update(events=got["n"], damaged=got["damaged"], events_per_s=got["n"] / t_ev)
        rtt = []
        for _ in range(pings):
            t = time.perf_counter()
            await action("Ping")
            rtt.append(time.perf_counter() - t)
        res.update(rtt_p50_ms=pct(rtt, .5) * 1000, rtt_p99_ms=pct(rtt, .99) * 1000)
        sem = asyncio.Semaphore(inflight)

        async def one() -> None:
            async with sem:
                await action("Ping")

        t = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(pings))), 60)
        res["actions_per_s"] = pings / (time.perf_counter() - t)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        res["cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        res["rss_mib"] = ru1.ru_maxrss / 1024
        await close()
        return res

    try:
        out.put(json.dumps(asyncio.run(main())))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        out.put(json.dumps({"impl": impl, "error": repr(e)}))


async def ami_run(impl: str, events: int, pings: int, inflight: int) -> dict[str, Any]:
    fake = await FakeAmiServer().start()
    one = ("Event: VarSet\r\nPrivilege: dialplan,all\r\nChannel: PJSIP/trunk-00000001\r\n"
           "Variable: HOTLINE_STEP\r\nValue: " + VALUE + "\r\nUniqueid: 1700000000.1\r\n"
           "Linkedid: 1700000000.1\r\n\r\n").encode("utf-8")
    batch = one * 500

    async def burst(conn: Any, a: dict[str, str]) -> None:
        await conn.respond(a, Message="Events follow")
        left = events
        while left > 0:
            n = min(500, left)
            conn.writer.write(batch if n == 500 else one * n)
            await conn.writer.drain()
            left -= n

    fake.on("BenchEvents", burst)
    ctx = mp.get_context("spawn")
    q: mp.Queue[str] = ctx.Queue()
    proc = ctx.Process(target=ami_client, args=(impl, fake.port, events, pings, inflight, q), daemon=True)
    proc.start()
    try:
        raw = await asyncio.get_running_loop().run_in_executor(None, q.get, True, 110)
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
        await fake.stop()
    return json.loads(raw)


# ============================================================================ report
def agi_report(a: argparse.Namespace) -> None:
    levels = [int(x) for x in a.concurrency.split(",")]
    impls = [i for i in (a.impls.split(",") if a.impls else IMPLS) if not i.endswith("+uvloop") or have_uvloop()]
    if not have_uvloop():
        print("(uvloop not installed: the +uvloop rows are left out)")
    print(f"\nFastAGI: {a.sessions} sessions of {len(COMMANDS)} commands per concurrency, median of {a.repeat}; "
          "server CPU µs per call (user+system of the server process)")
    print("| server | " + " | ".join(f"c={c}" for c in levels) + " | calls/s at c=" + str(levels[-1])
          + " | sessions ok | peak RSS MiB |")
    print("|---|" + "---|" * len(levels) + "---|---|---|", flush=True)
    if a.base_tree and "base" not in impls:
        impls.insert(1, "base")
    res = run_agi(impls, a.sessions, levels, a.repeat, a.profile, a.profile_out, a.base_tree)
    for impl in impls:
        r = res[impl]
        ok = sum(o for o, _ in r["ok"].values())
        total = sum(t for _, t in r["ok"].values())
        print(f"| {impl} | " + " | ".join(f"{r['us'][c]:.0f} ({r['spread'][c][0]:.0f}–{r['spread'][c][1]:.0f})"
                                          if a.repeat > 1 else f"{r['us'][c]:.0f}" for c in levels)
              + f" | {r['per_s'][levels[-1]]:.0f} | {ok}/{total} | {r['rss_mib']:.0f} |", flush=True)
    print("\nratios (CPU per call, same concurrency):")
    pairs = [("ours", "base"), ("base", "bare"), ("ours", "panoramisk"), ("ours", "bare"), ("ours+uvloop", "ours"), ("ours+uvloop", "bare+uvloop"),
             ("bare+uvloop", "bare")]
    for x, y in pairs:
        if x in res and y in res:
            print(f"  {x} / {y}: " + ", ".join(f"c={c} {res[x]['us'][c] / res[y]['us'][c]:.2f}" for c in levels))
    if a.profile:
        print(f"\ncProfile of {a.profile} at c={levels[-1]}: {a.profile_out} "
              f"(.venv/bin/python -m pstats {a.profile_out})")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))


def ami_report(a: argparse.Namespace) -> None:
    print(f"\nAMI: burst of {a.events} events; {a.pings} sequential Pings; {a.pings} Pings {a.inflight} in flight")
    print("| client | events delivered (damaged) | events/s | Ping RTT p50 / p99 (ms) | actions/s (in flight) "
          "| client CPU s | client peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for impl in ("ours", "panoramisk"):
        r = asyncio.run(ami_run(impl, a.events, a.pings, a.inflight))
        name = "wire.ami.AmiClient" if impl == "ours" else "panoramisk.manager.Manager"
        if "error" in r:
            print(f"| {name} | failed: {r['error']} |||||")
            continue
        print(f"| {name} | {r['events']} ({r['damaged']}) | {r['events_per_s']:.0f} | {r['rtt_p50_ms']:.2f} / "
              f"{r['rtt_p99_ms']:.2f} | {r['actions_per_s']:.0f} | {r['cpu_s']:.2f} | {r['rss_mib']:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000, help="FastAGI calls per concurrency level and run")
    ap.add_argument("--concurrency", default="1,10,100", help="FastAGI concurrency levels, comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="FastAGI runs per level (the median is reported)")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--inflight", type=int, default=50)
    ap.add_argument("--impls", help=f"FastAGI servers to run, comma-separated (default: {','.join(IMPLS)})")
    ap.add_argument("--only", choices=("agi", "ami"), help="run one half only")
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke run, a few seconds)")
    ap.add_argument("--profile", choices=IMPLS, help="cProfile this FastAGI server during one extra run")
    ap.add_argument("--profile-out", default="agi_server.prof")
    ap.add_argument("--base-tree", help="also run our server from this older checkout as `base` "
                    "(e.g. `git worktree add DIR <commit>`): what a change bought")
    ap.add_argument("--json", help="also write the FastAGI figures to this file")
    a = ap.parse_args()
    if a.quick:
        a.sessions, a.repeat, a.events, a.pings, a.inflight = 100, 1, 5000, 100, 10
    try:
        import panoramisk  # noqa: F401
    except ImportError:
        sys.exit("panoramisk is not installed: .venv/bin/pip install -e '.[test,upstream]'")
    from importlib.metadata import version

    t_start = time.perf_counter()
    print(f"python {sys.version.split()[0]}, panoramisk {version('panoramisk')}"
          + (f", uvloop {version('uvloop')}" if have_uvloop() else "")
          + f", {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, loopback")
    if a.only in (None, "agi"):
        agi_report(a)
    if a.only in (None, "ami"):
        ami_report(a)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s, load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
