"""Fault injection (issue 14): the real controller process, a real Asterisk 22, real SQLite/PostgreSQL.

Each test breaks one thing the way it breaks in production — SIGKILL of the controller, the AMI
TCP link cut, PostgreSQL unreachable, the store's disk full, Asterisk restarted — and asserts
what an operator checks afterwards: the caller was not dropped by our fault (reached a queue or
an agent), and every call has exactly one complete, correct ticket. The recovery times printed
(`-s`) are the figures in the README's Reliability section.

Run with your own instance: HOTLINE_INSTANCE=x HOTLINE_PORT_OFFSET=n .venv/bin/pytest -m fault tests/e2e
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from hotline.callrobot import CallRobot, wait_ticket
from tests.conftest import PG_URL, require
from tests.e2e.faults import ControllerProcess, CutLink
from ticketbridge.store import TicketStore

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


def left_agent(e: dict[str, str]) -> bool:
    return e.get("Event") in ("AgentComplete", "BridgeLeave")


def number(prefix: str) -> str:
    return prefix + f"{random.randrange(10**4):04d}"


@contextlib.asynccontextmanager
async def opened(url: str, cfg: Any):
    store = TicketStore(url, cfg)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def fresh_pg():
    """A throwaway PostgreSQL database (never the shared server's state: only this database)."""
    name = f"hl_fault_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"timeout": 3})
    try:
        async with admin.connect() as c:
            await c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001
        await admin.dispose()
        require(False, f"PostgreSQL unreachable at {PG_URL}: {e}")
    try:
        yield make_url(PG_URL).set(database=name)
    finally:
        async with admin.connect() as c:
            await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def one_complete_ticket(store: TicketStore, robot: CallRobot, caller: str, timeout: float = 30.0) -> Any:
    t = await wait_ticket(store, robot.linkedid, timeout)
    mine = await store.list_tickets(caller=caller)
    assert [x.ticket_no for x in mine] == [t.ticket_no], f"one ticket per call, got {len(mine)}"
    assert t.caller == caller and len(t.ticket_no) == 12
    return t


async def answered_and_gone(robot: CallRobot) -> None:
    await robot.wait_for(is_event("AgentConnect"), 40)
    await robot.wait_for(left_agent, 20)
    await robot.hangup()
    await robot.wait_hangup(10)


@pytest.fixture
def ctl_log(tmp_path: Path) -> Path:
    return tmp_path / "controller.log"


# ----------------------------------------------------------------------------- kill -9 of the controller


async def test_kill9_mid_ivr_caller_reaches_the_queue_and_the_ticket_is_completed_from_cdr(
        cfg, asterisk, ami, agents, tmp_path, ctl_log):
    url = f"sqlite+aiosqlite:///{tmp_path}/tickets.db"
    ctl = ControllerProcess(url, ctl_log)
    await ctl.start()
    caller = number("134100")
    robot = await CallRobot(ami, caller=caller).dial()
    await robot.wait_step("menu:main", 30)  # the controller's FastAGI script is in the menu
    t0 = time.monotonic()
    ctl.kill9()
    join = await robot.wait_for(is_event("QueueCallerJoin"), 20)
    queued_after = time.monotonic() - t0
    assert join["Queue"] == "hotline-general" and not robot.hung_up
    await agents.add("general", talk_s=1)
    await answered_and_gone(robot)
    await asyncio.sleep(1.0)  # Asterisk writes the CDR line as the channels go

    t1 = time.monotonic()
    await ctl.start()
    try:
        async with opened(url, cfg) as store:
            t = await one_complete_ticket(store, robot, caller)
            ticket_after = time.monotonic() - t1
            assert t.outcome == "answered" and t.dialed == "12345" and t.queue == "general" and t.agent
    finally:
        await ctl.stop()
    print(f"\nkill -9 mid-IVR: caller queued {queued_after:.1f} s after the kill; ticket {ticket_after:.1f} s "
          "after the restart")
