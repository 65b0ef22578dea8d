"""Our own asyncio AMI client: replies matched by ActionID, nothing ever re-sent, a dead link noticed.

Why not panoramisk's manager: "…successfully queued" answers raise ``KeyError: 'async'``
and drop the link, unanswered actions are re-sent after a reconnect (a second
Originate is a second phone call), its Ping answer is never checked, a failing event
handler drops the connection, non-ASCII split across reads is lost and actions have no
timeout (see ../shared/LIBRARIES.md). tests/unit/test_ami.py keeps a regression
test for each.

Shape: one background task owns the link (connect → Login → wait until it dies →
back off → again). The socket's asyncio Protocol hands each read straight to the framer
(`_feed`: the whole messages of a read decoded at once, parsed with plain string operations —
issue 15: about twice panoramisk's events/s, bench/ami_compare.py); events go through one
queue to a dispatcher task, so a slow or failing callback never delays reading
(Asterisk drops a client that falls its `writetimeout` behind) and events stay in order. The
dispatcher lets the loop run every DISPATCH_SLICE events, and the socket asks the kernel for a
4 MiB receive buffer, so a busy controller still drains the link.

Event policy (issue 14.5/14.6): the queue holds at most `max_queued_events`; when it is full the
newest event is dropped and counted (``ami_events_dropped``) — reading never waits, and the CDR
replay rebuilds the calls whose events were lost. A callback failing in any way (a stray
``CancelledError`` included) is logged and counted; only `close()` ends the dispatcher, and a
dispatcher that dies anyway is restarted. A callback still running after `handler_budget` seconds
is left to finish as its own task (never cancelled: it may be saving a ticket) and the next events
go on, so one slow subscriber cannot hold up the others; only such a late callback may then see
its events out of order. A server that accepts Login and drops the link at once is retried with
the same doubling backoff as a refused connection. `health()` reports all of it.

Why one module (≈750 lines): the link, the action matching and the event dispatcher share one
lifecycle (start, reconnect, close) and one set of counters; split, close() and the restart of a
dead dispatcher would have to reach across modules into each other's tasks.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import operator
import re
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("wire.ami")

Message = dict[str, str]
EventCallback = Callable[[Message], Any]

_SEP = b"\r\n\r\n"
_KEY = re.compile(r"^[^\s:]+$")
#: A peer that never ends a message must not grow our buffer without bound.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Warn when callbacks fall this far behind the wire (reading itself never waits for them).
EVENT_BACKLOG_WARN = 10_000
#: A link must stay up this long after Login for the reconnect backoff to start again from the bottom.
STABLE_LINK_S = 10.0
#: The kernel's receive buffer asked for on the AMI socket (capped by net.core.rmem_max): while our loop
#: is busy, Asterisk's writes land here instead of waiting out its `writetimeout` and dropping us.
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
#: The dispatcher lets the loop run (the socket read, FastAGI) after this many events in a row.
DISPATCH_SLICE = 256


class AmiException(Exception):
    """Base of everything this client raises."""


class AmiError(AmiException, RuntimeError):
    """Asterisk answered ``Response: Error``; the text is its Message."""

    def __init__(self, message: str, response: Message | None = None) -> None:
        super().__init__(message)
        self.response: Message = response or {}


class AmiTimeout(AmiException, TimeoutError):
    """No answer in time; the action may still have run (it is never re-sent)."""


class AmiDisconnected(AmiException, ConnectionError):
    """The link was down, or dropped before the answer came; the action is never re-sent."""


def parse_message(text: str) -> Message:
    """One AMI message → dict. Repeated headers are joined with newlines; ``ChanVariable: n=v``
    also appears as ``ChanVariable(n)``; lines that are not headers (legacy Command output)
    are collected under ``Output``.

    Plain string operations only (issue 15): the usual message — ``Key: value`` lines, each key
    once — is split and turned into a dict in C; anything else takes the careful line-by-line path."""
    lines = text.split("\r\n")
    if text.count("\n") != len(lines) - 1:  # a bare LF somewhere: lines end at it too
        lines = text.replace("\r\n", "\n").split("\n")
    try:
        msg = dict(map(_split_header, lines))
    except ValueError:  # a line without ": " (an empty line, "Key:", Command output)
        return _parse_lines(lines)
    if len(msg) != len(lines) or "" in msg or _BAD_KEY.search("".join(msg)) or "ChanVariable" in text:
        return _parse_lines(lines)  # repeated or odd keys, or ChanVariable to index
    return msg


#: "Key: value" → [key, value] (in C)
_split_header = operator.methodcaller("split", ": ", 1)
#: what a header key cannot hold (the careful path then treats the line as Output)
_BAD_KEY = re.compile(r"[\s:]")


def _parse_lines(lines: list[str]) -> Message:
    msg: Message = {}
    for line in lines:
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not _KEY.match(key):
            key, value = "Output", line
        elif value.startswith(" "):
            value = value[1:]
        if key in msg:
            msg[key] = msg[key] + "\n" + value
        else:
            msg[key] = value
        if key.endswith("ChanVariable") and "=" in value:
            name, _, val = value.partition("=")
            msg[f"{key}({name})"] = val
    return msg


def encode_action(name: str, action_id: str, headers: Mapping[str, Any]) -> bytes:
    """Serialise an action; list values repeat the header (``Variable``). CR/LF are refused:
    they would smuggle a second action onto the wire."""
    lines = [("Action", name), ("ActionID", action_id)]
    for k, v in headers.items():
        if v is None or k in ("Action", "ActionID"):
            continue
        for item in (v if isinstance(v, (list, tuple)) else [v]):
            lines.append((k, _text(item)))
    out = []
    for k, v in lines:
        if not _KEY.match(k) or "\r" in v or "\n" in v:
            raise ValueError(f"AMI header {k!r} must be one line without CR/LF")
        out.append(f"{k}: {v}\r\n")
    return ("".join(out) + "\r\n").encode("utf-8")


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _is_error(resp: Message) -> bool:
    return resp.get("Response", "").lower() in ("error", "fail", "failed", "failure")


@dataclass
class _Pending:
    name: str
    future: asyncio.Future[Any]
    #: None for a plain action; the collected events for an event-list action
    items: list[Message] | None = None
    response: Message | None = None


class _AmiProtocol(asyncio.Protocol):
    """The socket's side of a link: bytes in go straight to the client's framer (no reader task, no
    StreamReader copy), and `closed` resolves when the connection ends. Write flow control for drain()."""

    def __init__(self, client: "AmiClient") -> None:
        self.client = client
        self.link: _Link | None = None
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.banner_checked = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.closed.done():
            return
        if self.link is None:  # connected, not yet handed to the client: keep the bytes (the banner)
            self.buf += data
            return
        try:
            self.client._feed(self.link, self, data)
        except Exception as e:  # noqa: BLE001 - a framing error ends this link, never the loop
            self._end(e if isinstance(e, ConnectionError) else ConnectionError(f"AMI read failed: {e!r}"))
            if self.transport is not None:
                self.transport.abort()

    def eof_received(self) -> bool:
        self._end(ConnectionError("AMI closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(ConnectionError(f"AMI connection lost: {exc}") if exc else ConnectionError("AMI closed the connection"))
        self._resume(exc)

    def _end(self, exc: Exception) -> None:
        if not self.closed.done():
            self.closed.set_exception(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume(None)

    def _resume(self, exc: Exception | None) -> None:
        w, self._drained = self._drained, None
        if w is not None and not w.done():
            if exc is None:
                w.set_result(None)
            else:
                w.set_exception(ConnectionError(f"AMI connection lost: {exc}"))

    async def drain(self) -> None:
        if self.closed.done():
            raise ConnectionError("AMI link closed")
        if not self._write_paused:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drained)


@dataclass
class _Link:
    """One TCP connection; the actions sent on it live and die with it."""

    transport: asyncio.Transport
    protocol: _AmiProtocol
    number: int
    pending: dict[str, _Pending] = field(default_factory=dict)
    down: bool = False


class AmiClient:
    """A long-lived AMI connection that reconnects by itself and never replays an action."""

    def __init__(self, host: str, port: int, username: str, secret: str, *, ping_interval: float = 5.0,
                 action_timeout: float = 10.0, reconnect_delay: float = 1.0, connect_timeout: float = 5.0,
                 ping_timeout: float | None = None, max_reconnect_delay: float = 30.0,
                 events: str = "on", max_queued_events: int = 100_000, handler_budget: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.ping_interval = ping_interval
        #: how long a Ping may go unanswered before the link is declared dead
        self.ping_timeout = ping_timeout if ping_timeout is not None else min(action_timeout, ping_interval)
        self.action_timeout = action_timeout
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max(max_reconnect_delay, reconnect_delay)
        self.connect_timeout = connect_timeout
        self.events = events
        self.connected = asyncio.Event()
        #: how many times a login succeeded (1 after the first connect; tests and health checks read it)
        self.logins = 0
        self._link: _Link | None = None
        self._handlers: list[tuple[str, EventCallback]] = []
        #: event name as sent → its callbacks in registration order ('*' ones included); rebuilt on change
        self._routes: dict[str, tuple[EventCallback, ...]] = {}
        self.max_queued_events = max_queued_events
        self.handler_budget = handler_budget
        self._events: collections.deque[Message] = collections.deque()
        self._wakeup: asyncio.Future[None] | None = None
        #: events ever queued, and ever handed to every callback (`caught_up` compares them)
        self._queued_total = 0
        self._dispatched_total = 0
        #: counters for `health()`
        self.events_dropped = 0
        self.handler_failures = 0
        self.handlers_late = 0
        self.dispatcher_restarts = 0
        self._last_event_at: float | None = None
        self._late: set[asyncio.Task[Any]] = set()
        self._run_task: asyncio.Task[None] | None = None
        self._dispatch_task: asyncio.Task[None] | None = None
        self._closing = False
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]  # ActionIDs stay unique across reconnects and clients
        self._links = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Launch the connection task and return at once; see `wait_connected`."""
        if self._run_task is not None:
            return
        self._closing = False
        self._events.clear()
        self._wakeup = None
        self._start_dispatcher()
        self._run_task = asyncio.create_task(self._run(), name="ami-link")

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until logged in; AmiTimeout when that does not happen in time."""
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except asyncio.TimeoutError:
            raise AmiTimeout(f"AMI {self.host}:{self.port} not connected within {timeout} s") from None

    async def close(self) -> None:
        """Log off, stop reconnecting, fail whatever is still waiting."""
        self._closing = True
        link = self._link
        if link is not None and not link.down:
            try:
                link.transport.write(encode_action("Logoff", self._next_id(), {}))
            except (ConnectionError, OSError, RuntimeError):
                pass
        for task in (self._run_task, self._dispatch_task, *self._late):
            if task is not None:
                task.cancel()
        for task in (self._run_task, self._dispatch_task):
            if task is not None:
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                    pass
        if link is not None:
            self._link_down(link, "client closed")
        self._run_task = self._dispatch_task = None

    # ------------------------------------------------------------------ events
    def on_event(self, name: str, callback: EventCallback) -> Callable[[], None]:
        """Call `callback(event)` for events named `name` (case-insensitive) or '*' for all.

        Sync or async. Callbacks run in arrival order from one dispatcher, never in the
        reader; an exception is logged (``ami_event_handler_failed``) and the link stays.
        Returns a function that unregisters the callback.
        """
        entry = (name.lower(), callback)
        self._handlers.append(entry)
        self._routes = {}

        def off() -> None:
            if entry in self._handlers:
                self._handlers.remove(entry)
                self._routes = {}

        return off

    def off_event(self, name: str, callback: EventCallback) -> None:
        entry = (name.lower(), callback)
        if entry in self._handlers:
            self._handlers.remove(entry)
            self._routes = {}

    def _callbacks(self, name: str) -> tuple[EventCallback, ...]:
        """The callbacks of an event name, looked up once per name until a registration changes."""
        cbs = self._routes.get(name)
        if cbs is None:
            low = name.lower()
            cbs = self._routes[name] = tuple(cb for key, cb in self._handlers if key == "*" or key == low)
        return cbs

    def health(self) -> dict[str, Any]:
        """What a health check reads: link, dispatcher, queue depth, last event age, counters."""
        loop = asyncio.get_running_loop()
        return {
            "connected": self.connected.is_set(),
            "dispatcher_alive": self._dispatch_task is not None and not self._dispatch_task.done(),
            "queued_events": len(self._events),
            "last_event_age_s": None if self._last_event_at is None else round(loop.time() - self._last_event_at, 3),
            "events_dropped": self.events_dropped,
            "handler_failures": self.handler_failures,
            "handlers_late": self.handlers_late,
            "handlers_running_late": len(self._late),
            "dispatcher_restarts": self.dispatcher_restarts,
        }

    async def caught_up(self, timeout: float = 30.0) -> bool:
        """Wait until every event received so far has been handed to the callbacks (a sync callback has
        then run; an async one has started). After an action's answer, what the callbacks know is then at
        least as new as that answer — e.g. a channel list compared with the calls they hold. False when
        `timeout` passed first."""
        target = self._queued_total
        deadline = asyncio.get_running_loop().time() + timeout
        while self._dispatched_total < target:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        # the last one taken may still be running its callbacks: one more turn of the loop for a sync one
        await asyncio.sleep(0)
        return True

    def _start_dispatcher(self) -> None:
        self._dispatch_task = asyncio.create_task(self._dispatch_loop(), name="ami-dispatch")
        self._dispatch_task.add_done_callback(self._dispatcher_ended)

    def _dispatcher_ended(self, task: asyncio.Task[None]) -> None:
        if self._closing or task is not self._dispatch_task:
            return
        error = "cancelled" if task.cancelled() else repr(task.exception())
        self.dispatcher_restarts += 1
        log.error("ami_dispatcher_restarted", error=error[:200], restarts=self.dispatcher_restarts)
        self._start_dispatcher()

    async def _dispatch_loop(self) -> None:
        me = asyncio.current_task()
        loop = asyncio.get_running_loop()
        queue = self._events
        in_a_row = 0
        while True:
            if not queue:
                in_a_row = 0
                self._wakeup = loop.create_future()
                await self._wakeup
                continue
            if in_a_row >= DISPATCH_SLICE:  # a long burst must not keep the socket (and FastAGI) waiting
                in_a_row = 0
                await asyncio.sleep(0)
                continue
            in_a_row += 1
            event = queue.popleft()
            self._dispatched_total += 1  # counted as it is taken: its callbacks run before the next one
            for cb in self._callbacks(event.get("Event", "")):
                try:
                    res = cb(event)
                    if res is not None and inspect.isawaitable(res):
                        await self._within_budget(res, event, cb)
                except asyncio.CancelledError:
                    if me is not None and me.cancelling():
                        raise  # close() is stopping us: the only way this loop ends
                    self._handler_failed(event, cb, "CancelledError raised by the handler")
                except Exception:
                    self._handler_failed(event, cb, None)

    async def _within_budget(self, res: Any, event: Message, cb: EventCallback) -> None:
        """Await a callback for up to `handler_budget`; past it, let it finish as its own task."""
        task = asyncio.ensure_future(res)
        done, _ = await asyncio.wait({task}, timeout=self.handler_budget)
        if task in done:
            task.result()
            return
        self.handlers_late += 1
        log.warning("ami_event_handler_slow", ami_event=event.get("Event"), budget_s=self.handler_budget,
                    handler=getattr(cb, "__qualname__", repr(cb)))
        self._late.add(task)
        task.add_done_callback(lambda t: self._late_done(t, event, cb))

    def _late_done(self, task: asyncio.Task[Any], event: Message, cb: EventCallback) -> None:
        self._late.discard(task)
        if task.cancelled():
            if not self._closing:
                self._handler_failed(event, cb, "cancelled")
        elif task.exception() is not None:
            exc = task.exception()
            self.handler_failures += 1
            log.error("ami_event_handler_failed", ami_event=event.get("Event"), error=repr(exc)[:200],
                      handler=getattr(cb, "__qualname__", repr(cb)))

    def _handler_failed(self, event: Message, cb: EventCallback, why: str | None) -> None:
        self.handler_failures += 1
        if why:
            log.error("ami_event_handler_failed", ami_event=event.get("Event"), error=why,
                      handler=getattr(cb, "__qualname__", repr(cb)))
        else:
            log.exception("ami_event_handler_failed", ami_event=event.get("Event"),
                          handler=getattr(cb, "__qualname__", repr(cb)))

    # ------------------------------------------------------------------ actions
    async def action(self, name: str, timeout: float | None = None, raise_on_error: bool = True,
                     **headers: Any) -> Message:
        """Send one action and return its response (matched by ActionID).

        Raises AmiError on ``Response: Error`` (unless `raise_on_error` is False),
        AmiTimeout, or AmiDisconnected when the link is down or drops first. Never re-sent.
        """
        resp, _ = await self._request(name, headers, timeout, raise_on_error, as_list=False)
        return resp

    async def action_list(self, name: str, timeout: float | None = None, **headers: Any) -> list[Message]:
        """An action answered by an event list (QueueStatus, CoreShowChannels …): the item events,
        without the opening response and the closing ``…Complete`` event."""
        _, items = await self._request(name, headers, timeout, True, as_list=True)
        return items

    async def originate(self, channel: str, *, context: str | None = None, exten: str | None = None,
                        priority: int | str | None = None, application: str | None = None,
                        data: str | None = None, caller_id: str | None = None, timeout_ms: int = 30000,
                        variables: Mapping[str, Any] | None = None, channel_id: str | None = None,
                        other_channel_id: str | None = None, async_: bool = True,
                        timeout: float | None = None, **headers: Any) -> str:
        """Originate with a ChannelId (Asterisk refuses a duplicate while the first channel
        lives), so even a retried Originate cannot place a second call. Returns the ChannelId."""
        channel_id = channel_id or f"hotline-{uuid.uuid4().hex}"
        h: dict[str, Any] = {
            "Channel": channel, "Context": context, "Exten": exten,
            "Priority": priority if priority is not None else (1 if exten is not None else None),
            "Application": application, "Data": data, "CallerID": caller_id, "Timeout": timeout_ms,
            "ChannelId": channel_id, "OtherChannelId": other_channel_id, "Async": async_,
        }
        if variables:
            h["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        h.update(headers)
        await self.action("Originate", timeout=timeout, **h)
        return channel_id

    async def _request(self, name: str, headers: Mapping[str, Any], timeout: float | None,
                       raise_on_error: bool, *, as_list: bool) -> tuple[Message, list[Message]]:
        limit = self.action_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        link = await self._current_link(limit)
        resp, items = await self._send(link, name, headers, max(0.0, deadline - loop.time()), as_list=as_list)
        if raise_on_error and _is_error(resp):
            raise AmiError(resp.get("Message", "error") or "error", resp)
        return resp, items

    async def _current_link(self, timeout: float) -> _Link:
        """The live link; waits for a (re)connect up to `timeout` — waiting is not replaying."""
        if self._closing or self._run_task is None:
            raise AmiDisconnected("AMI client is not running (start() it)")
        if not self.connected.is_set() or self._link is None:
            try:
                await asyncio.wait_for(self.connected.wait(), timeout)
            except asyncio.TimeoutError:
                raise AmiDisconnected(f"AMI {self.host}:{self.port} not connected") from None
        link = self._link
        if link is None or link.down:
            raise AmiDisconnected("AMI link dropped")
        return link

    async def _send(self, link: _Link, name: str, headers: Mapping[str, Any], timeout: float, *,
                    as_list: bool = False) -> tuple[Message, list[Message]]:
        if link.down:
            raise AmiDisconnected("AMI link dropped")
        action_id = str(headers.get("ActionID") or self._next_id())
        if action_id in link.pending:
            raise ValueError(f"ActionID {action_id!r} is already waiting")
        payload = encode_action(name, action_id, headers)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link.pending[action_id] = _Pending(name, fut, [] if as_list else None)
        try:
            link.transport.write(payload)
            await asyncio.wait_for(self._drain_then(link, fut), timeout)
            return fut.result()
        except AmiException:
            raise
        except asyncio.TimeoutError:
            raise AmiTimeout(f"{name}: no answer within {timeout:.1f} s") from None
        except (ConnectionError, OSError) as e:
            raise AmiDisconnected(f"{name}: link lost: {e}") from e
        finally:
            link.pending.pop(action_id, None)

    @staticmethod
    async def _drain_then(link: _Link, fut: asyncio.Future[Any]) -> None:
        await link.protocol.drain()
        await asyncio.shield(fut)

    def _next_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    # ------------------------------------------------------------------ the link
    async def _run(self) -> None:
        delay = self.reconnect_delay
        while not self._closing:
            try:
                transport, protocol = await asyncio.wait_for(self._connect(), self.connect_timeout)
            except (OSError, asyncio.TimeoutError) as e:
                log.warning("ami_connect_failed", host=self.host, port=self.port, error=str(e) or type(e).__name__,
                            retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
                continue
            link = _Link(transport, protocol, next(self._links))
            protocol.link = link
            self._link = link
            reader_task = protocol.closed  # resolves (with the reason) when the connection ends
            # EOF fails the waiting actions at once (a Login included), not at their timeouts
            reader_task.add_done_callback(lambda t, link=link: self._link_down(link, _reason(t)))
            if protocol.buf:  # bytes that came before the link existed (the banner, at least)
                self._feed(link, protocol, b"")
            ping_task: asyncio.Task[None] | None = None
            reason = "closed"
            try:
                resp, _ = await self._send(link, "Login", {"Username": self.username, "Secret": self._secret,
                                                           "Events": self.events}, self.connect_timeout)
                if _is_error(resp) or resp.get("Response", "").lower() != "success":
                    reason = "login failed"
                    log.error("ami_login_failed", host=self.host, port=self.port, username=self.username,
                              message=resp.get("Message", ""), retry_in=delay)
                else:
                    self.logins += 1
                    logged_in_at = asyncio.get_running_loop().time()
                    self.connected.set()
                    log.info("ami_connected" if self.logins == 1 else "ami_reconnected",
                             host=self.host, port=self.port, link=link.number)
                    ping_task = asyncio.create_task(self._ping_loop(link), name=f"ami-ping-{link.number}")
                    done, _ = await asyncio.wait({reader_task, ping_task}, return_when=asyncio.FIRST_COMPLETED)
                    reason = "link dead" if ping_task in done else _reason(reader_task)
                    if asyncio.get_running_loop().time() - logged_in_at >= STABLE_LINK_S:
                        delay = self.reconnect_delay  # it was a working link: reconnect promptly
                    else:
                        reason = f"login then dropped: {reason}"  # backs off like a refused login
            except (AmiException, ConnectionError, OSError) as e:
                reason = f"login: {e}"
                log.warning("ami_login_failed", host=self.host, port=self.port, error=str(e), retry_in=delay)
            finally:
                for t in (reader_task, ping_task):
                    if t is not None:
                        t.cancel()
                self._link_down(link, reason)
                if reader_task.done() and not reader_task.cancelled():
                    reader_task.exception()  # retrieved: EOF is an expected way for a link to end
            if self._closing:
                break
            await asyncio.sleep(delay)
            if reason.startswith("login"):  # a wrong secret, or a server dropping us, must not be hammered
                delay = min(delay * 2, self.max_reconnect_delay)

    def _link_down(self, link: _Link, reason: str) -> None:
        """Fail every action waiting on this link: they are never re-sent on the next one."""
        if link.down:
            return
        link.down = True
        if self._link is link:
            self._link = None
            self.connected.clear()
        for p in list(link.pending.values()):
            if not p.future.done():
                p.future.set_exception(AmiDisconnected(f"{p.name}: AMI link dropped ({reason}); not re-sent"))
                p.future.exception()  # mark retrieved: the waiter may already have timed out
        link.pending.clear()
        link.transport.abort()
        if not self._closing:
            log.warning("ami_disconnected", host=self.host, port=self.port, link=link.number, reason=reason)

    async def _ping_loop(self, link: _Link) -> None:
        """Returns when a Ping goes unanswered: Asterisk hung or the path is black-holed."""
        while not link.down:
            await asyncio.sleep(self.ping_interval)
            try:
                await self._send(link, "Ping", {}, self.ping_timeout)
            except AmiTimeout:
                log.warning("ami_link_dead", host=self.host, port=self.port, link=link.number,
                            ping_timeout=self.ping_timeout)
                return
            except AmiDisconnected:
                return

    async def _connect(self) -> tuple[asyncio.Transport, _AmiProtocol]:
        """A TCP connection with a large receive buffer, set before connecting (the window is agreed then)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        err: OSError | None = None
        for family, type_, proto, _, addr in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
                except OSError:
                    pass  # the kernel's default then
                await loop.sock_connect(sock, addr)
            except OSError as e:
                sock.close()
                err = e
                continue
            except BaseException:
                sock.close()
                raise
            transport, protocol = await loop.create_connection(lambda: _AmiProtocol(self), sock=sock)
            return transport, protocol  # type: ignore[return-value]
        raise err or OSError(f"cannot resolve {self.host}")

    def _feed(self, link: _Link, proto: _AmiProtocol, data: bytes) -> None:
        """Frame on CRLFCRLF over bytes and decode only whole messages (UTF-8 split across reads); every
        complete message of one read is decoded at once and split with plain string operations."""
        buf = proto.buf
        buf += data
        if not proto.banner_checked:
            nl = buf.find(b"\r\n")
            if nl < 0:
                if len(buf) > MAX_MESSAGE_BYTES:
                    raise ConnectionError("AMI message larger than the limit")
                return
            proto.banner_checked = True
            if buf.startswith(b"Asterisk Call Manager"):
                log.debug("ami_banner", banner=bytes(buf[:nl]).decode("utf-8", "replace"))
                del buf[: nl + 2]
        end = buf.rfind(_SEP)
        if end < 0:
            if len(buf) > MAX_MESSAGE_BYTES:
                raise ConnectionError("AMI message larger than the limit")
            return
        text = buf[:end].decode("utf-8", errors="replace")  # ASCII separators: never inside a character
        del buf[: end + 4]
        events = self._events
        queued = len(events)
        for raw in text.split("\r\n\r\n"):
            if not raw or (raw[0] in " \r\n\t" and not raw.strip()):
                continue
            msg = parse_message(raw)
            if "Event" in msg and "ActionID" not in msg:  # the usual case: an event, not an answer
                if queued >= self.max_queued_events:
                    self._drop_event()
                    continue
                events.append(msg)
                self._queued_total += 1
                queued += 1
                if queued == EVENT_BACKLOG_WARN:
                    log.warning("ami_event_backlog", queued=EVENT_BACKLOG_WARN)
            else:
                self._on_message(link, msg)
        if len(events):
            self._events_arrived()
        if len(buf) > MAX_MESSAGE_BYTES:
            raise ConnectionError("AMI message larger than the limit")

    def _events_arrived(self) -> None:
        self._last_event_at = asyncio.get_running_loop().time()
        w = self._wakeup
        if w is not None and not w.done():
            w.set_result(None)

    def _drop_event(self) -> None:
        self.events_dropped += 1
        if self.events_dropped == 1 or self.events_dropped % 1000 == 0:
            log.error("ami_events_dropped", dropped=self.events_dropped, queued=len(self._events))

    def _on_message(self, link: _Link, msg: Message) -> None:
        aid = msg.get("ActionID")
        p = link.pending.get(aid) if aid else None
        if p is not None and not p.future.done():
            if "Response" in msg and p.response is None:
                p.response = msg
                listing = msg.get("EventList", "").lower() == "start" or "follow" in msg.get("Message", "").lower()
                if p.items is None or _is_error(msg) or not listing:
                    p.future.set_result((msg, p.items or []))
                return
            if p.items is not None and "Event" in msg:
                if msg.get("EventList", "").lower() == "complete":
                    p.future.set_result((p.response or {}, p.items))
                else:
                    p.items.append(msg)
                return
        if "Event" in msg:
            if len(self._events) >= self.max_queued_events:
                self._drop_event()
                return
            self._events.append(msg)
            self._queued_total += 1
            if len(self._events) == EVENT_BACKLOG_WARN:
                log.warning("ami_event_backlog", queued=EVENT_BACKLOG_WARN)
            self._events_arrived()
        elif "Response" in msg:
            log.debug("ami_orphan_response", action_id=aid, response=msg.get("Response"))


def _reason(task: asyncio.Task[Any]) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return str(exc) if exc else "reader ended"


def events_named(events: Iterable[Message], name: str) -> list[Message]:
    """Small helper for callers and tests: the events of one kind, in order."""
    return [e for e in events if e.get("Event", "").lower() == name.lower()]
