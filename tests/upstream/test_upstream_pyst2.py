"""pyst2 (asterisk.agi, asterisk.fastagi, asterisk.manager, asterisk.config): each defect still present.

Our replacements: wire/fastagi.py (AGI), wire/ami.py (AMI), wire/conf.py (.conf reader);
their regression tests are in tests/unit/. pyst2 is blocking: its calls run in daemon
threads joined with a timeout (upstream_peers.bounded), so a call that would block for
ever reports Blocked instead of hanging the suite.
"""

from __future__ import annotations

import importlib
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from io import StringIO
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

try:
    from tests.upstream.upstream_peers import Blocked, ThreadedFakeAmi, agi_env, bounded, still_present
except ModuleNotFoundError:
    from upstream_peers import Blocked, ThreadedFakeAmi, agi_env, bounded, still_present  # type: ignore[no-redef]

AmiMsg = dict[str, str]

# pyst2 0.5.1 calls threading's isSet()/setDaemon(), deprecated since Python 3.10: noise, not a finding
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:asterisk")


# ================================================================ asterisk.config
def parse_conf(tmp_path: Path, text: str) -> Any:
    from asterisk.config import Config

    path = tmp_path / "pjsip_custom.conf"
    path.write_text(text, encoding="utf-8")
    return Config(str(path))


@pytest.mark.parametrize("section", ["[seat-tpl](!)", "[seat01](seat-tpl)"], ids=["template", "inheritance"])
def test_config_fails_on_pjsip_templates(pyst2: ModuleType, tmp_path: Path, section: str) -> None:
    from asterisk.config import ParseError

    text = f"[plain]\ntype = endpoint\n\n{section}\ntype = endpoint\ncontext = hotline-agents\n"
    try:
        conf: Any = parse_conf(tmp_path, text)
    except ParseError as e:
        conf = e
    still_present(isinstance(conf, ParseError), "pyst2", f"fails on the PJSIP template section {section}",
                  "wire/conf.py", "Conf: [name](!), [x](tpl1,tpl2), [x](+) sections with inheritance",
                  evidence=conf if isinstance(conf, ParseError) else [c.name for c in conf.categories])


def test_config_fails_on_include(pyst2: ModuleType, tmp_path: Path) -> None:
    from asterisk.config import ParseError

    (tmp_path / "seats.conf").write_text("[seat01]\ntype = endpoint\n", encoding="utf-8")
    try:
        conf: Any = parse_conf(tmp_path, "[global]\ntype = global\n#include seats.conf\n")
    except ParseError as e:
        conf = e
    still_present(isinstance(conf, ParseError), "pyst2", "fails on #include",
                  "wire/conf.py", "Conf: #include / #tryinclude with globs, relative to config_dir",
                  evidence=conf if isinstance(conf, ParseError) else [c.name for c in conf.categories])


def test_config_cuts_values_at_escaped_semicolon(pyst2: ModuleType, tmp_path: Path) -> None:
    conf = parse_conf(tmp_path, "[seat01]\ncallerid = \"12345热线\\;政务服务\" <12345>\n")
    value = conf.categories[0].items[0].value.strip()
    still_present("政务服务" not in value, "pyst2", "cuts a value at an escaped \\;",
                  "wire/conf.py", "Conf: \\; is kept as a literal ';'", evidence=value)


