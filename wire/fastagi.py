"""Our own asyncio FastAGI server: one task per call, one reply per command, never a shifted reply.

Why not panoramisk's server: its header loop spins on EOF (one port probe freezes every
call), an out-of-band ``HANGUP`` or a multi-line ``520`` shifts every later reply by
one, 511 is not a hang-up, routing ignores query strings, plain handlers crash on
Python 3.11 and commands have no timeout (see ../shared/LIBRARIES.md). Each of
those has a regression test in tests/unit/test_fastagi.py.

Protocol facts used here (res_agi.c): the environment is ``agi_key: value`` lines up to
an empty line; a reply is ``200 result=N [(data)] [endpos=N]``, ``510``, ``511`` (dead
channel) or ``520`` (single line, or ``520-`` … up to a line starting ``520 ``);
``HANGUP`` arrives on its own line at any moment and is never a reply. A connection closed
with nothing sent reads as ``AGISTATUS=SUCCESS``; only a line starting ``FAILURE`` fails
``AGI()`` — so an unknown script, a crashed or cancelled handler and a session out of step
(a command timeout, an over-long reply) all end with ``FAILURE``: the dialplan's fallback
takes the caller to the general queue.

Hostile peers are bounded: connections still sending their environment (refused beyond
`MAX_PENDING_ENV`), the environment's size and time, a reply line's length, and a peer that
never reads (the wait for a command's reply is inside its budget). Media commands get
`media_timeout` (a prompt may be longer than the command timeout); a hang-up still ends them
at once.

The server is an `asyncio.Protocol` (`_AgiConnection`), not streams: what arrives is appended to
one buffer; the environment is framed by `frame_env` (pure), each reply by
`AgiSession._take_reply`, which resolves the one future of the command in flight; commands go
straight to `transport.write`. No StreamReader/StreamWriter, and no task until the environment
is whole (issue 15: below a bare asyncio streams server's CPU per call).

Why one module (≈850 lines): the session's reply reader and the server's connection
handling share the protocol's framing rules (environment, replies, out-of-band HANGUP);
split, the two halves of one protocol would drift.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl

import structlog

from model.privacy import mask_number

log = structlog.get_logger("hotline.fastagi")

T = TypeVar("T")

Handler = Callable[["AgiSession"], Any]

#: Bounds on what a peer may send before the script starts (a port probe or garbage must not cost us).
MAX_ENV_LINES = 256
MAX_LINE_BYTES = 64 * 1024
#: A real environment is under 1 KiB; 20 peers × 255 lines × 60 KiB once held 334 MB.
MAX_ENV_BYTES = 16 * 1024
#: Connections still sending their environment; extras are refused at once (FAILURE, close).
MAX_PENDING_ENV = 256
#: What res_agi reads as "the script failed" (AGISTATUS=FAILURE); EOF alone reads as SUCCESS.
FAILURE_LINE = b"FAILURE\n"

_ENV_LINE = re.compile(r"^(agi_[A-Za-z0-9_]+):\s?(.*)$")
#: every `agi_key: value` line of a whole environment at once (one C-level pass, not a match per line)
_ENV_PAIRS = re.compile(r"^(agi_[A-Za-z0-9_]+):[ \t]?(.*?)\r?$", re.M)
_REPLY_LINE = re.compile(r"^(\d{3})([ -])(.*)$")
_ENDPOS = re.compile(r"\s*endpos=(-?\d+)$")
_VAR_NAME = re.compile(r"^[^\s\"\\]+$")

#: Commands that play or record media: their length is the prompt's, not a fixed timeout. They get
#: `media_timeout`; a caller hanging up still ends them at once (HANGUP / result=-1 / EOF).
_MEDIA = ("STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION", "SAY ", "RECORD FILE", "EXEC",
          "WAIT FOR DIGIT")
#: EXEC'd applications that return at once (everything else EXEC'd is treated as media).
_QUICK_APPS = ("USEREVENT", "SET", "MSET", "NOOP", "VERBOSE", "LOG", "CELGENUSEREVENT")

#: Commands whose ``200 result=-1`` means "hang-up or failure" (res_agi docs); others use -1 otherwise.
_MINUS_ONE_MEANS_HANGUP = (
    "ANSWER", "STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION", "WAIT FOR DIGIT",
    "SAY ", "RECORD FILE", "RECEIVE CHAR", "RECEIVE TEXT", "EXEC",
)


class AgiHangup(Exception):
    """The caller is gone (HANGUP line, 511, result=-1 on a dead channel, or EOF)."""


class AgiError(Exception):
    """Asterisk refused a command (510 unknown, 520 usage, other 5xx); the text says why."""


class AgiTimeout(AgiError):
    """No reply within the command's timeout. The session is then out of step with Asterisk: it is
    closed with FAILURE (the dialplan falls back) and every later command raises AgiBroken."""


class AgiBroken(AgiError):
    """The session can no longer be trusted (a timeout, an over-long reply): no command is sent on it."""


@dataclass(slots=True)
class AgiReply:
    """One parsed reply: ``200 result=1 (value) endpos=0`` → code 200, result '1', data 'value'."""

    code: int
    result: str
    data: str | None
    endpos: int | None
    raw: str

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None


def parse_reply(raw: str) -> AgiReply:
    """Parse the first line of a reply (continuation lines of a 520 block ride along in ``raw``)."""
    first = raw.partition("\n")[0]
    m = _REPLY_LINE.match(first)
    if not m:
        raise AgiError(f"not an AGI reply: {first!r}")
    return _reply(m, raw)


def _reply(m: re.Match[str], raw: str) -> AgiReply:
    """The reply whose first line `m` matched (`_REPLY_LINE`)."""
    code, rest = int(m.group(1)), m.group(3)
    result, data, endpos = "", None, None
    if code == 200 and rest.startswith("result="):
        result, _, tail = rest[7:].partition(" ")
        if not tail:  # the usual `200 result=N`
            return AgiReply(200, result, None, None, raw)
        if "endpos=" in tail:
            em = _ENDPOS.search(tail)
            if em:
                endpos = int(em.group(1))
                tail = tail[: em.start()]
        tail = tail.strip()
        if tail.startswith("(") and tail.endswith(")"):
            data = tail[1:-1]
        elif tail:
            data = tail
    else:
        data = rest
    return AgiReply(code=code, result=result, data=data, endpos=endpos, raw=raw)


def agi_quote(value: str) -> str:
    """Quote one argument the way res_agi's parse_args reads it: backslash escapes, double quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_EVENT_UNSAFE = str.maketrans({",": " ", "|": " ", "\r": " ", "\n": " ", '"': "'", "\\": "/",
                               "(": "（", ")": "）", "[": "［", "]": "］"})


