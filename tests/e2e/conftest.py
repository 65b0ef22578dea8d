"""End-to-end fixtures: a real Asterisk 22 (session), the real controller, real SQLite.

Calls are placed with Local channels (the caller-robot context) and answered by
scripted Local agents or by baresip SIP seats. HOTLINE_INSTANCE / HOTLINE_PORT_OFFSET
run a second, independent Asterisk (own files and ports) beside another test run.

In parallel (pytest-xdist, `-n N --dist loadfile`: a module's tests stay on one worker) worker gwK
runs its own Asterisk as instance `<HOTLINE_INSTANCE>-gwK` at port offset
`HOTLINE_PORT_OFFSET + 100·K` (`worker_instance`), so runs of several bases never meet either.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from wire.ami import AmiClient
from model.config import Carrier, Config
from model.loading import load_config
from hotline.controller import Controller
from hotline.sipseat import BaresipSeat
from model.secrets import ami_secret, seat_secret, state_dir
from hotline.sandbox import Sandbox
from tests.conftest import PG_URL, require

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
# tests never run on the main instance (production, the demo): their calls stay in their own
# Asterisk's files (CDR, spool, logs), tagged with their instance in every CDR row
os.environ.setdefault("HOTLINE_INSTANCE", "e2e")
if os.environ["HOTLINE_INSTANCE"] in ("", "main"):
    raise RuntimeError("HOTLINE_INSTANCE=main is production's Asterisk: end-to-end tests need an instance of their own")

#: port offsets of two xdist workers lie this far apart: every port of an instance is 5038/4573/5060/5090/8345
#: + offset, its RTP ports 10000 + 10·offset … + 999, so 100 keeps the RTP ports of workers apart too
WORKER_OFFSET_STEP = 100


def worker_instance(environ: MutableMapping[str, str] = os.environ) -> None:
    """Under pytest-xdist, move this process to worker gwK's own Asterisk: instance `<base>-gwK`, port offset
    `base + 100·K`, in `environ` (the instance is read at import time, the control socket and the CLI read
    it from the environment). Done once: the processes a test starts (tests/e2e/fault_controller.py imports
    this module) inherit the moved values and `HOTLINE_E2E_WORKER`, and are not moved again."""
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    if not worker or environ.get("HOTLINE_E2E_WORKER") == worker:
        return
    k = int(worker.removeprefix("gw"))
    environ["HOTLINE_INSTANCE"] = f"{environ['HOTLINE_INSTANCE']}-{worker}"
    environ["HOTLINE_PORT_OFFSET"] = str(int(environ.get("HOTLINE_PORT_OFFSET", "0")) + WORKER_OFFSET_STEP * k)
    environ["HOTLINE_E2E_WORKER"] = worker


worker_instance()
INSTANCE = os.environ["HOTLINE_INSTANCE"]
OFFSET = int(os.environ.get("HOTLINE_PORT_OFFSET", "0"))
SIM_CARRIER = "simcarrier"
SIM_CARRIER_PORT = 5090 + OFFSET
#: this instance's RTP ports: Asterisk's range, then SIPp's media port (test_carrier.py) above it, never inside
RTP_FIRST = 10000 + OFFSET * 10
ASTERISK_RTP = (RTP_FIRST, RTP_FIRST + 899)
SIPP_MEDIA_PORT = RTP_FIRST + 900


#: the e2e world's merged line in its transition window (`e2e_config`)
MERGED_LINE = "12315"


def e2e_config(path: Path | None = None) -> Config:
    """The shipped config, moved to this instance's ports."""
    cfg = load_config(path or ROOT / "config" / "hotline.yaml")
    a = cfg.asterisk
    a.ami.port += OFFSET
    a.fastagi.port += OFFSET
    a.sip.port += OFFSET
    cfg.api.port += OFFSET
    # the simulated carrier (SIPp in test_carrier.py) sends from 127.0.0.2, so the seats' phones on
    # 127.0.0.1 are never taken for the carrier (PJSIP identifies by address before username)
    # it carries video too (tests/e2e/test_sign_language_calls.py: a video caller from 127.0.0.2)
    cfg.carriers[SIM_CARRIER] = Carrier(host="127.0.0.2", port=SIM_CARRIER_PORT, dids={"057112345": "12345"},
                                        video=True)
    # calls of this test world ring seats nobody answers on purpose (unregistered 1002/1003, scripted
    # timeouts): never let the agents' machine set one busy (未接) and so change what the next test sees
    cfg.agents.miss_limit = 0
    # a seat phone that dies (tests/e2e/test_agent_restarts.py) is found unreachable within seconds
    a.sip.seat_qualify_s = 5
    # 12315, the merged line the calls on the wall clock take (test_live_calls.py, test_carrier.py), is inside its
    # transition window whatever the day the suite runs: merged a month before today (the shipped date,
    # 2026-09-01, retired it on 2026-12-01); test_routing.py reads its window's end from here
    today = dt.datetime.now(ZoneInfo(cfg.center.timezone)).date()
    cfg.legacy_lines[MERGED_LINE].merged_on = today - dt.timedelta(days=30)
    return cfg