# ================================================================ asterisk.agi
class FakeAsteriskTcp:
    """Asterisk's side of one AGI call on 127.0.0.1, in a thread: the environment, then the i-th
    command answered with the raw lines ``replies[i]``; `None` as a reply closes the connection."""

    def __init__(self, replies: Sequence[Sequence[str] | None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(2)
        self.commands: list[str] = []
        self.replies = list(replies)
        self.thread = threading.Thread(target=self._run, daemon=True, name="fake-asterisk-agi")
        self.thread.start()
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(2)  # pyst2 blocks on readline: a missing line ends in socket.timeout, not a hang

    def _run(self) -> None:
        with socket.create_connection(self.listener.getsockname(), timeout=2) as s:
            s.sendall(("".join(f"{k}: {v}\n" for k, v in agi_env("inbound").items()) + "\n").encode())
            f = s.makefile("rb")
            try:
                for lines in self.replies:
                    cmd = f.readline()
                    if not cmd:
                        return
                    self.commands.append(cmd.decode().rstrip("\n"))
                    if lines is None:
                        return
                    s.sendall("".join(f"{ln}\n" for ln in lines).encode())
                time.sleep(0.2)  # keep the line open for anything pyst2 still reads
            except OSError:
                return

    def close(self) -> None:
        self.conn.close()
        self.listener.close()
        self.thread.join(2)


@pytest.fixture
def agi_call(pyst2: ModuleType) -> Iterator[Any]:
    """`agi_call(replies)` → a pyst2 AGI object talking to the fake over TCP (stdin/stdout as in FastAGI)."""
    from asterisk.agi import AGI

    made: list[FakeAsteriskTcp] = []
    saved = signal.getsignal(signal.SIGHUP)  # pyst2 installs its own SIGHUP handler

    def make(replies: Sequence[Sequence[str] | None]) -> Any:
        fake = FakeAsteriskTcp(replies)
        made.append(fake)
        return AGI(stdin=fake.conn.makefile("r", encoding="utf-8"), stdout=fake.conn.makefile("w", encoding="utf-8"),
                   stderr=StringIO())

    yield make
    signal.signal(signal.SIGHUP, saved)
    for f in made:
        f.close()


def outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the test inspects what pyst2 raised
        return e


@pytest.mark.parametrize("reply", [["HANGUP"], None], ids=["HANGUP-line", "EOF"])
def test_agi_hangup_line_or_eof_raises_plain_valueerror(agi_call: Any, reply: Any) -> None:
    from asterisk.agi import AGIHangup

    agi = agi_call([reply])
    control = agi.env.get("agi_network_script")
    assert control == "inbound", f"control: pyst2 must read the environment, got {agi.env}"
    res = outcome(agi.get_variable, "CALLERID(num)")
    still_present(isinstance(res, ValueError) and not isinstance(res, AGIHangup), "pyst2",
                  "raises a plain ValueError (not AGIHangup) on a HANGUP line or EOF",
                  "wire/fastagi.py", "AgiSession: HANGUP sets `hungup`, EOF raises AgiHangup", evidence=res)


def test_agi_511_is_not_a_hangup(agi_call: Any) -> None:
    from asterisk.agi import AGIHangup

    agi = agi_call([["511 Command Not Permitted on a dead channel or intercept routine"]])
    res = outcome(agi.answer)
    still_present(isinstance(res, Exception) and not isinstance(res, AGIHangup), "pyst2",
                  "treats 511 (dead channel) as an unknown error, not a hang-up",
                  "wire/fastagi.py", "AgiSession._check: 511 raises AgiHangup", evidence=res)


def test_agi_get_variable_returns_hangup_as_the_value(agi_call: Any) -> None:
    """pyst2 turns a reply whose data is ``(hangup)`` into AGIResultHangup, and get_variable turns that
    into the value ``'hangup'``: a caller named "hangup" and a gone caller look the same."""
    agi = agi_call([["200 result=-1 (hangup)"]])
    res = outcome(agi.get_variable, "CALLERID(name)")
    still_present(res == "hangup", "pyst2", "returns the string 'hangup' as a variable's value on hang-up",
                  "wire/fastagi.py", "AgiSession.get_variable: a value or None, a hang-up raises AgiHangup",
                  evidence=res)


def test_agi_works_only_in_the_main_thread(pyst2: ModuleType) -> None:
    """AGI() installs a SIGHUP handler: one call per thread (a FastAGI server's shape) cannot construct it."""
    from asterisk.agi import AGI

    saved = signal.getsignal(signal.SIGHUP)
    try:
        res = outcome(bounded, AGI, StringIO("agi_network: yes\n\n"), StringIO(), StringIO(), timeout=2)
    finally:
        signal.signal(signal.SIGHUP, saved)
    still_present(isinstance(res, ValueError) and "main thread" in str(res), "pyst2",
                  "works only in the main thread (it installs a SIGHUP handler)",
                  "wire/fastagi.py", "asyncio FastAgiServer: one task per call, plain handlers in the executor",
                  evidence=res)


def test_fastagi_is_python2_only(pyst2: ModuleType) -> None:
    try:
        importlib.import_module("asterisk.fastagi")
        res: Any = "imported"
    except ImportError as e:
        res = e
    still_present(isinstance(res, ImportError) and "SocketServer" in str(res), "pyst2",
                  "ships a Python 2 only FastAGI server (asterisk.fastagi imports SocketServer)",
                  "wire/fastagi.py", "our own asyncio FastAgiServer", evidence=res)


# ================================================================ asterisk.manager
class Pyst2Manager:
    """A pyst2 Manager logged in to a threaded fake; every blocking call bounded; cleaned up so its
    __del__ (close → logoff → wait for ever) can never block the suite."""

    def __init__(self, ami: ThreadedFakeAmi) -> None:
        from asterisk.manager import Manager

        self.ami = ami
        self.m = Manager()
        greeting = bounded(self.m.connect, "127.0.0.1", ami.port, timeout=2)
        assert greeting is not None, "control: pyst2 must read the banner"
        login = bounded(self.m.login, "hotline", "s3cret", timeout=2)
        assert login.get_header("Response") == "Success", f"control: pyst2 must log in, got {login.headers}"

    def send(self, msg: Any) -> None:
        """Send an AMI message from the fake's newest connection."""
        self.ami.call(lambda: self.ami.fake.conn.send(msg))

    def abandon(self) -> None:
        from asterisk.manager import Manager

        class Abandoned(Manager):
            def __del__(self) -> None:  # Manager.__del__ → close() → logoff() may wait for ever
                pass

        m = self.m
        m.__class__ = Abandoned
        m._running.clear()  # close()/__del__ become no-ops
        m._connected.clear()
        for q in (m._message_queue, m._event_queue):
            q.put(None)
        for _ in range(4):
            m._response_queue.put(None)  # release callers still blocked on a response
        raw = getattr(m._sock, "raw", m._sock)  # SocketIO, or the raw one under a buffered file
        try:
            raw._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread (EOF) before closing
        except (AttributeError, OSError):
            pass
        try:
            bounded(m._sock.close, timeout=1)
        except (Blocked, OSError, ValueError):
            pass


@pytest.fixture
def ami(pyst2: ModuleType) -> Iterator[ThreadedFakeAmi]:
    srv = ThreadedFakeAmi()
    yield srv
    srv.close()


@pytest.fixture
def manager(ami: ThreadedFakeAmi) -> Iterator[Pyst2Manager]:
    mgr = Pyst2Manager(ami)
    yield mgr
    mgr.abandon()


def test_manager_chanvariable_event_kills_the_reader(ami: ThreadedFakeAmi, manager: Pyst2Manager,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    crashed: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args.exc_value))
    assert bounded(manager.m.ping, timeout=2).get_header("Ping") == "Pong", "control: Ping answered"
    manager.send([("Event", "Hangup"), ("Channel", "PJSIP/100-00000001"), ("ChanVariable", "HOTLINE_ROUTE=queue")])
    try:
        res: Any = bounded(manager.m.ping, timeout=1.5)
    except Blocked as e:
        res = e
    ami.call(lambda: ami.fake.conn.close())  # EOF lets the dead reader's thread finish and report
    manager.m.message_thread.join(2)
    still_present(isinstance(res, Blocked) and any("has_key" in str(e) for e in crashed), "pyst2",
                  "dies on an event with a ChanVariable header (reader thread killed, later calls block for ever)",
                  "wire/ami.py", "parse_message: ChanVariable headers kept, also as ChanVariable(name)",
                  evidence={"ping_after_event": res, "thread_exceptions": crashed})


def test_manager_matches_replies_by_arrival_not_actionid(ami: ThreadedFakeAmi, manager: Pyst2Manager) -> None:
    held: list[tuple[Any, AmiMsg]] = []

    async def getvar(conn: Any, a: AmiMsg) -> None:
        held.append((conn, a))
        if len(held) == 2:  # Asterisk answers the second first (e.g. the first one was slower)
            import asyncio

            # both callers must be parked in pyst2's response queue before the first reply: a reply
            # sent the instant B's action lands could be taken by B on its way into get(), before
            # A (woken first) runs — a scheduling race, not pyst2 matching by ActionID. pyst2 marks
            # each waiter in _reswaiting just before its get().
            deadline = time.monotonic() + 2
            while len(manager.m._reswaiting) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for c, m in reversed(held):
                await asyncio.sleep(0.2)
                await c.respond(m, Variable=m["Variable"], Value=f"value-of-{m['Variable']}")

    ami.fake.on("Getvar", getvar)
    results: dict[str, Any] = {}

    def get(name: str) -> None:
        results[name] = manager.m.send_action({"Action": "Getvar", "Variable": name})

    ta = threading.Thread(target=get, args=("A",), daemon=True)
    ta.start()
    deadline = time.monotonic() + 2
    while len(ami.fake.seen("Getvar")) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # A is waiting for its response
    tb = threading.Thread(target=get, args=("B",), daemon=True)
    tb.start()
    ta.join(2)
    tb.join(2)
    values = {k: v.get_header("Value") for k, v in results.items()}
    assert len(values) == 2, f"control: both actions must be answered, got {values}"
    still_present(values.get("A") != "value-of-A", "pyst2",
                  "matches replies by arrival, not by ActionID",
                  "wire/ami.py", "AmiClient._on_message: pending actions keyed by ActionID", evidence=values)


def test_manager_mutable_default_reuses_actionids(ami: ThreadedFakeAmi, manager: Pyst2Manager) -> None:
    from asterisk.manager import Manager

    default = (Manager.send_action.__defaults__ or (None,))[0]
    try:
        bounded(manager.m.send_action, Action="Ping", timeout=2)
        bounded(manager.m.send_action, Action="Ping", timeout=2)
    finally:
        if isinstance(default, dict):
            default.clear()  # the shared default dict would leak into every later caller
    ids = [p["ActionID"] for p in ami.fake.seen("Ping")]
    still_present(len(ids) == 2 and ids[0] == ids[1], "pyst2",
                  "reuses one ActionID for every send_action(**kwargs) call (mutable default argument)",
                  "wire/ami.py", "AmiClient._next_id: a per-client prefix and a counter", evidence=ids)


def test_manager_reads_one_byte_per_system_call(ami: ThreadedFakeAmi, pyst2: ModuleType,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0, "bytes": 0}
    real = socket.SocketIO.readinto

    def counting(self: socket.SocketIO, b: Any) -> int | None:
        n = real(self, b)
        calls["n"] += 1
        calls["bytes"] += n or 0
        return n

    monkeypatch.setattr(socket.SocketIO, "readinto", counting)
    mgr = Pyst2Manager(ami)
    try:
        got: list[str] = []
        mgr.m.register_event("VarSet", lambda ev, m: got.append(ev.get_header("Value")))
        calls.update(n=0, bytes=0)
        for i in range(50):
            mgr.send({"Event": "VarSet", "Channel": "PJSIP/1-1", "Variable": "X", "Value": str(i)})
        deadline = time.monotonic() + 3
        while len(got) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        per_call = calls["bytes"] / max(1, calls["n"])
    finally:
        mgr.abandon()
    assert len(got) == 50, f"control: pyst2 must deliver the events, got {len(got)}"
    still_present(per_call <= 2, "pyst2", "reads the AMI socket one byte per system call",
                  "wire/ami.py", "AmiClient._feed: whole reads (protocol data_received), framed on CRLFCRLF",
                  evidence={"reads": calls["n"], "bytes": calls["bytes"]})


def test_manager_cannot_reconnect_on_the_same_instance(ami: ThreadedFakeAmi, manager: Pyst2Manager) -> None:
    ami.call(lambda: ami.fake.conn.close())  # Asterisk restarts
    deadline = time.monotonic() + 2
    while manager.m.connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not manager.m.connected(), "control: pyst2 must notice the closed connection"
    res = outcome(bounded, manager.m.connect, "127.0.0.1", ami.port, timeout=2)
    still_present(isinstance(res, RuntimeError) and "once" in str(res), "pyst2",
                  "fails to reconnect on the same Manager instance (its threads can only be started once)",
                  "wire/ami.py", "AmiClient._run: one task reconnects with back-off, same client", evidence=res)
