"""Issue "Ready for real traffic" item 6: every config error located (bad calendar dates, unknown keys with
'did you mean'), --json always prints JSON, and check agrees with apply --dry-run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from admin import apply as admin_apply
from admin import check as admin_check
from hotline import cli_admin
from hotline.cli import main
from model.loading import ConfigError, default_config_path, load_located, parse_config
from routing.dialplan import Layout

SHIPPED = default_config_path()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_AMI_SECRET", "ami-pw-long-enough")
    monkeypatch.setattr(cli_admin, "_local_asterisk", lambda: None)


def edited(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text, old
    i = text.index(old)
    p = tmp_path / "hotline.yaml"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return p, text[:i].count("\n") + 1


def merged_on_line() -> str:
    text = SHIPPED.read_text(encoding="utf-8")
    return next(ln for ln in text.splitlines() if ln.strip().startswith("merged_on:"))


def holidays_line() -> str:
    text = SHIPPED.read_text(encoding="utf-8")
    return next(ln for ln in text.splitlines() if ln.strip().startswith("holidays: ["))


BAD_DATES = [
    ("merged_on", lambda: (merged_on_line(), merged_on_line().split(":")[0] + ": 2026-12-32"), "2026-12-32"),
    ("merged_on", lambda: (merged_on_line(), merged_on_line().split(":")[0] + ": 2026-02-30"), "2026-02-30"),
    ("holidays", lambda: (holidays_line(), holidays_line().replace("[", "[2026-04-31, ", 1)), "2026-04-31"),
]


@pytest.mark.parametrize("field,edit,bad", BAD_DATES)
def test_bad_calendar_date_is_located_not_a_crash(tmp_path: Path, field: str, edit, bad: str) -> None:
    old, new = edit()
    path, line = edited(tmp_path, old, new)
    loaded = load_located(path)
    assert loaded.config is None
    [p] = [p for p in loaded.problems if field in p.field]
    assert p.file == str(path) and p.line == line and bad in p.message or "date" in p.message
    assert p.line == line
    with pytest.raises(ConfigError):
        parse_config(path.read_text(encoding="utf-8"), str(path))


@pytest.mark.parametrize("command", [["check", "--skip-secrets"], ["transitions"], ["apply", "--dry-run"],
                                     ["explain", "--to", "12315"]])
@pytest.mark.parametrize("field,edit,bad", BAD_DATES[1:])
def test_bad_date_every_command_json_is_json(tmp_path: Path, command: list[str], field: str, edit, bad: str) -> None:
    old, new = edit()
    path, line = edited(tmp_path, old, new)
    r = CliRunner().invoke(main, [*command, "-c", str(path), "--json"], catch_exceptions=False)
    assert r.exit_code == 1, r.output
    data = json.loads(r.stdout)
    assert data["ok"] is False
    [p] = [p for p in data["problems"] if field in p["field"]]
    assert p["line"] == line and p["file"] == str(path)
    assert "ValueError" not in r.output and "day is out of range" not in r.output


@pytest.mark.parametrize("command", [["check", "--skip-secrets"], ["transitions"]])
def test_bad_date_text_output_names_file_and_line(tmp_path: Path, command: list[str]) -> None:
    old, new = BAD_DATES[1][1]()
    path, line = edited(tmp_path, old, new)
    r = CliRunner().invoke(main, [*command, "-c", str(path)], catch_exceptions=False)
    assert r.exit_code == 1
    assert f"{path}:{line}:" in r.output and "2026-02-30" in r.output


def test_unknown_key_says_did_you_mean(tmp_path: Path) -> None:
    old = merged_on_line()
    path, line = edited(tmp_path, old, old.replace("merged_on", "merged_onn"))
    problems = load_located(path).problems
    [p] = [p for p in problems if p.field.endswith("merged_onn")]
    assert p.line == line and "did you mean 'merged_on'" in p.message
    path2, line2 = edited(tmp_path, "transfer_timeout_s:", "transfer_timeot_s:")
    [p2] = [p for p in load_located(path2).problems if p.field == "transfer_timeot_s"]
    assert p2.line == line2 and "did you mean 'transfer_timeout_s'" in p2.message


def test_unknown_key_far_from_any_gets_no_guess(tmp_path: Path) -> None:
    path, _ = edited(tmp_path, "transfer_timeout_s:", "zzqqxx_yy:")
    [p] = [p for p in load_located(path).problems if p.field == "zzqqxx_yy"]
    assert "did you mean" not in p.message and "unknown key" in p.message


class _Sandbox:
    def __init__(self, root: Path) -> None:
        self.etc_dir = root / "etc"
        self.etc_dir.mkdir(parents=True)
        self.layout = Layout()

    def install_config(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            (self.etc_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (self.etc_dir / name).write_text(text, encoding="utf-8")


def test_check_and_apply_dry_run_agree_on_a_seat_secret_only_asterisk_has(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The running Asterisk has the seat's password and this shell lacks the variable: apply keeps the installed
    one, so check must not fail on it either; and with no installed password both report it."""
    loaded = load_located(SHIPPED)
    cfg = loaded.config
    assert cfg is not None and cfg.seats
    env_names = {s.secret_env for s in cfg.seats.values() if s.secret_env}
    for name in env_names:
        monkeypatch.delenv(name, raising=False)
    sb = _Sandbox(tmp_path / "root")
    custom = tmp_path / "custom"
    custom.mkdir()
    strong = {ext: f"installed-pw-{ext}-Xy9q" for ext in cfg.seats}
    sb.install_config(admin_check.render_files(cfg, strong, ami_secret="ami-pw-long-enough", custom_dir=custom))
    installed = admin_apply.installed_seat_secrets(admin_apply.read_installed(sb.etc_dir, {"pjsip.conf"}))
    assert installed == strong

    def both(installed_secrets):
        _, checked = admin_check.check_file(SHIPPED, custom_dir=custom, installed_secrets=installed_secrets)
        dry = asyncio.run(admin_apply.apply_config(cfg, sb, None, dry_run=True, custom_dir=custom,
                                                   config_file=loaded.file, lines=loaded.lines))
        seat = lambda ps: sorted(str(p) for p in ps if p.field.startswith("seats."))  # noqa: E731
        return seat(checked), seat(dry.problems)

    with_installed = both(installed)
    assert with_installed[0] == with_installed[1]
    assert not [p for p in with_installed[0] if "not set" in p]
    # no Asterisk password to keep: both say the variable is unset, for every seat
    (sb.etc_dir / "pjsip.conf").unlink()
    checked, dry = both({})
    assert checked == dry
    assert len([p for p in checked if "not set" in p]) == len(cfg.seats)
