"""Fake Asterisk peers for fast adapter tests (Wazo's pattern: play Asterisk's side of the wire).

`FakeAmiServer` (further down) is Asterisk's manager side: banner, Login, Ping, and
per-action handlers you script; every action it received is kept for assertions.

`FakeAsteriskAgi` is the FastAGI *client* Asterisk would be: it connects to our server,
sends the AGI environment, then reads each command line and answers with the raw
reply lines you give it (``200 result=1 (x)``, ``HANGUP``, a ``520-`` block ...).

Note for users: on ``200 result=-1`` from a media command (STREAM FILE, GET DATA, ...)
with no ``HANGUP`` line before it, the session asks ``CHANNEL STATUS`` to tell a
hang-up (answer ``511 ...``) from a missing sound file (answer ``200 result=6``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any


def agi_env(script: str = "inbound", *, uniqueid: str = "1700000000.1", callerid: str = "13800138000",
            extension: str = "12345", args: list[str] | None = None, **extra: str) -> dict[str, str]:
    """The environment Asterisk 22 sends for ``AGI(agi://127.0.0.1/<script>,args...)``."""
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1/{script}",
        "agi_channel": "PJSIP/trunk-00000001",
        "agi_language": "zh",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.0.0",
        "agi_callerid": callerid,
        "agi_calleridname": "unknown",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": extension,
        "agi_rdnis": "unknown",
        "agi_context": "hotline-inbound",
        "agi_extension": extension,
        "agi_priority": "3",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
    }
    for i, a in enumerate(args or [], 1):
        env[f"agi_arg_{i}"] = a
    env.update(extra)
    return env


