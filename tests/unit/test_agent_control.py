"""`hotline agents` (hotline/cli_agents.py) through a real control socket (hotline/control.py) served by the
agent ops (hotline/agent_control.py) over a real AgentService (fake AMI peer) and a real SQLite store."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner

from hotline.agent_control import AgentControl
from hotline.cli import main
from hotline.control import ControlServer, control_socket_path
from model.config import RosterAgent
from model.loading import load_config
from model.passwords import check_password, hash_password
from routing.agent_service import AgentService
from ticketbridge.store import TicketStore
from tests.unit.test_agent_service import FakeAmi

PIN = "1357"


class Controller:
    """The controller's agent side in its own thread and loop (the CLI runs its own): service, store, socket."""

    def __init__(self, path: Path, db: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.path, self.url = path, f"sqlite+aiosqlite:///{db}"
        self.ami = FakeAmi()

    async def _start(self) -> None:
        cfg = load_config("config/hotline.yaml")
        cfg.seats["1001"].agent_id = "8101"
        cfg.agents.roster = {"8001": RosterAgent(name="张三", pin_hash=hash_password(PIN))}
        self.store = TicketStore(self.url, cfg)
        await self.store.open()
        self.svc = AgentService(self.ami, cfg, save=self.store.save_agent, tick_s=3600)
        self.svc.attach()
        self.svc.start_from(await self.store.agent_states())
        await self.svc.start()
        ops = AgentControl(self.svc, self.store, lambda: dt.datetime.now(dt.timezone(dt.timedelta(hours=8))))

        async def handle(request: dict[str, Any]) -> dict[str, Any]:
            return await ops.handle(request) or {"ok": False, "error": f"unknown op {request.get('op')!r}"}

        self.srv = ControlServer(self.path, handle)
        assert await self.srv.start()

    async def _stop(self) -> None:
        await self.srv.stop()
        await self.svc.drain()
        await self.svc.stop()
        await self.store.close()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def __enter__(self) -> "Controller":
        self.thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: Any) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOTLINE_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("HOTLINE_INSTANCE", raising=False)
    with Controller(control_socket_path(), tmp_path / "t.db") as c:
        yield c
    structlog.reset_defaults()  # the CLI configured logging for itself


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["agents", *args])


def listed(r: Any) -> dict[str, dict[str, Any]]:
    """`agents --json` rows by seat (the stand-in controller's own log lines share this process's stdout)."""
    return {x["seat"]: x for x in (json.loads(line) for line in r.stdout.splitlines() if line.startswith("{"))}


def test_listing_names_agent_ids_and_seats(controller):
    r = cli("--json")
    assert r.exit_code == 0, r.output
    rows = listed(r)
    assert rows["1001"]["agent"] == "8101" and rows["1002"]["agent"] == "1002"
    assert rows["1001"]["state"] == "ready" and rows["1001"]["label"] == "示闲" and rows["1001"]["queues"] == ["general"]
    text = cli().stdout
    assert "8101" in text and "seat 1001" in text and "示闲" in text


def test_force_busy_by_agent_id_is_recorded_with_who_and_why(controller):
    r = cli("busy", "8101", "--reason", "培训", "--actor", "班长王", "--why", "临时培训")
    assert r.exit_code == 0 and "agent 8101: busy (培训)" in r.stdout, r.output
    last = controller.ami.named("QueuePause")[-1]
    assert (last["Interface"], last["Paused"], last["Reason"]) == ("PJSIP/1001", "true", "培训")
    events = controller.run(controller.store.agent_events(agent="8101"))
    assert (events[-1].new, events[-1].why, events[-1].seat) == ("busy", "临时培训", "1001")
    assert events[-1].actor.endswith("(班长王)")  # who connected (SO_PEERCRED), --actor only a label
    assert cli("ready", "1001").exit_code == 0 and controller.svc.agents["1001"].state.value == "ready"


def test_refusals_are_explained_with_exit_1(controller):
    r = cli("busy", "1001", "--reason", "睡觉")
    assert r.exit_code == 1 and "unknown busy reason '睡觉'" in r.output
    r = cli("ready", "4040")
    assert r.exit_code == 1 and "no agent or seat '4040'" in r.output
    assert cli("signout", "1002").exit_code == 0
    r = cli("busy", "1002")
    assert r.exit_code == 1 and "is signed_out: busy does not apply" in r.output


def test_a_hot_desked_agent_is_listed_at_its_seat_and_signed_out_by_agent_id(controller):
    assert controller.run(controller.svc.hot_desk("1002", "8001", PIN)).value == "signed_in"
    rows = listed(cli("--json"))
    assert rows["1002"]["agent"] == "8001"
    r = cli("signout", "8001", "--actor", "班长王")
    assert r.exit_code == 0 and "agent 1002: signed_out" in r.stdout  # the seat is its own agent's again


def test_no_controller_is_exit_3(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTLINE_STATE", str(tmp_path / "nothing"))
    r = cli("ready", "1001")
    assert r.exit_code == 3 and "controller is not running" in r.output
    structlog.reset_defaults()


def test_pin_hash_prints_a_hash_of_the_pin_and_never_the_pin():
    r = CliRunner().invoke(main, ["agents", "pin-hash"], input="2468\n2468\n")
    assert r.exit_code == 0, r.output
    digest = r.stdout.strip().splitlines()[-1]
    assert digest.startswith("scrypt$") and check_password("2468", digest) and "2468" not in digest
    assert RosterAgent(pin_hash=digest).pin_hash == digest  # what the config accepts
    r = CliRunner().invoke(main, ["agents", "pin-hash", "--stdin"], input="12a4\n")
    assert r.exit_code == 1 and "4-12 digits" in r.output


def test_a_ticket_rebuilt_from_the_cdr_names_the_agent_id_not_the_device():
    """The CDR knows only the device (PJSIP/1001): the controller names the agent working that seat."""
    from hotline.controller import Controller as RealController
    from ticketbridge.assembler import CallRecord

    cfg = load_config("config/hotline.yaml")
    cfg.seats["1001"].agent_id = "8101"

    class Fake:
        config = cfg
        agents = AgentService(FakeAmi(), cfg)
        saved: list[CallRecord] = []
        _agent_id_of = RealController._agent_id_of

        async def _save(self, record: CallRecord) -> None:
            self.saved.append(record)

    fake = Fake()
    for agent in ("PJSIP/1001", "PJSIP/trunk-x", None):
        rec = CallRecord(linkedid="1.1", source="cdr", agent=agent, queue="hotline-general",
                         actual_dest=f"agent:{agent}" if agent else "queue:general")
        asyncio.run(RealController._save_from_cdr(fake, rec))
    assert [(r.agent, r.actual_dest, r.queue) for r in fake.saved] == [
        ("8101", "agent:8101", "general"), ("PJSIP/trunk-x", "agent:PJSIP/trunk-x", "general"),
        (None, "queue:general", "general")]
