"""The running controller's local control socket: supervisors' commands ask it instead of holding AMI secrets.

`hotline tickets callback NO` used to log in to AMI itself, so every supervisor needed the
secret of an account that can originate calls. Now the controller — which has that account
anyway — listens on a Unix socket it owns (mode 0660, root's group; one per Asterisk instance,
`<state dir>/controller-<instance>.sock`), and the CLI sends it one request and reads one answer.

Protocol (one JSON object per line, UTF-8, one request per connection):

    → {"op": "callback", "ticket": "261129000001", "actor": "supervisor:alice"}
    ← {"ok": true, "ticket": "261129000001", "status": "done", "attempts": 1, "result": "answered"}
    ← {"ok": false, "error": "ticket 261129000001 is not on the callback list"}

    → {"op": "supervise", "mode": "listen", "seat": "9001", "agent": "1001", "actor": "supervisor:alice"}
    ← {"ok": true, "mode": "listen", "seat": "9001", "agent": "1001", "linkedid": "…", "ringing": "PJSIP/9001"}

Unknown ops and malformed lines get `ok: false` with the reason. Who asked is the kernel's word,
not the client's: the server reads the peer's uid (SO_PEERCRED), looks its name up in the passwd
database and puts both into the request as `peer` ({"uid": 0, "user": "root"}), replacing anything
the client sent under that key. `actor_of(request)` is what the controller records: that user name,
with the client's `actor` text after it only as a label ("alice (班长王)").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from model.secrets import state_dir
from routing.dialplan import MAIN_INSTANCE

log = structlog.get_logger("hotline.control")

#: the longest request line accepted (a request is a few dozen bytes)
MAX_LINE = 4096
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControllerNotRunning(Exception):
    """Nothing listens on the control socket: the controller of this instance is not running."""


def control_socket_path(instance: str | None = None) -> Path:
    """Where the controller of `instance` ($HOTLINE_INSTANCE, else main) listens."""
    inst = instance if instance is not None else os.environ.get("HOTLINE_INSTANCE", "")
    return state_dir() / f"controller-{inst or MAIN_INSTANCE}.sock"


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    except (OSError, AttributeError):
        return None


def peer_of(uid: int | None) -> dict[str, Any]:
    """The peer as the kernel names it: its uid and that uid's passwd name ("uid <n>" when it has none)."""
    if uid is None:
        return {"uid": None, "user": "unknown"}
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    return {"uid": uid, "user": name}


def actor_of(request: dict[str, Any], default: str = "controller") -> str:
    """Who asked, for the record: the peer's user name from SO_PEERCRED; the client's own `actor` only as a
    label after it. A request that never crossed the socket (no `peer`) is named by its label or `default`."""
    label = str(request.get("actor") or "").strip()
    peer = request.get("peer")
    if not isinstance(peer, dict) or not peer.get("user"):
        return (label or default)[:64]
    user = str(peer["user"])
    return (f"{user} ({label})" if label and label != user else user)[:64]


class ControlServer:
    """Serves `handler(request) -> answer` on a Unix socket, one JSON line each way."""

    def __init__(self, path: Path, handler: Handler, *, mode: int = 0o660) -> None:
        self.path = Path(path)
        self.handler = handler
        self.mode = mode
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> bool:
        """Listen; False (logged) when another live controller already answers on this path, or the socket
        cannot be made (calls never depend on it: only supervisors' callbacks do)."""
        try:
            return await self._start()
        except OSError as e:
            log.error("control_socket_failed", path=str(self.path), error=str(e))
            return False

    async def _start(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        if self.path.exists() or self.path.is_symlink():
            if await _answers(self.path):
                log.warning("control_socket_busy", path=str(self.path))
                return False
            self.path.unlink()  # left by a controller that died
        old = os.umask(0o117)  # never world-accessible, not even between bind and chmod
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)
        log.info("control_socket_listening", path=str(self.path))
        return True

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), 10)
                request = json.loads(line.decode("utf-8"))
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
            except (ValueError, asyncio.LimitOverrunError, asyncio.TimeoutError, TimeoutError) as e:
                answer: dict[str, Any] = {"ok": False, "error": f"bad request: {type(e).__name__}"}
            else:
                request["peer"] = peer_of(_peer_uid(writer))  # the kernel's word, never the client's
                log.info("control_request", op=str(request.get("op")), peer_uid=request["peer"]["uid"],
                         peer=request["peer"]["user"])
                try:
                    answer = await self.handler(request)
                except Exception as e:  # noqa: BLE001 - a failing request never takes the controller down
                    log.exception("control_request_failed", op=str(request.get("op")))
                    answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            writer.write(json.dumps(answer, ensure_ascii=False).encode("utf-8") + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away; its callback (if any) still ran
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _answers(path: Path) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2)
    except (OSError, asyncio.TimeoutError, TimeoutError):
        return False
    w.close()
    return True


async def ask(path: Path, request: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    """Send one request to the controller and return its answer; ControllerNotRunning when none listens."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=1 << 20), 5)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise ControllerNotRunning(f"the controller is not running (nothing listens on {path})") from e
    except PermissionError as e:
        raise PermissionError(f"{path}: permission denied (the control socket is for root and its group)") from e
    try:
        writer.write(json.dumps(request, ensure_ascii=False).encode("utf-8") + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not line:
        raise ControllerNotRunning(f"the controller closed {path} without an answer (stopping?)")
    answer = json.loads(line.decode("utf-8"))
    if not isinstance(answer, dict):
        raise ValueError("the controller's answer is not a JSON object")
    return answer
