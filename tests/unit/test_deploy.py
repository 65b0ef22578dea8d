"""What ships for a production server (deploy/, scripts/link-command) matches the code it drives:
the systemd units parse and run real `hotline` commands, and logrotate names the files the
Asterisk sandbox really writes."""

from __future__ import annotations

import configparser
import inspect
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hotline.cli import main
from hotline.sandbox import ROOTFS, Sandbox, _layout_for
from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
LOGROTATE = REPO / "deploy" / "logrotate" / "hotline12345"
HOTLINE = "/usr/local/bin/hotline"
SERVICES = ("hotline-asterisk.service", "hotline-controller.service", "hotline-recordings-purge.service")


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string((UNITS / name).read_text(encoding="utf-8"))
    return cp


def resolve(argv: list[str]) -> click.Command:
    """The click command an ExecStart line runs (its options parsed as click would)."""
    assert argv[0] == HOTLINE, argv
    cmd: click.Command = main
    args = argv[1:]
    while isinstance(cmd, click.Group):
        assert args and args[0] in cmd.commands, f"{argv}: no such command under {cmd.name}"
        cmd, args = cmd.commands[args[0]], args[1:]
    cmd.make_context(cmd.name, list(args))  # raises on an unknown option
    return cmd


def test_units_verify_with_systemd_analyze(tmp_path: Path) -> None:
    """systemd's own parser: no unknown key, no bad value (run on copies pointing at this checkout's hotline)."""
    exe = shutil.which("systemd-analyze")
    require(exe is not None, "systemd-analyze is not installed")
    venv_hotline = REPO / ".venv" / "bin" / "hotline"
    for f in UNITS.iterdir():
        text = f.read_text(encoding="utf-8").replace(HOTLINE, str(venv_hotline))
        text = re.sub(r"(?m)^EnvironmentFile=", "EnvironmentFile=-", text)
        (tmp_path / f.name).write_text(text, encoding="utf-8")
    r = subprocess.run([str(exe), "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                       capture_output=True, text=True, timeout=60)
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "hotline" in line]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def test_units_restart_have_fd_limits_and_run_real_commands() -> None:
    ast, ctl, purge = (unit(n) for n in SERVICES)
    for u in (ast, ctl):
        s = u["Service"]
        assert s["Restart"] == "on-failure" and int(s["LimitNOFILE"]) >= 65536
        assert s["EnvironmentFile"] == "/etc/hotline12345/hotline.env"
        assert u["Install"]["WantedBy"] == "multi-user.target"
    assert resolve(shlex.split(ast["Service"]["ExecStart"])).name == "start"
    assert resolve(shlex.split(ast["Service"]["ExecStop"])).name == "stop"
    assert resolve(shlex.split(ctl["Service"]["ExecStart"])).name == "run"
    assert resolve(shlex.split(purge["Service"]["ExecStart"])).name == "purge"
    assert "hotline-asterisk.service" in ctl["Unit"]["After"]
    assert unit("hotline-recordings-purge.timer")["Timer"]["OnCalendar"]
    with pytest.raises(AssertionError):
        resolve([HOTLINE, "asterisk", "begin"])


def test_unit_types_match_how_the_commands_run() -> None:
    """`hotline asterisk start` leaves Asterisk running in its own session and returns once it is booted
    (forking); `hotline run` serves in the foreground until SIGTERM (exec)."""
    start = inspect.getsource(Sandbox.start)
    assert "subprocess.Popen(" in start and "start_new_session=True" in start and "return proc.pid" in start
    assert unit(SERVICES[0])["Service"]["Type"] == "forking"
    assert unit(SERVICES[1])["Service"]["Type"] in ("simple", "exec")
    run = inspect.getsource(main.commands["run"].callback)  # type: ignore[arg-type]
    # in the foreground on the chosen loop ($HOTLINE_EVENT_LOOP): asyncio.Runner(loop_factory=…).run(serve(…))
    assert "asyncio.Runner(loop_factory=event_loop_factory())" in run and "runner.run(serve(" in run


def _logrotate_paths() -> list[tuple[Path, str]]:
    """(file, its block's directives) for every file the logrotate config names."""
    out: list[tuple[Path, str]] = []
    text = LOGROTATE.read_text(encoding="utf-8")
    for files, body in re.findall(r"((?:^/\S+\n)+)\{(.*?)\}", text, flags=re.M | re.S):
        out += [(Path(f), body) for f in files.split()]
    return out


def test_logrotate_names_the_files_the_sandbox_writes() -> None:
    named = dict(_logrotate_paths())
    logger = (REPO / "dialplans" / "templates" / "logger.conf.j2").read_text(encoding="utf-8")
    logfiles = re.findall(r"(?m)^(\S+\.log)\s*=>", logger)
    assert "messages.log" in logfiles
    for root in (ROOTFS, Path("/")):
        sb = Sandbox(root, _layout_for(root))
        wanted = [sb.cdr_csv, sb.log_dir / "console.log", *(sb.log_dir / f for f in logfiles)]
        for f in wanted:
            assert f in named, f"{f} (written by the sandbox at {root}) is not rotated"
            assert "copytruncate" in named[f] and "missingok" in named[f]
    assert "console.log" in inspect.getsource(Sandbox.start)


def test_logrotate_accepts_the_file(tmp_path: Path) -> None:
    exe = shutil.which("logrotate") or ("/usr/sbin/logrotate" if Path("/usr/sbin/logrotate").exists() else None)
    require(exe is not None, "logrotate is not installed")
    conf = tmp_path / "hotline12345"  # installed 0644 (logrotate ignores a group-writable file)
    shutil.copyfile(LOGROTATE, conf)
    conf.chmod(0o644)
    r = subprocess.run([str(exe), "-d", "-s", str(tmp_path / "state"), str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stderr


def test_link_command_puts_hotline_on_path_idempotently(tmp_path: Path) -> None:
    env = {**os.environ, "HOTLINE_BIN_DIR": str(tmp_path / "bin")}
    script = str(REPO / "scripts" / "link-command")
    first = subprocess.run([script], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    link = tmp_path / "bin" / "hotline"
    assert link.is_symlink() and Path(os.readlink(link)) == REPO / ".venv" / "bin" / "hotline"
    again = subprocess.run([script], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout == ""
    r = subprocess.run([str(link), "recordings", "purge", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--older-than" in r.stdout
    link.unlink()
    link.write_text("someone else's\n")
    refused = subprocess.run([script], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and link.read_text() == "someone else's\n"
    assert "scripts/link-command" in (REPO / "scripts" / "bootstrap").read_text()


def test_production_guide_is_linked_and_names_what_ships() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/production.md" in readme
    guide = (REPO / "docs" / "production.md").read_text(encoding="utf-8")
    for f in (*SERVICES, "hotline-recordings-purge.timer", "deploy/logrotate/hotline12345", "HOTLINE_CONFIG",
              "HOTLINE_STATE", "HOTLINE_SEAT_", "sqlite3", "pg_dump", "hotline check", "hotline apply --dry-run",
              "hotline recordings purge", "carriers:", "outbound:"):
        assert f in guide, f
    assert CliRunner().invoke(main, ["recordings", "purge", "--help"]).exit_code == 0
