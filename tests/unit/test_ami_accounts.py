"""AMI least privilege: one account per need in the rendered manager.conf, one secret per account."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from model.config import AMI_ACCOUNTS
from model.contract import AMI_CONTROLLER_EVENTS, AMI_CONTROLLER_EXCLUDED_USER_EVENTS, AMI_EXCLUDED_EVENTS
from model.loading import default_config_path, load_config
from model.secrets import ami_secret, ami_secrets
from routing.dialplan import RenderInputs, render
from wire.conf import parse

SHELL_CLASSES = {"command", "config"}
CALLER_DIGIT_CLASSES = {"dtmf", "agi", "dialplan"}


def manager(with_sim: bool, *, apply_secret: str = "apply-secret-0123", sim_secret: str = "sim-secret-0123"):
    cfg = load_config(default_config_path())
    text = render(cfg, RenderInputs(ami_secret="controller-secret-0123", seat_secrets={k: "s" * 16 for k in cfg.seats},
                                    with_sim=with_sim, ami_apply_secret=apply_secret,
                                    ami_sim_secret=sim_secret))["manager.conf"]
    conf = parse(text, "manager.conf")
    assert not conf.errors, conf.errors
    return cfg, conf


def classes(conf, section: str, key: str) -> set[str]:
    sec = conf.section(section)
    assert sec is not None, f"no [{section}] in manager.conf"
    return set(conf.values(sec)[key].split(","))


def test_controller_reads_and_writes_only_what_it_uses() -> None:
    cfg, conf = manager(with_sim=False)
    user = cfg.asterisk.ami.username
    read, write = classes(conf, user, "read"), classes(conf, user, "write")
    assert read == {"system", "call", "agent", "user", "reporting", "cdr"}
    assert write == {"call", "originate", "agent", "user", "reporting"}  # agent: QueuePause (agent states)
    assert not read & CALLER_DIGIT_CLASSES  # the self-query password digits never reach it
    assert not write & (SHELL_CLASSES | {"system"})
    vals = conf.values(conf.section(user))
    assert vals["secret"] == "controller-secret-0123"
    assert vals["permit"].startswith("127.0.0.1/") and vals["deny"] == "0.0.0.0/0.0.0.0"


def test_controller_gets_only_the_events_its_parts_read() -> None:
    """Include filters (issue 15): the account is sent the events of AMI_CONTROLLER_EVENTS and nothing
    else; the excludes stay as a second guard for the caller-digit events."""
    cfg, conf = manager(with_sim=False)
    vals = conf.values(conf.section(cfg.asterisk.ami.username))
    keys = [k for k in vals if k.startswith("eventfilter")]
    by_user_event = [k for k in keys if "action(exclude)" in k and "header(UserEvent)" in k]
    keys = [k for k in keys if k not in by_user_event]
    included = {k.split("name(")[1].split(")")[0] for k in keys if "action(include)" in k}
    excluded = {k.split("name(")[1].split(")")[0] for k in keys if "action(exclude)" in k}
    assert len(included) + len(excluded) == len(keys)
    # the IVR's prompt announcements are not sent to it (no part reads them); every other UserEvent is
    assert {vals[k] for k in by_user_event} == set(AMI_CONTROLLER_EXCLUDED_USER_EVENTS) == {"HotlinePrompt"}
    assert all("name(UserEvent)" in k and "method(exact)" in k for k in by_user_event)
    assert included == set(AMI_CONTROLLER_EVENTS) and excluded == set(AMI_EXCLUDED_EVENTS)
    assert not included & excluded
    assert {"DTMFBegin", "DTMFEnd", "AGIExecStart", "VarSet", "Newexten", "RTCPSent"} <= excluded
    [device] = [k for k in keys if "name(DeviceStateChange)" in k]
    assert "header(Device)" in device and "method(starts_with)" in device and vals[device] == "PJSIP/"
    assert int(vals["writetimeout"]) >= 10_000  # its own, beside [general]'s
    assert int(conf.values(conf.section("general"))["writetimeout"]) < int(vals["writetimeout"])


def _names_read_by_the_controller() -> set[str]:
    """Every AMI event name a part of the controller reads: its dispatch tables, its on_event("…")
    registrations and its ``Event") == "…"`` comparisons (the sim world's robots and the demo excluded)."""
    from live.reducer import LiveModel
    from routing.agent_service import QUEUE_EVENTS
    from routing.transfer_correlation import _EVENT_ROUTES
    from ticketbridge.assembler import Assembler

    names = set(Assembler().event_handlers) | set(LiveModel._handlers) | set(_EVENT_ROUTES) | set(QUEUE_EVENTS)
    names |= {"AttendedTransfer", "BlindTransfer", "UserEvent"}  # the assembler's own branch before its table
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"""on_event\(\s*"([A-Za-z]+)"|Event"\)\s*(?:==|!=)\s*"([A-Za-z]+)"|Event"\)\s*in\s*\(([^)]*)\)""")
    for folder in ("wire", "routing", "ivr", "ticketbridge", "live", "admin", "hotline"):
        for path in (root / folder).rglob("*.py"):
            if path.name in ("demo.py", "callrobot.py"):  # the sim account's, not the controller's
                continue
            for m in pattern.finditer(path.read_text()):
                if m.group(1) or m.group(2):
                    names.add(m.group(1) or m.group(2))
                else:
                    names |= set(re.findall(r'"([A-Za-z]+)"', m.group(3)))
    return names - {"*"}


