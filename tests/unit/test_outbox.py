"""The outbox pusher against a real store (SQLite file; PostgreSQL schema) and a real HTTP receiver on loopback.

The receiver is `http.server` in a thread, stopped and started again on the same port
to play a platform that goes away; it dedupes by Idempotency-Key like a real one must.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from model.loading import load_config
from tests.conftest import PG_URL, require
from ticketbridge.assembler import CallRecord
from ticketbridge.outbox import OutboxPusher
from ticketbridge.store import TicketStore

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


class Receiver:
    """A platform endpoint: records every POST, dedupes by key; `mode` ok / fail / slow; can go down."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/tickets"
        self.mode = "ok"
        self.slow_s = 1.0
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.by_key: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key") or ""
                payload = json.loads(body)
                with recv.lock:
                    recv.posts.append((key, payload))
                if recv.mode == "fail":
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"busy")
                    return
                if recv.mode == "slow":
                    time.sleep(recv.slow_s)
                with recv.lock:
                    duplicate = key in recv.by_key
                    recv.by_key.setdefault(key, payload)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"duplicate": duplicate}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    r.start()
    yield r
    r.stop()


StoreFactory = Callable[[], Awaitable[TicketStore]]


@pytest.fixture(params=["sqlite", "pg"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Stores on one database with the real clock (backoff is real time here)."""
    cfg = load_config(SHIPPED)
    opened: list[TicketStore] = []
    schema = f"o_{uuid.uuid4().hex[:12]}"
    options: dict[str, Any] = {}
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/tickets.db"
    else:
        url = PG_URL
        admin = create_async_engine(PG_URL, connect_args={"timeout": 3})
        try:
            async with admin.begin() as c:
                await c.execute(text(f'CREATE SCHEMA "{schema}"'))
        except Exception as e:  # noqa: BLE001
            require(False, f"PostgreSQL unreachable at {PG_URL}: {e}")
        finally:
            await admin.dispose()
        options = {"connect_args": {"server_settings": {"search_path": schema}}}

    async def factory() -> TicketStore:
        st = TicketStore(url, cfg, engine_options=options)
        await st.open()
        opened.append(st)
        return st

    try:
        yield factory
    finally:
        for st in opened:
            await st.close()
        if request.param == "pg":
            admin = create_async_engine(PG_URL)
            async with admin.begin() as c:
                await c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await admin.dispose()


def rec(linkedid: str) -> CallRecord:
    now = time.time()
    return CallRecord(linkedid=linkedid, caller="13800138000", dialed="12345", queue="general", agent="seat1001",
                      outcome="answered", answered_at=now - 30, started_at=now - 60, ended_at=now, talk_s=30.0)


async def eventually(cond: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


async def undelivered(st: TicketStore) -> int:
    return len(await st.outbox_list(delivered=False, dead=False, limit=10_000))


def start(pusher: OutboxPusher) -> asyncio.Task[None]:
    return asyncio.create_task(pusher.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def fast(st: TicketStore, url: str, **kw: Any) -> OutboxPusher:
    opts: dict[str, Any] = dict(timeout_s=2.0, backoff_s=0.1, max_backoff_s=0.4, poll_s=0.05, lease_s=1.0,
                                max_attempts=50, allow_http=True)
    opts.update(kw)
    return OutboxPusher(st, url, **opts)


# --------------------------------------------------------------------------- tests


async def test_each_change_is_posted_with_its_idempotency_key(make_store: StoreFactory, receiver: Receiver) -> None:
    st = await make_store()
    saved = [await st.save_call(rec(f"p.{i}")) for i in range(3)]
    await st.change_state(saved[0].ticket_no, "closed", "agent:1001")
    task = start(fast(st, receiver.url))
    try:
        await eventually(lambda: _zero(st), what="all delivered")
    finally:
        await stop(task)
    rows = await st.outbox_list(limit=100)
    assert len(rows) == 4 and all(r.delivered_at is not None and r.attempts == 1 for r in rows)
    assert sorted(k for k, _ in receiver.posts) == sorted(r.idempotency_key for r in rows)
    by_key = {r.idempotency_key: r for r in rows}
    for key, payload in receiver.posts:
        assert payload["ticket_no"] == by_key[key].ticket_no and "query_password_hash" not in payload
    assert {p["event"] for _, p in receiver.posts} == {"created", "state_changed"}


async def _zero(st: TicketStore) -> bool:
    return await undelivered(st) == 0


async def test_receiver_down_retries_with_backoff_then_delivers(make_store: StoreFactory,
                                                                receiver: Receiver) -> None:
    receiver.stop()
    st = await make_store()
    await st.save_call(rec("down.1"))
    await st.save_call(rec("down.2"))
    pusher = fast(st, receiver.url)
    task = start(pusher)
    try:
        async def retried() -> bool:
            rows = await st.outbox_list(limit=10)
            return all(r.attempts >= 2 for r in rows)
        await eventually(retried, what="two failed attempts each")
        rows = await st.outbox_list(limit=10)
        assert all(r.delivered_at is None and "ConnectError" in (r.last_error or "") for r in rows)
        receiver.start()  # the platform comes back on the same address
        await eventually(lambda: _zero(st), what="delivered after the receiver came back")
    finally:
        await stop(task)
    assert len(receiver.by_key) == 2 and pusher.failed >= 4
    assert pusher.backoff(1) == 0.1 and pusher.backoff(2) == 0.2 and pusher.backoff(10) == 0.4


async def test_pusher_killed_mid_post_then_restarted_loses_nothing(make_store: StoreFactory,
                                                                   receiver: Receiver) -> None:
    st = await make_store()
    for i in range(3):
        await st.save_call(rec(f"kill.{i}"))
    receiver.mode, receiver.slow_s = "slow", 1.0
    first = start(fast(st, receiver.url, lease_s=0.5))
    await eventually(_async(lambda: len(receiver.posts) >= 1), what="a POST in flight")
    await stop(first)  # killed while the receiver is still answering
    assert await undelivered(st) == 3  # nothing marked delivered without an answer
    receiver.mode = "ok"
    second = start(fast(st, receiver.url, lease_s=0.5))  # a fresh pusher (e.g. after a controller restart)
    try:
        await eventually(lambda: _zero(st), what="all delivered by the restarted pusher")
    finally:
        await stop(second)
    keys = {r.idempotency_key for r in await st.outbox_list(limit=10)}
    assert set(receiver.by_key) == keys  # every change arrived; by key, exactly once
    assert len(receiver.posts) >= 3


async def test_restart_of_both_sides(make_store: StoreFactory, receiver: Receiver) -> None:
    """Receiver down while the pusher restarts, both come back: every change arrives once by key."""
    st = await make_store()
    await st.save_call(rec("both.1"))
    receiver.stop()
    task = start(fast(st, receiver.url))
    await eventually(_rows_attempted(st, 1), what="a failed attempt")
    await stop(task)
    st2 = await make_store()  # the controller's process restarts: a new store and pusher
    await st2.save_call(rec("both.2"))
    receiver.start()
    task = start(fast(st2, receiver.url))
    try:
        await eventually(lambda: _zero(st2), what="delivered after both restarts")
    finally:
        await stop(task)
    assert len(receiver.by_key) == 2


def _rows_attempted(st: TicketStore, n: int) -> Callable[[], Awaitable[bool]]:
    async def cond() -> bool:
        rows = await st.outbox_list(limit=10)
        return bool(rows) and all(r.attempts >= n for r in rows)
    return cond


def _async(fn: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def cond() -> bool:
        return fn()
    return cond


async def test_dead_letter_after_max_attempts_and_retry(make_store: StoreFactory, receiver: Receiver) -> None:
    st = await make_store()
    saved = await st.save_call(rec("dead.1"))
    receiver.mode = "fail"
    pusher = fast(st, receiver.url, max_attempts=3, backoff_s=0.02, max_backoff_s=0.05)
    task = start(pusher)
    try:
        async def dead() -> bool:
            return len(await st.outbox_list(dead=True)) == 1
        await eventually(dead, what="a dead letter")
        await asyncio.sleep(0.3)  # a dead letter is not tried again
    finally:
        await stop(task)
    [row] = await st.outbox_list(dead=True)
    assert row.ticket_no == saved.ticket_no and row.attempts == 3 and "HTTP 503" in (row.last_error or "")
    assert len(receiver.posts) == 3 and pusher.dead == 1
    receiver.mode = "ok"
    await st.outbox_retry(row.id)
    task = start(fast(st, receiver.url))
    try:
        await eventually(lambda: _zero(st), what="delivered after retry")
    finally:
        await stop(task)
    assert list(receiver.by_key) == [row.idempotency_key]


async def test_two_pushers_on_one_database_share_the_work(make_store: StoreFactory, receiver: Receiver) -> None:
    a, b = await make_store(), await make_store()
    for i in range(20):
        await a.save_call(rec(f"two.{i}"))
    tasks = [start(fast(a, receiver.url, batch=3)), start(fast(b, receiver.url, batch=3))]
    try:
        await eventually(lambda: _zero(a), what="all delivered")
    finally:
        for t in tasks:
            await stop(t)
    assert len(receiver.by_key) == 20
    assert len(receiver.posts) == 20  # claimed rows are not posted twice by the other pusher


async def test_pusher_never_raises_when_the_store_fails(receiver: Receiver) -> None:
    class Broken:
        async def outbox_claim(self, *a: Any) -> list[Any]:
            raise RuntimeError("database away")

    task = start(OutboxPusher(Broken(), receiver.url, poll_s=0.02, allow_http=True))
    await asyncio.sleep(0.2)
    assert not task.done()
    await stop(task)


def test_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(SHIPPED)
    assert OutboxPusher.from_config(None, cfg.outbox) is None  # no URL: nothing pushed
    cfg.outbox.url, cfg.outbox.allow_http, cfg.outbox.token_env = "http://127.0.0.1:9/x", True, "HOTLINE_TEST_TOKEN"
    monkeypatch.setenv("HOTLINE_TEST_TOKEN", "t0ken")
    p = OutboxPusher.from_config(None, cfg.outbox)
    assert p is not None and p.url == "http://127.0.0.1:9/x" and p.max_attempts == cfg.outbox.max_attempts
    assert p.headers["Authorization"] == "Bearer t0ken"
