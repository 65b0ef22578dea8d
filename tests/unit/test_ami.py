"""AMI client against a fake Asterisk manager: one regression test per panoramisk defect (LIBRARIES.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from wire.ami import (
    AmiClient,
    AmiDisconnected,
    AmiError,
    AmiTimeout,
    encode_action,
    parse_message,
)

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


def make_client(fake: FakeAmiServer, **kw: Any) -> AmiClient:
    opts: dict[str, Any] = dict(ping_interval=5.0, action_timeout=1.0, reconnect_delay=0.05, connect_timeout=1.0)
    opts.update(kw)
    return AmiClient("127.0.0.1", fake.port, "hotline", "s3cret", **opts)


@pytest.fixture
async def client(fake: FakeAmiServer) -> AsyncIterator[AmiClient]:
    c = make_client(fake)
    await c.start()
    await c.wait_connected(2)
    yield c
    await c.close()


async def until(pred: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- login, framing, matching
async def test_login_after_banner(fake: FakeAmiServer, client: AmiClient) -> None:
    login = fake.seen("Login")[0]
    assert login["Username"] == "hotline" and login["Secret"] == "s3cret" and login["ActionID"]
    assert client.connected.is_set() and client.logins == 1
    assert (await client.action("Ping"))["Ping"] == "Pong"


async def test_replies_matched_by_actionid_not_arrival(fake: FakeAmiServer, client: AmiClient) -> None:
    held: list[tuple[FakeAmiConnection, AmiMsg]] = []

    async def getvar(conn: FakeAmiConnection, a: AmiMsg) -> None:
        held.append((conn, a))
        if len(held) == 2:  # answer in reverse order
            for c, m in reversed(held):
                await c.respond(m, Variable=m["Variable"], Value=f"value-of-{m['Variable']}")

    fake.on("Getvar", getvar)
    r1, r2 = await asyncio.gather(client.action("Getvar", Variable="A"), client.action("Getvar", Variable="B"))
    assert r1["Value"] == "value-of-A" and r2["Value"] == "value-of-B"


@pytest.mark.parametrize("action,headers", [
    ("Atxfer", {"Channel": "PJSIP/100-00000001", "Exten": "8001", "Context": "hotline-transfer"}),
    ("PlayDTMF", {"Channel": "Local/1@x-00000001;1", "Digit": "1", "Receive": "yes"}),
    ("Originate", {"Channel": "Local/12345@hotline-inbound", "Application": "Wait", "Data": "1"}),
])
async def test_successfully_queued_answers_keep_the_link(fake: FakeAmiServer, client: AmiClient, action: str,
                                                         headers: dict[str, str]) -> None:
    async def queued(conn: FakeAmiConnection, a: AmiMsg) -> None:
        await conn.respond(a, Message=f"{a['Action']} successfully queued")

    fake.on(action, queued)
    resp = await client.action(action, **headers)
    assert resp["Message"] == f"{action} successfully queued"
    assert (await client.action("Ping"))["Response"] == "Success"
    assert len(fake.connections) == 1 and client.logins == 1


async def test_error_response_raises_amierror_with_message(fake: FakeAmiServer, client: AmiClient) -> None:
    async def refuse(conn: FakeAmiConnection, a: AmiMsg) -> None:
        await conn.respond(a, "Error", Message="No such channel")

    fake.on("Hangup", refuse)
    with pytest.raises(AmiError, match="No such channel") as ei:
        await client.action("Hangup", Channel="PJSIP/nope")
    assert ei.value.response["Response"] == "Error"
    resp = await client.action("Hangup", raise_on_error=False, Channel="PJSIP/nope")
    assert resp["Response"] == "Error"


async def test_action_timeout_then_late_answer_is_harmless(fake: FakeAmiServer, client: AmiClient) -> None:
    late: list[tuple[FakeAmiConnection, AmiMsg]] = []

    async def hold(conn: FakeAmiConnection, a: AmiMsg) -> None:
        late.append((conn, a))

    fake.on("QueueAdd", hold)
    t0 = time.monotonic()
    with pytest.raises(AmiTimeout):
        await client.action("QueueAdd", timeout=0.2, Queue="q", Interface="Local/1@x")
    assert time.monotonic() - t0 < 0.6
    conn, a = late[0]
    await conn.respond(a, Message="Added interface to queue")
    assert (await client.action("Ping"))["Ping"] == "Pong"
    assert len(fake.connections) == 1


async def test_action_list(fake: FakeAmiServer, client: AmiClient) -> None:
    seen: list[AmiMsg] = []
    client.on_event("*", seen.append)

    async def status(conn: FakeAmiConnection, a: AmiMsg) -> None:
        aid = a["ActionID"]
        await conn.respond(a, EventList="start", Message="Queue status will follow")
        await conn.send({"Event": "QueueParams", "Queue": "hotline-general", "ActionID": aid})
        await conn.send({"Event": "Newchannel", "Channel": "PJSIP/1-1", "Uniqueid": "1.1"})  # unrelated
        await conn.send({"Event": "QueueMember", "Queue": "hotline-general", "Name": "坐席一", "ActionID": aid})
        await conn.send({"Event": "QueueStatusComplete", "EventList": "Complete", "ListItems": "2",
                         "ActionID": aid})

    fake.on("QueueStatus", status)
    items = await client.action_list("QueueStatus", Queue="hotline-general")
    assert [e["Event"] for e in items] == ["QueueParams", "QueueMember"]
    assert items[1]["Name"] == "坐席一"
    await until(lambda: any(e.get("Event") == "Newchannel" for e in seen))
    assert not any(e.get("Event", "").startswith("Queue") for e in seen)


async def test_action_list_error(fake: FakeAmiServer, client: AmiClient) -> None:
    async def refuse(conn: FakeAmiConnection, a: AmiMsg) -> None:
        await conn.respond(a, "Error", Message="Permission denied")

    fake.on("CoreShowChannels", refuse)
    with pytest.raises(AmiError, match="Permission denied"):
        await client.action_list("CoreShowChannels")


# ---------------------------------------------------------------- dead link, reconnect, no replay
async def test_dead_peer_is_noticed_and_reconnected(fake: FakeAmiServer) -> None:
    fake.blackhole_ping_on = {1}  # the first connection hangs: TCP stays open, Ping is never answered
    c = make_client(fake, ping_interval=0.1, ping_timeout=0.2)
    with capture_logs() as logs:
        await c.start()
        await c.wait_connected(2)
        await until(lambda: c.logins == 2, 3)
        await c.wait_connected(1)
        assert (await c.action("Ping"))["Ping"] == "Pong"
    await c.close()
    names = [e["event"] for e in logs]
    assert "ami_link_dead" in names and "ami_reconnected" in names
    assert names.index("ami_link_dead") < names.index("ami_reconnected")
    assert len(fake.connections) == 2


async def test_pending_originate_is_never_replayed_after_reconnect(fake: FakeAmiServer) -> None:
    async def drop_link(conn: FakeAmiConnection, a: AmiMsg) -> None:
        conn.close()  # the link dies before Asterisk answers

    fake.on("Originate", drop_link)
    c = make_client(fake)
    await c.start()
    await c.wait_connected(2)
    with pytest.raises(AmiDisconnected):
        await c.originate("Local/12345@hotline-inbound", context="caller-robot", exten="s")
    await until(lambda: c.logins == 2)
    await c.wait_connected(1)
    assert (await c.action("Ping"))["Ping"] == "Pong"  # the new link is used, for new actions only
    await asyncio.sleep(0.2)
    originates = fake.seen("Originate")
    assert len(originates) == 1
    assert originates[0]["ChannelId"].startswith("hotline-") and originates[0]["_conn"] == "1"
    await c.close()


async def test_originate_sets_channel_id_and_variables(fake: FakeAmiServer, client: AmiClient) -> None:
    async def queued(conn: FakeAmiConnection, a: AmiMsg) -> None:
        await conn.respond(a, Message="Originate successfully queued")

    fake.on("Originate", queued)
    cid = await client.originate("Local/12345@hotline-inbound", context="caller-robot", exten="s",
                                 variables={"ROBOT_PRE": "0", "来电": "张三"})
    mine = await client.originate("Local/1@x", application="Wait", data="1", channel_id="robot-1")
    a1, a2 = fake.seen("Originate")
    assert a1["ChannelId"] == cid and a1["Async"] == "true" and a1["Priority"] == "1"
    assert a1["Variable"] == "ROBOT_PRE=0\n来电=张三"  # one header per variable
    assert mine == "robot-1" and a2["ChannelId"] == "robot-1" and "Priority" not in a2


async def test_pending_actions_fail_on_close(fake: FakeAmiServer) -> None:
    fake.on("Command", lambda conn, a: asyncio.sleep(0))  # never answered
    c = make_client(fake, action_timeout=5.0)
    await c.start()
    await c.wait_connected(2)
    task = asyncio.create_task(c.action("Command", Command="core show uptime"))
    await fake.wait_action("Command")
    await c.close()
    with pytest.raises(AmiDisconnected):
        await asyncio.wait_for(task, 1)
    await asyncio.sleep(0.15)
    assert len(fake.connections) == 1  # no reconnect after close
    with pytest.raises(AmiDisconnected):
        await c.action("Ping")


async def test_not_connected_fails_fast(fake: FakeAmiServer) -> None:
    port = fake.port
    await fake.stop()
    c = AmiClient("127.0.0.1", port, "hotline", "s3cret", reconnect_delay=0.05, connect_timeout=0.2)
    await c.start()
    with pytest.raises(AmiDisconnected):
        await c.action("Ping", timeout=0.2)
    with pytest.raises(AmiTimeout):
        await c.wait_connected(0.1)
    await c.close()


async def test_login_failure_is_logged_and_retried(fake: FakeAmiServer) -> None:
    c = AmiClient("127.0.0.1", fake.port, "hotline", "wrong", reconnect_delay=0.05)
    with capture_logs() as logs:
        await c.start()
        await until(lambda: len(fake.seen("Login")) >= 2)
    assert not c.connected.is_set()
    assert any(e["event"] == "ami_login_failed" and "Authentication failed" in e.get("message", "")
               for e in logs)
    assert all("wrong" not in str(e) for e in logs)  # the secret never reaches a log
    await c.close()


# ---------------------------------------------------------------- events
async def test_exception_in_event_handler_keeps_the_link(fake: FakeAmiServer, client: AmiClient) -> None:
    got: list[str] = []

    def bad(e: AmiMsg) -> None:
        if e["Uniqueid"] == "1":
            raise KeyError("async")

    async def bad_async(e: AmiMsg) -> None:
        raise RuntimeError("boom")

    client.on_event("Newchannel", bad)
    client.on_event("newchannel", bad_async)
    client.on_event("Newchannel", lambda e: got.append(e["Uniqueid"]))
    with capture_logs() as logs:
        for uid in ("1", "2"):
            await fake.conn.send({"Event": "Newchannel", "Uniqueid": uid})
        await until(lambda: got == ["1", "2"])
        assert (await client.action("Ping"))["Ping"] == "Pong"
    assert sum(e["event"] == "ami_event_handler_failed" for e in logs) == 3
    assert len(fake.connections) == 1 and client.logins == 1


async def test_slow_async_handler_does_not_stall_reading_and_order_is_kept(fake: FakeAmiServer,
                                                                           client: AmiClient) -> None:
    order: list[int] = []

    async def slow(e: AmiMsg) -> None:
        if e["Seq"] == "0":
            await asyncio.sleep(0.5)
        order.append(int(e["Seq"]))

    client.on_event("VarSet", slow)
    for i in range(50):
        await fake.conn.send({"Event": "VarSet", "Seq": str(i)})
    t0 = time.monotonic()
    assert (await client.action("Ping"))["Ping"] == "Pong"  # answered while the handler sleeps
    assert time.monotonic() - t0 < 0.3
    await until(lambda: len(order) == 50)
    assert order == list(range(50))


async def test_handler_may_await_an_action(fake: FakeAmiServer, client: AmiClient) -> None:
    """An async handler that sends an action must not deadlock the reader."""
    values: list[str] = []

    async def getvar(conn: FakeAmiConnection, a: AmiMsg) -> None:
        await conn.respond(a, Value="v")

    async def on_new(e: AmiMsg) -> None:
        values.append((await client.action("Getvar", Variable="X"))["Value"])

    fake.on("Getvar", getvar)
    client.on_event("Newchannel", on_new)
    await fake.conn.send({"Event": "Newchannel", "Uniqueid": "9"})
    await until(lambda: values == ["v"])


async def test_chinese_split_across_tcp_writes_survives(fake: FakeAmiServer, client: AmiClient) -> None:
    got: list[AmiMsg] = []
    client.on_event("UserEvent", got.append)
    data = ("Event: UserEvent\r\nUserEvent: HotlineIVR\r\nCallerIDName: 张三李四 José\r\n"
            "Step: 投诉举报\r\n\r\n").encode("utf-8")
    cut = data.index("李".encode()) + 1  # in the middle of a 3-byte character
    cut2 = data.index("é".encode()) + 1
    for chunk in (data[:cut], data[cut:cut2], data[cut2:]):
        await fake.conn.send(chunk)
        await asyncio.sleep(0.05)  # separate TCP segments, separate reads
    await until(lambda: len(got) == 1)
    assert got[0]["CallerIDName"] == "张三李四 José" and got[0]["Step"] == "投诉举报"


async def test_repeated_headers_and_command_output(fake: FakeAmiServer, client: AmiClient) -> None:
    got: list[AmiMsg] = []
    client.on_event("Hangup", got.append)

    async def command(conn: FakeAmiConnection, a: AmiMsg) -> None:
        await conn.send([("Response", "Success"), ("ActionID", a["ActionID"]),
                         ("Message", "Command output follows"),
                         ("Output", "System uptime: 1 hour"), ("Output", "Last reload: 2 minutes")])

    fake.on("Command", command)
    resp = await client.action("Command", Command="core show uptime")
    assert resp["Output"] == "System uptime: 1 hour\nLast reload: 2 minutes"
    await fake.conn.send([("Event", "Hangup"), ("Channel", "PJSIP/1-1"), ("ChanVariable", "HOTLINE_ROUTE=queue"),
                          ("ChanVariable", "HOTLINE_CATEGORY=投诉")])
    await until(lambda: len(got) == 1)
    assert got[0]["ChanVariable(HOTLINE_ROUTE)"] == "queue"
    assert got[0]["ChanVariable(HOTLINE_CATEGORY)"] == "投诉"
    assert got[0]["ChanVariable"] == "HOTLINE_ROUTE=queue\nHOTLINE_CATEGORY=投诉"


def test_parse_and_encode() -> None:
    assert parse_message("Response: Follows\r\nPrivilege: Command\r\nline one\r\n--END COMMAND--") == {
        "Response": "Follows", "Privilege": "Command", "Output": "line one\n--END COMMAND--"}
    assert parse_message("Key:  two spaces\r\nEmpty:") == {"Key": " two spaces", "Empty": ""}
    raw = encode_action("Originate", "a-1", {"Channel": "Local/1@x", "Variable": ["A=1", "B=2"], "Async": True,
                                             "Skip": None})
    assert raw == b"Action: Originate\r\nActionID: a-1\r\nChannel: Local/1@x\r\nVariable: A=1\r\n" \
                  b"Variable: B=2\r\nAsync: true\r\n\r\n"
    with pytest.raises(ValueError):
        encode_action("Command", "a-2", {"Command": "core show uptime\r\n\r\nAction: Originate"})
