"""The controller's control socket (hotline/control.py): one JSON line each way over a real Unix socket, and
`hotline tickets callback` asking it instead of logging in to AMI."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hotline.cli import main
from hotline.control import ControllerNotRunning, ControlServer, actor_of, ask, control_socket_path, peer_of
from hotline.controller import Controller
from ticketbridge.callbacks import CallbackError, CallbackResult
from tests.unit.test_ticket_cli import SHIPPED, store_url  # noqa: F401 - the filled store fixture


async def echo(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("op") == "boom":
        raise RuntimeError("handler failed")
    return {"ok": True, "got": request}


def test_request_and_answer_over_a_real_socket(tmp_path: Path) -> None:
    async def go() -> None:
        path = tmp_path / "controller-x.sock"
        srv = ControlServer(path, echo)
        assert await srv.start()
        assert path.stat().st_mode & 0o777 == 0o660
        me = {"uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name}
        assert await ask(path, {"op": "callback", "ticket": "回拨"}) == {
            "ok": True, "got": {"op": "callback", "ticket": "回拨", "peer": me}}
        failed = await ask(path, {"op": "boom"})
        assert failed["ok"] is False and "handler failed" in failed["error"]
        # a line that is not a JSON object is answered, never crashes the server
        r, w = await asyncio.open_unix_connection(str(path))
        w.write(b"[1, 2]\n")
        await w.drain()
        assert json.loads(await r.readline())["ok"] is False
        w.close()
        # a second controller of the same instance does not steal the socket
        other = ControlServer(path, echo)
        assert not await other.start()
        assert (await ask(path, {"op": "x"}))["ok"]
        await srv.stop()
        assert not path.exists()
        with pytest.raises(ControllerNotRunning):
            await ask(path, {"op": "x"})

    asyncio.run(go())


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: a controller that died

    async def go() -> None:
        srv = ControlServer(path, echo)
        assert await srv.start()
        assert (await ask(path, {"op": "x"}))["ok"]
        await srv.stop()

    asyncio.run(go())


def test_socket_path_is_per_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_STATE", str(tmp_path))
    monkeypatch.delenv("HOTLINE_INSTANCE", raising=False)
    assert control_socket_path() == tmp_path / "controller-main.sock"
    monkeypatch.setenv("HOTLINE_INSTANCE", "e2e")
    assert control_socket_path() == tmp_path / "controller-e2e.sock"
    assert control_socket_path("main") == tmp_path / "controller-main.sock"


def test_controller_answers_callback_requests() -> None:
    class NoAgentOps:
        async def handle(self, request: dict[str, Any]) -> None:
            return None  # not an agent op (hotline/agent_control.py answers those: tests/unit/test_agent_control.py)

    class Fake:
        asked: list[tuple[str, str]] = []
        agent_control = NoAgentOps()

        async def call_back(self, ticket_no: str, actor: str = "controller") -> CallbackResult:
            self.asked.append((ticket_no, actor))
            if ticket_no == "0":
                raise CallbackError("ticket 0 does not exist")
            return CallbackResult(ticket_no, "done", 1, "answered", "cb-1")

    fake = Fake()
    handle = Controller._on_control_request
    got = asyncio.run(handle(fake, {"op": "callback", "ticket": "261129000001", "actor": "supervisor:li"}))
    assert got == {"ok": True, "ticket": "261129000001", "status": "done", "attempts": 1, "result": "answered"}
    assert fake.asked == [("261129000001", "supervisor:li")]
    assert asyncio.run(handle(fake, {"op": "callback", "ticket": "0"})) == {
        "ok": False, "error": "ticket 0 does not exist"}
    assert asyncio.run(handle(fake, {"op": "originate"}))["ok"] is False


def test_the_actor_is_the_peer_uid_s_user_not_what_the_client_claims(tmp_path: Path) -> None:
    """SO_PEERCRED over a real Unix socket: a forged `peer` is replaced, `actor` survives only as a label."""
    seen: list[dict[str, Any]] = []

    async def record(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return {"ok": True, "actor": actor_of(request)}

    async def go() -> None:
        srv = ControlServer(tmp_path / "c.sock", record)
        assert await srv.start()
        try:
            forged = await ask(srv.path, {"op": "agent", "actor": "director", "peer": {"uid": 0, "user": "director"}})
            plain = await ask(srv.path, {"op": "agents"})
        finally:
            await srv.stop()
        me = pwd.getpwuid(os.getuid()).pw_name
        assert seen[0]["peer"] == {"uid": os.getuid(), "user": me}
        assert forged["actor"] == f"{me} (director)" and plain["actor"] == me

    asyncio.run(go())
    assert actor_of({"actor": "supervisor:li"}) == "supervisor:li"  # in-process (never crossed the socket)
    assert actor_of({"peer": {"uid": 1000, "user": "li"}, "actor": "li"}) == "li"
    assert peer_of(None) == {"uid": None, "user": "unknown"}
    assert peer_of(2 ** 31 - 7)["user"] == f"uid {2 ** 31 - 7}"  # no passwd entry: the number


class ThreadedServer:
    """A stand-in controller serving the control socket from its own thread (the CLI runs its own loop)."""

    def __init__(self, path: Path, handler: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.srv = ControlServer(path, handler)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        assert asyncio.run_coroutine_threadsafe(self.srv.start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.srv.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_cli_callback_asks_the_controller_and_holds_no_ami_secret(
        store_url: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("HOTLINE_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("HOTLINE_INSTANCE", raising=False)
    monkeypatch.delenv("HOTLINE_AMI_SECRET", raising=False)
    import model.secrets

    def no_secret(*a: Any, **k: Any) -> str:
        raise AssertionError("a supervisor's command read an AMI secret")

    monkeypatch.setattr(model.secrets, "ami_secret", no_secret)
    args = ["tickets", "callback", store_url["abandoned"], "--store", store_url["url"], "-c", str(SHIPPED),
            "--actor", "supervisor:wang"]

    # no controller running: said so, exit 3
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 3 and "controller is not running" in r.output, r.output

    asked: list[dict[str, Any]] = []

    async def controller(request: dict[str, Any]) -> dict[str, Any]:
        asked.append(request)
        return {"ok": True, "ticket": request["ticket"], "status": "failed", "attempts": 2, "result": "no answer"}

    with ThreadedServer(control_socket_path(), controller):
        r = CliRunner().invoke(main, args)
    me = {"uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name}
    assert asked == [{"op": "callback", "ticket": store_url["abandoned"], "actor": "supervisor:wang", "peer": me}]
    assert r.exit_code == 1 and "callback failed after 2 attempt(s): no answer" in r.output, r.output

    async def refusing(request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": False, "error": f"ticket {request['ticket']}: callback already in progress"}

    with ThreadedServer(control_socket_path(), refusing):
        r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "already in progress" in r.output
