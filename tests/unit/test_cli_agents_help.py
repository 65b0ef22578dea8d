"""`hotline agents help` (多援一) asks the running controller over its control socket: what it sends, what it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hotline.cli import main
from hotline.control import control_socket_path
from tests.unit.test_control import ThreadedServer

PERIOD = {"id": "h0123456789", "queue": "line_12333", "agents": ["1001", "1002"], "started": 1795996800.0,
          "until": 1795998600.0, "by": "root (班长王)", "why": "12333 排队", "ended": None, "ended_by": "",
          "end_why": ""}


@pytest.fixture
def socket_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOTLINE_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("HOTLINE_INSTANCE", raising=False)
    return control_socket_path()


def test_help_start_end_and_list(socket_env: Path) -> None:
    asked: list[dict[str, Any]] = []

    async def controller(request: dict[str, Any]) -> dict[str, Any]:
        asked.append({k: v for k, v in request.items() if k != "peer"})
        action = request["action"]
        if action == "start":
            return {"ok": True, "period": PERIOD, "skipped": ["1003"]}
        if action == "end":
            return {"ok": True, "ended": [{**PERIOD, "ended": 1795997000.0, "ended_by": "root"}]}
        return {"ok": True, "active": [PERIOD], "recent": []}

    with ThreadedServer(socket_env, controller):
        r = CliRunner().invoke(main, ["agents", "help", "--group", "1001,1002,1003", "--queue", "line_12333",
                                      "--minutes", "30", "--why", "12333 排队", "--actor", "班长王"])
        assert r.exit_code == 0, r.output
        assert "1001,1002 → line_12333" in r.output and "by root (班长王): 12333 排队" in r.output
        assert "left out (already serve or help line_12333): 1003" in r.output
        r2 = CliRunner().invoke(main, ["agents", "help", "--end", "--queue", "line_12333"])
        assert r2.exit_code == 0 and "ended" in r2.output and "by root" in r2.output
        r3 = CliRunner().invoke(main, ["agents", "help"])
        assert r3.exit_code == 0 and "h0123456789" in r3.output
        r4 = CliRunner().invoke(main, ["agents", "help", "--group", "1001", "--queue", "line_12333"])
        assert r4.exit_code == 2 and "--minutes, --why" in r4.output
    assert asked == [
        {"op": "help", "action": "start", "group": "1001,1002,1003", "queue": "line_12333", "minutes": 30.0,
         "why": "12333 排队", "actor": "班长王"},
        {"op": "help", "action": "end", "id": "", "queue": "line_12333", "why": "", "actor": ""},
        {"op": "help", "action": "list"}]


def test_a_refused_help_exits_1_and_no_controller_exits_3(socket_env: Path) -> None:
    r = CliRunner().invoke(main, ["agents", "help"])
    assert r.exit_code == 3 and "not running" in r.output

    async def refusing(request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": False, "error": "no queue 'nope' (queues: general, overflow)"}

    with ThreadedServer(socket_env, refusing):
        r = CliRunner().invoke(main, ["agents", "help", "--group", "1001", "--queue", "nope", "--minutes", "5",
                                      "--why", "x"])
    assert r.exit_code == 1 and "no queue 'nope'" in r.output
