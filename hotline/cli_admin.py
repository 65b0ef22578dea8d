"""The admin commands: `hotline check | explain | transitions | render | apply`.

Thin: the decisions are in admin/ (check, explain, apply) and routing.numberplan; this module reads options, prints, and
turns every failure into a sentence and an exit code (0 ok, 1 problems found or
apply failed, 2 usage, 3 environment missing). No tracebacks reach the admin.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from admin.apply import (
    ApplyResult,
    apply_config,
    installed_seat_secrets,
    read_installed,
    resolve_seat_secrets,
    write_rendered,
)
from admin.check import check_file, problem_dict, render_files
from admin.explain import explain_call, parse_at, parse_digits
from ivr import no_input
from hotline.cli_base import (
    EXIT_BAD,
    EXIT_ENV,
    EXIT_OK,
    EXIT_USAGE,
    config_option,
    config_path as _config_path,
    dump,
    explained,
    fail,
    json_option,
    load,
    load_with_lines,
    print_problems,
)
from hotline.sandbox import Sandbox, SandboxError
from model.config import Config
from model.secrets import ami_secret, ami_secrets
from routing.dialplan import CUSTOM_DIR
from routing.numberplan import transition_calendar
from wire.ami import AmiClient

def register(main: click.Group) -> None:
    """Add the admin commands to the `hotline` group (hotline/cli.py calls this)."""
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
        fail(f"The configuration file {path} does not exist (give one with -c FILE or $HOTLINE_CONFIG)", EXIT_ENV)
    if prompts_dir is not None and not prompts_dir.is_dir():
        fail(f"--prompts {prompts_dir}: no such folder (build prompts with `hotline prompts --out DIR`)", EXIT_ENV)
    # the environment apply would see: seat passwords the installed Asterisk already has count (apply keeps them)
    installed = _installed_secrets()
    sb = _local_asterisk()  # and the prompts it plays (apply builds what it can; check fails on the rest)
    _cfg, problems = check_file(path, prompts_dir=prompts_dir, custom_dir=custom_dir or CUSTOM_DIR,
                                check_secrets=not skip_secrets, installed_secrets=installed,
                                sounds_dir=sb.sounds_dir / "hotline" if sb is not None else None)
    warnings = _no_input_warnings(_cfg, prompts_dir) if _cfg is not None else []
    if as_json:
        dump({"ok": not problems, "config": str(path), "problems": [problem_dict(p) for p in problems],
              "warnings": warnings})
        sys.exit(EXIT_BAD if problems else EXIT_OK)
    for w in warnings:
        click.echo(f"warning: {w}")
    if problems:
        click.echo(f"{path}: {len(problems)} problem(s)")
        for p in problems:
            click.echo(str(p))
    else:
        click.echo(f"{path}: OK, no problems found")
    sys.exit(EXIT_BAD if problems else EXIT_OK)


def _seconds(cfg: Any, prompts_dir: Path | None) -> Any:
    """Prompt durations: the built WAVs of --prompts when given, else the text at ivr.no_input.CHARS_PER_SECOND."""
    return no_input.estimate_seconds(cfg, no_input.wav_seconds(prompts_dir) if prompts_dir else None)


def _no_input_warnings(cfg: Any, prompts_dir: Path | None) -> list[str]:
    """GB/T 33358: each entry whose silent caller reaches a queue later than center.no_input_budget_s (now)."""
    now = parse_at(None, cfg.center.timezone)
    return [f"{number}: a caller who presses nothing waits {no_input.describe(t)}, over center.no_input_budget_s "
            f"= {cfg.center.no_input_budget_s:g} s (GB/T 33358: do not force menu navigation)"
            for number, t in no_input.over_budget(cfg, now, _seconds(cfg, prompts_dir))]


def _local_asterisk() -> Sandbox | None:
    """The Asterisk on this machine that apply would change ($HOTLINE_INSTANCE), or None when there is none."""
    try:
        return Sandbox.discover(build=False)
    except SandboxError:
        return None


def _installed_secrets() -> dict[str, str] | None:
    """Seat passwords in the installed Asterisk's pjsip.conf (what apply keeps); None when there is no Asterisk."""
    sb = _local_asterisk()
    if sb is None or not (sb.etc_dir / "pjsip.conf").is_file():
        return None
    return installed_seat_secrets(read_installed(sb.etc_dir, {"pjsip.conf"}))


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
@click.option("--video", is_flag=True, default=False,
              help="the call arrives with video (a video SIP client, VoLTE video): the sign-language path")