class FakeAsteriskAgi:
    """Asterisk's side of one FastAGI call, scripted from a test."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.received: list[str] = []

    async def connect(self, port: int, env: Mapping[str, str] | None = None, script: str = "inbound",
                      host: str = "127.0.0.1", **env_kw: Any) -> "FakeAsteriskAgi":
        """Open the connection and send the whole environment (then an empty line)."""
        self.reader, self.writer = await asyncio.open_connection(host, port)
        e = dict(env) if env is not None else agi_env(script, **env_kw)
        payload = "".join(f"{k}: {v}\n" for k, v in e.items()) + "\n"
        await self.send_raw(payload.encode("utf-8"))
        return self

    async def open(self, port: int, host: str = "127.0.0.1") -> "FakeAsteriskAgi":
        """Only the TCP connection (for tests that send a broken environment by hand)."""
        self.reader, self.writer = await asyncio.open_connection(host, port)
        return self

    async def send_raw(self, data: bytes) -> None:
        assert self.writer is not None, "connect() first"
        self.writer.write(data)
        await self.writer.drain()

    async def expect(self, prefix: str | None = None, timeout: float = 2.0) -> str:
        """The next command our server sent; asserts it starts with `prefix` when given."""
        assert self.reader is not None, "connect() first"
        data = await asyncio.wait_for(self.reader.readline(), timeout)
        if not data:
            raise AssertionError(f"connection closed while expecting {prefix!r}")
        line = data.decode("utf-8").rstrip("\n")
        self.received.append(line)
        if prefix is not None and not line.startswith(prefix):
            raise AssertionError(f"expected a command starting {prefix!r}, got {line!r}")
        return line

    async def answer(self, *lines: str) -> None:
        """Write raw reply lines (each gets its newline)."""
        await self.send_raw("".join(f"{ln}\n" for ln in lines).encode("utf-8"))

    async def reply(self, prefix: str | None, *lines: str, timeout: float = 2.0) -> str:
        """Expect one command, then answer it; returns the command line."""
        line = await self.expect(prefix, timeout)
        await self.answer(*lines)
        return line

    async def hangup(self) -> None:
        """The out-of-band line Asterisk sends when the caller hangs up (AGISIGHUP=yes)."""
        await self.answer("HANGUP")

    async def wait_closed(self, timeout: float = 2.0) -> bytes:
        """Wait until our server closes the connection; returns whatever it still sent."""
        assert self.reader is not None
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass


# ---------------------------------------------------------------------------------------------- AMI
AmiMsg = dict[str, str]


def ami_encode(msg: Mapping[str, str] | list[tuple[str, str]]) -> bytes:
    """A message as Asterisk writes it; a list of pairs allows repeated headers."""
    items = list(msg.items()) if isinstance(msg, Mapping) else msg
    return ("".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n").encode("utf-8")


class FakeAmiConnection:
    """One client connection to `FakeAmiServer`."""

    def __init__(self, server: "FakeAmiServer", number: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.number = number
        self.reader = reader
        self.writer = writer
        self.answer_ping = True

    async def send(self, msg: Mapping[str, str] | list[tuple[str, str]] | bytes) -> None:
        self.writer.write(msg if isinstance(msg, bytes) else ami_encode(msg))
        await self.writer.drain()

    async def respond(self, action: AmiMsg, response: str = "Success", **headers: str) -> None:
        """Answer `action` (echoing its ActionID)."""
        await self.send({"Response": response, "ActionID": action.get("ActionID", ""), **headers})

    def close(self) -> None:
        self.writer.close()


ActionHandler = Any  # async (conn, action) -> None; answer with conn.respond(...) or not at all


class FakeAmiServer:
    """Asterisk's AMI side on 127.0.0.1:0: banner, Login, Ping, and scripted actions.

    Every action from every connection lands in `actions` (with ``_conn`` = connection
    number). Unscripted actions get ``Response: Success``.
    """

    def __init__(self, *, username: str = "hotline", secret: str = "s3cret", banner: bool = True) -> None:
        self.username = username
        self.secret = secret
        self.banner = banner
        self.actions: list[AmiMsg] = []
        self.handlers: dict[str, ActionHandler] = {}
        self.connections: list[FakeAmiConnection] = []
        self.blackhole_ping_on: set[int] = set()  # connection numbers that never answer Ping
        self._server: asyncio.AbstractServer | None = None
        self._new_action = asyncio.Event()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def conn(self) -> FakeAmiConnection:
        return self.connections[-1]

    async def start(self) -> "FakeAmiServer":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in self.connections:
            c.writer.close()

    def on(self, action: str, handler: ActionHandler) -> None:
        self.handlers[action.lower()] = handler

    def seen(self, action: str) -> list[AmiMsg]:
        return [a for a in self.actions if a.get("Action", "").lower() == action.lower()]

    async def wait_action(self, action: str, count: int = 1, timeout: float = 2.0) -> AmiMsg:
        async def _wait() -> AmiMsg:
            while len(self.seen(action)) < count:
                self._new_action.clear()
                await self._new_action.wait()
            return self.seen(action)[count - 1]

        return await asyncio.wait_for(_wait(), timeout)

    async def wait_connections(self, n: int, timeout: float = 2.0) -> None:
        async def _wait() -> None:
            while len(self.connections) < n:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(_wait(), timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FakeAmiConnection(self, len(self.connections) + 1, reader, writer)
        self.connections.append(conn)
        if self.banner:
            writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                msg: AmiMsg = {"_conn": str(conn.number)}
                for line in raw.decode("utf-8").split("\r\n"):
                    if ": " in line:
                        k, v = line.split(": ", 1)
                        msg[k] = f"{msg[k]}\n{v}" if k in msg else v
                self.actions.append(msg)
                self._new_action.set()
                await self._handle(conn, msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, conn: FakeAmiConnection, msg: AmiMsg) -> None:
        name = msg.get("Action", "").lower()
        if name in self.handlers:
            await self.handlers[name](conn, msg)
        elif name == "login":
            if msg.get("Username") == self.username and msg.get("Secret") == self.secret:
                await conn.respond(msg, Message="Authentication accepted")
                await conn.send({"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"})
            else:
                await conn.respond(msg, "Error", Message="Authentication failed")
        elif name == "ping":
            if conn.number not in self.blackhole_ping_on:
                await conn.respond(msg, Ping="Pong", Timestamp="1700000000.000000")
        elif name == "logoff":
            await conn.respond(msg, "Goodbye", Message="Thanks for all the fish.")
            conn.close()
        else:
            await conn.respond(msg)
