"""FastAGI under bursts: how long Asterisk would wait for our controller.

Asterisk gives up connecting to FastAGI after ~2 s; a 20-slot backlog failed
hundreds of AGI steps a day at ~64 connections/s in the field. This starts the
real FastAGI server with the real `inbound` script and the shipped config in a
child process, then plays Asterisk's side for many concurrent calls (answering
every AGI command at once, keying 1 at the first menu) and reports:

- connect latency: TCP connect until the server's first AGI command arrives
  (what Asterisk experiences as "FastAGI answered");
- session time: first command until the script ends (our per-call work, no audio);
- failures: connections refused or not served within 2 s.

Run:  .venv/bin/python bench/fastagi_burst.py [--calls 2000] [--rate 200]
Results of a run are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes import agi_env  # noqa: E402


def serve(port: int, ready: "mp.Event") -> None:  # type: ignore[name-defined]
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
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


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
        cmd = line.decode(errors="replace").strip()
        if cmd.startswith("GET DATA") and not keyed:
            reply, keyed = "200 result=49", True  # the caller keys 1
        elif cmd.startswith("GET VARIABLE"):
            reply = "200 result=0"
        else:
            reply = "200 result=0"
        writer.write((reply + "\n").encode())
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
    ap.add_argument("--port", type=int, default=4673)
    a = ap.parse_args()
    ready = mp.Event()
    proc = mp.Process(target=serve, args=(a.port, ready), daemon=True)
    proc.start()
    ready.wait(20)
    t = time.perf_counter()
    res = asyncio.run(burst(a.port, a.calls, a.rate))
    wall = time.perf_counter() - t
    ok = [r for r in res if r]
    with open(f"/proc/{proc.pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) // 1024
    proc.terminate()
    print(f"calls={a.calls} offered_rate={a.rate:.0f}/s wall={wall:.1f}s served={len(ok)} failed={a.calls - len(ok)}")
    c = [r[0] for r in ok]
    s = [r[1] for r in ok]
    print(f"connect latency ms: p50={pct(c, .5):.1f} p95={pct(c, .95):.1f} p99={pct(c, .99):.1f} max={max(c)*1000:.1f}")
    print(f"session time ms:    p50={pct(s, .5):.1f} p95={pct(s, .95):.1f} p99={pct(s, .99):.1f} max={max(s)*1000:.1f}")
    print(f"controller peak RSS: {rss} MiB")


if __name__ == "__main__":
    main()