@explained
def explain_cmd(config_path: str | None, as_json: bool, dialed: str | None, caller: str | None, at: str | None,
                digits: str | None, video: bool) -> None:
    """Show step by step how a call would be handled: number plan, transition window, announcements,
    menus, hours, the queue and its overflow chain, the final destination.

    Runs the same call-flow code as a live call (ivr/callflow.py), so it cannot disagree with one.
    """
    cfg = load(config_path)
    try:
        when = parse_at(at, cfg.center.timezone)
        keys = parse_digits(digits)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    result = explain_call(cfg, dialed or cfg.center.number, caller, when, keys, video=video)
    silent = no_input.no_input_time(cfg, dialed or cfg.center.number, when, _seconds(cfg, None))
    if as_json:
        dump({**result.to_json(), "no_input_s": silent.seconds, "no_input_route": silent.route})
    else:
        click.echo("\n".join(result.lines()))
        if result.path:
            click.echo("menu path: " + " > ".join(result.path))
        click.echo(f"pressing nothing: {no_input.describe(silent)} (budget {cfg.center.no_input_budget_s:g} s; "
                   f"prompts estimated at {no_input.CHARS_PER_SECOND:g} characters a second)")


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
    cfg = load(config_path)
    try:
        today = parse_at(at, cfg.center.timezone).date()
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    rows = [asdict(r) for r in transition_calendar(cfg, today)]
    if as_json:
        dump({"today": today, "lines": rows})
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
    cfg = load(config_path)
    secrets = resolve_seat_secrets(cfg, {})
    missing = [ext for ext in cfg.seats if ext not in secrets]
    secrets.update({ext: "CHANGE-ME" for ext in missing})
    files = render_files(cfg, secrets, ami_secret=ami_secret(cfg), with_sim=sim,
                         ami_secrets=ami_secrets(cfg, with_sim=sim))
    try:
        written = write_rendered(files, out)
    except OSError as e:
        fail(f"cannot write into {out}: {e.strerror or e}", EXIT_ENV)
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
    cfg, file, lines = load_with_lines(config_path)
    try:
        sb = Sandbox.discover(ami_host=cfg.asterisk.ami.host, ami_port=cfg.asterisk.ami.port, build=False)
    except SandboxError as e:
        fail(f"No Asterisk to apply to: {e}", EXIT_ENV)
    if not sb.etc_dir.is_dir():
        fail(f"Asterisk's configuration folder {sb.etc_dir} does not exist: start it once with "
              "`hotline asterisk start`", EXIT_ENV)
    kwargs: dict[str, Any] = dict(config_file=file, lines=lines, prompts_dir=prompts_dir)
    preview = asyncio.run(apply_config(cfg, sb, None, dry_run=True, **kwargs))
    if not as_json:
        if preview.diff:
            click.echo(preview.diff, nl=False)
        elif preview.changed or preview.removed:
            click.echo("only secret values differ (masked in the diff): "
                       + ", ".join(preview.changed + preview.removed))
        else:
            click.echo("no changes: Asterisk already runs this configuration")
    if preview.problems or dry_run:
        _report(preview, as_json)
        sys.exit(EXIT_OK if preview.ok else EXIT_BAD)
    # no file changes still goes on: the running controller may not run this configuration yet
    if not sb.running():
        fail("Asterisk is not running: start it with `hotline asterisk start` (apply reloads a running one)",
              EXIT_ENV)
    if not yes and (preview.changed or preview.removed):
        if not sys.stdin.isatty():
            fail("not applied: confirm with --yes when not running in a terminal", EXIT_USAGE)
        if not click.confirm(f"Write {len(preview.changed)} file(s) and reload Asterisk?", default=False):
            fail("not applied; nothing changed", EXIT_BAD)
    result = asyncio.run(_apply_live(cfg, sb, kwargs))
    _report(result, as_json)
    sys.exit(EXIT_OK if result.ok else EXIT_BAD)


async def _apply_live(cfg: Config, sb: Any, kwargs: dict[str, Any]) -> ApplyResult:
    """Apply over apply's own AMI account (reloads only). An Asterisk still running the manager.conf from
    before the accounts were split knows only the controller's user: that one then does this first apply,
    which installs the split accounts (reloading manager last)."""
    a = cfg.asterisk.ami
    tried: list[str] = []
    for account in ("apply", "controller"):
        user = a.account_username(account)
        ami = AmiClient(a.host, a.port, user, ami_secret(cfg, account))
        try:
            await ami.start()
            try:
                await asyncio.wait_for(ami.wait_connected(), timeout=a.connect_timeout_s)
            except (asyncio.TimeoutError, TimeoutError):
                tried.append(f"{user} (${a.account_secret_env(account)} or its generated secret)")
                continue
            return await apply_config(cfg, sb, ami, dry_run=False, reach_controller=True, **kwargs)
        finally:
            try:
                await ami.close()
            except Exception:  # noqa: BLE001 - closing a dead link is not news
                pass
    return ApplyResult(ok=False, dry_run=False, failed_step="connect",
                       message=f"AMI at {a.host}:{a.port} accepted none of the users {', '.join(tried)} within "
                               f"{a.connect_timeout_s:g} s each (are these the secrets Asterisk runs with?); "
                               "nothing was changed")


def _report(res: ApplyResult, as_json: bool) -> None:
    if as_json:
        dump(res.to_json())
        return
    if res.problems:
        print_problems(res.problems, "Refusing to apply")
    for step in res.steps:
        if not step.ok:
            click.echo(f"  step {step.name}: FAILED {step.detail}", err=True)
    click.echo(res.message, err=not res.ok)
    if res.backup_dir:
        click.echo(f"backup of the previous files: {res.backup_dir}")
