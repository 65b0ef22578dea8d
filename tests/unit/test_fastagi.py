"""FastAGI server against a fake Asterisk: one regression test per panoramisk/pyst2 defect (LIBRARIES.md)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from wire.fastagi import (
    MAX_ENV_BYTES,
    AgiBroken,
    AgiError,
    AgiHangup,
    AgiReply,
    AgiSession,
    AgiTimeout,
    FastAgiServer,
    frame_env,
    parse_reply,
)
try:
    from tests.fakes import FakeAsteriskAgi, agi_env
except ModuleNotFoundError:  # tests/ has no __init__.py: pytest puts tests/ itself on sys.path
    from fakes import FakeAsteriskAgi, agi_env  # type: ignore[no-redef]


@pytest.fixture
async def server() -> AsyncIterator[FastAgiServer]:
    srv = FastAgiServer("127.0.0.1", 0, command_timeout=2.0, env_timeout=0.5)
    await srv.start()
    yield srv
    await srv.stop(0.5)


def recorder(srv: FastAgiServer, script: str, body: Any) -> asyncio.Future[Any]:
    """Route `script` to `body(session)`; the future gets its return value or its exception."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(s: AgiSession) -> None:
        try:
            res = await body(s)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            if not fut.done():
                fut.set_exception(e)
            raise
        if not fut.done():
            fut.set_result(res)

    srv.route(script, handler)
    return fut


async def outcome(fut: asyncio.Future[Any]) -> Any:
    try:
        return await asyncio.wait_for(fut, 2)
    except (AgiError, AgiHangup) as e:
        return e


# ---------------------------------------------------------------- whole-server freeze
class ThreadedServer:
    """Our server on its own loop in a thread, so a frozen loop fails the test instead of hanging it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.srv = FastAgiServer("127.0.0.1", 0, command_timeout=2.0, env_timeout=0.5)
        self.results: list[str | None] = []

        async def ivr(s: AgiSession) -> None:
            self.results.append(await s.get_variable("CALLERID(num)"))

        self.srv.route("inbound", ivr)
        asyncio.run_coroutine_threadsafe(self.srv.start(), self.loop).result(2)

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.srv.stop(0.2), self.loop).result(2)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(2)


async def test_port_probe_truncated_env_garbage_and_silence_end_only_their_connection() -> None:
    ts = ThreadedServer()
    try:
        port = ts.srv.port
        cpu0 = time.process_time()
        for _ in range(5):  # health probes: connect and close
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
        for _ in range(5):  # Asterisk gave up mid-environment
            f = await FakeAsteriskAgi().open(port)
            await f.send_raw(b"agi_network: yes\nagi_network_script: inbound\nagi_chan")
            await f.close()
        garbage = await FakeAsteriskAgi().open(port)
        await garbage.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        silent = await FakeAsteriskAgi().open(port)

        # another call still completes, promptly
        call = await FakeAsteriskAgi().connect(port, script="inbound")
        await asyncio.wait_for(call.reply("GET VARIABLE CALLERID(num)", "200 result=1 (13800138000)"), 2)
        await call.wait_closed(2)
        assert ts.results == ["13800138000"]

        assert await garbage.wait_closed(1) == b""
        t0 = time.monotonic()
        await silent.wait_closed(2)  # env_timeout=0.5
        assert time.monotonic() - t0 < 1.5
        await asyncio.sleep(0.3)
        assert time.process_time() - cpu0 < 1.0, "the server spins on EOF"
    finally:
        ts.close()


# ---------------------------------------------------------------- HANGUP never shifts replies
async def test_hangup_after_reply_is_not_the_next_reply(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        digit = await s.stream_file("greeting", "0123456789")
        value = await s.get_variable("HOTLINE_DIALED")
        return digit, value, s.hungup

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.reply('STREAM FILE greeting "0123456789"', "200 result=0 endpos=8000", "HANGUP")
    await f.reply("GET VARIABLE HOTLINE_DIALED", "200 result=1 (12345)")
    assert await outcome(fut) == (None, "12345", True)


async def test_hangup_before_minus_one_raises_agihangup(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        return await s.get_data("menu", 5000, 1)

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.reply("GET DATA menu 5000 1", "HANGUP", "200 result=-1")
    assert isinstance(await outcome(fut), AgiHangup)


async def test_minus_one_then_hangup_is_confirmed_as_hangup(server: FastAgiServer) -> None:
    """Asterisk's usual order: result=-1 first, HANGUP after; the probe finds the channel gone."""
    async def body(s: AgiSession) -> Any:
        return await s.stream_file("greeting", "0")

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.reply("STREAM FILE greeting", "200 result=-1 endpos=0", "HANGUP")
    await f.reply("CHANNEL STATUS", "511 Command Not Permitted on a dead channel or intercept routine")
    assert isinstance(await outcome(fut), AgiHangup)


