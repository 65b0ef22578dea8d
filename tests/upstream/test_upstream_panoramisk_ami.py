"""panoramisk's AMI client (panoramisk/manager.py, ami_protocol.py, actions.py): each defect still present.

Our replacement is wire/ami.py; tests/unit/test_ami.py keeps the regression test that our
client does not have the defect. The fake Asterisk manager is tests.fakes.FakeAmiServer
(banner, Login, FullyBooted, Ping, scripted actions) on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import pytest

try:
    from tests.upstream.upstream_peers import FakeAmiServer, still_present, until
except ModuleNotFoundError:
    from upstream_peers import FakeAmiServer, still_present, until  # type: ignore[no-redef]

WHERE = "wire/ami.py"
AmiMsg = dict[str, str]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmiServer]:
    srv = await FakeAmiServer().start()
    yield srv
    await srv.stop()


class Upstream:
    """A panoramisk Manager logged in to the fake, with the loop's exception reports collected."""

    def __init__(self, fake: FakeAmiServer, **config: Any) -> None:
        from panoramisk.manager import Manager

        self.loop = asyncio.get_running_loop()
        self.errors: list[BaseException] = []
        self._saved_handler = self.loop.get_exception_handler()
        self.loop.set_exception_handler(self._on_error)
        opts: dict[str, Any] = dict(loop=self.loop, host="127.0.0.1", port=fake.port, username="hotline",
                                    secret="s3cret", ping_delay=60, ping_interval=60, reconnect_timeout=1)
        opts.update(config)
        self.manager = Manager(**opts)

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if exc is not None:
            self.errors.append(exc)

    async def start(self) -> "Upstream":
        self.manager.connect()
        assert await until(lambda: self.manager.authenticated, 3.0), "control: panoramisk must log in to the fake"
        return self

    def close(self) -> None:
        self.manager.close()
        self.loop.set_exception_handler(self._saved_handler)


@pytest.fixture
async def upstream(panoramisk: ModuleType, fake: FakeAmiServer) -> AsyncIterator[Callable[..., Any]]:
    made: list[Upstream] = []

    async def make(**config: Any) -> Upstream:
        u = await Upstream(fake, **config).start()
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


def dropped(fake: FakeAmiServer, number: int = 1) -> bool:
    """Has the client closed fake connection `number` (the fake closes its side when reading ends)?"""
    return len(fake.connections) >= number and fake.connections[number - 1].writer.is_closing()


# ---------------------------------------------------------------- KeyError: 'async'
@pytest.mark.parametrize("action,headers", [
    ("Atxfer", {"Channel": "PJSIP/100-00000001", "Exten": "8001", "Context": "hotline-transfer"}),
    ("PlayDTMF", {"Channel": "Local/1@x-00000001;1", "Digit": "1", "Receive": "yes"}),
    ("Originate", {"Channel": "Local/12345@hotline-inbound", "Application": "Wait", "Data": "1"}),
])
async def test_successfully_queued_without_async_raises_keyerror_and_drops_the_link(
        fake: FakeAmiServer, upstream: Any, action: str, headers: dict[str, str]) -> None:
    async def queued(conn: Any, a: AmiMsg) -> None:
        await conn.respond(a, Message=f"{action} successfully queued")

    fake.on(action, queued)
    u = await upstream()
    control = await asyncio.wait_for(u.manager.send_action(dict(Action=action, **headers), as_list=False), 2)
    assert control.message == f"{action} successfully queued", "control: the fake's answer must be well formed"
    fut = u.manager.send_action(dict(Action=action, **headers))  # as a caller writes it: no Async, no as_list
    await until(lambda: dropped(fake), 1.5)
    await asyncio.sleep(0.2)
    keyerrors = [e for e in u.errors if isinstance(e, KeyError) and e.args == ("async",)]
    still_present(keyerrors and dropped(fake) and not fut.done(), "panoramisk",
                  f"raises KeyError: 'async' on '{action} successfully queued' without an Async header "
                  f"(link dropped, the result never comes)",
                  WHERE, "AmiClient.action: a response is the answer to its ActionID, whatever its Message",
                  evidence={"loop_errors": u.errors, "link_dropped": dropped(fake), "future_done": fut.done()})