@pytest.fixture(scope="session")
def cfg() -> Config:
    return e2e_config()


@pytest.fixture(scope="session")
def asterisk(cfg: Config) -> Sandbox:
    """One Asterisk for the whole session, with the simulated outside world loaded."""
    require(os.geteuid() == 0, "end-to-end tests run Asterisk in a chroot: run as root")
    from hotline.install import install_everything

    with _install_lock():  # workers starting together: one builds the shared prompts, the others reuse them
        sb = Sandbox.discover(ami_host=cfg.asterisk.ami.host, ami_port=cfg.asterisk.ami.port, instance=INSTANCE)
        if sb.running():
            sb.stop()
        install_everything(cfg, sb, with_sim=True, demo_secrets=True, rtp_range=ASTERISK_RTP,
                           prompts_dir=state_dir() / "prompts")
    asterisk_cdr = sb.cdr_csv
    if asterisk_cdr.exists():
        asterisk_cdr.unlink()  # calls of earlier runs are not this session's
    sb.start(sip_port=cfg.asterisk.sip_port)
    yield sb
    sb.stop()


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """Held while an instance is installed: the prompt build directory (state dir) and the root filesystem's
    sounds are shared by every instance, and building the same prompts in two processes at once is wasted work."""
    path = state_dir() / "e2e-install.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


async def _ami_as(cfg: Config, account: str) -> AmiClient:
    a = cfg.asterisk.ami
    client = AmiClient(a.host, a.port, a.account_username(account), ami_secret(cfg, account))
    await client.start()
    await client.wait_connected(10)
    return client


