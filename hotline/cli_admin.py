"""The admin commands: `hotline check | explain | transitions | render | apply`.

Thin: the decisions are in hotline.admin; this module reads options, prints, and
turns every failure into a sentence and an exit code (0 ok, 1 problems found or
apply failed, 2 usage, 3 environment missing). No tracebacks reach the admin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click

from hotline import admin
from model.config import Config, Problem, default_config_path

EXIT_OK, EXIT_BAD, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3

config_option = click.option("--config", "-c", "config_path", metavar="FILE",
                             help="hotline YAML (default: $HOTLINE_CONFIG or config/hotline.yaml)")
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def explained(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any unexpected error into one explained line and exit 1 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SystemExit, click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_BAD)
        except admin.EnvironmentMissing as e:
            _fail(str(e), EXIT_ENV)
        except ImportError as e:
            _fail(f"a part of hotline this command needs is not installed or not importable: {e}", EXIT_ENV)
        except Exception as e:  # noqa: BLE001 - the admin gets an explanation, not a traceback
            _fail(f"{fn.__name__.removesuffix('_cmd')} failed: {type(e).__name__}: {e}", EXIT_BAD)

    return wrapper


def _config_path(config_path: str | None) -> Path:
    return Path(config_path) if config_path else default_config_path()


def _load(config_path: str | None) -> admin.Loaded:
    """Load for a command that needs a valid model: print every load problem and exit 1 otherwise."""
    path = _config_path(config_path)
    if not path.exists():
        _fail(f"The configuration file {path} does not exist (give one with -c FILE or $HOTLINE_CONFIG)", EXIT_ENV)
    loaded = admin.load_for_admin(path)
    if loaded.config is None:
        _print_problems(loaded.problems, f"The configuration {path} cannot be used")
        sys.exit(EXIT_BAD)
    return loaded


def _print_problems(problems: list[Problem], head: str) -> None:
    click.echo(f"{head}: {len(problems)} problem(s):", err=True)
    for p in problems:
        click.echo(f"  {p}", err=True)


def _dump(data: Any) -> None:
    click.echo(json.dumps(admin._jsonable(data), ensure_ascii=False, indent=2))


def register(main: click.Group) -> None:
    """Add the admin commands to the `hotline` group (called from hotline.cli)."""
    for cmd in (check_cmd, explain_cmd, transitions_cmd, render_cmd, apply_cmd):
        main.add_command(cmd)


# --------------------------------------------------------------------------- check
@click.command("check")
@config_option
@json_option
@click.option("--prompts", "prompts_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="also require a playable WAV for every prompt in this built prompts folder")
@click.option("--custom", "custom_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="admin-owned dialplan folder (default: dialplans/custom)")
@click.option("--skip-secrets", is_flag=True,
              help="do not require the seats' SIP secrets in this environment (checking on a workstation)")
@explained
def check_cmd(config_path: str | None, as_json: bool, prompts_dir: Path | None, custom_dir: Path | None,
              skip_secrets: bool) -> None:
    """Check the configuration and the admin's dialplan files; list EVERY problem as file:line: field: message.

    Covers: config schema, the whole routing graph, seat secrets, feature codes
    (against each other and Asterisk's built-ins), dialplans/custom/*.conf syntax and
    contexts that clash with ours, that the Asterisk files render, and (with
    --prompts) built prompt audio. Exit 0 when clean, 1 when anything is wrong.
    """
    path = _config_path(config_path)
    if not path.exists():
        _fail(f"The configuration file {path} does not exist (give one with -c FILE or $HOTLINE_CONFIG)", EXIT_ENV)
    if prompts_dir is not None and not prompts_dir.is_dir():
        _fail(f"--prompts {prompts_dir}: no such folder (build prompts with `hotline prompts --out DIR`)", EXIT_ENV)
    _cfg, problems = admin.check_file(path, prompts_dir=prompts_dir, custom_dir=custom_dir or admin.CUSTOM_DIR,
                                      check_secrets=not skip_secrets)
    if as_json:
        _dump({"ok": not problems, "config": str(path), "problems": [admin.problem_dict(p) for p in problems]})
    elif problems:
        click.echo(f"{path}: {len(problems)} problem(s)")
        for p in problems:
            click.echo(str(p))
    else:
        click.echo(f"{path}: OK, no problems found")
    sys.exit(EXIT_BAD if problems else EXIT_OK)


# --------------------------------------------------------------------------- explain
@click.command("explain")
@config_option
@json_option
@click.option("--to", "dialed", metavar="NUMBER", default=None,
              help="the dialed number (default: the center number, e.g. 12345)")
@click.option("--from", "caller", metavar="NUMBER", default=None, help="the caller's number (optional)")
@click.option("--at", "at", metavar="'YYYY-MM-DD HH:MM'", default=None,
              help="when the call arrives, in the center's time zone (default: now)")
@click.option("--digits", metavar="KEYS", default=None,
              help="what the caller presses, one entry per prompt: '1,2'; an empty entry or 't' is a timeout")
@explained
def explain_cmd(config_path: str | None, as_json: bool, dialed: str | None, caller: str | None, at: str | None,
                digits: str | None) -> None:
    """Show step by step how a call would be handled: number plan, transition window, announcements,
    menus, hours, the queue and its overflow chain, the final destination.

    Uses the same pure cores the controller runs (routing.numberplan, ivr.menu).
    """
    cfg = _load(config_path).config
    assert cfg is not None
    try:
        when = admin.parse_at(at, cfg.center.timezone)
        keys = admin.parse_digits(digits)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    result = admin.explain_call(cfg, dialed or cfg.center.number, caller, when, keys)
    if as_json:
        _dump(result.to_json())
    else:
        click.echo("\n".join(result.lines()))
        if result.path:
            click.echo("menu path: " + " > ".join(result.path))


# --------------------------------------------------------------------------- transitions
@click.command("transitions")
@config_option
@json_option
@click.option("--at", "at", metavar="YYYY-MM-DD", default=None, help="the day to judge windows on (default: today)")
@explained
def transitions_cmd(config_path: str | None, as_json: bool, at: str | None) -> None:
    """The calendar of legacy lines: mode, merge date, window end, days left, status; by window end.

    The window end is exclusive: the first day callers no longer hear the transition announcement.
    """
    cfg = _load(config_path).config
    assert cfg is not None
    try:
        today = admin.parse_at(at, cfg.center.timezone).date()
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    rows = admin.transition_rows(cfg, today)
    if as_json:
        _dump({"today": today, "lines": rows})
        return
    head = ("line", "name", "mode", "merged on", "window end", "days left", "status")
    table = [head] + [(str(r["line"]), str(r["name"]), str(r["mode"]), str(r["merged_on"] or "-"),
                       str(r["window_end"] or "-"), "-" if r["days_left"] is None else str(r["days_left"]),
                       str(r["status"])) for r in rows]
    widths = [max(_width(row[i]) for row in table) for i in range(len(head))]
    click.echo(f"legacy lines on {today} (window end is the first day after the transition window)")
    for row in table:
        click.echo("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths)).rstrip())


def _width(s: str) -> int:
    """Terminal columns: CJK characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


# --------------------------------------------------------------------------- render
@click.command("render")
@config_option
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="folder to write the Asterisk files into (for review)")
@click.option("--sim/--no-sim", default=False, help="include the simulated outside world used by tests")
@explained
def render_cmd(config_path: str | None, out: Path, sim: bool) -> None:
    """Write the rendered Asterisk files (and the admin's custom/*.conf) to a folder for review.

    Seat secrets come from the environment; seats without one get the placeholder
    CHANGE-ME so the files can still be read (apply never installs a placeholder).
    """
    cfg = _load(config_path).config
    assert cfg is not None
    secrets = admin.resolve_seat_secrets(cfg, {})
    missing = [ext for ext in cfg.seats if ext not in secrets]
    secrets.update({ext: "CHANGE-ME" for ext in missing})
    files = admin.render_files(cfg, secrets, ami_secret=admin.resolve_ami_secret(cfg), with_sim=sim)
    try:
        written = admin.write_rendered(files, out)
    except OSError as e:
        _fail(f"cannot write into {out}: {e.strerror or e}", EXIT_ENV)
    click.echo(f"wrote {len(written)} files to {out} (they hold secrets: keep the folder private)")
    if missing:
        click.echo(f"seats without a secret in this environment got CHANGE-ME: {', '.join(missing)}", err=True)


