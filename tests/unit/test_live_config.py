"""Issue "Ready for real traffic" item 4: `hotline apply` reaches the running controller, or says it did not.

A real Controller (not started: no Asterisk) and apply's notify step meet on a fake AMI bus that
broadcasts UserEvents to every client, as Asterisk does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from admin import apply as admin_apply
from admin.live_config import notify_controller, restart_fields
from hotline.controller import Controller
from model.config import LegacyLine
from model.loading import default_config_path, load_config
from tests.unit.test_admin import FakeAmi, FakeSandbox


class Bus:
    def __init__(self) -> None:
        self.clients: list[BusClient] = []


class BusClient:
    """One AMI link on the bus: `UserEvent` actions reach every link's UserEvent handlers."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.handlers: list[tuple[str, Any]] = []
        bus.clients.append(self)

    def on_event(self, name: str, cb: Any) -> Any:
        entry = (name, cb)
        self.handlers.append(entry)
        return lambda: self.handlers.remove(entry)

    async def action(self, name: str, **headers: Any) -> dict[str, Any]:
        assert name == "UserEvent"
        event = {"Event": "UserEvent", **{k: str(v) for k, v in headers.items()}}
        for client in list(self.bus.clients):
            for n, cb in list(client.handlers):
                if n == "UserEvent":
                    r = cb(event)
                    if asyncio.iscoroutine(r):
                        asyncio.get_running_loop().create_task(r)
        return {"Response": "Success"}


class ApplyAmi(FakeAmi, BusClient):
    """Asterisk's answers to apply's commands, on the bus."""

    def __init__(self, cfg: Any, bus: Bus) -> None:
        FakeAmi.__init__(self, cfg)
        BusClient.__init__(self, bus)

    async def action(self, name: str, **headers: Any) -> dict[str, Any]:
        if name == "UserEvent":
            return await BusClient.action(self, name, **headers)
        return await FakeAmi.action(self, name, **headers)


@pytest.fixture
def cfg(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOTLINE_AMI_SECRET", "ami-secret-for-tests")
    monkeypatch.setenv("HOTLINE_SEAT_SECRET", "seat-secret-for-tests")
    return load_config(default_config_path())


def with_new_line(cfg: Any) -> Any:
    new = cfg.model_copy(deep=True)
    new.legacy_lines["12399"] = LegacyLine(name="新并入热线", mode="dual_cancelled", category="咨询")
    return new


def controller_on(bus: Bus, cfg: Any, tmp_path: Path) -> Controller:
    c = Controller(cfg, store_url=f"sqlite+aiosqlite:///{tmp_path}/t.db", recognizer=None)
    c.ami = BusClient(bus)  # type: ignore[assignment]
    c.ami.on_event("UserEvent", c._on_control)
    return c


async def test_controller_takes_a_new_legacy_line_between_calls(cfg: Any, tmp_path: Path) -> None:
    bus = Bus()
    controller = controller_on(bus, cfg, tmp_path)
    old_scripts = controller.scripts
    new = with_new_line(cfg)
    ok, said = await notify_controller(BusClient(bus), new, tmp_path / "applied", timeout_s=2)
    assert ok, said
    assert said.startswith("controller reloaded: generation ") and controller.generation in said
    assert "12399" in controller.config.legacy_lines and controller.config == new
    # new calls run the new scripts; a call in progress keeps the scripts (and config) it started with
    assert controller.scripts is not old_scripts and controller.scripts.config is controller.config
    assert controller.agi._routes["inbound"] == controller.scripts.inbound
    assert "12399" not in old_scripts.config.legacy_lines


async def test_change_the_controller_cannot_take_live_is_refused_and_named(cfg: Any, tmp_path: Path) -> None:
    bus = Bus()
    controller = controller_on(bus, cfg, tmp_path)
    new = with_new_line(cfg)
    new.asterisk.fastagi.port += 1
    ok, said = await notify_controller(BusClient(bus), new, tmp_path / "applied", timeout_s=2)
    assert not ok and "restart" in said and "asterisk" in said
    assert controller.config is cfg and "12399" not in controller.config.legacy_lines  # nothing half-applied
    assert restart_fields(cfg, with_new_line(cfg)) == []


async def test_no_controller_is_reported_not_reached(cfg: Any, tmp_path: Path) -> None:
    ok, said = await notify_controller(BusClient(Bus()), cfg, tmp_path / "applied", timeout_s=0.3)
    assert not ok and "controller not reachable" in said and "restart" in said


async def test_apply_reports_the_controller_and_fails_without_one(cfg: Any, tmp_path: Path) -> None:
    sb = FakeSandbox(tmp_path / "root")
    custom = tmp_path / "custom"
    custom.mkdir()
    bus = Bus()
    controller = controller_on(bus, cfg, tmp_path)
    new = with_new_line(cfg)
    env: Mapping[str, str] = {s.secret_env: f"seat-{ext}-secret-Xq7-for-tests"
                              for ext, s in cfg.seats.items() if s.secret_env}
    res = await admin_apply.apply_config(new, sb, ApplyAmi(new, bus), dry_run=False, custom_dir=custom,
                                         environ=env, ami_secret="ami-secret-for-tests", reach_controller=True,
                                         backup_root=tmp_path / "b", snapshot_dir=tmp_path / "applied",
                                         controller_timeout_s=2)
    assert res.ok, res.message
    assert "controller reloaded: generation" in res.message and res.to_json()["controller"] == res.controller
    assert "12399" in controller.config.legacy_lines
    # the same apply again with nothing to change on disk still reaches the controller
    again = await admin_apply.apply_config(new, sb, ApplyAmi(new, bus), dry_run=False, custom_dir=custom,
                                           environ=env, ami_secret="ami-secret-for-tests", reach_controller=True,
                                           snapshot_dir=tmp_path / "applied", controller_timeout_s=2)
    assert again.ok and "controller reloaded" in again.message
    # no controller on the bus: apply fails and says so (the files are applied; exit code 1)
    lonely = await admin_apply.apply_config(cfg, sb, ApplyAmi(cfg, Bus()), dry_run=False, custom_dir=custom,
                                            environ=env, ami_secret="ami-secret-for-tests", reach_controller=True,
                                            backup_root=tmp_path / "b2", snapshot_dir=tmp_path / "applied",
                                            controller_timeout_s=0.3)
    assert not lonely.ok and lonely.failed_step == "controller" and "controller not reachable" in lonely.message


def test_a_queues_members_or_after_call_work_need_a_restart(cfg: Any) -> None:
    """The agents' machines are built at start from queues' members and wrapup_s: changing them live
    would half-apply (review finding), so the controller names them as restart-only."""
    new = cfg.model_copy(deep=True)
    new.queues["general"].members = [*new.queues["general"].members, "1003"]
    new.queues["overflow"].wrapup_s = 15
    assert restart_fields(cfg, new) == ["queues.general.members", "queues.overflow.wrapup_s"]
    renamed = cfg.model_copy(deep=True)
    renamed.queues["general"].name = "综合受理（夜间）"  # what callers hear or see may change live
    assert restart_fields(cfg, renamed) == []


def test_the_access_paths_and_the_priority_list_change_live(cfg: Any) -> None:
    """`access` is read per call (ivr/callflow.py): a new priority list (or the same config loaded from
    elsewhere, without the list file beside it) never makes apply demand a controller restart."""
    new = cfg.model_copy(deep=True)
    new.access.priority.numbers = [*new.access.priority.numbers, "13900000001"]
    assert restart_fields(cfg, new) == []
