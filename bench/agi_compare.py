"""Our wire adapters against panoramisk's, on the same work (loopback only, stops by itself).

Why: pyproject.toml no longer lists panoramisk as a runtime dependency; we replaced its
FastAGI server and AMI client (wire/fastagi.py, wire/ami.py) for correctness (see
../shared/LIBRARIES.md). This measures what that costs or gains in speed and memory.
panoramisk comes from the ``upstream`` extra (``pip install -e '.[test,upstream]'``).

FastAGI: the server under test runs in its own process with one route whose handler
sends the same six AGI command lines (ANSWER, GET VARIABLE, STREAM FILE, GET DATA, SET
VARIABLE, VERBOSE) through the library's own send-and-parse call — ours
``AgiSession.command``, panoramisk's ``Request.send_command`` — and returns. This
process plays Asterisk: `--agi-concurrency` calls at a time, `--agi-sessions` in all,
each sending the AGI environment, answering every command at once, waiting for the
server to close. Figures: sessions/s, session time (connect → server closed) p50/p99,
the server process's CPU seconds and peak RSS. Every session must see all six commands.

AMI: this process plays the Asterisk manager (banner, Login, FullyBooted, Ping; a
``BenchEvents`` action answered by a burst of `--events` VarSet events with Chinese
values, written as fast as the client reads). The client under test runs in its own
process: login, the burst (events/s delivered to a registered handler, and how many
arrived with damaged values), `--pings` sequential Ping round trips (p50/p99), then
`--pings` more with `--inflight` outstanding (actions/s). CPU seconds and peak RSS are
the client process's own.

Run:  .venv/bin/python bench/agi_compare.py
      [--agi-sessions 3000 --agi-concurrency 50 --events 100000 --pings 2000 --inflight 50]
Results of a run are kept in bench/RESULTS.md. Takes well under two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes import FakeAmiServer, agi_env  # noqa: E402

COMMANDS = [
    "ANSWER",
    "GET VARIABLE CALLERID(num)",
    'STREAM FILE hotline/greeting "0123456789"',
    "GET DATA hotline/menu 3000 1",
    'SET VARIABLE HOTLINE_ROUTE "queue"',
    'VERBOSE "ivr done" 1',
]
REPLIES = {
    "ANSWER": "200 result=0",
    "GET VARIABLE": "200 result=1 (13800138000)",
    "STREAM FILE": "200 result=0 endpos=16000",
    "GET DATA": "200 result=1",
    "SET VARIABLE": "200 result=1",
    "VERBOSE": "200 result=1",
}
VALUE = "投诉举报·张三李四·朝阳区"  # non-ASCII in every event, as caller names and IVR steps are


def quiet() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    logging.basicConfig(level=logging.ERROR)


def proc_stats(pid: int) -> tuple[float, int]:
    """(user+system CPU seconds, peak RSS KiB) of a live process."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    return cpu, hwm


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


# ============================================================================ FastAGI
def agi_server(impl: str, port_q: "mp.Queue[int]") -> None:
    quiet()

    async def main() -> None:
        if impl == "ours":
            from wire.fastagi import AgiSession, FastAgiServer

            async def bench(s: AgiSession) -> None:
                for c in COMMANDS:
                    await s.command(c)

            srv = FastAgiServer("127.0.0.1", 0, backlog=1024)
            srv.route("bench", bench)
            await srv.start()
            port_q.put(srv.port)
        else:
            from panoramisk.fast_agi import Application

            async def bench_p(request: Any) -> None:
                for c in COMMANDS:
                    await request.send_command(c)

            app = Application(loop=asyncio.get_running_loop())
            app.add_route("bench", bench_p)
            server = await asyncio.start_server(app.handler, "127.0.0.1", 0, backlog=1024)
            port_q.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def agi_session(port: int, i: int, env_bytes: bytes) -> float | None:
    """One call as Asterisk: the session time, or None when the server did not serve all six commands."""
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
    except (OSError, asyncio.TimeoutError):
        return None
    seen = 0
    try:
        writer.write(env_bytes)
        while True:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            if not line:
                break
            cmd = line.decode("utf-8", "replace").strip()
            seen += 1
            reply = next((r for k, r in REPLIES.items() if cmd.startswith(k)), "510 Invalid or unknown command")
            writer.write(reply.encode() + b"\n")
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        writer.close()
    return time.perf_counter() - t0 if seen == len(COMMANDS) else None


async def agi_load(port: int, sessions: int, concurrency: int) -> tuple[float, list[float | None]]:
    env = agi_env("bench")
    payloads = [("".join(f"{k}: {v}\n" for k, v in dict(env, agi_uniqueid=f"1700000000.{i}").items()) + "\n")
                .encode() for i in range(sessions)]
    results: list[float | None] = []
    todo = iter(range(sessions))

    async def worker() -> None:
        for i in todo:
            results.append(await agi_session(port, i, payloads[i]))

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 90)
    return time.perf_counter() - t0, results


def run_agi(impl: str, sessions: int, concurrency: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q: mp.Queue[int] = ctx.Queue()
    proc = ctx.Process(target=agi_server, args=(impl, q), daemon=True)
    proc.start()
    try:
        port = q.get(timeout=20)
        asyncio.run(agi_load(port, 50, 10))  # warm-up (imports, first allocations), not counted
        cpu0, _ = proc_stats(proc.pid)
        wall, res = asyncio.run(agi_load(port, sessions, concurrency))
        cpu1, hwm = proc_stats(proc.pid)
    finally:
        proc.terminate()
        proc.join(5)
    ok = [r for r in res if r is not None]
    return {"impl": impl, "sessions": sessions, "ok": len(ok), "per_s": len(ok) / wall,
            "p50_ms": pct(ok, .5) * 1000, "p99_ms": pct(ok, .99) * 1000, "cpu_s": cpu1 - cpu0, "rss_mib": hwm / 1024}


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
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agi-sessions", type=int, default=3000)
    ap.add_argument("--agi-concurrency", type=int, default=50)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--inflight", type=int, default=50)
    a = ap.parse_args()
    try:
        import panoramisk  # noqa: F401
    except ImportError:
        sys.exit("panoramisk is not installed: .venv/bin/pip install -e '.[test,upstream]'")
    from importlib.metadata import version

    t_start = time.perf_counter()
    print(f"python {sys.version.split()[0]}, panoramisk {version('panoramisk')}, {os.cpu_count()} CPUs, loopback")
    print(f"\nFastAGI: {a.agi_sessions} sessions of {len(COMMANDS)} commands, {a.agi_concurrency} at a time")
    print("| server | sessions ok | sessions/s | session p50 / p99 (ms) | server CPU s | server peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for impl in ("ours", "panoramisk"):
        r = run_agi(impl, a.agi_sessions, a.agi_concurrency)
        name = "wire.fastagi.FastAgiServer" if impl == "ours" else "panoramisk.fast_agi.Application"
        print(f"| {name} | {r['ok']}/{r['sessions']} | {r['per_s']:.0f} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} "
              f"| {r['cpu_s']:.2f} | {r['rss_mib']:.0f} |", flush=True)

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
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