# --------------------------------------------------------------------------- apply
@click.command("apply")
@config_option
@json_option
@click.option("--dry-run", is_flag=True, help="render, diff and check only; change nothing")
@click.option("--yes", "-y", is_flag=True, help="do not ask before writing and reloading")
@click.option("--prompts", "prompts_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="also require built prompt audio in this folder")
@explained
def apply_cmd(config_path: str | None, as_json: bool, dry_run: bool, yes: bool, prompts_dir: Path | None) -> None:
    """Apply the configuration to the running Asterisk without dropping calls.

    Render → show the diff → check (refuse with every problem listed, nothing changed)
    → back up → write atomically → reload over AMI (dialplan, queues, PJSIP, features;
    manager last) → verify what Asterisk loaded → on any failure restore the backup,
    reload again and exit 1 naming the failed step.
    """
    from hotline.sandbox import Sandbox, SandboxError

    loaded = _load(config_path)
    cfg = loaded.config
    assert cfg is not None
    try:
        sb = Sandbox.discover(ami_host=cfg.asterisk.ami.host, ami_port=cfg.asterisk.ami.port, build=False)
    except SandboxError as e:
        _fail(f"No Asterisk to apply to: {e}", EXIT_ENV)
    if not sb.etc_dir.is_dir():
        _fail(f"Asterisk's configuration folder {sb.etc_dir} does not exist: start it once with "
              "`hotline asterisk start`", EXIT_ENV)
    kwargs: dict[str, Any] = dict(config_file=loaded.file, lines=loaded.lines, prompts_dir=prompts_dir)
    preview = asyncio.run(admin.apply_config(cfg, sb, None, dry_run=True, **kwargs))
    if not as_json:
        if preview.diff:
            click.echo(preview.diff, nl=False)
        elif preview.changed or preview.removed:
            click.echo("only secret values differ (masked in the diff): "
                       + ", ".join(preview.changed + preview.removed))
        else:
            click.echo("no changes: Asterisk already runs this configuration")
    if preview.problems or dry_run or not (preview.changed or preview.removed):
        _report(preview, as_json)
        sys.exit(EXIT_OK if preview.ok else EXIT_BAD)
    if not sb.running():
        _fail("Asterisk is not running: start it with `hotline asterisk start` (apply reloads a running one)",
              EXIT_ENV)
    if not yes:
        if not sys.stdin.isatty():
            _fail("not applied: confirm with --yes when not running in a terminal", EXIT_USAGE)
        if not click.confirm(f"Write {len(preview.changed)} file(s) and reload Asterisk?", default=False):
            _fail("not applied; nothing changed", EXIT_BAD)
    result = asyncio.run(_apply_live(cfg, sb, kwargs))
    _report(result, as_json)
    sys.exit(EXIT_OK if result.ok else EXIT_BAD)


async def _apply_live(cfg: Config, sb: Any, kwargs: dict[str, Any]) -> admin.ApplyResult:
    from wire.ami import AmiClient

    a = cfg.asterisk.ami
    ami = AmiClient(a.host, a.port, a.username, admin.resolve_ami_secret(cfg))
    try:
        await ami.start()
        try:
            await asyncio.wait_for(ami.wait_connected(), timeout=a.connect_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            return admin.ApplyResult(ok=False, dry_run=False, failed_step="connect",
                                     message=f"AMI at {a.host}:{a.port} did not accept user {a.username} within "
                                             f"{a.connect_timeout_s:g} s (is ${a.secret_env} the secret Asterisk "
                                             "runs with?); nothing was changed")
        return await admin.apply_config(cfg, sb, ami, dry_run=False, **kwargs)
    finally:
        try:
            await ami.close()
        except Exception:  # noqa: BLE001 - closing a dead link is not news
            pass


def _report(res: admin.ApplyResult, as_json: bool) -> None:
    if as_json:
        _dump(res.to_json())
        return
    if res.problems:
        _print_problems(res.problems, "Refusing to apply")
    for step in res.steps:
        if not step.ok:
            click.echo(f"  step {step.name}: FAILED {step.detail}", err=True)
    click.echo(res.message, err=not res.ok)
    if res.backup_dir:
        click.echo(f"backup of the previous files: {res.backup_dir}")
