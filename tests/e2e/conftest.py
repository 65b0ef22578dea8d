"""End-to-end fixtures: a real Asterisk 22 (session), the real controller, real SQLite.

Calls are placed with Local channels (the caller-robot context) and answered by
scripted Local agents or by baresip SIP seats. HOTLINE_INSTANCE / HOTLINE_PORT_OFFSET
run a second, independent Asterisk (own files and ports) beside another test run.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
import pytest_asyncio

from wire.ami import AmiClient
from model.config import Carrier, Config
from model.loading import load_config
from hotline.controller import Controller
from model.secrets import ami_secret
from hotline.sandbox import Sandbox
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
# tests never run on the main instance (production, the demo): their calls stay in their own
# Asterisk's files (CDR, spool, logs), tagged with their instance in every CDR row
os.environ.setdefault("HOTLINE_INSTANCE", "e2e")
if os.environ["HOTLINE_INSTANCE"] in ("", "main"):
    raise RuntimeError("HOTLINE_INSTANCE=main is production's Asterisk: end-to-end tests need an instance of their own")
INSTANCE = os.environ["HOTLINE_INSTANCE"]
OFFSET = int(os.environ.get("HOTLINE_PORT_OFFSET", "0"))
SIM_CARRIER = "simcarrier"
SIM_CARRIER_PORT = 5090 + OFFSET


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
    return cfg


@pytest.fixture(scope="session")
def cfg() -> Config:
    return e2e_config()


@pytest.fixture(scope="session")
def asterisk(cfg: Config) -> Sandbox:
    """One Asterisk for the whole session, with the simulated outside world loaded."""
    require(os.geteuid() == 0, "end-to-end tests run Asterisk in a chroot: run as root")
    from hotline.install import install_everything

    sb = Sandbox.discover(ami_host=cfg.asterisk.ami.host, ami_port=cfg.asterisk.ami.port, instance=INSTANCE)
    if sb.running():
        sb.stop()
    rtp = 10000 + OFFSET * 10
    install_everything(cfg, sb, with_sim=True, demo_secrets=True, rtp_range=(rtp, rtp + 999),
                       prompts_dir=Path(os.environ.get("HOTLINE_STATE", "/var/lib/hotline12345")) / "prompts")
    asterisk_cdr = sb.cdr_csv
    if asterisk_cdr.exists():
        asterisk_cdr.unlink()  # calls of earlier runs are not this session's
    sb.start(sip_port=cfg.asterisk.sip_port)
    yield sb
    sb.stop()


async def _ami_as(cfg: Config, account: str) -> AmiClient:
    a = cfg.asterisk.ami
    client = AmiClient(a.host, a.port, a.account_username(account), ami_secret(cfg, account))
    await client.start()
    await client.wait_connected(10)
    return client


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
