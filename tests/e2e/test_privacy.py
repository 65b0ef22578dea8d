"""Personal data locked down, checked after a real call through a real Asterisk (issue "Ready for real
traffic", items 9 and 12): no caller number in any log Asterisk or the controller writes, private file
modes on Asterisk's logs, CDR and spool, and the call's CDR row tagged with this test run's own instance."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest

from hotline.callrobot import CallRobot, wait_ticket
from model.contract import CdrVar

pytestmark = pytest.mark.e2e

CALLER = "13800138000"


def _is_event(name: str):
    return lambda e: e.get("Event") == name


async def test_a_call_leaves_no_caller_number_in_logs_and_only_private_files(controller, ami, agents, asterisk,
                                                                           capfd):
    await agents.add("general", talk_s=1)
    robot = await CallRobot(ami, number="12345", caller=CALLER).dial()
    await robot.wait_step("menu:main", 30)
    await robot.press("1")
    await robot.wait_for(_is_event("AgentConnect"), 30)
    await robot.wait_for(_is_event("AgentComplete"), 30)
    await robot.hangup()
    t = await wait_ticket(controller.store, robot.linkedid, 20)
    assert t.caller == CALLER  # the ticket keeps it; the logs must not
    await asyncio.sleep(1.5)  # Asterisk writes its CDR line and flushes its logs as the channels go

    log_dir = asterisk.log_dir
    cdr = asterisk.cdr_csv
    logs = [p for p in log_dir.rglob("*") if p.is_file() and p != cdr]
    assert any(p.name == "messages.log" for p in logs) and any(p.name == "console.log" for p in logs)
    for p in logs:
        assert CALLER not in p.read_text(errors="replace"), f"{p} holds the caller's number"
    # the controller's own log lines (structlog, to stdout/stderr) mask it too
    out, err = capfd.readouterr()
    assert "ticket_saved" in out + err, "the controller's log was not captured"
    assert CALLER not in out + err

    # the CDR (the replay's source) holds the number: readable by Asterisk and root only, this instance's own
    rows = [json.loads(line) for line in cdr.read_text().splitlines() if line.strip()]
    mine = [r for r in rows if r.get("linkedid") == robot.linkedid and r.get(CdrVar.DIALED)]
    assert mine and all(r.get(CdrVar.INSTANCE) == asterisk.layout.instance for r in mine)
    assert asterisk.layout.instance != "main" and asterisk.layout.instance in str(cdr)

    spool = asterisk.host_path(asterisk.layout.spool)
    checked = 0
    for top in (log_dir, spool):
        for p in [top, *top.rglob("*")]:
            if p.is_symlink():
                continue
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode & 0o007 == 0, f"{p} is {oct(mode)}: other local users can read it"
            checked += 1
    assert checked > 5
    assert stat.S_IMODE(cdr.stat().st_mode) & 0o077 in (0, 0o040), oct(cdr.stat().st_mode)
    assert os.access(cdr, os.R_OK)
