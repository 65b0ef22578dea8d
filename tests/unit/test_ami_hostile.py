"""Issue 14.5/14.6: the AMI event path survives hostile handlers and servers (fake Asterisk manager)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from wire.ami import AmiClient

try:
    from tests.fakes import FakeAmiConnection, FakeAmiServer
except ModuleNotFoundError:  # tests/ has no __init__.py: pytest puts tests/ itself on sys.path
    from fakes import FakeAmiConnection, FakeAmiServer  # type: ignore[no-redef]

AmiMsg = dict[str, str]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmiServer]:
    srv = await FakeAmiServer().start()
    yield srv
    await srv.stop()


async def connected(fake: FakeAmiServer, **kw: Any) -> AmiClient:
    opts: dict[str, Any] = dict(ping_interval=5.0, action_timeout=1.0, reconnect_delay=0.05, connect_timeout=1.0)
    opts.update(kw)
    c = AmiClient("127.0.0.1", fake.port, "hotline", "s3cret", **opts)
    await c.start()
    await c.wait_connected(2)
    return c


async def until(pred: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_a_handler_raising_cancellederror_does_not_end_the_dispatcher(fake: FakeAmiServer) -> None:
    """One stray CancelledError used to end event delivery for good while the link looked connected."""
    c = await connected(fake)
    try:
        got: list[str] = []

        async def rude(e: AmiMsg) -> None:
            if e["Uniqueid"] == "1":
                raise asyncio.CancelledError()

        c.on_event("Newchannel", rude)
        c.on_event("Newchannel", lambda e: got.append(e["Uniqueid"]))
        with capture_logs() as logs:
            for uid in ("1", "2", "3"):
                await fake.conn.send({"Event": "Newchannel", "Uniqueid": uid})
            await until(lambda: got == ["1", "2", "3"])
        assert any(e["event"] == "ami_event_handler_failed" for e in logs)
        h = c.health()
        assert h["handler_failures"] == 1 and h["dispatcher_alive"] and h["queued_events"] == 0
        assert h["last_event_age_s"] is not None and h["last_event_age_s"] < 2
    finally:
        await c.close()


async def test_a_dead_dispatcher_is_restarted(fake: FakeAmiServer) -> None:
    c = await connected(fake)
    try:
        got: list[str] = []
        c.on_event("Newchannel", lambda e: got.append(e["Uniqueid"]))
        assert c._dispatch_task is not None
        c._dispatch_task.cancel()  # killed from outside, not by close()
        await asyncio.sleep(0.05)
        await fake.conn.send({"Event": "Newchannel", "Uniqueid": "9"})
        await until(lambda: got == ["9"])
        assert c.health()["dispatcher_restarts"] == 1
    finally:
        await c.close()


async def test_event_queue_is_bounded_and_reading_never_waits(fake: FakeAmiServer) -> None:
    c = await connected(fake, max_queued_events=10, handler_budget=30.0)
    try:
        release = asyncio.Event()

        async def stuck(e: AmiMsg) -> None:
            await release.wait()

        c.on_event("VarSet", stuck)
        for i in range(50):
            await fake.conn.send({"Event": "VarSet", "Seq": str(i)})
        t0 = time.monotonic()
        assert (await c.action("Ping"))["Ping"] == "Pong"
        assert time.monotonic() - t0 < 0.5
        await until(lambda: c.health()["events_dropped"] > 0)
        assert c.health()["queued_events"] <= 10
        release.set()
    finally:
        await c.close()


async def test_a_slow_handler_does_not_hold_up_other_subscribers(fake: FakeAmiServer) -> None:
    c = await connected(fake, handler_budget=0.1)
    try:
        fast: list[int] = []
        slow_done: list[int] = []

        async def slow(e: AmiMsg) -> None:  # e.g. a database save
            await asyncio.sleep(1.0)
            slow_done.append(int(e["Seq"]))

        c.on_event("VarSet", slow)
        c.on_event("VarSet", lambda e: fast.append(int(e["Seq"])))
        t0 = time.monotonic()
        for i in range(5):
            await fake.conn.send({"Event": "VarSet", "Seq": str(i)})
        await until(lambda: len(fast) == 5, 2.0)
        assert time.monotonic() - t0 < 1.5, "head-of-line blocking behind a slow handler"
        await until(lambda: len(slow_done) == 5, 3.0)  # the slow work still finishes, never cancelled
        assert c.health()["handlers_late"] >= 1
    finally:
        await c.close()


async def test_login_then_drop_is_retried_with_backoff(fake: FakeAmiServer) -> None:
    async def login_and_drop(conn: FakeAmiConnection, a: AmiMsg) -> None:
        await conn.respond(a, Message="Authentication accepted")
        conn.close()

    fake.on("Login", login_and_drop)
    c = AmiClient("127.0.0.1", fake.port, "hotline", "s3cret", reconnect_delay=0.05, connect_timeout=1.0)
    await c.start()
    try:
        await asyncio.sleep(1.5)
        # without backoff: a login every ~50 ms (about 30); doubling from 50 ms: 0.05+0.1+0.2+0.4+0.8
        assert len(fake.seen("Login")) <= 7, len(fake.seen("Login"))
    finally:
        await c.close()