async def test_minus_one_on_live_channel_is_a_missing_file_not_a_hangup(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        d = await s.stream_file("no_such_prompt", "0")
        return d, await s.get_variable("X"), s.hungup

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.reply("STREAM FILE no_such_prompt", "200 result=-1 endpos=0")
    await f.reply("CHANNEL STATUS", "200 result=6")
    await f.reply("GET VARIABLE X", "200 result=1 (x)")
    assert await outcome(fut) == (None, "x", False)


async def test_get_variable_after_hangup_never_returns_hangup(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        return await s.get_variable("CALLERID(name)")

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.hangup()
    await f.reply("GET VARIABLE", "511 Command Not Permitted on a dead channel or intercept routine")
    assert isinstance(await outcome(fut), AgiHangup)


async def test_511_is_hangup(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        try:
            await s.answer()
        except AgiHangup:
            return s.hungup
        return "no exception"

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.reply("ANSWER", "511 Command Not Permitted on a dead channel or intercept routine")
    assert await outcome(fut) is True


async def test_eof_is_hangup(server: FastAgiServer) -> None:
    fut = recorder(server, "inbound", lambda s: s.wait_for_digit(3000))
    f = await FakeAsteriskAgi().connect(server.port)
    await f.expect("WAIT FOR DIGIT 3000")
    await f.close()
    assert isinstance(await outcome(fut), AgiHangup)


# ---------------------------------------------------------------- multi-line 520
async def test_multiline_520_does_not_shift_replies(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        with pytest.raises(AgiError) as ei:
            await s.command("GET DATA")
        return ei.value, await s.get_variable("A"), await s.get_variable("B")

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.reply("GET DATA", "520-Invalid command syntax.  Proper usage follows:",
                  " Usage: GET DATA <file to be streamed> [timeout] [max digits]",
                  "  Stream the given file, and receive DTMF data.",
                  "520 End of proper usage.")
    await f.reply("GET VARIABLE A", "200 result=1 (a)")
    await f.reply("GET VARIABLE B", "200 result=0")
    err, a, b = await outcome(fut)
    assert "Invalid command syntax" in str(err) and "End of proper usage" in str(err)
    assert (a, b) == ("a", None)


async def test_510_is_agierror_with_text(server: FastAgiServer) -> None:
    fut = recorder(server, "inbound", lambda s: s.command("FROB"))
    f = await FakeAsteriskAgi().connect(server.port)
    await f.reply("FROB", "510 Invalid or unknown command")
    e = await outcome(fut)
    assert isinstance(e, AgiError) and not isinstance(e, AgiHangup) and "510" in str(e)


# ---------------------------------------------------------------- routing
async def test_routing_ignores_query_string(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        return s.script, s.params, s.args

    fut = recorder(server, "ivr", body)
    f = await FakeAsteriskAgi().connect(server.port, script="ivr?x=1&lang=zh", args=["12345", "a b"])
    assert await outcome(fut) == ("ivr", {"x": "1", "lang": "zh"}, ["12345", "a b"])
    await f.wait_closed()


async def test_routing_with_leading_slash(server: FastAgiServer) -> None:
    fut = recorder(server, "survey", lambda s: asyncio.sleep(0, s.script))
    await FakeAsteriskAgi().connect(server.port, script="/survey")
    assert await outcome(fut) == "survey"


async def test_unknown_script_sends_failure_then_closes_and_logs(server: FastAgiServer) -> None:
    """A bare close reads as AGISTATUS=SUCCESS in res_agi; only a FAILURE line fails AGI() (issue 14.2)."""
    with capture_logs() as logs:
        f = await FakeAsteriskAgi().connect(server.port, script="nope?x=1")
        assert await f.wait_closed(1) == b"FAILURE\n"
    assert any(e["event"] == "agi_unknown_script" and e["script"] == "nope" for e in logs)


async def test_routing_with_trailing_slash(server: FastAgiServer) -> None:
    fut = recorder(server, "inbound", lambda s: asyncio.sleep(0, s.script))
    await FakeAsteriskAgi().connect(server.port, script="inbound/?x=1")
    assert await outcome(fut) == "inbound"


# ---------------------------------------------------------------- plain handlers
async def test_plain_handler_runs_in_executor(server: FastAgiServer) -> None:
    seen: dict[str, Any] = {}
    done = threading.Event()

    def plain(s: AgiSession) -> None:
        seen["thread"] = threading.current_thread() is not threading.main_thread()
        seen["value"] = s.sync(s.get_variable("X"))
        done.set()

    server.route("plain", plain)
    f = await FakeAsteriskAgi().connect(server.port, script="plain")
    await f.reply("GET VARIABLE X", "200 result=1 (张三)")
    await f.wait_closed()
    assert done.is_set() and seen == {"thread": True, "value": "张三"}


async def test_plain_handlers_do_not_wait_for_a_busy_default_executor(server: FastAgiServer) -> None:
    """The loop's default executor (6 threads here) busy with slow work must not keep callers in silence."""
    loop = asyncio.get_running_loop()
    release = threading.Event()
    busy = [loop.run_in_executor(None, release.wait, 5) for _ in range(64)]
    ran = threading.Event()
    server.route("plain", lambda s: ran.set())
    try:
        f = await FakeAsteriskAgi().connect(server.port, script="plain")
        await f.wait_closed(2)
        assert ran.is_set(), "the plain handler waited behind the default executor"
    finally:
        release.set()
        await asyncio.gather(*busy)


# ---------------------------------------------------------------- timeouts
async def test_after_a_command_timeout_the_session_fails_and_sends_nothing_more() -> None:
    """Issue 14.1: a timed-out session is out of step; it says FAILURE (dialplan fallback) and closes."""
    srv = FastAgiServer("127.0.0.1", 0, command_timeout=0.2)
    await srv.start()
    try:
        async def body(s: AgiSession) -> Any:
            t0 = time.monotonic()
            with pytest.raises(AgiTimeout):
                await s.get_variable("SLOW")
            took = time.monotonic() - t0
            with pytest.raises(AgiBroken):
                await s.get_variable("FAST")
            return took

        fut = recorder(srv, "inbound", body)
        f = await FakeAsteriskAgi().connect(srv.port)
        await f.expect("GET VARIABLE SLOW")
        assert await outcome(fut) < 1.0
        assert await f.wait_closed(2) == b"FAILURE\n"  # nothing but the failure line after the timeout
    finally:
        await srv.stop(0.2)


async def test_timeout_in_the_middle_of_a_520_block_breaks_the_session() -> None:
    srv = FastAgiServer("127.0.0.1", 0, command_timeout=0.2)
    await srv.start()
    try:
        async def body(s: AgiSession) -> Any:
            with pytest.raises(AgiTimeout):
                await s.command("GET VARIABLE X")
            with pytest.raises(AgiBroken):
                await s.get_variable("V")
            return "ok"

        fut = recorder(srv, "inbound", body)
        f = await FakeAsteriskAgi().connect(srv.port)
        await f.expect("GET VARIABLE X")
        await f.answer("520-Invalid command syntax.  Proper usage follows:", " Usage: GET VARIABLE")
        assert await outcome(fut) == "ok"
        assert await f.wait_closed(2) == b"FAILURE\n"
    finally:
        await srv.stop(0.2)


async def test_a_prompt_longer_than_the_command_timeout_plays_to_the_end() -> None:
    """Issue 14.1: a 30 s command timeout skipped whole menus whose prompt was longer; media get their own budget."""
    srv = FastAgiServer("127.0.0.1", 0, command_timeout=0.2, media_timeout=5.0)
    await srv.start()
    try:
        async def body(s: AgiSession) -> Any:
            a = await s.stream_file("long-greeting", "12")
            b = await s.get_data("long-menu", 100, 1)
            return a, b

        fut = recorder(srv, "inbound", body)
        f = await FakeAsteriskAgi().connect(srv.port)
        await f.expect("STREAM FILE long-greeting")
        await asyncio.sleep(0.6)  # three command timeouts of playing
        await f.answer("200 result=0 endpos=48000")
        await f.expect("GET DATA long-menu")
        await asyncio.sleep(0.6)
        await f.answer("200 result=1")
        assert await outcome(fut) == (None, ("1", False))
    finally:
        await srv.stop(0.2)


async def test_a_long_prompt_still_ends_at_once_when_the_caller_hangs_up() -> None:
    srv = FastAgiServer("127.0.0.1", 0, command_timeout=0.2, media_timeout=30.0)
    await srv.start()
    try:
        fut = recorder(srv, "inbound", lambda s: s.stream_file("long-greeting", ""))
        f = await FakeAsteriskAgi().connect(srv.port)
        await f.expect("STREAM FILE")
        t0 = time.monotonic()
        await f.close()
        assert isinstance(await outcome(fut), AgiHangup)
        assert time.monotonic() - t0 < 1.0
    finally:
        await srv.stop(0.2)


async def test_a_peer_that_never_reads_cannot_hold_a_handler() -> None:
    """Issue 14.4: drain() sits inside the command budget; the socket is aborted, never left open."""
    srv = FastAgiServer("127.0.0.1", 0, command_timeout=0.3)
    await srv.start()
    try:
        async def body(s: AgiSession) -> Any:
            await s.verbose("x" * 32_000_000)  # far beyond what socket buffers take without a reader
            return "never"

        fut = recorder(srv, "inbound", body)
        f = await FakeAsteriskAgi().connect(srv.port)
        # the command's own 0.3 s budget ends it (a drain outside the budget would wait forever); not timed
        # against the wall clock: making and copying 32 MB takes seconds on a loaded machine (parallel runs)
        with pytest.raises(AgiTimeout, match=r"within 0\.3 s"):
            await asyncio.wait_for(fut, 60)
        for _ in range(100):
            if srv.active_sessions == 0:
                break
            await asyncio.sleep(0.05)
        assert srv.active_sessions == 0
        await f.close()
    finally:
        await srv.stop(0.2)


async def test_a_reply_line_over_the_limit_breaks_the_session(server: FastAgiServer) -> None:
    """Issue 14.4: the rest of an over-long line would be read as the next reply."""
    async def body(s: AgiSession) -> Any:
        with pytest.raises(AgiBroken):
            await s.get_variable("BIG")
        with pytest.raises(AgiBroken):
            await s.get_variable("NEXT")
        return "ok"

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.expect("GET VARIABLE BIG")
    await f.answer("200 result=1 (" + "y" * 70_000 + ")")
    assert await outcome(fut) == "ok"
    assert (await f.wait_closed(2)).endswith(b"FAILURE\n")


# ---------------------------------------------------------------- handler failures, lifecycle
async def test_handler_exception_is_logged_and_server_keeps_serving(server: FastAgiServer) -> None:
    async def boom(s: AgiSession) -> None:
        raise RuntimeError("bug")

    server.route("boom", boom)
    fut = recorder(server, "inbound", lambda s: s.get_variable("X"))
    with capture_logs() as logs:
        f1 = await FakeAsteriskAgi().connect(server.port, script="boom")
        assert await f1.wait_closed() == b"FAILURE\n"  # issue 14.2: the dialplan must see AGISTATUS=FAILURE
        f2 = await FakeAsteriskAgi().connect(server.port)
        await f2.reply("GET VARIABLE X", "200 result=1 (ok)")
        assert await outcome(fut) == "ok"
    failed = [e for e in logs if e["event"] == "agi_handler_failed"]
    assert failed and failed[0]["script"] == "boom"
    ended = [e for e in logs if e["event"] == "agi_session_ended"]
    assert {e["script"] for e in ended} == {"boom", "inbound"}
    started = [e for e in logs if e["event"] == "agi_session_started"]
    assert all(e["caller"] == "138******00" for e in started)
    assert all("duration" in e and "uniqueid" in e for e in ended)


async def test_stop_waits_for_grace_then_cancels() -> None:
    srv = FastAgiServer("127.0.0.1", 0)
    await srv.start()
    finished: list[str] = []
    cancelled: list[str] = []

    async def quick(s: AgiSession) -> None:
        await asyncio.sleep(0.1)
        finished.append("quick")

    async def stuck(s: AgiSession) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append("stuck")
            raise

    srv.route("quick", quick)
    srv.route("stuck", stuck)
    await FakeAsteriskAgi().connect(srv.port, script="quick")
    await FakeAsteriskAgi().connect(srv.port, script="stuck")
    for _ in range(50):
        if srv.active_sessions == 2:
            break
        await asyncio.sleep(0.01)
    assert srv.active_sessions == 2
    t0 = time.monotonic()
    await srv.stop(0.3)
    assert time.monotonic() - t0 < 1.5
    assert finished == ["quick"] and cancelled == ["stuck"] and srv.active_sessions == 0
    with pytest.raises(OSError):
        await FakeAsteriskAgi().open(srv.port)


async def test_stop_cancels_quietly_and_the_cancelled_call_falls_back() -> None:
    """Issue 14.4: stop() made asyncio log a CancelledError traceback per cancelled call."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    try:
        srv = FastAgiServer("127.0.0.1", 0)
        await srv.start()
        srv.route("stuck", lambda s: s.get_variable("X"))
        f = await FakeAsteriskAgi().connect(srv.port, script="stuck")
        await f.expect("GET VARIABLE X")
        await srv.stop(0.1)
        await asyncio.sleep(0.1)
        assert await f.wait_closed(1) == b"FAILURE\n"
    finally:
        loop.set_exception_handler(old)
    assert reported == []


# ---------------------------------------------------------------- helpers: quoting, UTF-8, parsing
async def test_exec_set_variable_user_event_quoting_and_chinese(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        await s.set_variable("CALLER_NAME", '张三 "老王"')
        name = await s.get_variable("CALLER_NAME")
        r = await s.exec("Dial", "PJSIP/100", "30", "tT")
        await s.user_event("HotlineRoute", Dest="queue:general", Note="投诉,举报|x\ny")
        await s.verbose("进入菜单")
        return name, r.result

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    cmd = await f.reply("SET VARIABLE", "200 result=1")
    assert cmd == 'SET VARIABLE CALLER_NAME "张三 \\"老王\\""'
    await f.reply("GET VARIABLE CALLER_NAME", '200 result=1 (张三 "老王")')
    assert await f.reply("EXEC", "200 result=0") == 'EXEC Dial "PJSIP/100,30,tT"'
    ue = await f.reply("EXEC UserEvent", "200 result=0")
    assert ue == 'EXEC UserEvent "HotlineRoute,Dest: queue:general,Note: 投诉 举报 x y"'
    assert await f.reply("VERBOSE", "200 result=1") == 'VERBOSE "进入菜单" 1'
    assert await outcome(fut) == ('张三 "老王"', "0")


async def test_set_variables_is_one_mset_unless_a_value_would_be_parsed_into_something_else(
        server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        await s.set_variables([("HOTLINE_QUEUE", "general"), ("HOTLINE_CATEGORY", "投诉举报"), ("__HOTLINE_X", ""),
                               ("HOTLINE_ROUTE", "queue")])
        # a comma would split the list, quotes and backslashes are stripped, a bracket holds separators, '='
        # splits name from value, a space at an end may be trimmed: each falls back to one SET VARIABLE per name
        for odd in ("a,b", 'say "hi"', "c:\\x", "f(x", "a=b", " lead", "[x]"):
            await s.set_variables([("HOTLINE_A", "1"), ("HOTLINE_B", odd)])
        await s.set_variables([("HOTLINE_ONE", "x")])  # one variable: SET VARIABLE, no MSet
        await s.set_variables([("HOTLINE_A", "1"), ("X(1)", "2")])  # a name MSet would parse: one each
        await s.set_variables([(f"V{i}", str(i)) for i in range(25)])  # more pairs than MSet takes: one each
        with pytest.raises(ValueError):
            await s.set_variables([("HOTLINE_A", "1"), ("BAD NAME", "2")])

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    assert await f.reply("EXEC MSet", "200 result=0") == (
        'EXEC MSet "HOTLINE_QUEUE=general,HOTLINE_CATEGORY=投诉举报,__HOTLINE_X=,HOTLINE_ROUTE=queue"')
    for _ in range(7):
        assert await f.reply("SET VARIABLE", "200 result=1") == 'SET VARIABLE HOTLINE_A "1"'
        assert (await f.reply("SET VARIABLE", "200 result=1")).startswith("SET VARIABLE HOTLINE_B ")
    assert await f.reply("SET VARIABLE", "200 result=1") == 'SET VARIABLE HOTLINE_ONE "x"'
    assert await f.reply("SET VARIABLE", "200 result=1") == 'SET VARIABLE HOTLINE_A "1"'
    assert await f.reply("SET VARIABLE", "200 result=1") == 'SET VARIABLE X(1) "2"'
    for i in range(25):
        assert await f.reply("SET VARIABLE", "200 result=1") == f'SET VARIABLE V{i} "{i}"'
    await outcome(fut)


async def test_playback_is_one_exec_of_the_list_and_a_hangup_during_it_is_a_hangup(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        await s.playback(["hotline/notice_ticket_is", "hotline/digits/2", "hotline/silence/300ms", "hotline/digits/6"])
        await s.playback(["hotline/notice_repeat"])
        return "not reached"

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    cmd = await f.reply("EXEC Playback", "200 result=0")
    assert cmd == 'EXEC Playback "hotline/notice_ticket_is&hotline/digits/2&hotline/silence/300ms&hotline/digits/6"'
    await f.reply("EXEC Playback", "200 result=-1", "HANGUP")  # the caller hung up while it played
    await f.reply("CHANNEL STATUS", "511 Command Not Permitted on a dead channel or intercept routine")
    assert isinstance(await outcome(fut), AgiHangup)


@pytest.mark.parametrize("names", [[], ["a&b"], ["a,noanswer"], ['a"b'], ["a\\b"], ["ok", ""], ["a\nb"]])
async def test_playback_refuses_a_name_its_list_would_split_or_change(server: FastAgiServer, names: list[str]) -> None:
    fut = recorder(server, "inbound", lambda s: s.playback(names))
    f = await FakeAsteriskAgi().connect(server.port)
    with pytest.raises(ValueError):
        await asyncio.wait_for(fut, 2)
    assert await f.wait_closed(1) == b"FAILURE\n"  # nothing was sent to Asterisk


async def test_get_data_and_digits(server: FastAgiServer) -> None:
    async def body(s: AgiSession) -> Any:
        return (await s.get_data("menu", 3000, 1), await s.get_data("ticket", 3000, 8),
                await s.get_data("pw", 3000, 4), await s.wait_for_digit(2000),
                await s.say_digits("123", "#"), await s.stream_file("x", "12"))

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.reply("GET DATA menu 3000 1", "200 result=1")
    await f.reply("GET DATA ticket", "200 result= (timeout)")
    await f.reply("GET DATA pw", "200 result=12 (timeout)")
    await f.reply("WAIT FOR DIGIT 2000", "200 result=35")
    await f.reply('SAY DIGITS 123 "#"', "200 result=0")
    await f.reply('STREAM FILE x "12"', "200 result=50 endpos=1200")
    assert await outcome(fut) == (("1", False), ("", True), ("12", True), "#", None, "2")


def test_parse_reply() -> None:
    assert parse_reply("200 result=1 (a (b) c) endpos=5") == AgiReply(200, "1", "a (b) c", 5,
                                                                       "200 result=1 (a (b) c) endpos=5")
    assert parse_reply("200 result=0").data is None
    assert parse_reply("510 Invalid or unknown command").code == 510


async def test_command_rejects_newline_injection(server: FastAgiServer) -> None:
    fut = recorder(server, "inbound", lambda s: s.command("VERBOSE x\nHANGUP"))
    await FakeAsteriskAgi().connect(server.port)
    with pytest.raises(ValueError):
        await asyncio.wait_for(fut, 2)


def test_fake_env_is_asterisk_shaped() -> None:
    env = agi_env("inbound", args=["1"])
    assert env["agi_network_script"] == "inbound" and env["agi_arg_1"] == "1"


# ---------------------------------------------------------------- resource caps (issue 14.3)
async def test_environment_total_size_is_capped(server: FastAgiServer) -> None:
    """255 lines × 60 KiB once held 334 MB for 20 peers: the whole environment is capped, not just a line."""
    f = await FakeAsteriskAgi().open(server.port)
    line = b"agi_x: " + b"a" * 8000 + b"\n"
    with capture_logs() as logs:
        try:
            for _ in range(40):
                await f.send_raw(line)
        except (ConnectionError, OSError):
            pass
        try:
            assert await f.wait_closed(1) == b""
        except ConnectionResetError:  # closed with our bytes unread: a reset, also fine
            pass
    assert any(e["event"] == "agi_env_too_big" for e in logs)
    assert MAX_ENV_BYTES <= 64 * 1024


async def test_connections_still_sending_their_environment_are_capped() -> None:
    srv = FastAgiServer("127.0.0.1", 0, env_timeout=5.0, max_pending_env=3)
    await srv.start()
    try:
        slow = [await FakeAsteriskAgi().open(srv.port) for _ in range(3)]
        for s in slow:
            await s.send_raw(b"agi_network: yes\n")
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        extra = await FakeAsteriskAgi().open(srv.port)
        assert await extra.wait_closed(1) == b"FAILURE\n"  # refused at once, not after env_timeout
        assert time.monotonic() - t0 < 0.5
        for s in slow:
            await s.close()
        await asyncio.sleep(0.1)
        ok: asyncio.Future[Any] = recorder(srv, "inbound", lambda s: s.get_variable("X"))
        f = await FakeAsteriskAgi().connect(srv.port)
        await f.reply("GET VARIABLE X", "200 result=1 (ok)")
        assert await outcome(ok) == "ok"
    finally:
        await srv.stop(0.2)


def test_environment_timeout_is_short_by_default() -> None:
    assert FastAgiServer().env_timeout <= 2.0


# ---------------------------------------------------------------- the environment read in one pass (issue 15)
@pytest.mark.parametrize("env_bytes", [
    b"agi_network_script: inbound\n\n",  # one line: its blank line follows at once
    b"agi_network_script: inbound\r\nagi_callerid: 1\r\n\r\n",  # CRLF lines
    b"agi_network_script: inbound\nagi_arg_1: x\nagi_callerid:\n\n",  # an empty value without its space
])
async def test_short_and_odd_environments_still_route(server: FastAgiServer, env_bytes: bytes) -> None:
    fut = recorder(server, "inbound", lambda s: s.get_variable("X"))
    f = await FakeAsteriskAgi().open(server.port)
    await f.send_raw(env_bytes)
    await f.reply("GET VARIABLE X", "200 result=1 (ok)")
    assert await outcome(fut) == "ok"


async def test_environment_split_across_reads_and_values_kept(server: FastAgiServer) -> None:
    seen: asyncio.Future[Any] = recorder(server, "inbound", lambda s: asyncio.sleep(0, (s.env, s.args, s.params)))
    f = await FakeAsteriskAgi().open(server.port)
    payload = "".join(f"{k}: {v}\n" for k, v in agi_env("inbound?lang=zh", args=["a b", "2"],
                                                         agi_calleridname="张三").items()) + "\n"
    data = payload.encode()
    for i in range(0, len(data), 7):  # Asterisk's environment in many small TCP segments
        await f.send_raw(data[i:i + 7])
        await asyncio.sleep(0)
    env, args, params = await outcome(seen)
    assert env["agi_calleridname"] == "张三" and env["agi_accountcode"] == "" and args == ["a b", "2"]
    assert params == {"lang": "zh"}


async def test_a_bare_blank_line_is_an_empty_environment_and_fails_the_script(server: FastAgiServer) -> None:
    f = await FakeAsteriskAgi().open(server.port)
    await f.send_raw(b"\n")
    assert await f.wait_closed(1) == b"FAILURE\n"  # no script: the dialplan falls back


async def test_garbage_after_a_good_first_line_ends_the_connection(server: FastAgiServer) -> None:
    with capture_logs() as logs:
        f = await FakeAsteriskAgi().open(server.port)
        await f.send_raw(b"agi_network: yes\nHost: x\n\n")
        assert await f.wait_closed(1) == b""
    assert any(e["event"] == "agi_env_garbage" and e["line"] == "Host: x" for e in logs)


async def test_one_deadline_timer_per_session_times_each_command() -> None:
    """The lazily re-armed timer: a short explicit timeout after long default ones still fires on time,
    and a command that answers in time leaves no timeout behind for the next one."""
    srv = FastAgiServer("127.0.0.1", 0, command_timeout=5.0)
    await srv.start()
    try:
        async def body(s: AgiSession) -> Any:
            await s.command("VERBOSE a")           # default budget, answered
            t0 = time.monotonic()
            with pytest.raises(AgiTimeout):
                await s.command("GET VARIABLE X", timeout=0.2)  # shorter than the armed 5 s deadline
            return time.monotonic() - t0

        fut = recorder(srv, "inbound", body)
        f = await FakeAsteriskAgi().connect(srv.port)
        await f.reply("VERBOSE a", "200 result=1")
        await f.expect("GET VARIABLE X")
        took = await outcome(fut)
        assert 0.15 < took < 1.0
        assert (await f.wait_closed(2)).endswith(b"FAILURE\n")
    finally:
        await srv.stop(0.2)


async def test_an_outside_cancel_during_a_command_is_not_a_timeout(server: FastAgiServer) -> None:
    started = asyncio.Event()

    async def body(s: AgiSession) -> Any:
        started.set()
        return await s.command("GET VARIABLE X", timeout=0.3)

    outer: list[asyncio.Task[Any]] = []

    async def handler(s: AgiSession) -> None:
        task = asyncio.ensure_future(body(s))
        outer.append(task)
        try:
            await task
        except asyncio.CancelledError:
            pass

    server.route("inbound", handler)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.expect("GET VARIABLE X")
    await started.wait()
    outer[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer[0]
    await asyncio.sleep(0.5)  # past the command's deadline: its timer finds nothing in flight
    await f.close()


async def test_concurrent_commands_of_one_session_go_one_at_a_time_in_order(server: FastAgiServer) -> None:
    """Without an asyncio.Lock: the second and third command wait their turn; a waiter cancelled while
    waiting gives up its place without stalling the others."""
    async def body(s: AgiSession) -> Any:
        a = asyncio.ensure_future(s.get_variable("A"))
        await asyncio.sleep(0)
        b = asyncio.ensure_future(s.get_variable("B"))
        gone = asyncio.ensure_future(s.get_variable("GONE"))
        c = asyncio.ensure_future(s.get_variable("C"))
        await asyncio.sleep(0)
        gone.cancel()
        return await asyncio.gather(a, b, c)

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    for name in "ABC":
        line = await f.expect()
        assert line == f"GET VARIABLE {name}"  # one at a time: the next only after this reply; GONE never sent
        await f.answer(f"200 result=1 ({name.lower()})")
    assert await outcome(fut) == ["a", "b", "c"]


# ---------------------------------------------------------------- the asyncio.Protocol server (issue 15)
async def test_the_reply_of_a_command_cancelled_from_outside_is_dropped_not_shifted(server: FastAgiServer) -> None:
    """A command cancelled while its reply is on the way: that reply, when it comes, is not the next one's."""
    sent = asyncio.Event()

    async def body(s: AgiSession) -> Any:
        first = asyncio.ensure_future(s.get_variable("A"))
        await sent.wait()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await s.get_variable("B")

    fut = recorder(server, "inbound", body)
    f = await FakeAsteriskAgi().connect(server.port)
    await f.expect("GET VARIABLE A")
    sent.set()
    await f.expect("GET VARIABLE B")
    await f.answer("200 result=1 (a)", "200 result=1 (b)")  # Asterisk answers in order, A's late
    assert await outcome(fut) == "b"


async def test_stop_refuses_a_connection_still_sending_its_environment() -> None:
    """FAILURE, so that the dialplan tries the next controller; not a call started while stopping."""
    srv = FastAgiServer("127.0.0.1", 0, env_timeout=5.0)
    await srv.start()
    f = await FakeAsteriskAgi().open(srv.port)
    await f.send_raw(b"agi_network: yes\n")
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await srv.stop(0.2)
    assert await f.wait_closed(1) == b"FAILURE\n"
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("data, expected", [
    (b"agi_network: yes\nagi_network_script: inbound\n\nrest", ({"agi_network": "yes", "agi_network_script": "inbound"}, 46)),
    (b"agi_network: yes\r\nagi_x: 1\r\n\r\n", ({"agi_network": "yes", "agi_x": "1"}, 30)),
    (b"\n", ({}, 1)),
    (b"\r\n", ({}, 2)),
    (b"agi_network: yes\nagi_netw", None),
    (b"agi_network: y", None),
])
def test_frame_env_reads_whole_environments_only(data: bytes, expected: Any) -> None:
    got = frame_env(bytearray(data))
    assert got == (None if expected is None else (*expected, None))


@pytest.mark.parametrize("data, event", [
    (b"GET / HTTP/1.1\r\n", "agi_env_garbage"),
    (b"agi_network: yes\nHost: x\n\n", "agi_env_garbage"),
    (b"agi_x: " + b"a" * (MAX_ENV_BYTES + 10), "agi_env_too_big"),
    (b"agi_x: 1\n" * (MAX_ENV_BYTES // 9 + 1), "agi_env_too_big"),
    (b"agi_x: 1\n" * 300 + b"\n", "agi_env_too_long"),
])
def test_frame_env_refuses_garbage_and_oversized_environments(data: bytes, event: str) -> None:
    got = frame_env(bytearray(data))
    assert got is not None and got[0] is None and got[2] is not None and got[2][0] == event


async def test_concurrent_calls_reading_through_the_shared_receive_buffer_keep_their_own_replies(
        server: FastAgiServer) -> None:
    """Every connection of a server reads into one buffer (BufferedProtocol): what arrives is copied out at
    once, so calls whose replies arrive interleaved never see each other's bytes."""
    results: dict[str, list[str | None]] = {}

    async def handler(s: AgiSession) -> None:
        results[s.uniqueid] = [await s.get_variable("A"), await s.get_variable("B")]

    server.route("inbound", handler)
    calls = [await FakeAsteriskAgi().connect(server.port, uniqueid=f"u{i}") for i in range(20)]
    for f in calls:
        await f.expect("GET VARIABLE A")
    for i, f in enumerate(reversed(calls)):  # answered in the other order, each as two TCP segments
        n = len(calls) - 1 - i
        await f.send_raw(f"200 result=1 (a{n}".encode())
    for n, f in enumerate(calls):
        await f.send_raw(b")\n")
        await f.reply("GET VARIABLE B", f"200 result=1 (b{n}-" + "x" * 3000 + ")")
    for f in calls:
        await f.wait_closed()
    assert results == {f"u{n}": [f"a{n}", f"b{n}-" + "x" * 3000] for n in range(20)}
