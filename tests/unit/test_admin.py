"""Admin commands: check lists every problem with its line; explain/transitions/render; apply refuses and rolls back."""

from __future__ import annotations

import asyncio
import json
import os
import wave
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from admin import apply as admin_apply
from admin import check as admin_check
from admin import explain as admin_explain
from hotline.cli import main
from model.loading import default_config_path, load_config, parse_config
from ivr.prompts import all_prompt_ids, output_path
from routing.dialplan import Layout

SHIPPED = default_config_path()
SECRET_ENV = {**{f"HOTLINE_SEAT_{ext}_SECRET": f"seat-pw-{ext}-k7Qm2x" for ext in ("1001", "1002", "1003", "1004", "1005", "1006", "9001")},
              "HOTLINE_AMI_SECRET": "ami-pw"}
AMI_SECRETS = {"apply": "ami-apply-pw"}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRET_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture(autouse=True)
def _no_local_asterisk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI looks at this machine's Asterisk (installed secrets, sounds); these tests must not see one."""
    from hotline import cli_admin

    monkeypatch.setattr(cli_admin, "_local_asterisk", lambda: None)


@pytest.fixture()
def empty_custom(tmp_path: Path) -> Path:
    d = tmp_path / "custom"
    d.mkdir()
    return d


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def broken_yaml() -> str:
    """The shipped config with one of each kind of mistake an admin makes."""
    text = SHIPPED.read_text(encoding="utf-8")
    edits = [
        ('"3": queue:general/求助', '"3": queue:nowhere'),                       # unknown queue
        ("    merged_on: 2025-03-01\n", ""),                                     # merged line without a date
        ('"1003": {name: 人社专席, skills: [hrss, expert], secret_env: HOTLINE_SEAT_1003_SECRET}',
         '"1003": {name: 人社专席, skills: [hrss, expert]}'),                     # seat without a secret
        ('feature_code: "*833"', 'feature_code: "*81"'),                          # prefix of 110's *810
        ("    prompt: complaint_menu\n", "    prompt: complaint_menu_v2\n"),     # prompt not defined
        ('  "96196":\n', '  "12333":\n    name: 重复\n    mode: parallel\n  "96196":\n'),  # duplicate number
    ]
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def line_no(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


# ------------------------------------------------------------------ check


def test_check_shipped_config_is_clean(empty_custom: Path) -> None:
    r = run("check", "-c", str(SHIPPED), "--custom", str(empty_custom))
    assert r.exit_code == 0, r.output
    assert "OK" in r.output


def test_check_lists_every_problem_with_file_and_line(tmp_path: Path) -> None:
    text = broken_yaml()
    cfg = tmp_path / "hotline.yaml"
    cfg.write_text(text, encoding="utf-8")
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "site.conf").write_text(
        "[hotline-inbound]\nexten => 9,1,NoOp()\n[hotline-extra]\n[site-ok]\nexten => 1,1,Dial(PJSIP/x)\nbroken line\n"
        "[hotline-outbound]\nexten => _X.,1,Dial(PJSIP/${EXTEN}@trunk)\n", encoding="utf-8")
    r = run("check", "-c", str(cfg), "--custom", str(custom))
    assert r.exit_code == 1, r.output
    out = r.output
    q12369, s1003, gas = '"12369":', '"1003": {name', 'feature_code: "*81"'
    expect = {
        f"{cfg}:{line_no(text, 'queue:nowhere')}: menus.main.options.3": "nowhere",
        f"{cfg}:{line_no(text, q12369)}: legacy_lines.12369": "merged_on",
        f"{cfg}:{line_no(text, s1003)}: seats.1003": "secret",
        f"{cfg}:{line_no(text, gas)}: transfer_targets.gas.feature_code": "*810",
        f"{cfg}:{line_no(text, 'complaint_menu_v2')}: menus.complaint.prompt": "complaint_menu_v2",
        f"{cfg}:{line_no(text, 'name: 重复') - 1}: legacy_lines.12333": "twice",
        f"{custom / 'site.conf'}:1: [hotline-inbound]": "rendered by hotline",
        f"{custom / 'site.conf'}:3: [hotline-extra]": "reserved",
        f"{custom / 'site.conf'}:6: syntax": "no '='",
    }
    lines = out.splitlines()
    for where, what in expect.items():
        hits = [ln for ln in lines if ln.startswith(where) and what in ln]
        assert hits, f"missing {where} … {what} in:\n{out}"
    # hotline-outbound is rendered from `outbound:` now: an admin's own one would merge into it
    assert [ln for ln in lines if "[hotline-outbound]" in ln and "rendered by hotline" in ln]
    assert "Traceback" not in out