async def polled(fetch: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 8.0,
                 every_s: float = 0.25) -> T:
    """`fetch()` again until `check` holds of what it returns, or `timeout` passes: the last value either way, for
    the caller's own assertion. For state that settles on Asterisk's or the controller's time (a bridge after a
    transfer event, the live model after a hang-up), never in step with the event a test waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if check(value) or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(every_s)


async def until(pred: Callable[[], T], timeout: float, what: str) -> T:
    """Wait until `pred()` is truthy (it reads events or files a test collects); that value. TimeoutError naming
    `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.2)


async def call_channels(ami: AmiClient, linkedid: str) -> list[dict[str, str]]:
    """The channels of one call that are up now (CoreShowChannels), with their bridges."""
    return [r for r in await ami.action_list("CoreShowChannels") if r.get("Linkedid") == linkedid]


async def _hang_up_leftovers(cfg: Config, timeout: float = 15.0) -> list[str]:
    """Hang up every channel still up in the session's Asterisk and wait until none is left; the channels."""
    client = await _ami_as(cfg, "sim")
    try:
        left = [c.get("Channel", "") for c in await client.action_list("CoreShowChannels")]
        for ch in left:
            await client.action("Hangup", Channel=ch, raise_on_error=False)
        deadline = time.monotonic() + timeout
        while await client.action_list("CoreShowChannels"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"channels still up {timeout} s after hanging up what earlier tests left: {left}")
            await asyncio.sleep(0.2)
        return left
    finally:
        await client.close()


@pytest.fixture(scope="module", autouse=True)
def clean_world(cfg: Config, asterisk: Sandbox) -> None:
    """Each test module starts with no call up: a call an earlier module left (a caller waiting in a queue,
    a leg on a seat phone whose baresip was stopped) would ring this module's seats or keep an agent 通话."""
    left = asyncio.run(_hang_up_leftovers(cfg))
    if left:
        print(f"\nclean_world: hung up {len(left)} channel(s) earlier tests left: {left}")


@pytest_asyncio.fixture
async def ami(cfg: Config, asterisk: Sandbox):
    """The test world's own AMI link (account `sim`, rendered only with --sim), for robots and assertions;
    the controller connects with its own, restricted account (no dtmf/agi/dialplan events)."""
    client = await _ami_as(cfg, "sim")
    yield client
    await client.close()


@pytest_asyncio.fixture
async def apply_ami(cfg: Config, asterisk: Sandbox):
    """`hotline apply`'s AMI account: reloads and their checks only."""
    client = await _ami_as(cfg, "apply")
    yield client
    await client.close()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/tickets.db"


@pytest_asyncio.fixture
async def controller(cfg: Config, asterisk: Sandbox, store_url: str):
    c = Controller.for_sandbox(cfg, asterisk, store_url=store_url)
    await c.start()
    await c.ami.wait_connected(10)
    yield c
    await c.stop()


@pytest_asyncio.fixture
async def agents(ami: AmiClient):
    """Scripted agents: `await agents.add('general', talk_s=3)` puts Local/<talk>@agent-robot in a queue."""

    class Agents:
        def __init__(self) -> None:
            self.added: list[tuple[str, str]] = []

        async def add(self, queue: str, talk_s: int = 3) -> str:
            iface = f"Local/{talk_s}@agent-robot/n"
            await ami.action("QueueAdd", Queue=f"hotline-{queue}", Interface=iface, MemberName=f"robot{talk_s}")
            self.added.append((queue, iface))
            return iface

    a = Agents()
    yield a
    for queue, iface in a.added:
        try:
            await ami.action("QueueRemove", Queue=f"hotline-{queue}", Interface=iface)
        except Exception:  # noqa: BLE001 - the member may already be gone
            pass


@contextlib.contextmanager
def seat_phone(cfg: Config, ext: str = "1001", **kw) -> Iterator[BaresipSeat]:
    """A real baresip phone registered as seat `ext` of this instance (`kw`: BaresipSeat's answer, tone_hz,
    record_dir); stopped afterwards, also when it never registers."""
    require(shutil.which("baresip") is not None, "baresip is missing: apt-get install baresip")
    s = BaresipSeat(ext, seat_secret(ext, cfg.seats[ext]), sip_port=cfg.asterisk.sip.port, **kw)
    try:
        s.start()
        s.wait_registered(10)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def seat(cfg: Config, asterisk: Sandbox) -> Iterator[BaresipSeat]:
    """Seat 1001 on a real baresip phone that auto-answers, for the whole module (a module whose tests stop
    or need no phone overrides it with a function-scoped `seat` built on `seat_phone`)."""
    with seat_phone(cfg) as s:
        yield s


@contextlib.asynccontextmanager
async def fresh_pg_database(prefix: str) -> AsyncIterator[URL]:
    """A PostgreSQL database of its own (`<prefix>_<random>`) on the shared server, dropped afterwards: parallel
    workers and other runs never see each other's rows."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"timeout": 3})
    try:
        async with admin.connect() as c:
            await c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001
        await admin.dispose()
        require(False, f"PostgreSQL unreachable at {PG_URL}: {e}")
    try:
        yield make_url(PG_URL).set(database=name)
    finally:
        async with admin.connect() as c:
            await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