def sanitize_event_value(value: Any) -> str:
    """UserEvent splits on ',' (and '|' in compat mode) and nests on ()/[]: keep a value one value."""
    return str(value).translate(_EVENT_UNSAFE)


class AgiSession:
    """One call's AGI conversation. Commands are serialised; replies are matched strictly in order.

    Made by the server once the environment is read; the connection's protocol (`_AgiConnection`)
    feeds it what Asterisk sends (`_feed`, `_gone`) and it writes to the transport directly."""

    def __init__(self, transport: asyncio.Transport, env: dict[str, str], *,
                 loop: asyncio.AbstractEventLoop, buffer: bytearray | None = None,
                 command_timeout: float | None = 30.0, media_timeout: float | None = 600.0) -> None:
        self.env = env
        raw_script = env.get("agi_network_script", "")
        path, _, query = raw_script.partition("?")
        self.script: str = path.strip().strip("/")
        self.params: dict[str, str] = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
        self.args: list[str] = [v for _, v in sorted(
            ((int(k[len("agi_arg_"):]), v) for k, v in env.items()
             if k.startswith("agi_arg_") and k[len("agi_arg_"):].isdigit()))]
        self.hungup: bool = False
        self.command_timeout = command_timeout
        #: budget of a media command (a prompt may be longer than `command_timeout`); None: no limit
        self.media_timeout = media_timeout
        #: why the session is out of step (then nothing more is sent), or None
        self.broken: str | None = None
        self._transport = transport
        self._loop = loop
        #: what Asterisk sent that no command has read yet (whole lines are taken by `_take_reply`)
        self._buf = buffer if buffer is not None else bytearray()
        #: why Asterisk can no longer answer (its EOF, the connection lost), or None
        self._gone_reason: str | None = None
        #: the command in flight waits on this future; `_feed` resolves it with the reply
        self._waiter: asyncio.Future[AgiReply] | None = None
        #: replies still to come for commands whose caller was cancelled while waiting: dropped
        self._orphans = 0
        self._reading_paused = False
        #: a command is in flight; others of this session wait their turn in `_turns` (FIFO)
        self._busy = False
        self._turns: deque[asyncio.Future[None]] = deque()
        #: a multi-line 520 being read
        self._partial: list[str] = []
        #: the deadline (loop time) of the command in flight (None: no limit or none in flight); one
        #: timer per session is armed lazily (`_arm`)
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ properties
    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def callerid(self) -> str:
        return self.env.get("agi_callerid", "")

    # ------------------------------------------------------------------ transport
    async def command(self, line: str, timeout: float | None = None) -> AgiReply:
        """Send one AGI command and return its reply; 511/EOF raise AgiHangup, 5xx raise AgiError."""
        if "\n" in line or "\r" in line:
            raise ValueError("an AGI command is one line; a newline would inject a second command")
        limit = self._default_budget(line) if timeout is None else timeout
        if self._busy or self._turns:
            await self._wait_turn()
        self._busy = True
        try:
            if self.broken:
                raise AgiBroken(f"{line.split(' ', 1)[0]} not sent: session broken ({self.broken})")
            if self._gone_reason is not None:
                self.hungup = True
                raise AgiHangup(f"{line.split(' ', 1)[0]} not sent: {self._gone_reason}")
            # No wait for the write buffer to drain: the reply can only come after Asterisk read the
            # command, and that wait is inside the command's budget (a peer that never reads times out;
            # the buffer holds this one line, then FAILURE, and the socket is aborted 1 s after close).
            self._transport.write(line.encode("utf-8") + b"\n")
            reply = self._take_reply() if self._buf else None
            if reply is None:
                reply = await self._await_reply(line, limit)
        finally:
            self._busy = False
            if self._turns:
                self._next_turn()
        if reply.code == 200 and reply.result != "-1":
            return reply
        return self._check(line, reply)

    async def _await_reply(self, line: str, limit: float | None) -> AgiReply:
        """Wait (within `limit` seconds) for `_feed` to frame the reply of the command just sent."""
        waiter: asyncio.Future[AgiReply] = self._loop.create_future()
        self._waiter = waiter
        if self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()
        if limit is not None:
            self._arm(self._loop.time() + limit)
        try:
            return await waiter
        except _Expired:
            self.abandon(f"no reply to {line[:80]!r} within {limit} s")
            raise AgiTimeout(f"no reply to {line!r} within {limit} s") from None
        except asyncio.CancelledError:
            if waiter.cancelled():  # cancelled from outside before its reply came: drop that reply
                self._orphans += 1
            raise
        finally:
            self._waiter = None
            self._deadline = None

    # What the connection's protocol calls: data from Asterisk, its EOF, the connection lost.
    def _feed(self, data: bytes | memoryview) -> None:
        buf = self._buf
        buf += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            # nothing asked for: keep it for the next command, but do not buffer a flood
            if len(buf) > 2 * MAX_LINE_BYTES and not self._reading_paused:
                self._reading_paused = True
                self._transport.pause_reading()
            return
        try:
            reply = self._take_reply()
        except AgiBroken as e:
            waiter.set_exception(e)
            return
        if reply is not None:
            waiter.set_result(reply)

    def _gone(self, reason: str) -> None:
        if self._gone_reason is None:
            self._gone_reason = reason
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self.hungup = True
            waiter.set_exception(AgiHangup(reason))

    def _take_reply(self) -> AgiReply | None:
        """The next whole reply in the buffer, or None; out-of-band HANGUP lines set `hungup` and are never
        a reply; a 520 block is one reply; replies of cancelled commands are dropped (never shifted)."""
        buf = self._buf
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_LINE_BYTES:  # its rest would be read as the next reply
                    self._overlong(len(buf))
                return None
            if nl > MAX_LINE_BYTES:
                self._overlong(nl)
            line = buf[:nl].decode("utf-8", errors="replace")
            del buf[:nl + 1]
            if line.endswith("\r"):
                line = line.rstrip("\r")
            if line == "HANGUP":
                self.hungup = True
                continue
            if self._partial:
                self._partial.append(line)
                if not line.startswith(self._partial[0][:3] + " "):
                    continue
                raw, self._partial = "\n".join(self._partial), []
                reply = parse_reply(raw)
            else:
                m = _REPLY_LINE.match(line)
                if not m:
                    if line:
                        log.warning("agi_unexpected_line", line=line[:200])
                    continue
                if m.group(2) == "-":
                    self._partial = [line]
                    continue
                reply = _reply(m, line)
            if self._orphans:
                self._orphans -= 1
                log.info("agi_orphan_reply_dropped", reply=reply.raw[:80], uniqueid=self.uniqueid)
                continue
            return reply

    def _overlong(self, size: int) -> None:
        self._buf.clear()
        self.abandon(f"reply line too long: {size} bytes without its end")
        raise AgiBroken(f"reply line too long: {size} bytes without its end")

    # Commands are serialised without an asyncio.Lock (five calls per command): a flag, and a queue of
    # waiters only when a second command comes while one is in flight (rare: handlers are sequential).
    async def _wait_turn(self) -> None:
        while self._busy:
            turn = self._loop.create_future()
            self._turns.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled() and not self._busy:
                    self._next_turn()  # it was our turn: hand it on, or the next waiter waits forever
                raise
            finally:
                try:
                    self._turns.remove(turn)
                except ValueError:
                    pass

    def _next_turn(self) -> None:
        for turn in self._turns:
            if not turn.done():
                turn.set_result(None)
                return

    # One timer per session instead of one per command (asyncio.timeout costs a TimerHandle pushed on,
    # and a cancelled one left in, the loop's heap for every command): the timer stays armed at the
    # earliest deadline; when it fires it fails the command in flight if that one is overdue, re-arms
    # for a later deadline, or lapses when no command is in flight. Commands' deadlines mostly grow
    # (a fixed budget from a later start), so most commands only store a float.
    def _arm(self, deadline: float) -> None:
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        deadline, waiter = self._deadline, self._waiter
        if deadline is None or waiter is None or waiter.done():
            return  # no command in flight (or one without a limit, or answered): nothing to time
        if deadline - self._loop.time() > 0.001:  # a later command's deadline
            self._timer = self._loop.call_at(deadline, self._on_deadline)
            return
        waiter.set_exception(_Expired())

    def close_timer(self) -> None:
        """The session is over: its deadline timer leaves the loop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abandon(self, reason: str) -> None:
        """Out of step with Asterisk: say FAILURE (the dialplan falls back to the queue) and close."""
        if self.broken:
            return
        self.broken = reason
        log.warning("agi_session_broken", reason=reason[:200], uniqueid=self.uniqueid)
        _say_failure_and_close(self._transport, self._loop)

    def _default_budget(self, line: str) -> float | None:
        head = line[:24]  # the verb (and an EXEC's application), not a long argument
        kind = _BUDGET_KIND.get(head)
        if kind is None:
            kind = _budget_kind(head)
            if len(_BUDGET_KIND) < 4096:
                _BUDGET_KIND[head] = kind
        if kind:
            if self.media_timeout is None or self.command_timeout is None:
                return None
            return max(self.media_timeout, self.command_timeout)
        return self.command_timeout

    def _check(self, line: str, reply: AgiReply) -> AgiReply:
        if reply.code == 511:
            self.hungup = True
            raise AgiHangup(reply.raw)
        if reply.code != 200:
            raise AgiError(reply.raw)
        if reply.result == "-1" and self.hungup and _minus_one_is_hangup(line):
            raise AgiHangup(f"{line.split(' ', 1)[0]}: result=-1 after HANGUP")
        return reply

    async def confirm_hangup(self, line: str) -> None:
        """After ``result=-1`` with no HANGUP seen: ask the channel; 511 means it is gone.

        -1 is also what a missing sound file gives, and that must not end a live call
        (fail open: the caller still reaches an agent).
        """
        if self.hungup:
            raise AgiHangup(f"{line.split(' ', 1)[0]}: result=-1 after HANGUP")
        reply = await self.command("CHANNEL STATUS")  # not permitted on a dead channel → 511
        if self.hungup or reply.result == "-1":
            self.hungup = True
            raise AgiHangup(f"{line.split(' ', 1)[0]}: result=-1, channel gone")
        log.warning("agi_command_failed", command=line[:120], uniqueid=self.uniqueid)

    def sync(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Run a session coroutine from a plain handler (which runs in a worker thread)."""
        fut = asyncio.run_coroutine_threadsafe(_as_coro(awaitable), self._loop)
        return fut.result(timeout)

    # ------------------------------------------------------------------ helpers
    async def get_variable(self, name: str) -> str | None:
        """A channel variable or function value; None when unset. Never the string 'hangup'."""
        _check_name(name)
        reply = await self.command(f"GET VARIABLE {name}")
        if reply.result != "1":
            return None
        return reply.data if reply.data is not None else ""

    async def set_variable(self, name: str, value: Any) -> None:
        _check_name(name)
        await self.command(f"SET VARIABLE {name} {agi_quote(_one_line(str(value)))}")

    async def set_variables(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """Set channel variables in order, in one round trip (`EXEC MSet`) when every value goes through
        Asterisk's argument parsing unchanged (`_mset_safe`), else one SET VARIABLE each."""
        values = [(name, _one_line(str(value))) for name, value in pairs]
        for name, _ in values:
            _check_name(name)
        if 1 < len(values) <= MSET_MAX and all(_MSET_NAME.match(n) and _mset_safe(v) for n, v in values):
            await self.exec("MSet", *(f"{name}={v}" for name, v in values))
            return
        for name, v in values:
            await self.set_variable(name, v)

    async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
        """Play a sound; the digit that interrupted it, or None. A missing file plays as silence."""
        line = f"STREAM FILE {_arg(name)} {agi_quote(escape_digits)}"
        reply = await self.command(line)
        return await self._digit_result(line, reply)

    async def get_data(self, name: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play a prompt and collect digits: (digits, timed_out)."""
        line = f"GET DATA {_arg(name)} {int(timeout_ms)} {int(max_digits)}"
        reply = await self.command(line, timeout=self._wait_budget(timeout_ms * max(1, max_digits), media=True))
        if reply.result == "-1":
            await self.confirm_hangup(line)
            return "", True
        return reply.result, (reply.data or "").strip() == "timeout"

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        line = f"WAIT FOR DIGIT {int(timeout_ms)}"
        reply = await self.command(line, timeout=self._wait_budget(timeout_ms))
        return await self._digit_result(line, reply)

    async def say_digits(self, digits: str, escape: str = "") -> str | None:
        line = f"SAY DIGITS {_arg(digits)} {agi_quote(escape)}"
        reply = await self.command(line)
        return await self._digit_result(line, reply)

    async def exec(self, app: str, *args: Any) -> AgiReply:
        """Run a dialplan application; args are joined with ',' and quoted once for AGI."""
        line = f"EXEC {_arg(app)}"
        if args:
            line += " " + agi_quote(_one_line(",".join(str(a) for a in args)))
        reply = await self.command(line)
        if reply.result == "-1":
            await self.confirm_hangup(line)
        return reply

    async def playback(self, names: Sequence[str]) -> None:
        """Play sounds back to back, not interruptible, in one command (`EXEC Playback a&b&c`). A hang-up during
        it raises AgiHangup (Playback answers -1, confirmed as for any EXEC); a missing file does not end the
        call (Asterisk warns, skips it and sets PLAYBACKSTATUS to FAILED).

        Playback splits its list at `&` and its arguments at `,`, and strips quotes and backslashes: a name
        holding one of those would play something else, so it is refused (ValueError), as is an empty list."""
        if not names:
            raise ValueError("Playback needs at least one sound")
        for name in names:
            if not name or any(c in name for c in _PLAYBACK_UNSAFE):
                raise ValueError(f"sound name {name!r} cannot be in a Playback list (empty, or one of "
                                 f"{_PLAYBACK_UNSAFE!r} in it)")
        await self.exec("Playback", "&".join(names))

    async def verbose(self, msg: str, level: int = 1) -> None:
        await self.command(f"VERBOSE {agi_quote(_one_line(msg))} {int(level)}")

    async def answer(self) -> None:
        line = "ANSWER"
        reply = await self.command(line)
        if reply.result == "-1":
            await self.confirm_hangup(line)

    async def hangup(self) -> None:
        await self.command("HANGUP")

    async def user_event(self, name: str, **headers: Any) -> None:
        """Emit an AMI UserEvent from this channel (values cleaned so each stays one header)."""
        parts = [sanitize_event_value(name).replace(" ", "_")]
        parts += [f"{sanitize_event_value(k)}: {sanitize_event_value(v)}" for k, v in headers.items()]
        await self.exec("UserEvent", *parts)

    async def _digit_result(self, line: str, reply: AgiReply) -> str | None:
        code = reply.result_int
        if code is None or code == 0:
            return None
        if code < 0:
            await self.confirm_hangup(line)
            return None
        return chr(code)

    def _wait_budget(self, timeout_ms: int, media: bool = False) -> float | None:
        """A command that waits for the caller gets its own wait on top of the normal (or media) budget."""
        base = self.command_timeout
        if media and base is not None:
            base = None if self.media_timeout is None else max(self.media_timeout, base)
        if base is None:
            return None
        return base + max(0, timeout_ms) / 1000.0


#: characters Playback's argument parsing gives a meaning (list, arguments, quoting) or a line would end at
_PLAYBACK_UNSAFE = "&,\"\\\r\n"

#: `_budget_kind` of a command's first 24 characters, remembered (commands repeat: a few dozen heads)
_BUDGET_KIND: dict[str, bool] = {}


def _budget_kind(head: str) -> bool:
    """Whether a command starting with `head` plays or records media (the media budget), else quick."""
    upper = head.upper()
    return upper.startswith(_MEDIA) and not (upper.startswith("EXEC ") and upper[5:].split(" ", 1)[0] in _QUICK_APPS)


def _minus_one_is_hangup(line: str) -> bool:
    upper = line.upper()
    return any(upper.startswith(p) for p in _MINUS_ONE_MEANS_HANGUP)


def _check_name(name: str) -> None:
    if not _VAR_NAME.match(name):
        raise ValueError(f"bad variable name {name!r}")


#: what MSet's argument parsing gives a meaning: its list separators (`,`, and `|` in compat mode), the
#: name=value split, quotes and escapes (stripped), brackets and parentheses (they hold separators); also `'`
#: and braces, which a dialplan's own quoting or an AGIEXECFULL substitution could read
_MSET_UNSAFE = frozenset(",|=\"\\'()[]{}")
#: MSet sets at most this many pairs (the rest would run into the last value)
MSET_MAX = 24
#: a name MSet takes as it is (AGI's SET VARIABLE takes more: `_VAR_NAME`)
_MSET_NAME = re.compile(r"_{0,2}[A-Za-z0-9][A-Za-z0-9_]*\Z")


def _mset_safe(value: str) -> bool:
    """A value MSet sets exactly as given (also no space at either end: argument parsing may trim it)."""
    return value == value.strip() and not _MSET_UNSAFE.intersection(value)


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def _arg(value: str) -> str:
    """A bare argument (file name, digits, app); quoted when it holds spaces or quotes."""
    value = _one_line(str(value))
    if value and not any(c in value for c in ' \t"\\'):
        return value
    return agi_quote(value)


async def _as_coro(awaitable: Awaitable[T]) -> T:
    return await awaitable


def frame_env(buf: bytes | bytearray) -> tuple[dict[str, str] | None, int, tuple[str, dict[str, Any]] | None] | None:
    """The AGI environment at the start of `buf`: None while it is incomplete, else (env, bytes it
    takes, None), or (None, 0, (log event, fields)) when it is refused (garbage, too big, too long).

    Pure: the protocol calls it on what has arrived so far. The environment is ``agi_key: value``
    lines up to an empty line (``\\n`` or ``\\r\\n``); a bare empty line is an empty environment. The
    first line is checked alone (an HTTP probe or garbage is refused at once), the rest in one
    `findall` once the empty line is there; the whole is bounded by `MAX_ENV_BYTES`, `MAX_ENV_LINES`.
    """
    nl = buf.find(b"\n")
    if nl < 0:
        return (None, 0, ("agi_env_too_big", {"bytes": len(buf)})) if len(buf) > MAX_ENV_BYTES else None
    if nl == 0 or (nl == 1 and buf[0] == 13):
        return {}, nl + 1, None
    first = buf[:nl].decode("utf-8", errors="replace")
    if _ENV_LINE.match(first) is None:
        return None, 0, ("agi_env_garbage", {"line": first.rstrip("\r")[:100]})
    lf, crlf = buf.find(b"\n\n", nl), buf.find(b"\n\r\n", nl)
    if lf < 0 and crlf < 0:
        if len(buf) > MAX_ENV_BYTES:
            return None, 0, ("agi_env_too_big", {"lines": buf.count(b"\n"), "bytes": len(buf)})
        return None
    end = lf + 2 if crlf < 0 or 0 <= lf < crlf else crlf + 3
    if end > MAX_ENV_BYTES:
        return None, 0, ("agi_env_too_big", {"lines": buf.count(b"\n", 0, end), "bytes": end})
    lines = buf.count(b"\n", 0, end) - 1
    if lines > MAX_ENV_LINES:
        return None, 0, ("agi_env_too_long", {"lines": lines})
    text = buf[:end].decode("utf-8", errors="replace")
    pairs = _ENV_PAIRS.findall(text)
    if len(pairs) != lines:  # some line is not `agi_key: value`
        bad = next((ln for ln in text.split("\n") if ln.strip() and not _ENV_LINE.match(ln)), "")
        return None, 0, ("agi_env_garbage", {"line": bad.rstrip("\r")[:100]})
    return dict(pairs), end, None


def _say_failure_and_close(transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
    """FAILURE (res_agi reads AGISTATUS=FAILURE: the dialplan falls back), then close."""
    if not transport.is_closing():
        transport.write(FAILURE_LINE)
    _close(transport, loop)


def _close(transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
    """Close; with something still unsent, give the peer 1 s to read it (FAILURE, say), then abort:
    a peer that never reads must not keep the socket."""
    transport.close()
    if transport.get_write_buffer_size():
        loop.call_later(1.0, transport.abort)


class _Expired(Exception):
    """The command's deadline passed (set on its waiter by the session's timer)."""


#: size of the one receive buffer a server's connections read into (`_AgiConnection.get_buffer`)
RECV_BUFFER_BYTES = 64 * 1024


class _AgiConnection(asyncio.BufferedProtocol):
    """One FastAGI connection: reads the environment itself (bounded in time, size and number of
    connections doing so), then hands what Asterisk sends to the call's `AgiSession`.

    No StreamReader/StreamWriter and no task until the environment is whole: a port probe, garbage or a
    silent peer costs a few callbacks; a call costs one task (its handler). A buffered protocol: the
    transport reads (``recv_into``) into one buffer shared by all of the server's connections — the
    loop calls `get_buffer` and then `buffer_updated` for one connection at a time, and what arrived
    is copied out at once — instead of a fresh 256 KiB ``recv`` buffer per read (which glibc serves
    with mmap/mremap/munmap: three system calls per read)."""

    def __init__(self, server: FastAgiServer) -> None:
        self._server = server
        assert server._loop is not None, "start() first"
        self._loop = server._loop
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._session: AgiSession | None = None
        #: still sending its environment (counted in the server's pending-environment cap)
        self._greeting = False
        self._env_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (not an isinstance check: uvloop's TCPTransport is no asyncio.Transport subclass)
        self._transport = transport = cast(asyncio.Transport, transport)
        srv = self._server
        if srv._stopping or srv._pending_env >= srv.max_pending_env:
            # refused at once: a flood of half-open peers must not hold file descriptors and memory;
            # while stopping, FAILURE makes the dialplan try the next controller
            log.warning("agi_connection_refused", pending=srv._pending_env, stopping=srv._stopping)
            _say_failure_and_close(transport, self._loop)
            return
        srv._pending_env += 1
        srv._greeting.add(self)
        self._greeting = True
        self._env_timer = self._loop.call_later(srv.env_timeout, self._env_timeout)

    def _end_greeting(self) -> None:
        if self._greeting:
            self._greeting = False
            self._server._pending_env -= 1
            self._server._greeting.discard(self)
            if self._env_timer is not None:
                self._env_timer.cancel()
                self._env_timer = None

    def _env_timeout(self) -> None:
        self._env_timer = None
        if self._greeting:
            log.warning("agi_env_timeout", lines=self._buf.count(b"\n"))
            self._end_greeting()
            assert self._transport is not None
            self._transport.close()

    def refuse(self) -> None:
        """Still sending its environment when the server stops: FAILURE (the next controller is tried)."""
        if self._greeting and self._transport is not None:
            self._end_greeting()
            _say_failure_and_close(self._transport, self._loop)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server._recv_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._server._recv_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        session = self._session
        if session is not None:
            session._feed(data)
            return
        if not self._greeting:
            return  # refused or given up: nothing more is read
        buf = self._buf
        buf += data
        framed = frame_env(buf)
        if framed is None:
            return
        self._end_greeting()
        env, end, problem = framed
        transport = self._transport
        assert transport is not None
        if env is None:
            assert problem is not None
            log.warning(problem[0], **problem[1])
            transport.close()
            return
        del buf[:end]
        srv = self._server
        session = AgiSession(transport, env, loop=self._loop, buffer=buf,
                             command_timeout=srv.command_timeout, media_timeout=srv.media_timeout)
        self._session = session
        srv._begin(session)

    def eof_received(self) -> bool | None:
        if self._session is not None:
            self._session._gone("connection closed by Asterisk")
            return True  # half-closed: our side may still say FAILURE; the handler's end closes it
        if self._greeting:  # a port probe (nothing sent), or Asterisk gave up mid-environment
            if self._buf:
                log.warning("agi_env_truncated", lines=self._buf.count(b"\n"))
            self._end_greeting()
        return None  # close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._greeting:
            if exc is not None:
                log.warning("agi_env_unreadable", error=str(exc)[:200])
            self._end_greeting()
        if self._session is not None:
            self._session._gone(f"connection lost: {exc}" if exc else "connection closed by Asterisk")


class FastAgiServer:
    """Accepts Asterisk's FastAGI connections and runs one routed handler per call."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4573, backlog: int = 1024,
                 command_timeout: float | None = 30.0, env_timeout: float = 2.0,
                 media_timeout: float | None = 600.0, max_pending_env: int = MAX_PENDING_ENV,
                 plain_workers: int = 32) -> None:
        self.host = host
        self._port = port
        self.backlog = backlog
        self.command_timeout = command_timeout
        #: Asterisk sends the whole environment at once; a peer slower than this is not Asterisk
        self.env_timeout = env_timeout
        self.media_timeout = media_timeout
        self.max_pending_env = max_pending_env
        self.plain_workers = plain_workers
        self._routes: dict[str, Handler] = {}
        #: whether each route's handler is a coroutine function (asked once, not per call)
        self._is_async: dict[str, bool] = {}
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: connections still sending their environment
        self._greeting: set[_AgiConnection] = set()
        #: what every connection reads into (copied out at once: see `_AgiConnection`)
        self._recv_buffer = memoryview(bytearray(RECV_BUFFER_BYTES))
        self._sessions = 0
        self._pending_env = 0
        self._stopping = False
        #: plain handlers get threads of their own, never the loop's shared default executor
        self._executor: ThreadPoolExecutor | None = None

    def route(self, script: str, handler: Handler) -> None:
        """Register a handler for ``agi://host/<script>``; async, or plain (run in the executor)."""
        name = script.strip().strip("/")
        self._routes[name] = handler
        self._is_async[name] = (inspect.iscoroutinefunction(handler)
                                or inspect.iscoroutinefunction(getattr(handler, "__call__", None)))

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port=0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def active_sessions(self) -> int:
        return self._sessions

    async def start(self) -> None:
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        # explicit backlog: Asterisk gives up after ~2 s, and a small backlog overflowed under bursts
        self._server = await self._loop.create_server(partial(_AgiConnection, self), self.host, self._port,
                                                      backlog=self.backlog)
        log.info("agi_server_started", host=self.host, port=self.port, backlog=self.backlog)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let running calls finish for up to `grace_s`, then cancel the rest.

        A cancelled call gets FAILURE: its dialplan falls back to the general queue. A connection
        still sending its environment gets FAILURE at once: the dialplan tries the next controller."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._greeting):
            conn.refuse()
        pending = {t for t in self._tasks if not t.done()}
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(0.0, grace_s))
            for t in still:
                t.cancel()
            if still:
                log.warning("agi_sessions_cancelled", count=len(still))
                await asyncio.wait(still, timeout=1.0)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass
            self._server = None
        log.info("agi_server_stopped")

    def _begin(self, session: AgiSession) -> None:
        """The environment is whole: route the call and run its handler in a task of its own."""
        handler = self._routes.get(session.script)
        if handler is None:
            # a bare close reads as AGISTATUS=SUCCESS in res_agi; FAILURE makes the dialplan fall back
            log.warning("agi_unknown_script", script=session.script,
                        request=session.env.get("agi_request", "")[:200])
            _say_failure_and_close(session._transport, session._loop)
            return
        task = session._loop.create_task(self._run(handler, session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, handler: Handler, session: AgiSession) -> None:
        try:
            await self._serve(handler, session)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # our own stop(): end quietly
        finally:
            session.close_timer()
            _close(session._transport, session._loop)

    async def _serve(self, handler: Handler, session: AgiSession) -> None:
        started = time.monotonic()
        self._sessions += 1
        env = session.env
        log.info("agi_session_started", script=session.script, uniqueid=session.uniqueid,
                 channel=env.get("agi_channel", ""), caller=mask_number(session.callerid),
                 extension=env.get("agi_extension", ""))
        outcome = "completed"
        try:
            if self._is_async.get(session.script):
                await handler(session)
            else:
                await self._run_handler(handler, session)
        except AgiHangup:
            outcome = "hangup"
        except asyncio.CancelledError:
            outcome = "cancelled"
            session.abandon("server stopping")
            raise
        except Exception:
            outcome = "failed"
            log.exception("agi_handler_failed", script=session.script, uniqueid=session.uniqueid)
            session.abandon("handler failed")  # FAILURE: the dialplan's fallback takes the caller
        finally:
            self._sessions -= 1
            log.info("agi_session_ended", script=session.script, uniqueid=session.uniqueid,
                     duration=round(time.monotonic() - started, 3), outcome=outcome, hungup=session.hungup)

    async def _run_handler(self, handler: Handler, session: AgiSession) -> None:
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None)):
            await handler(session)
            return
        # plain function: off the loop, so it may block (it talks to Asterisk through session.sync);
        # on threads of its own, so vosk or DNS lookups in the default executor never make callers wait
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.plain_workers, thread_name_prefix="agi-plain")
        result = await asyncio.get_running_loop().run_in_executor(self._executor, handler, session)
        if inspect.isawaitable(result):
            await result
