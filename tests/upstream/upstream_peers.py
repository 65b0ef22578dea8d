"""Helpers for the upstream-check suite: fake Asterisk peers on 127.0.0.1 and bounded runners.

Everything an upstream library does runs where a freeze or a block cannot stop the
suite: panoramisk's FastAGI server in a child process (its header loop can spin with
the GIL held) or on its own event loop in a daemon thread; pyst2's blocking calls in
daemon threads joined with a timeout. A check that would hang instead reports "still
blocked" and the test decides what that means.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

try:
    from tests.fakes import FakeAmiServer, agi_env
except ModuleNotFoundError:  # tests/ has no __init__.py: pytest may put tests/ itself on sys.path
    from fakes import FakeAmiServer, agi_env  # type: ignore[no-redef]

__all__ = [
    "FakeAmiServer", "agi_env", "still_present", "version", "PanoramiskAgiProcess", "PanoramiskAgiThread",
    "play_asterisk", "ThreadedFakeAmi", "bounded", "Blocked", "proc_cpu_seconds", "until",
]


def version(dist: str) -> str:
    return importlib.metadata.version(dist)


def still_present(condition: bool, dist: str, defect: str, where: str, workaround: str,
                  evidence: Any = None) -> None:
    """Assert the defect is still there; otherwise say which workaround may be dropped."""
    if condition:
        return
    msg = (f"{dist} {version(dist)} no longer {defect}: our workaround in {where} ({workaround}) "
           f"may be dropped — check ../shared/LIBRARIES.md and tests/upstream/README.md")
    if evidence is not None:
        msg += f"\nobserved: {evidence!r}"
    raise AssertionError(msg)


async def until(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll `pred` until true or `timeout`; returns its last value (never raises)."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return bool(pred())
        await asyncio.sleep(step)


def proc_cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_loop_thread(loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                     first: Callable[[], Any] | None = None) -> None:
    """Stop a loop running in a thread after finishing (cancelling) every task on it.

    A coroutine left suspended on a closed loop is finalised later by the garbage
    collector, at any moment — even in the middle of the AST compiler, which Python 3.11
    does not survive (SystemError: AST constructor recursion depth mismatch).
    """
    async def stop() -> None:
        if first is not None:
            first()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    if thread.is_alive():
        try:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(3)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(2)
    if not thread.is_alive() and not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# ------------------------------------------------------------------------------------------ FastAGI
_PANORAMISK_AGI_CHILD = r"""
import asyncio, sys
from panoramisk.fast_agi import Application

async def inbound(request):
    reply = await request.send_command('GET VARIABLE CALLERID(num)')
    await request.send_command('VERBOSE "caller %s" 1' % (reply.get('result', ('', ''))[1],))

async def main():
    app = Application(loop=asyncio.get_running_loop())
    app.add_route('inbound', inbound)
    srv = await asyncio.start_server(app.handler, '127.0.0.1', 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class PanoramiskAgiProcess:
    """panoramisk's FastAGI Application serving ``inbound`` in a child process (killed on close)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _PANORAMISK_AGI_CHILD], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(10)
        if not box or not box[0].strip().isdigit():
            self.close()
            raise RuntimeError(f"panoramisk FastAGI child did not start: {box!r} {self.stderr()!r}")
        self.port = int(box[0])

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


class PanoramiskAgiThread:
    """panoramisk's FastAGI Application on its own event loop in a daemon thread.

    `route(script, commands)` registers a handler that sends each command in turn (each
    bounded by `per_command` seconds) and records what ``send_command`` returned or raised;
    `results(script)` waits (bounded) for that list. The test's loop stays free to play
    Asterisk, and a frozen upstream loop cannot hang the suite.
    """

    def __init__(self) -> None:
        from panoramisk.fast_agi import Application

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="panoramisk-agi")
        self.thread.start()
        self.app = Application(loop=self.loop)
        self._done: dict[str, concurrent.futures.Future[list[Any]]] = {}
        self.called: list[str] = []

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(self.app.handler, "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.port = int(self.server.sockets[0].getsockname()[1])

    def route(self, script: str, commands: Sequence[str], per_command: float | None = 2.0) -> None:
        done: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()
        self._done[script] = done

        async def handler(request: Any) -> None:
            self.called.append(script)
            out: list[Any] = []
            try:
                for cmd in commands:
                    try:
                        coro = request.send_command(cmd)
                        out.append(await (asyncio.wait_for(coro, per_command) if per_command else coro))
                    except Exception as e:  # noqa: BLE001 - the test inspects what upstream raised
                        out.append(e)
            finally:
                if not done.done():
                    done.set_result(out)

        self.app.add_route(script, handler)

    async def results(self, script: str, timeout: float = 5.0) -> list[Any]:
        return await asyncio.wait_for(asyncio.wrap_future(self._done[script]), timeout)

    def done(self, script: str) -> bool:
        return self._done[script].done()

    def close(self) -> None:
        stop_loop_thread(self.loop, self.thread, self.server.close)


async def play_asterisk(port: int, replies: Sequence[Sequence[str]], env: Mapping[str, str] | None = None,
                        script: str = "inbound", timeout: float = 2.0, hold_open: float = 0.0) -> list[str]:
    """Asterisk's side of one FastAGI call: send the environment, answer the i-th command with the
    raw lines ``replies[i]`` (each gets ``\\n``), stop at EOF, at `timeout` without a command, or
    when the replies are used up (then keep the line open `hold_open` s). Returns the commands."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    e = dict(env) if env is not None else agi_env(script)
    writer.write(("".join(f"{k}: {v}\n" for k, v in e.items()) + "\n").encode("utf-8"))
    await writer.drain()
    commands: list[str] = []
    try:
        for lines in replies:
            try:
                data = await asyncio.wait_for(reader.readline(), timeout)
            except asyncio.TimeoutError:
                break
            if not data:
                break
            commands.append(data.decode("utf-8", "replace").rstrip("\n"))
            writer.write("".join(f"{ln}\n" for ln in lines).encode("utf-8"))
            await writer.drain()
        else:
            if hold_open:
                try:
                    data = await asyncio.wait_for(reader.readline(), hold_open)
                    if data:
                        commands.append(data.decode("utf-8", "replace").rstrip("\n"))
                except asyncio.TimeoutError:
                    pass
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
    return commands


# ------------------------------------------------------------------------------------------ AMI
class ThreadedFakeAmi:
    """tests.fakes.FakeAmiServer on its own loop in a daemon thread, for blocking clients (pyst2)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fake-ami")
        self.thread.start()

        async def make() -> FakeAmiServer:
            return await FakeAmiServer().start()

        self.fake: FakeAmiServer = self.run(make())
        self.port = self.fake.port

    def run(self, coro: Awaitable[Any], timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, fn: Callable[[], Any]) -> Any:
        async def go() -> Any:
            res = fn()
            return await res if asyncio.iscoroutine(res) else res

        return self.run(go())

    def close(self) -> None:
        try:
            self.run(self.fake.stop(), 2)
        finally:
            stop_loop_thread(self.loop, self.thread)


class Blocked(Exception):
    """The call did not return within its bound (its daemon thread is left blocked)."""


def bounded(fn: Callable[..., Any], *args: Any, timeout: float = 2.0, **kwargs: Any) -> Any:
    """Run a blocking upstream call in a daemon thread; its result, its exception, or Blocked."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True, name=f"bounded-{getattr(fn, '__name__', 'call')}")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise Blocked(f"{getattr(fn, '__qualname__', fn)!s} still blocked after {timeout} s")
    if "error" in box:
        raise box["error"]
    return box.get("result")
