"""panoramisk's FastAGI server (panoramisk/fast_agi.py, utils.py): each defect in LIBRARIES.md still present.

Our replacement is wire/fastagi.py; tests/unit/test_fastagi.py keeps the regression test
that our server does not have the defect. Here, the other side: the pinned upstream still
has it, so the workaround is still needed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from types import ModuleType
from typing import Any

import pytest

try:
    from tests.upstream.upstream_peers import (
        PanoramiskAgiProcess,
        PanoramiskAgiThread,
        agi_env,
        play_asterisk,
        still_present,
    )
except ModuleNotFoundError:
    from upstream_peers import (  # type: ignore[no-redef]
        PanoramiskAgiProcess,
        PanoramiskAgiThread,
        agi_env,
        play_asterisk,
        still_present,
    )

WHERE = "wire/fastagi.py"


@pytest.fixture
def agi_thread(panoramisk: ModuleType) -> Any:
    srv = PanoramiskAgiThread()
    yield srv
    srv.close()


def result_of(reply: Any) -> Any:
    """What a handler would read as the value: ('1', 'a') for ``200 result=1 (a)``."""
    return reply.get("result") if isinstance(reply, dict) else reply


# ---------------------------------------------------------------- whole-server freeze (child process)
async def served(port: int, timeout: float) -> bool:
    """One normal call: does the server send its first command within `timeout` (Asterisk waits 2 s)?"""
    try:
        commands = await asyncio.wait_for(
            play_asterisk(port, [["200 result=1 (13800138000)"], ["200 result=1"]], timeout=timeout), timeout + 1)
    except (asyncio.TimeoutError, OSError):
        return False
    return bool(commands) and commands[0].startswith("GET VARIABLE")


async def probe_bare_connect(port: int) -> None:
    """A port check / health probe: connect, close, send nothing."""
    _, w = await asyncio.open_connection("127.0.0.1", port)
    w.close()


async def probe_truncated_env(port: int) -> None:
    """Asterisk gave up (or the peer died) in the middle of the AGI environment."""
    _, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"agi_network: yes\nagi_network_script: inbound\nagi_chan")
    await w.drain()
    w.close()


@pytest.mark.parametrize("probe", [probe_bare_connect, probe_truncated_env], ids=["bare-connect-close", "truncated-env"])
async def test_eof_before_env_end_freezes_the_whole_server(panoramisk: ModuleType, probe: Any) -> None:
    child = PanoramiskAgiProcess()
    try:
        assert await served(child.port, 2.0), f"control: the panoramisk child must serve a normal call first " \
                                              f"{child.stderr()!r}"
        await probe(child.port)
        await asyncio.sleep(0.1)
        cpu0, t0 = child.cpu_seconds(), time.monotonic()
        ok = await served(child.port, 2.0)  # Asterisk's FastAGI connect timeout is 2000 ms
        wall = time.monotonic() - t0
        cpu = child.cpu_seconds() - cpu0
        alive = child.proc.poll() is None
        # alive, not serving, and burning CPU (a spin; 10% of the wall is a low bar on a shared machine)
        still_present(alive and not ok and cpu > 0.1 * wall, "panoramisk",
                      "freezes the whole server (header loop spinning on EOF) after a bare connect/close "
                      "or a truncated AGI environment",
                      WHERE, "FastAgiServer._read_env: EOF, garbage, size and env_timeout end only that connection",
                      evidence={"alive": alive, "next_call_served": ok, "cpu_s": round(cpu, 2),
                                "wall_s": round(wall, 2)})
    finally:
        child.close()


# ---------------------------------------------------------------- reply shifts
async def test_hangup_line_is_taken_as_the_next_reply(agi_thread: PanoramiskAgiThread) -> None:
    """Asterisk's order when the caller hangs up during playback: the command's ``result=-1``, then
    ``HANGUP`` on its own line (AGISIGHUP=yes, the default)."""
    agi_thread.route("inbound", ['STREAM FILE greeting "0123456789"', "GET VARIABLE A", "GET VARIABLE B"])
    sent = await play_asterisk(agi_thread.port, [["200 result=-1 endpos=0", "HANGUP"],
                                                 ["200 result=1 (a)"], ["200 result=1 (b)"]])
    res = await agi_thread.results("inbound")
    assert sent[:3] == ['STREAM FILE greeting "0123456789"', "GET VARIABLE A", "GET VARIABLE B"], sent
    got = [result_of(r) for r in res[1:]]
    still_present(got != [("1", "a"), ("1", "b")] and res[2].get("result") == ("1", "a"), "panoramisk",
                  "takes the out-of-band HANGUP line as the reply to the next command (every later reply shifted)",
                  WHERE, "AgiSession._take_reply: HANGUP sets `hungup` and is never a reply", evidence=res)


async def test_multiline_520_usage_shifts_later_replies(agi_thread: PanoramiskAgiThread) -> None:
    """res_agi's usage error: ``520-`` first line, the usage text, and a last line starting ``520 ``."""
    agi_thread.route("inbound", ["GET DATA", "GET VARIABLE A", "GET VARIABLE B"])
    usage = ["520-Invalid command syntax.  Proper usage follows:",
             "Usage: GET DATA <file to be streamed> [timeout] [maxdigits]",
             "Stream the given file, and receive DTMF data.",
             "520 End of proper usage."]
    await play_asterisk(agi_thread.port, [usage, ["200 result=1 (a)"], ["200 result=1 (b)"]])
    res = await agi_thread.results("inbound")
    got = [result_of(r) for r in res[1:]]
    still_present(got != [("1", "a"), ("1", "b")], "panoramisk",
                  "reads a multi-line 520 usage reply as two lines only (the rest shifts every later reply)",
                  WHERE, "AgiSession._take_reply: a '520-' block is read up to the line starting '520 '",
                  evidence=res)