def test_check_json_lists_problems(tmp_path: Path, empty_custom: Path) -> None:
    cfg = tmp_path / "hotline.yaml"
    cfg.write_text(broken_yaml(), encoding="utf-8")
    r = run("check", "-c", str(cfg), "--json", "--custom", str(empty_custom))
    assert r.exit_code == 1
    data = json.loads(r.output)
    assert data["ok"] is False
    assert all({"file", "line", "field", "message"} <= set(p) for p in data["problems"])
    assert len(data["problems"]) >= 6


def test_check_reports_schema_errors_all_at_once(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8").replace("ring_s: 15\n", "ring_s: soon\n", 1)
    text = text.replace("strategy: rrmemory", "strategy: sometimes", 1)
    cfg = tmp_path / "h.yaml"
    cfg.write_text(text, encoding="utf-8")
    r = run("check", "-c", str(cfg))
    assert r.exit_code == 1
    assert f"{cfg}:{line_no(text, 'ring_s: soon')}: queues.general.ring_s" in r.output
    assert f"{cfg}:{line_no(text, 'strategy: sometimes')}: queues.general.strategy" in r.output


def test_check_missing_built_prompt(tmp_path: Path, empty_custom: Path) -> None:
    cfg = load_config(SHIPPED)
    built = tmp_path / "prompts"
    for pid in all_prompt_ids(cfg):
        if pid == "connecting":
            continue
        p = output_path(built, pid)
        p.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(p), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\0\0" * 80)
    r = run("check", "-c", str(SHIPPED), "--prompts", str(built), "--custom", str(empty_custom))
    assert r.exit_code == 1
    assert [ln for ln in r.output.splitlines() if "prompts.connecting" in ln and "hotline prompts" in ln]
    assert len([ln for ln in r.output.splitlines() if ": prompts." in ln]) == 1


def test_check_secret_from_environment(monkeypatch: pytest.MonkeyPatch, empty_custom: Path) -> None:
    monkeypatch.delenv("HOTLINE_SEAT_1001_SECRET")
    r = run("check", "-c", str(SHIPPED), "--custom", str(empty_custom))
    assert r.exit_code == 1 and "$HOTLINE_SEAT_1001_SECRET is not set" in r.output
    r = run("check", "-c", str(SHIPPED), "--custom", str(empty_custom), "--skip-secrets")
    assert r.exit_code == 0, r.output


def test_missing_config_file_is_environment_error(tmp_path: Path) -> None:
    r = run("check", "-c", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 3 and "does not exist" in r.output


def test_every_command_has_help() -> None:
    for cmd in ("check", "explain", "transitions", "render", "apply"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "--config" in r.output, cmd


def test_usage_error_exits_2() -> None:
    r = run("explain", "-c", str(SHIPPED), "--at", "tomorrow-ish")
    assert r.exit_code == 2 and "2022-01-15 09:30" in r.output
    r = run("explain", "-c", str(SHIPPED), "--digits", "1,x")
    assert r.exit_code == 2


# ------------------------------------------------------------------ explain / transitions / render


def test_explain_12315_inside_window_with_digits() -> None:
    r = run("explain", "-c", str(SHIPPED), "--to", "12315", "--from", "13800000000",
            "--at", "2026-11-30 09:30", "--digits", "2,1")
    assert r.exit_code == 0, r.output
    out = r.output
    assert "merged" in out and "2026-12-01" in out and "1 day(s) left" in out
    assert "transition_12315" in out
    assert "enter menu complaint" in out
    assert "overflow to queue overflow" in out
    assert "final destination: queue:general/投诉举报" in out


def test_explain_12315_after_window_retires() -> None:
    r = run("explain", "-c", str(SHIPPED), "--to", "12315", "--at", "2026-12-01 00:00")
    assert r.exit_code == 0, r.output
    assert "status retired" in r.output and "retired_12315" in r.output
    assert "final destination: hangup" in r.output
    assert "transition_12315" not in r.output


def test_explain_json() -> None:
    r = run("explain", "-c", str(SHIPPED), "--to", "12315", "--at", "2026-10-01 10:00", "--digits", "0", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    kinds = [s["kind"] for s in data["steps"]]
    assert kinds[0] == "number_plan" and "announcement" in kinds and "queue" in kinds and kinds[-1] == "final"
    plan = data["steps"][0]
    assert plan["mode"] == "merged" and plan["window_end"] == "2026-12-01" and plan["days_left"] == 61
    assert data["final"] == "queue:general"
    assert "agent:0" in data["path"]


def test_explain_default_is_center_number_now() -> None:
    r = run("explain", "-c", str(SHIPPED))
    assert r.exit_code == 0, r.output
    assert "center number" in r.output and "final destination: queue:" in r.output


def test_explain_hours_and_closed_expert_queue() -> None:
    cfg = load_config(SHIPPED)
    from model.hours import local
    import datetime as dt

    sunday = local(dt.datetime(2026, 3, 8, 10, 0))
    exp = admin_explain.explain_call(cfg.model_copy(update={"center": cfg.center.model_copy(
        update={"entry": admin_dest("queue:expert")})}), "12345", None, sunday)
    text = "\n".join(exp.lines())
    assert "queue expert is closed (hours office)" in text
    assert "expert_closed" in text  # the caller is told why
    assert "final destination: queue:general" in text  # and reaches a person anyway
    monday = local(dt.datetime(2026, 3, 9, 10, 0))
    exp = admin_explain.explain_call(cfg.model_copy(update={"center": cfg.center.model_copy(
        update={"entry": admin_dest("queue:expert")})}), "12345", None, monday)
    assert "final destination: queue:expert" in "\n".join(exp.lines())


def admin_dest(s: str) -> Any:
    from model.destinations import parse_destination

    return parse_destination(s)


def test_transitions_table_and_json() -> None:
    r = run("transitions", "-c", str(SHIPPED), "--at", "2026-11-30")
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.output.splitlines() if ln.startswith(("12315", "12369"))]
    assert rows[0].startswith("12369") and "put_through" in rows[0]  # earlier window end first
    assert "2026-12-01" in rows[1] and "announcing" in rows[1] and " 1 " in rows[1]
    r = run("transitions", "-c", str(SHIPPED), "--at", "2026-11-30", "--json")
    data = json.loads(r.output)
    by = {row["line"]: row for row in data["lines"]}
    assert by["12315"]["window_end"] == "2026-12-01" and by["12315"]["days_left"] == 1
    assert by["12333"]["status"] == "n/a"


def test_render_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "review"
    r = run("render", "-c", str(SHIPPED), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert (out / "extensions.conf").is_file() and (out / "pjsip.conf").is_file()
    assert "password = seat-pw" in (out / "pjsip.conf").read_text()


def test_render_out_is_private(tmp_path: Path) -> None:
    """Item 10: the rendered files hold the AMI secrets and seat passwords: 0600 files in 0700 folders."""
    os.umask(0o022)
    out = tmp_path / "review"
    out.mkdir(mode=0o755)
    (out / "pjsip.conf").write_text("old")
    (out / "pjsip.conf").chmod(0o644)
    r = run("render", "-c", str(SHIPPED), "--sim", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert out.stat().st_mode & 0o777 == 0o700
    paths = list(out.rglob("*"))
    assert any(p.name == "manager.conf" for p in paths) and any(p.parent.name == "sim" for p in paths)
    for p in paths:
        want = 0o700 if p.is_dir() else 0o600
        assert p.stat().st_mode & 0o777 == want, f"{p} is {oct(p.stat().st_mode & 0o777)}"


# ------------------------------------------------------------------ apply


class FakeSandbox:
    """Asterisk's etc dir in a tmp folder; writes atomically like Sandbox.install_config, without chown."""

    def __init__(self, root: Path) -> None:
        self.etc_dir = root / "etc" / "asterisk"
        self.etc_dir.mkdir(parents=True)
        self.layout = Layout()

    def install_config(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            target = self.etc_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)


class FakeAmi:
    """Answers apply's account like Asterisk 22 does (Reload, ShowDialPlan, QueueSummary, PJSIPShowEndpoints);
    `Command` (a shell) is refused, as the apply account's manager.conf classes refuse it.
    `missing_queue` makes a verify step fail, `fail_module` a reload."""

    def __init__(self, cfg: Any, missing_queue: str | None = None, fail_module: str | None = None) -> None:
        self.cfg = cfg
        self.missing_queue = missing_queue
        self.fail_module = fail_module
        self.commands: list[str] = []

    async def action(self, name: str, **headers: Any) -> dict[str, Any]:
        assert name == "Reload", f"apply sent {name}: its AMI account may only reload and list"
        module = headers["Module"]
        self.commands.append(f"reload {module}")
        if module == self.fail_module:
            raise RuntimeError("Response: Error: No such module")  # as wire.ami raises AmiError
        return {"Response": "Success", "Message": "Module Reloaded"}

    async def action_list(self, name: str, **headers: Any) -> list[dict[str, Any]]:
        if name == "ShowDialPlan":
            self.commands.append(f"ShowDialPlan {headers['Context']}")
            return [{"Event": "ListDialplan", "Context": headers["Context"], "Extension": "_X.", "Priority": "1",
                     "Application": "NoOp"}]
        if name == "QueueSummary":
            q = headers["Queue"]
            self.commands.append(f"QueueSummary {q}")
            return [] if q == self.missing_queue else [{"Event": "QueueSummary", "Queue": q, "LoggedIn": "0"}]
        if name == "PJSIPShowEndpoints":
            self.commands.append("PJSIPShowEndpoints")
            return [{"Event": "EndpointList", "ObjectType": "endpoint", "ObjectName": ext} for ext in self.cfg.seats]
        raise AssertionError(f"apply listed {name}")


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture()
def installed(tmp_path: Path) -> tuple[FakeSandbox, Path]:
    """An Asterisk etc dir holding the render of an older config (general queue: 90 s wait, 10 s ring)."""
    sb = FakeSandbox(tmp_path / "root")
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "site.conf").write_text("[site-outbound]\nexten => _X.,1,Dial(PJSIP/${EXTEN}@trunk)\n")
    old = parse_config(SHIPPED.read_text(encoding="utf-8").replace("max_wait_s: 120", "max_wait_s: 90")
                       .replace("ring_s: 15", "ring_s: 10"), "old.yaml")
    files = admin_check.render_files(old, {k: "seat-pw" for k in old.seats}, ami_secret="ami-pw", custom_dir=custom,
                                     ami_secrets=AMI_SECRETS)
    files["custom/stale.conf"] = "[site-stale]\n"
    sb.install_config(files)
    return sb, custom


def _apply(cfg: Any, sb: FakeSandbox, ami: FakeAmi | None, custom: Path, *, dry_run: bool = False,
           tmp: Path | None = None) -> admin_apply.ApplyResult:
    return asyncio.run(admin_apply.apply_config(cfg, sb, ami, dry_run=dry_run, custom_dir=custom, environ=SECRET_ENV,
                                          ami_secret="ami-pw", ami_secrets=AMI_SECRETS,
                                          backup_root=(tmp or sb.etc_dir.parent) / "backups"))


def test_apply_success_reloads_and_verifies(installed: tuple[FakeSandbox, Path]) -> None:
    sb, custom = installed
    cfg = load_config(SHIPPED)
    ami = FakeAmi(cfg)
    res = _apply(cfg, sb, ami, custom)
    assert res.ok, res.message
    assert "extensions.conf" in res.changed and "custom/stale.conf" in res.removed
    assert not (sb.etc_dir / "custom/stale.conf").exists()
    assert "max_wait_s" not in res.diff or "-" in res.diff
    assert "reload pbx_config.so" in ami.commands and "reload manager" not in ami.commands
    assert ami.commands.index("reload pbx_config.so") < ami.commands.index("ShowDialPlan hotline-inbound")
    assert res.backup_dir is not None and (res.backup_dir / "extensions.conf").is_file()
    # a second apply has nothing to do
    again = _apply(cfg, sb, FakeAmi(cfg), custom)
    assert again.ok and not again.changed and "nothing to do" in again.message


def test_apply_dry_run_changes_nothing(installed: tuple[FakeSandbox, Path]) -> None:
    sb, custom = installed
    before = _snapshot(sb.etc_dir)
    cfg = load_config(SHIPPED)
    res = _apply(cfg, sb, None, custom, dry_run=True)
    assert res.ok and res.changed and "`pbx_config.so`" in res.message
    assert "+exten => s,1,Set(HOTLINE_QUEUE=general)" not in res.diff  # unchanged lines are context only
    assert _snapshot(sb.etc_dir) == before


def test_apply_refuses_broken_config_and_changes_nothing(installed: tuple[FakeSandbox, Path], tmp_path: Path) -> None:
    sb, custom = installed
    before = _snapshot(sb.etc_dir)
    broken = parse_config(broken_yaml().replace('  "12333":\n    name: 重复\n    mode: parallel\n', ""), "broken.yaml")
    ami = FakeAmi(broken)
    res = _apply(broken, sb, ami, custom)
    assert not res.ok and res.failed_step == "check"
    assert len(res.problems) >= 4 and "nothing was changed" in res.message
    assert _snapshot(sb.etc_dir) == before
    assert ami.commands == []
    assert not (sb.etc_dir.parent / "backups").exists()


def test_apply_failed_verify_rolls_back_byte_for_byte(installed: tuple[FakeSandbox, Path]) -> None:
    sb, custom = installed
    (custom / "new.conf").write_text("[site-new]\nexten => 1,1,NoOp()\n")
    before = _snapshot(sb.etc_dir)
    cfg = load_config(SHIPPED)
    ami = FakeAmi(cfg, missing_queue="hotline-expert")
    res = _apply(cfg, sb, ami, custom)
    assert not res.ok and res.rolled_back
    assert res.failed_step == "verify queue hotline-expert"
    assert "hotline-expert" in res.message and "previous files are back" in res.message
    assert _snapshot(sb.etc_dir) == before  # new custom file gone, stale one back, every byte the same
    assert ami.commands.count("reload pbx_config.so") == 2  # once for the new files, once for the restored ones


def test_apply_failed_reload_rolls_back(installed: tuple[FakeSandbox, Path]) -> None:
    sb, custom = installed
    before = _snapshot(sb.etc_dir)
    cfg = load_config(SHIPPED)
    ami = FakeAmi(cfg, fail_module="app_queue.so")
    res = _apply(cfg, sb, ami, custom)
    assert not res.ok and res.failed_step == "reload: app_queue.so" and res.rolled_back
    assert "No such module" in res.message
    assert _snapshot(sb.etc_dir) == before


def test_apply_keeps_installed_seat_secret_when_env_lacks_it(installed: tuple[FakeSandbox, Path]) -> None:
    sb, custom = installed
    cfg = load_config(SHIPPED)
    res = asyncio.run(admin_apply.apply_config(cfg, sb, None, dry_run=True, custom_dir=custom, environ={},
                                         ami_secret="ami-pw", ami_secrets=AMI_SECRETS))
    assert res.ok, res.problems
    assert "pjsip.conf" not in res.changed


def test_apply_reloads_manager_after_verifying(installed: tuple[FakeSandbox, Path]) -> None:
    sb, custom = installed
    cfg = load_config(SHIPPED)
    ami = FakeAmi(cfg)
    res = asyncio.run(admin_apply.apply_config(cfg, sb, ami, dry_run=False, custom_dir=custom, environ=SECRET_ENV,
                                         ami_secret="a-new-ami-secret", ami_secrets=AMI_SECRETS))
    assert res.ok, res.message
    assert ami.commands[-1] == "reload manager"
    assert ami.commands.index("PJSIPShowEndpoints") < ami.commands.index("reload manager")


def test_reload_plan_puts_manager_last() -> None:
    cmds, restart = admin_apply.reload_commands(["manager.conf", "custom/a.conf", "queues.conf", "modules.conf"])
    assert cmds == ["app_queue.so", "pbx_config.so", "manager"]
    assert restart == ["modules.conf"]


def test_diff_masks_secrets() -> None:
    d = admin_apply.unified_diff({"pjsip.conf": "[a]\npassword = old\n"}, {"pjsip.conf": "[a]\npassword = new\n"})
    assert "old" not in d and "new" not in d