def test_every_event_the_controller_reads_is_sent_to_it() -> None:
    missing = _names_read_by_the_controller() - set(AMI_CONTROLLER_EVENTS)
    assert not missing, f"add to model/contract.py AMI_CONTROLLER_EVENTS (else Asterisk never sends them): {missing}"


def test_apply_account_reloads_only() -> None:
    cfg, conf = manager(with_sim=False)
    user = cfg.asterisk.ami.apply_username
    assert classes(conf, user, "write") == {"system", "reporting", "user"}
    assert classes(conf, user, "read") == {"user"}
    assert conf.values(conf.section(user))["secret"] == "apply-secret-0123"


def test_sim_account_only_with_sim() -> None:
    cfg, conf = manager(with_sim=False)
    assert conf.section(cfg.asterisk.ami.sim_username) is None
    assert "sim-secret-0123" not in "\n".join(str(conf.values(s)) for s in conf.sections)
    cfg, conf = manager(with_sim=True)
    user = cfg.asterisk.ami.sim_username
    assert CALLER_DIGIT_CLASSES <= classes(conf, user, "read")
    assert {"agent", "call", "originate"} <= classes(conf, user, "write")


def test_no_account_may_write_command_or_config() -> None:
    _, conf = manager(with_sim=True)
    users = [s for s in conf.sections if s.name != "general"]
    assert len(users) == 3
    for sec in users:
        assert not set(conf.values(sec)["write"].split(",")) & SHELL_CLASSES, sec.name
        assert conf.values(sec)["secret"]


def test_an_account_without_a_secret_is_not_rendered() -> None:
    cfg, conf = manager(with_sim=True, apply_secret="", sim_secret="")
    assert [s.name for s in conf.sections if s.name != "general"] == [cfg.asterisk.ami.username]


def test_one_generated_root_only_secret_per_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(default_config_path())
    monkeypatch.setenv("HOTLINE_STATE", str(tmp_path))
    for acc in AMI_ACCOUNTS:
        monkeypatch.delenv(cfg.asterisk.ami.account_secret_env(acc), raising=False)
    got = {acc: ami_secret(cfg, acc) for acc in AMI_ACCOUNTS}
    assert len(set(got.values())) == 3 and all(len(v) >= 32 for v in got.values())
    files = {"controller": "ami.secret", "apply": "ami-apply.secret", "sim": "ami-sim.secret"}
    for acc, name in files.items():
        p = tmp_path / name
        assert p.read_text().strip() == got[acc]
        assert p.stat().st_mode & 0o777 == 0o600
    assert {acc: ami_secret(cfg, acc) for acc in AMI_ACCOUNTS} == got  # read back, not regenerated
    assert set(ami_secrets(cfg, with_sim=False)) == {"controller", "apply"}
    monkeypatch.setenv("HOTLINE_AMI_SECRET_APPLY", "from-the-environment")
    assert ami_secret(cfg, "apply") == "from-the-environment" and ami_secret(cfg) == got["controller"]
    with pytest.raises(ValueError):
        ami_secret(cfg, "supervisor")
    assert os.environ.get("HOTLINE_STATE") == str(tmp_path)


def test_no_part_of_the_controller_reads_the_user_events_its_account_is_not_sent() -> None:
    """The UserEvents excluded from the controller's account (AMI_CONTROLLER_EXCLUDED_USER_EVENTS) are read by
    none of its parts: the assembler lists them as carrying nothing, the live model has no handler, and no
    module that receives AMI events names them (the IVR sends them; the demo's robot uses the sim account)."""
    from live.reducer import LiveModel
    from model.contract import Event
    from ticketbridge.assembler import USER_EVENTS_WITHOUT_TICKET_DATA

    root = Path(__file__).resolve().parents[2]
    for name in AMI_CONTROLLER_EXCLUDED_USER_EVENTS:
        member = Event(name).name
        assert name in {str(e) for e in USER_EVENTS_WITHOUT_TICKET_DATA}
        assert name not in {str(k) for k in LiveModel._user_handlers}
        used = re.compile(rf"\b(?:Event|UserEventName)\.{member}\b")
        for folder in ("routing", "ticketbridge", "live", "admin", "hotline"):
            for path in (root / folder).rglob("*.py"):
                if path.name in ("demo.py", "callrobot.py") or path == root / "ticketbridge" / "assembler.py":
                    continue
                assert not used.search(path.read_text()), f"{path.relative_to(root)} reads {name}"
