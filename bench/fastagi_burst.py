"""FastAGI under bursts: how long Asterisk would wait for our controller.

Asterisk gives up connecting to FastAGI after ~2 s; a 20-slot backlog failed
hundreds of AGI steps a day at ~64 connections/s in the field. This starts the
real FastAGI server with the real `inbound` script and the shipped config in a
child process, then plays Asterisk's side for many concurrent calls (answering
every AGI command at once, keying 1 at the first menu) and reports:

- connect latency: TCP connect until the server's first AGI command arrives
  (what Asterisk experiences as "FastAGI answered");
- session time: first command until the script ends (our per-call work, no audio);
- failures: connections refused or not served within 2 s;
- the controller process's CPU per call (user + system of its every thread, /proc schedstat,
  not wall time) and what that makes per core: the calls/s one core of IVR work can carry.
  This process (playing Asterisk) runs on the same machine and is not counted; at high
  offered rates it competes with the controller for the cores, so "served" and the latency
  figures are the whole machine's, while the CPU figure is the controller's own.

The fake Asterisk answers as res_agi does: GET DATA returns the digits themselves
(``200 result=1`` when the caller keys 1); only STREAM FILE / WAIT FOR DIGIT / GET OPTION
return a key as its ASCII code (``200 result=49``).

Run:  .venv/bin/python bench/fastagi_burst.py [--calls 2000] [--rate 200] [--uvloop] [--quick]
      [--profile FILE]   # cProfile of the controller process during the burst
Results of a run are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procstat import cpu_ns, peak_rss_mib  # noqa: E402
from tests.fakes import agi_env  # noqa: E402


def serve(port: int, ready: "mp.Queue[int]", stop: "mp.Event", use_uvloop: bool,  # type: ignore[name-defined]
          profile: str | None) -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from model.loading import load_config
    from ivr.calls import CallScripts
    from wire.fastagi import FastAgiServer
    from model.hours import system_clock

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "hotline.yaml")

    async def main() -> None:
        scripts = CallScripts(cfg, system_clock())
        srv = FastAgiServer("127.0.0.1", port, backlog=cfg.asterisk.fastagi.backlog)
        srv.route("inbound", scripts.inbound)
        await srv.start()
        ready.put(srv.port)
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        await srv.stop(1.0)

    factory = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


async def one_call(port: int, i: int) -> tuple[float, float] | None:
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
        env = agi_env(uniqueid=f"1700000000.{i}", callerid=f"1380000{i:04d}")
        writer.write(("".join(f"{k}: {v}\n" for k, v in env.items()) + "\n").encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 2.0)
    except (OSError, asyncio.TimeoutError):
        return None
    t1 = time.perf_counter()
    keyed = False
    while line:
        if line.startswith(b"GET DATA") and not keyed:
            # GET DATA returns the digits themselves (not an ASCII code, as STREAM FILE does): keys "1"
            reply, keyed = b"200 result=1\n", True
        else:
            reply = b"200 result=0\n"
        writer.write(reply)
        await writer.drain()
        line = await reader.readline()
    t2 = time.perf_counter()
    writer.close()
    return t1 - t0, t2 - t1


async def burst(port: int, calls: int, rate: float) -> list[tuple[float, float] | None]:
    tasks = []
    for i in range(calls):
        tasks.append(asyncio.create_task(one_call(port, i)))
        await asyncio.sleep(1.0 / rate)
    return await asyncio.gather(*tasks)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200.0, help="new calls per second")
    ap.add_argument("--port", type=int, default=0, help="the controller's port (default: any free one)")
    ap.add_argument("--uvloop", action="store_true", help="the controller on uvloop's event loop")
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke run, a few seconds)")
    ap.add_argument("--profile", help="write a cProfile of the controller process during the burst here")
    a = ap.parse_args()
    if a.quick:
        a.calls, a.rate = 100, 100.0
    ctx = mp.get_context("spawn")
    ready: mp.Queue[int] = ctx.Queue()
    stop = ctx.Event()
    proc = ctx.Process(target=serve, args=(a.port, ready, stop, a.uvloop, a.profile), daemon=True)
    proc.start()
    try:
        a.port = ready.get(timeout=30)
    except Exception:  # noqa: BLE001 - queue.Empty: it printed why
        proc.terminate()
        sys.exit("the controller did not start")
    asyncio.run(burst(a.port, min(50, a.calls), 100.0))  # warm-up (imports, first allocations), not counted
    print(f"python {sys.version.split()[0]}{', uvloop' if a.uvloop else ''}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cpu0 = cpu_ns(proc.pid)
    t = time.perf_counter()
    res = asyncio.run(burst(a.port, a.calls, a.rate))
    wall = time.perf_counter() - t
    cpu = (cpu_ns(proc.pid) - cpu0) / 1e9
    ok = [r for r in res if r]
    rss = int(peak_rss_mib(proc.pid))
    stop.set()
    proc.join(30)
    if proc.is_alive():
        proc.terminate()
    print(f"calls={a.calls} offered_rate={a.rate:.0f}/s wall={wall:.1f}s served={len(ok)} failed={a.calls - len(ok)}")
    if not ok:
        sys.exit("no call was served")
    c = [r[0] for r in ok]
    s = [r[1] for r in ok]
    print(f"connect latency ms: p50={pct(c, .5):.1f} p95={pct(c, .95):.1f} p99={pct(c, .99):.1f} max={max(c)*1000:.1f}")
    print(f"session time ms:    p50={pct(s, .5):.1f} p95={pct(s, .95):.1f} p99={pct(s, .99):.1f} max={max(s)*1000:.1f}")
    per_call = cpu / len(ok)
    print(f"controller CPU: {cpu:.2f} s, {per_call * 1e6:.0f} µs per call → {1 / per_call:.0f} calls/s per core "
          f"of IVR work (controller CPU only)")
    print(f"controller peak RSS: {rss} MiB")


if __name__ == "__main__":
    main()