# ---------------------------------------------------------------- replay after reconnect
async def test_unanswered_originate_is_resent_after_reconnect(fake: FakeAmiServer, upstream: Any) -> None:
    async def drop_first(conn: Any, a: AmiMsg) -> None:
        if conn.number == 1:
            conn.close()  # the link dies before Asterisk answers (Asterisk restart, network cut)

    fake.on("Originate", drop_first)
    u = await upstream(reconnect_timeout=1)
    u.manager.send_action({"Action": "Originate", "Channel": "Local/12345@hotline-inbound",
                           "Context": "caller-robot", "Exten": "s", "Priority": "1", "Async": "true"})
    await until(lambda: len(fake.seen("Originate")) >= 2, 4.0)
    sent = fake.seen("Originate")
    still_present(len(sent) >= 2 and sent[1]["_conn"] != sent[0]["_conn"], "panoramisk",
                  "re-sends an unanswered Originate after it reconnects (a second phone call)",
                  WHERE, "AmiClient._link_down fails pending actions with AmiDisconnected, never replays; "
                         "originate() sets a ChannelId", evidence=sent)


# ---------------------------------------------------------------- Ping never checked
async def test_unanswered_pings_go_unnoticed(fake: FakeAmiServer, upstream: Any) -> None:
    """The link hangs (TCP open, Asterisk silent): Pings go out each second and none is answered."""
    fake.blackhole_ping_on = {1}
    u = await upstream(ping_delay=1, ping_interval=1)
    await until(lambda: len(fake.seen("Ping")) >= 3, 5.0)
    await asyncio.sleep(0.3)
    pings = len(fake.seen("Ping"))
    still_present(pings >= 3 and len(fake.connections) == 1 and not dropped(fake) and u.manager._connected,
                  "panoramisk", "ignores unanswered Pings (a hung link is never noticed)",
                  WHERE, "AmiClient._ping_loop: an unanswered Ping within ping_timeout declares the link dead",
                  evidence={"pings_unanswered": pings, "connections": len(fake.connections)})


# ---------------------------------------------------------------- event handler exception
async def test_exception_in_plain_event_handler_drops_the_link(fake: FakeAmiServer, upstream: Any) -> None:
    seen: list[str] = []

    def handler(manager: Any, event: Any) -> None:
        seen.append(event["Uniqueid"])
        if event["Uniqueid"] == "2":
            raise RuntimeError("a bug in one handler")

    u = await upstream()
    u.manager.register_event("Newchannel", handler)
    await fake.conn.send({"Event": "Newchannel", "Uniqueid": "1"})
    assert await until(lambda: seen == ["1"], 2.0), "control: the event must reach the handler"
    assert not dropped(fake), "control: a handler that does not raise keeps the link"
    await fake.conn.send({"Event": "Newchannel", "Uniqueid": "2"})
    await until(lambda: dropped(fake), 2.0)
    still_present(dropped(fake), "panoramisk", "drops the AMI link when a plain event handler raises",
                  WHERE, "AmiClient._dispatch_loop: handlers run off the reader, exceptions logged",
                  evidence={"loop_errors": u.errors})


# ---------------------------------------------------------------- UTF-8 split across reads
async def test_non_ascii_split_across_reads_is_lost(fake: FakeAmiServer, upstream: Any) -> None:
    got: list[str] = []
    u = await upstream()
    u.manager.register_event("UserEvent", lambda m, e: got.append(e["CallerIDName"]))
    whole = "张三李四 José"
    data = f"Event: UserEvent\r\nUserEvent: HotlineIVR\r\nCallerIDName: {whole}\r\n\r\n".encode()
    await fake.conn.send(data)
    assert await until(lambda: len(got) == 1, 2.0) and got[0] == whole, f"control: unsplit it arrives whole: {got}"
    cut = data.index("李".encode()) + 1  # in the middle of a 3-byte character
    cut2 = data.index("é".encode()) + 1
    for chunk in (data[:cut], data[cut:cut2], data[cut2:]):
        await fake.conn.send(chunk)
        await asyncio.sleep(0.05)  # separate TCP segments, separate reads
    await until(lambda: len(got) == 2, 2.0)
    still_present(len(got) == 2 and got[1] != whole, "panoramisk",
                  "loses non-ASCII characters split across TCP reads",
                  WHERE, "AmiClient._feed frames on bytes and decodes whole messages", evidence=got)


# ---------------------------------------------------------------- no action timeout
async def test_no_action_timeout(fake: FakeAmiServer, upstream: Any) -> None:
    from panoramisk.manager import Manager

    async def hold(conn: Any, a: AmiMsg) -> None:
        pass  # never answered

    fake.on("QueueAdd", hold)
    u = await upstream()
    fut = u.manager.send_action({"Action": "QueueAdd", "Queue": "q", "Interface": "Local/1@x"})
    await asyncio.sleep(1.2)
    params = set(inspect.signature(Manager.send_action).parameters) | set(Manager.defaults)
    still_present(not fut.done() and not any("timeout" in p and p != "reconnect_timeout" for p in params),
                  "panoramisk", "lacks a timeout on actions (an unanswered action waits for ever)",
                  WHERE, "AmiClient.action: action_timeout raises AmiTimeout",
                  evidence={"done_after_1.2s": fut.done(), "options": sorted(params)})
