"""Tools of the fault-injection tests: the controller as a real process, and a TCP link that can be cut.

`ControllerProcess` runs tests/e2e/fault_controller.py (the real controller, `serve` as `hotline run`
does) and reads its JSON log; `kill9()` is a real SIGKILL. `CutLink` is a TCP relay the test
owns: the controller's AMI or PostgreSQL connection goes through it, and `cut()` drops every
connection and refuses new ones (a cable pulled, a server stopped) until `restore()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class ControllerProcess:
    def __init__(self, store_url: str, log_path: Path, *, ami_port: int | None = None,
                 sim_callbacks: bool = False, extra: list[str] | None = None,
                 profile: Path | None = None, module: str = "tests.e2e.fault_controller") -> None:
        """`profile`: the controller writes a cProfile (CPU time of its loop's thread) there when it stops.
        `module`: the script run (`python -m`): fault_controller, or cluster_controller (a cluster node's)."""
        self.module = module
        self.store_url = store_url
        self.log_path = log_path
        self.args = ["--store", store_url]
        if ami_port:
            self.args += ["--ami-port", str(ami_port)]
        if sim_callbacks:
            self.args.append("--sim-callbacks")
        self.args += extra or []
        if profile is not None:
            self.args += ["--profile", str(profile)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self, timeout: float = 40.0) -> None:
        """Start it and wait until it serves FastAGI and is logged in to AMI."""
        mark = len(self.logs())
        out = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", self.module, *self.args],
                                         cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})
        finally:
            out.close()
        self.starts += 1
        await self.wait_log("controller_started", timeout, after=mark)
        await self.wait_log(("ami_connected", "ami_reconnected"), timeout, after=mark)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, as systemd stops it; waits for the graceful stop."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the controller did not stop on SIGTERM within {timeout} s")
        self.proc = None

    def logs(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if isinstance(row, dict):
                    out.append(row)
        return out

    def events(self, name: str | tuple[str, ...]) -> list[dict[str, Any]]:
        names = (name,) if isinstance(name, str) else name
        return [r for r in self.logs() if r.get("event") in names]

    async def wait_log(self, name: str | tuple[str, ...], timeout: float = 20.0, after: int = 0,
                       **fields: Any) -> dict[str, Any]:
        names = (name,) if isinstance(name, str) else name
        deadline = time.monotonic() + timeout
        while True:
            for r in self.logs()[after:]:
                if r.get("event") in names and all(r.get(k) == v for k, v in fields.items()):
                    return r
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the controller exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {names} {fields or ''} in the controller's log within {timeout} s:\n"
                                     f"{self.tail()}")
            await asyncio.sleep(0.2)

    def tail(self, n: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


class CutLink:
    """A TCP relay 127.0.0.1:<port> → target that the test can cut and restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def open(self) -> "CutLink":
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        """Every connection through it dies at once; new ones are refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restore(self) -> None:
        await self.open()

    async def close(self) -> None:
        await self.cut()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_w}

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    w.transport.abort()

        for t in (asyncio.create_task(pump(reader, up_w)), asyncio.create_task(pump(up_r, writer))):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
