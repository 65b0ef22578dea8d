"""The controller owns its background tasks: stop() cancels and awaits every one, and a failure is logged.

A real controller (FastAGI on an ephemeral loopback port, a real SQLite store, a CDR file)
against the fake AMI server of tests/fakes.py; no Asterisk needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hotline.controller import Controller
from model.config import Config
from tests.fakes import FakeAmiServer


class FakeOutbox:
    """Stands in for the outbox pusher: runs until cancelled, and takes a while to clean up then
    (or fails at once with `fail`), so a stop() that does not await its tasks is caught."""

    def __init__(self, fail: BaseException | None = None, cleanup_s: float = 0.2) -> None:
        self.fail = fail
        self.cleanup_s = cleanup_s
        self.running = asyncio.Event()
        self.cleaned_up = False

    def notify(self) -> None:
        pass

    async def run(self) -> None:
        self.running.set()
        if self.fail is not None:
            raise self.fail
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(self.cleanup_s)
            self.cleaned_up = True
            raise


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmiServer]:
    server = await FakeAmiServer().start()
    yield server
    await server.stop()


@pytest.fixture
def make_controller(ami: FakeAmiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOTLINE_AMI_SECRET", ami.secret)

    def make(**kw: Any) -> Controller:
        config = Config.model_validate({
            "queues": {"general": {"name": "综合"}},
            "asterisk": {"ami": {"port": ami.port, "username": ami.username, "secret_env": "HOTLINE_AMI_SECRET",
                                 "connect_timeout_s": 1.0, "ping_interval_s": 30.0},
                         "fastagi": {"host": "127.0.0.1", "port": 0}},
        })
        return Controller(config, store_url=f"sqlite+aiosqlite:///{tmp_path}/tickets.db",
                          cdr_path=tmp_path / "Master.json", cdr_settle_s=0, **kw)

    return make


async def test_stop_returns_only_once_every_background_task_has_finished(make_controller: Any,
                                                                          ami: FakeAmiServer) -> None:
    async def never_answer(conn: Any, action: Any) -> None:
        pass

    ami.on("CoreShowChannels", never_answer)  # the after-login sweep hangs until stop() cancels it
    c = make_controller()
    c.outbox = outbox = FakeOutbox()
    await c.start()
    await c.ami.wait_connected(2)
    await asyncio.wait_for(outbox.running.wait(), 2)
    await ami.wait_action("CoreShowChannels")
    tasks = set(c._tasks)
    assert {t.get_name() for t in tasks} >= {"cdr-reconcile", "outbox-pusher", "after-ami-login"}
    assert not any(t.done() for t in tasks)

    await asyncio.wait_for(c.stop(grace_s=0.1), 5)

    assert all(t.done() for t in tasks)
    assert outbox.cleaned_up, "stop() returned before the outbox task had finished"
    assert not c._tasks


async def test_a_background_task_that_fails_is_logged(make_controller: Any) -> None:
    c = make_controller()
    c.outbox = outbox = FakeOutbox(fail=RuntimeError("platform client broke"))
    with capture_logs() as logs:
        await c.start()
        await asyncio.wait_for(outbox.running.wait(), 2)
        for _ in range(5):  # let the task end and its done-callback run
            await asyncio.sleep(0)
        failed = [e for e in logs if e["event"] == "controller_task_failed"]
        assert [e["task"] for e in failed] == ["outbox-pusher"]
        assert "platform client broke" in failed[0]["error"]
        await asyncio.wait_for(c.stop(grace_s=0.1), 5)  # a dead task does not stop the shutdown
    assert not c._tasks


async def test_a_login_racing_the_shutdown_leaves_no_task_behind(make_controller: Any) -> None:
    c = make_controller()
    await c.start()
    await c.ami.wait_connected(2)
    stopping = asyncio.create_task(c.stop(grace_s=0.1))
    await asyncio.sleep(0)
    c._on_ami_login({"Event": "FullyBooted"})  # a (re)login racing the shutdown
    await asyncio.wait_for(stopping, 5)
    assert not c._tasks


class StubbornOutbox(FakeOutbox):
    """A task that swallows its cancellation (a bug somewhere): it must not hold the stop for good."""

    stubborn = True

    async def run(self) -> None:
        self.running.set()
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if not self.stubborn:
                    raise


async def test_a_task_that_swallows_its_cancellation_never_hangs_the_stop(make_controller: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import hotline.controller as controller_module

    monkeypatch.setattr(controller_module, "STOP_STEP_S", 0.3)
    c = make_controller()
    c.outbox = outbox = StubbornOutbox()
    await c.start()
    await asyncio.wait_for(outbox.running.wait(), 2)
    with capture_logs() as logs:
        await asyncio.wait_for(c.stop(grace_s=0.1), 5)
    stuck = [e for e in logs if e["event"] == "controller_task_stuck"]
    assert [e["task"] for e in stuck] == ["outbox-pusher"] and stuck[0]["where"], stuck
    assert logs[-1]["event"] == "controller_stopped"
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "outbox-pusher")
    assert not task.done()  # it lives on: the stop went past it
    outbox.stubborn = False  # now let it end, so the test's loop closes
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    assert task.done()


async def test_status_shows_the_ami_link_and_tickets_held_until_the_store_returns(make_controller: Any,
                                                                                   tmp_path: Path) -> None:
    """`hotline status` (control op `status`): healthy; the store refuses a ticket → degraded, the ticket
    held; the store back → written by the retry task, healthy again."""
    from hotline.control import ask
    from ticketbridge.assembler import CallRecord

    sock = tmp_path / "control.sock"
    c = make_controller(control_path=sock)
    await c.start()
    try:
        await c.ami.wait_connected(2)
        h = await ask(sock, {"op": "status"})
        assert h["ok"] and h["healthy"] and h["ami"]["connected"] and h["ami"]["dispatcher_alive"]
        assert h["store"]["held_tickets"] == 0
        real = c.store.save_call

        async def unreachable(record: Any) -> Any:
            raise ConnectionRefusedError(111, "Connect call failed")

        c.store.save_call = unreachable  # type: ignore[method-assign]
        with capture_logs() as logs:
            await c._save(CallRecord(linkedid="held-1", caller="13800138000", dialed="12345",
                                     outcome="abandoned_in_queue"))
        assert [e["reason"] for e in logs if e["event"] == "ticket_store_unavailable"] == ["unreachable"]
        h = await ask(sock, {"op": "status"})
        assert not h["healthy"] and h["store"]["held_tickets"] == 1 and h["store"]["reason"] == "unreachable"
        c.store.save_call = real  # type: ignore[method-assign]
        for _ in range(60):
            if await c.store.get_by_linkedid("held-1") is not None:
                break
            await asyncio.sleep(0.1)
        t = await c.store.get_by_linkedid("held-1")
        assert t is not None and t.outcome == "abandoned_in_queue" and t.caller == "13800138000"
        assert (await ask(sock, {"op": "status"}))["healthy"]
    finally:
        await asyncio.wait_for(c.stop(grace_s=0.1), 5)


def test_the_cdr_replay_leaves_alone_the_calls_whose_records_wait_for_the_store(make_controller: Any) -> None:
    """A record held while the store is away (ticketbridge/pending.py) is the live one, fuller than a CDR
    rebuild: the replay must not save the call first (and the live figures then count it twice)."""
    from ticketbridge.assembler import CallRecord

    c = make_controller()
    c.pending.defer(CallRecord(linkedid="1760000000.9", outcome="answered"), ConnectionRefusedError("away"))
    assert "1760000000.9" in c._open_linkedids()
