"""Controllers that fail over (issue 16 item 3): one real Asterisk 22, two real controller processes sharing one
real PostgreSQL, the dialplan rendered with `asterisk.fastagi.controllers: [first, second]`.

* both run: calls ring through (the first controller's IVR answers them), each call has exactly one ticket
  although both controllers' AMI links saw every event and both saved it;
* kill -9 of the first: new calls are answered by the second's IVR (Asterisk's connect to the dead one is
  refused, AGISTATUS FAILURE, the next controller is tried), each with one ticket, and the second takes over
  the node's CDR replay and its agents once the dead one's leases run out;
* a missed call's automatic callback, with both schedulers polling the same database, is dialed once.

Run with your own instance: HOTLINE_INSTANCE=x HOTLINE_PORT_OFFSET=n .venv/bin/pytest tests/e2e/test_controller_failover.py
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hotline.callrobot import CallRobot, wait_ticket
from hotline.controller import AGENTS_LEASE_S, CDR_LEASE_MIN_S
from hotline.install import install_everything
from tests.e2e.conftest import INSTANCE, OFFSET
from tests.e2e.faults import ControllerProcess
from tests.e2e.test_faults import answered_and_gone, fresh_pg, is_event, one_complete_ticket, opened
from hotline.callrobot import abandoned_call
from tests.e2e.test_outreach import Watch
from ticketbridge.callbacks import CALLBACK_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

#: the citizens of this file (the automatic callbacks dial only these)
PREFIX = "13588"


def number() -> str:
    return PREFIX + f"{random.randrange(10**6):06d}"


async def reload_dialplan(cfg: Any, sb: Any, apply_ami: Any, controllers: list[str]) -> None:
    """Render this instance's files as conftest's `asterisk` fixture does, with these FastAGI controllers,
    and reload the dialplan (the other modules stay as they are)."""
    c = cfg.model_copy(deep=True)
    c.asterisk.fastagi.controllers = controllers
    rtp = 10000 + OFFSET * 10
    install_everything(c, sb, with_sim=True, demo_secrets=True, rtp_range=(rtp, rtp + 999),
                       prompts_dir=Path(os.environ.get("HOTLINE_STATE", "/var/lib/hotline12345")) / "prompts")
    await apply_ami.action("Reload", Module="pbx_config.so")


@contextlib.asynccontextmanager
async def two_controllers(cfg: Any, asterisk: Any, apply_ami: Any, ami: Any, tmp_path: Path, *extra: str):
    """Both controllers on one fresh PostgreSQL database, the dialplan trying the first then the second."""
    port = cfg.asterisk.fastagi.port
    second = port + 1
    both = [f"127.0.0.1:{port}", f"127.0.0.1:{second}"]
    await reload_dialplan(cfg, asterisk, apply_ami, both)
    got = await ami.action("Getvar", Variable="HOTLINE_AGI_2")
    assert got.get("Value") == f"agi://127.0.0.1:{second}", got
    made: list[ControllerProcess] = []
    try:
        async with fresh_pg() as db:
            url = db.render_as_string(hide_password=False)
            extra = ("--controllers", ",".join(both), *extra)
            first = ControllerProcess(url, tmp_path / "controller-1.log", extra=list(extra))
            other = ControllerProcess(url, tmp_path / "controller-2.log", extra=[
                "--fastagi-port", str(second), "--api-port", str(cfg.api.port + 1),
                "--control-path", str(tmp_path / "controller-2.sock"), *extra])
            made += [first, other]
            await first.start()
            await other.start()
            yield url, first, other
    finally:
        for c in made:
            if c.proc is not None:
                c.kill9()
        await reload_dialplan(cfg, asterisk, apply_ami, [])


def inbound_sessions(ctl: ControllerProcess) -> int:
    return len([r for r in ctl.events("agi_session_started") if r.get("script") == "inbound"])


async def served_call(ami: Any, caller: str) -> tuple[CallRobot, float]:
    """A caller the IVR answers (its menu step comes from a controller's script), then an agent; the seconds
    from dialing to the IVR's menu."""
    t0 = time.monotonic()
    robot = await CallRobot(ami, caller=caller).dial()
    await robot.wait_step("menu:main", 30)
    to_menu = time.monotonic() - t0
    await robot.press("0")
    await answered_and_gone(robot)
    return robot, to_menu


async def test_kill9_of_the_first_controller_the_second_answers_new_calls_and_each_call_has_one_ticket(
        cfg, asterisk, ami, apply_ami, agents, tmp_path) -> None:
    await agents.add("general", talk_s=1)
    async with two_controllers(cfg, asterisk, apply_ami, ami, tmp_path) as (url, first, other):
        job = f"cdr-replay:{INSTANCE}"
        await first.wait_log("lease_taken", 20, job=job)  # the first to start replays the node's CDR
        assert not other.events("lease_taken")
        # the first in the list acts for the agents; the second stands by
        assert [r["role"] for r in first.events("agents_role")] == ["active"]
        assert [r["role"] for r in other.events("agents_role")] == ["standby"]

        before = [number() for _ in range(2)]
        robots = []
        for caller in before:  # both controllers up: the first one's IVR answers
            robot, to_menu_both = await served_call(ami, caller)
            robots.append(robot)
        assert (inbound_sessions(first), inbound_sessions(other)) == (2, 0)

        first.kill9()
        killed = time.time()
        after = [number() for _ in range(2)]
        for caller in after:  # the first is gone: Asterisk is refused there and tries the second
            robot, to_menu_failover = await served_call(ami, caller)
            robots.append(robot)
            assert not robot.user_events("HotlineRoute") or all(
                e.get("Fallback") != "1" for e in robot.user_events("HotlineRoute")), "served, not the fallback"
        assert inbound_sessions(other) == 2

        taken = await other.wait_log("lease_taken", 30, job=job)  # the dead one's lease ran out
        handover = dt.datetime.fromisoformat(taken["timestamp"]).timestamp() - killed
        assert 0 < handover < CDR_LEASE_MIN_S + 5, handover
        agents = await other.wait_log("agents_taken_over", 30)
        agents_after = dt.datetime.fromisoformat(agents["timestamp"]).timestamp() - killed
        assert 0 < agents_after < AGENTS_LEASE_S + 5, agents_after

        async with opened(url, cfg) as store:
            tickets = [await one_complete_ticket(store, r, c) for r, c in zip(robots, before + after)]
            assert all(t.outcome == "answered" and t.handled_by != "fallback" for t in tickets), \
                [(t.outcome, t.handled_by) for t in tickets]
            for t in tickets:  # each saved by both controllers (before the kill) or one: pushed as created once
                created = [o for o in await store.outbox_for(t.ticket_no) if o.payload.get("event") == "created"]
                assert len(created) == 1, t.ticket_no
        await other.stop()
    print(f"\nfailover: dial → IVR menu {to_menu_both:.1f} s with both up, {to_menu_failover:.1f} s after kill -9 "
          f"of the first; CDR replay taken over {handover:.1f} s, the agents {agents_after:.1f} s after the kill")


async def test_a_missed_call_is_called_back_once_with_two_controllers_polling(
        cfg, asterisk, ami, apply_ami, agents, tmp_path) -> None:
    async with two_controllers(cfg, asterisk, apply_ami, ami, tmp_path,
                               "--auto-callbacks", f"_{PREFIX}XXXXXX") as (url, first, other):
        watch = Watch(ami)
        try:
            caller = number()
            missed = await abandoned_call(ami, caller)
            async with opened(url, cfg) as store:
                t = await wait_ticket(store, missed.linkedid, 20)
                await agents.add("general", talk_s=1)
                deadline = time.monotonic() + 60
                while (cb := await store.callback_for(t.ticket_no)) is None or cb.status != "done":
                    assert time.monotonic() < deadline, cb
                    await asyncio.sleep(0.3)
                await asyncio.sleep(3.0)  # several more rounds of both schedulers: nothing dialed again
                cb = await store.callback_for(t.ticket_no)
                assert cb is not None and cb.status == "done" and cb.attempts == 1, cb
                assert [x.ticket_no for x in await store.list_tickets(caller=caller)] == [t.ticket_no]
            answered = Counter(e.get("Number") for e in watch.events if e.get("UserEvent") == "SimCallerAnswered")
            assert answered[caller] == 1, answered
            originated = [e for e in watch.events if e.get("Event") == "Newchannel"
                          and e.get("Uniqueid", "").startswith(f"{CALLBACK_PREFIX}{t.ticket_no}-")
                          and not e["Uniqueid"].endswith("-2")]
            assert len(originated) == 1, [e["Uniqueid"] for e in originated]
            dialing = [c for c in (first, other)
                       for r in c.events("callback_dialing") if r.get("ticket") == t.ticket_no]
            assert len(dialing) == 1
        finally:
            watch.close()
        await first.stop()
        await other.stop()


@contextlib.contextmanager
def unanswering_address():
    """host:port where nothing answers a TCP SYN (a host gone, or a controller too stuck to accept): a listening
    socket that never accepts, its accept queue filled, so the kernel drops further SYNs. (A made-up remote
    address does not do here: this machine's network accepts any outbound connection.)"""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fill = []
    try:
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", port))
            fill.append(c)
        time.sleep(0.3)
        probe = socket.socket()
        probe.settimeout(2.5)
        with pytest.raises(TimeoutError):  # the premise: a connect there is never answered
            probe.connect(("127.0.0.1", port))
        probe.close()
        yield f"127.0.0.1:{port}"
    finally:
        for c in fill:
            c.close()
        srv.close()


async def test_a_first_controller_that_never_answers_costs_the_caller_the_connect_timeout_only(
        cfg, asterisk, ami, apply_ami, agents, tmp_path) -> None:
    """The first listed controller never answers (its host gone: SYNs unanswered), the second serves: Asterisk
    gives up on the first after its connect timeout (2 s) and the same IVR answers."""
    port = cfg.asterisk.fastagi.port
    await agents.add("general", talk_s=1)
    ctl = ControllerProcess(f"sqlite+aiosqlite:///{tmp_path}/tickets.db", tmp_path / "controller.log")
    try:
        with unanswering_address() as dead:
            await reload_dialplan(cfg, asterisk, apply_ami, [dead, f"127.0.0.1:{port}"])
            await ctl.start()
            caller = number()
            robot, to_menu = await served_call(ami, caller)
        assert inbound_sessions(ctl) == 1
        async with opened(f"sqlite+aiosqlite:///{tmp_path}/tickets.db", cfg) as store:
            t = await one_complete_ticket(store, robot, caller)
            assert t.outcome == "answered" and t.handled_by != "fallback"
        await ctl.stop()
    finally:
        if ctl.proc is not None:
            ctl.kill9()
        await reload_dialplan(cfg, asterisk, apply_ami, [])
    print(f"\nfirst controller unanswering: dial → IVR menu {to_menu:.1f} s (Asterisk's 2 s connect timeout included)")