# ---------------------------------------------------------------- 511, routing, plain handlers, timeout
async def test_511_dead_channel_is_not_a_hangup(agi_thread: PanoramiskAgiThread) -> None:
    agi_thread.route("inbound", ["ANSWER"])
    await play_asterisk(agi_thread.port, [["511 Command Not Permitted on a dead channel or intercept routine"]])
    (reply,) = await agi_thread.results("inbound")
    error = reply.get("error", "") if isinstance(reply, dict) else type(reply).__name__
    still_present("hangup" not in str(error).lower(), "panoramisk",
                  "leaves 511 (command not permitted on a dead channel) unmapped instead of reporting a hang-up",
                  WHERE, "AgiSession._check: 511 raises AgiHangup", evidence=reply)


async def test_route_lookup_is_exact_so_a_query_string_misses(agi_thread: PanoramiskAgiThread) -> None:
    """``AGI(agi://host/inbound?lang=zh)`` makes res_agi send ``agi_network_script: inbound?lang=zh``."""
    agi_thread.route("inbound", ["GET VARIABLE A"])
    plain = await play_asterisk(agi_thread.port, [["200 result=1 (a)"]])
    assert plain == ["GET VARIABLE A"], f"control: the route must answer its plain script name, got {plain}"
    agi_thread.called.clear()
    env = agi_env("inbound?lang=zh", **{"agi_request": "agi://127.0.0.1/inbound?lang=zh"})
    with_query = await play_asterisk(agi_thread.port, [["200 result=1 (a)"]], env=env, timeout=1.0)
    still_present(with_query == [] and agi_thread.called == [], "panoramisk",
                  "matches agi_network_script exactly (agi://host/inbound?lang=zh misses the 'inbound' route)",
                  WHERE, "AgiSession: the script is the path before '?', the query becomes `params`",
                  evidence={"commands": with_query, "handler_called": agi_thread.called})


async def test_plain_handler_crashes_on_python_311(panoramisk: ModuleType) -> None:
    from panoramisk.fast_agi import Application

    app = Application(loop=asyncio.get_running_loop())

    def plain(request: Any) -> None:  # a non-async handler
        pass

    try:
        app.add_route("inbound", plain)
        error: BaseException | None = None
    except AttributeError as e:
        error = e
    still_present(error is not None and "coroutine" in str(error), "panoramisk",
                  "crashes registering a plain (non-async) handler on Python >= 3.11 (asyncio.coroutine is gone)",
                  WHERE, "FastAgiServer._run_handler: plain handlers run in the executor, talk via session.sync",
                  evidence=repr(error))


async def test_no_per_command_timeout(agi_thread: PanoramiskAgiThread) -> None:
    from panoramisk.fast_agi import Application, Request

    agi_thread.route("inbound", ["GET VARIABLE A"], per_command=None)  # as a handler would call it
    call = asyncio.create_task(play_asterisk(agi_thread.port, [[]], timeout=2.0, hold_open=1.5))
    await asyncio.sleep(1.2)  # Asterisk never answers
    pending = not agi_thread.done("inbound")
    await call
    params = set(inspect.signature(Request.send_command).parameters) | set(
        inspect.signature(Application.__init__).parameters)
    still_present(pending and not any("timeout" in p for p in params), "panoramisk",
                  "lacks a per-command timeout (send_command waits for ever for a reply)",
                  WHERE, "AgiSession.command: command_timeout, late replies dropped as orphans",
                  evidence={"pending_after_1.2s": pending, "parameters": sorted(params)})
