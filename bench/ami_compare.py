"""AMI events parsed and dispatched: our client against panoramisk's and a bare asyncio Protocol (issue 15).

This process plays the Asterisk manager (tests/fakes.py FakeAmiServer: banner, Login; a
``BenchEvents`` action answered by a burst of events written as fast as the client reads). The
client under test runs alone in its own process, logs in, asks for the burst and counts the events
its registered callbacks receive, by name, checking one header with Chinese text in each. The burst
is a realistic mix of what the controller's account gets on a call (Newchannel, Hangup,
QueueCallerJoin, BridgeEnter, UserEvent; 14–22 headers each, as Asterisk 22 writes them).

Clients:
* ``ours``: wire.ami.AmiClient (callbacks per event name, as the controller registers them);
* ``panoramisk``: panoramisk.manager.Manager 1.4 (`register_event` per name);
* ``bare``: the floor — an asyncio.Protocol that splits the bytes on CRLFCRLF, decodes, makes a dict
  per message with ``str.split`` and calls a callback by name. No action matching, no reconnect, no
  safety: what any client costs at least.

Figures: events/s (request → last event counted), µs of client CPU per event, events damaged (a
value that lost its Chinese text), the client's CPU seconds for the burst.

Run:  .venv/bin/python bench/ami_compare.py [--events 200000] [--repeat 3] [--quick]
(`--quick`: 20,000 events, one round; a few seconds, for CI). Results in bench/RESULTS.md.
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

from tests.fakes import FakeAmiServer  # noqa: E402

NAME = "张三·朝阳区投诉"  # Chinese text in every event, as caller names and categories are

_COMMON = ("Privilege: call,all\r\nTimestamp: 1764460800.{seq:06d}\r\nChannel: PJSIP/trunk-0000{seq:04x}\r\n"
           "ChannelState: 6\r\nChannelStateDesc: Up\r\nCallerIDNum: 13800138000\r\nCallerIDName: " + NAME +
           "\r\nConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\nLanguage: zh\r\nAccountCode: \r\n"
           "Context: hotline-inbound\r\nExten: 12345\r\nPriority: 1\r\nUniqueid: 1764460800.{seq}\r\n"
           "Linkedid: 1764460800.{seq}\r\n")
TEMPLATES = [
    "Event: Newchannel\r\n" + _COMMON + "\r\n",
    "Event: QueueCallerJoin\r\n" + _COMMON + "Queue: hotline-general\r\nPosition: 1\r\nCount: 1\r\n\r\n",
    "Event: BridgeEnter\r\n" + _COMMON + "BridgeUniqueid: 0b7a-{seq}\r\nBridgeType: basic\r\n"
    "BridgeTechnology: simple_bridge\r\nBridgeCreator: <unknown>\r\nBridgeName: <unknown>\r\n"
    "BridgeNumChannels: 2\r\nBridgeVideoSourceMode: none\r\n\r\n",
    "Event: UserEvent\r\n" + _COMMON + "UserEvent: HotlineRoute\r\nLine: 12345\r\nMode: main\r\n"
    "Dest: queue:general\r\nCategory: 咨询\r\nFallback: 0\r\n\r\n",
    "Event: Hangup\r\n" + _COMMON + "Cause: 16\r\nCause-txt: Normal Clearing\r\n\r\n",
]
NAMES = ["Newchannel", "QueueCallerJoin", "BridgeEnter", "UserEvent", "Hangup"]


def burst_bytes(n: int) -> list[bytes]:
    """`n` events in chunks of about 64 KiB."""
    chunks, cur, size = [], [], 0
    for i in range(n):
        ev = TEMPLATES[i % len(TEMPLATES)].format(seq=i).encode("utf-8")
        cur.append(ev)
        size += len(ev)
        if size >= 65536:
            chunks.append(b"".join(cur))
            cur, size = [], 0
    if cur:
        chunks.append(b"".join(cur))
    return chunks


def quiet() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    logging.basicConfig(level=logging.ERROR)


class BareProtocol(asyncio.Protocol):
    """The floor: frame, decode, dict, call. Nothing else."""

    def __init__(self, handlers: dict[str, Any]) -> None:
        self.buf = b""
        self.handlers = handlers
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        end = buf.rfind(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return
        self.buf = buf[end + 4:]
        handlers = self.handlers
        for raw in buf[:end].decode("utf-8", "replace").split("\r\n\r\n"):
            msg = dict(line.split(": ", 1) for line in raw.split("\r\n") if ": " in line)
            cb = handlers.get(msg.get("Event") or msg.get("Response"))
            if cb is not None:
                cb(msg)


def client(impl: str, port: int, events: int, out: "mp.Queue[str]") -> None:
    quiet()

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        got = {"n": 0, "damaged": 0}
        all_in = loop.create_future()

        def count(e: Any) -> None:
            got["n"] += 1
            if e.get("CallerIDName") != NAME:
                got["damaged"] += 1
            if got["n"] == events and not all_in.done():
                all_in.set_result(None)

        if impl == "ours":
            from wire.ami import AmiClient

            c = AmiClient("127.0.0.1", port, "hotline", "s3cret", ping_interval=600, action_timeout=60)
            for name in NAMES:
                c.on_event(name, count)
            await c.start()
            await c.wait_connected(5)

            async def ask() -> None:
                await c.action("BenchEvents")

            async def close() -> None:
                await c.close()
        elif impl == "panoramisk":
            from panoramisk.manager import Manager

            m = Manager(loop=loop, host="127.0.0.1", port=port, username="hotline", secret="s3cret",
                        ping_delay=600, ping_interval=600)
            for name in NAMES:
                m.register_event(name, lambda mgr, e: count(e))
            m.connect()
            deadline = time.monotonic() + 5
            while not m.authenticated:
                if time.monotonic() > deadline:
                    raise RuntimeError("panoramisk did not log in")
                await asyncio.sleep(0.01)

            async def ask() -> None:
                await asyncio.wait_for(m.send_action({"Action": "BenchEvents"}), 60)

            async def close() -> None:
                m.close()
        else:
            login = loop.create_future()
            handlers: dict[str, Any] = {n: count for n in NAMES}
            handlers["Success"] = lambda msg: login.done() or login.set_result(msg)
            transport, _ = await loop.create_connection(lambda: BareProtocol(handlers), "127.0.0.1", port)
            transport.write(b"Action: Login\r\nActionID: 1\r\nUsername: hotline\r\nSecret: s3cret\r\n\r\n")
            await asyncio.wait_for(login, 5)

            async def ask() -> None:
                transport.write(b"Action: BenchEvents\r\nActionID: 2\r\n\r\n")

            async def close() -> None:
                transport.close()

        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await ask()
        try:
            await asyncio.wait_for(all_in, 120)
        except asyncio.TimeoutError:
            pass
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        await close()
        return {"impl": impl, "events": got["n"], "damaged": got["damaged"], "events_per_s": got["n"] / wall,
                "cpu_s": cpu, "cpu_us_per_event": cpu / max(1, got["n"]) * 1e6}

    try:
        out.put(json.dumps(asyncio.run(main())))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        out.put(json.dumps({"impl": impl, "error": repr(e)}))


async def run(impl: str, events: int, chunks: list[bytes]) -> dict[str, Any]:
    fake = await FakeAmiServer().start()

    async def burst(conn: Any, a: dict[str, str]) -> None:
        await conn.respond(a, Message="Events follow")
        for chunk in chunks:
            conn.writer.write(chunk)
            await conn.writer.drain()

    fake.on("BenchEvents", burst)
    ctx = mp.get_context("spawn")
    q: mp.Queue[str] = ctx.Queue()
    proc = ctx.Process(target=client, args=(impl, fake.port, events, q), daemon=True)
    proc.start()
    try:
        raw = await asyncio.get_running_loop().run_in_executor(None, q.get, True, 180)
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
        await fake.stop()
    return json.loads(raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the best events/s and least CPU are shown")
    ap.add_argument("--quick", action="store_true", help="20,000 events, one round (CI)")
    a = ap.parse_args()
    if a.quick:
        a.events, a.repeat = 20_000, 1
    impls = ["ours", "bare"]
    try:
        import panoramisk  # noqa: F401
        from importlib.metadata import version

        impls.insert(1, "panoramisk")
        pano = f"panoramisk {version('panoramisk')}"
    except ImportError:
        pano = "panoramisk not installed (.venv/bin/pip install -e '.[test,upstream]'): skipped"
    print(f"python {sys.version.split()[0]}, {pano}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {a.events} events x {a.repeat}")
    chunks = burst_bytes(a.events)
    best: dict[str, dict[str, Any]] = {}
    for _ in range(a.repeat):
        for impl in impls:  # interleaved: the shared machine's load falls on each alike
            r = asyncio.run(run(impl, a.events, chunks))
            if "error" in r:
                print(f"{impl}: failed: {r['error']}")
                sys.exit(1)
            b = best.setdefault(impl, r)
            b["events_per_s"] = max(b["events_per_s"], r["events_per_s"])
            if r["cpu_s"] < b["cpu_s"]:
                b.update(cpu_s=r["cpu_s"], cpu_us_per_event=r["cpu_us_per_event"])
            b["damaged"] = max(b["damaged"], r["damaged"])
            b["events"] = min(b["events"], r["events"])
    print("| client | events delivered (damaged) | events/s | client CPU µs/event | client CPU s |")
    print("|---|---|---|---|---|")
    label = {"ours": "wire.ami.AmiClient", "panoramisk": "panoramisk.manager.Manager", "bare": "bare asyncio.Protocol"}
    for impl in impls:
        r = best[impl]
        print(f"| {label[impl]} | {r['events']} ({r['damaged']}) | {r['events_per_s']:.0f} | "
              f"{r['cpu_us_per_event']:.1f} | {r['cpu_s']:.2f} |")
    if "panoramisk" in best:
        ratio = best["ours"]["events_per_s"] / best["panoramisk"]["events_per_s"]
        cpu_ratio = best["panoramisk"]["cpu_us_per_event"] / best["ours"]["cpu_us_per_event"]
        print(f"\nours / panoramisk: {ratio:.2f}x events/s, {cpu_ratio:.2f}x less CPU per event (goal: 1.5x)")
    if best["ours"]["events"] != a.events or best["ours"]["damaged"]:
        sys.exit("ours lost or damaged events")


if __name__ == "__main__":
    main()
