"""`hotline` — the command line for operators and admins: the top of the composition root.

Every command has --help; exit codes and shared options are in hotline/cli_base.py.
This module holds the Asterisk, prompts, run and demo commands and adds the admin
(hotline/cli_admin.py) and supervisor (hotline/cli_tickets.py) groups. Nothing imports it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from hotline import (cli_admin, cli_cluster, cli_deadlines, cli_recordings, cli_report, cli_status, cli_supervise,
                     cli_tickets, cli_tokens, cli_transcripts)
from hotline.cli_base import EXIT_BAD, EXIT_ENV, STATE, config_option, event_loop_factory, fail, setup_logging
from hotline.cli_base import load as _load
from hotline.controller import Controller, serve
from hotline.demo import run_demo
from hotline.install import install_everything
from ivr.prompts import RECORDINGS, build_prompts
from hotline.sandbox import Sandbox, SandboxError
from model.config import Config
from model.secrets import SecretMissing
from ticketbridge.outbox import OutboxPusher, OutboxRefused
from ticketbridge.sms import Sealer, SmsRefused

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """hotline12345: IVR and call routing for the 12345 government service hotline, on Asterisk."""


# ---------------------------------------------------------------------------- asterisk
@main.group()
def asterisk() -> None:
    """Provision, start and stop the Asterisk 22 the hotline runs on."""


def _sandbox(cfg: Config):
    try:
        return Sandbox.discover(ami_host=cfg.asterisk.ami.host, ami_port=cfg.asterisk.ami.port)
    except SandboxError as e:
        click.echo(f"Cannot provision Asterisk: {e}", err=True)
        sys.exit(EXIT_ENV)


@asterisk.command("provision")
@config_option
def asterisk_provision(config_path: str | None) -> None:
    """Make sure an Asterisk is available (system one, or build the cached sid root filesystem)."""
    setup_logging(json_logs=False)
    sb = _sandbox(_load(config_path))
    click.echo(f"Asterisk ready: {'chroot ' + str(sb.root) if sb.chrooted else 'system installation'}")


@asterisk.command("start")
@config_option
@click.option("--sim/--no-sim", default=False, help="also load the simulated outside world (caller robot, 110 trunk…)")
def asterisk_start(config_path: str | None, sim: bool) -> None:
    """Render the configuration, install prompts and start Asterisk; waits until AMI answers."""
    setup_logging(json_logs=False)
    cfg = _load(config_path)
    sb = _sandbox(cfg)
    try:
        install_everything(cfg, sb, with_sim=sim, demo_secrets=sim, prompts_dir=STATE / "prompts",
                           say=lambda line: click.echo(line, err=True))
    except SecretMissing as e:
        fail(f"Seat secrets missing: {e}", EXIT_BAD)
    try:
        pid = sb.start(sip_port=cfg.asterisk.sip_port)
    except SandboxError as e:
        click.echo(f"Asterisk did not start: {e}", err=True)
        sys.exit(EXIT_ENV)
    click.echo(f"Asterisk running (pid {pid}); AMI on {cfg.asterisk.ami.host}:{cfg.asterisk.ami.port}")


@asterisk.command("stop")
@config_option
def asterisk_stop(config_path: str | None) -> None:
    """Stop the hotline's Asterisk."""
    setup_logging(json_logs=False)
    sb = _sandbox(_load(config_path))
    click.echo("Asterisk stopped" if sb.stop() else "Asterisk was not running")


@asterisk.command("status")
@config_option
def asterisk_status(config_path: str | None) -> None:
    """Is Asterisk running, and what does it say about itself."""
    sb = _sandbox(_load(config_path))
    pid = sb.pid()
    if pid is None:
        click.echo("Asterisk is not running")
        sys.exit(EXIT_BAD)
    click.echo(f"Asterisk running (pid {pid})\n" + sb.cli("core show uptime"))


# ---------------------------------------------------------------------------- prompts
@main.command("prompts")
@config_option
@click.option("--out", type=click.Path(path_type=Path), default=None, help="output folder")
@click.option("--force", is_flag=True, help="rebuild even when cached")
def prompts_cmd(config_path: str | None, out: Path | None, force: bool) -> None:
    """Build prompt audio (admin recordings in recordings/prompts win, the rest is synthesized with espeak-ng)
    and install it into this machine's Asterisk; with --out, only build into that folder (for review)."""
    cfg = _load(config_path)
    default_out = out is None
    out = out or STATE / "prompts"
    report = build_prompts(cfg, RECORDINGS, out, force=force,
                           progress=lambda i, n, name, *_: click.echo(f"[{i}/{n}] {name}", err=True))
    click.echo(f"built {len(report.built)}, reused {len(report.reused)}, recorded {len(report.recorded)}, "
               f"failed {len(report.failed)} → {out}")
    if default_out:  # where Asterisk plays them: the built folder alone is not read by Asterisk
        try:
            sb = Sandbox.discover(ami_host=cfg.asterisk.ami.host, ami_port=cfg.asterisk.ami.port, build=False)
        except SandboxError as e:
            click.echo(f"not installed into Asterisk ({e}); `hotline asterisk start` or `hotline apply` installs "
                       "them", err=True)
        else:
            sb.install_sounds(out)
            click.echo(f"installed into {sb.sounds_dir / 'hotline'} (where Asterisk plays them)")
    if report.failed:
        for k, why in report.failed.items():
            click.echo(f"  {k}: {why}", err=True)
        sys.exit(EXIT_BAD)


# ---------------------------------------------------------------------------- controller
@main.command("run")
@config_option
@click.option("--store", "store_url", default=None, help="SQLAlchemy URL (default from config)")
def run_cmd(config_path: str | None, store_url: str | None) -> None:
    """Run the controller (FastAGI + AMI + ticket store) until SIGTERM/Ctrl-C."""
    setup_logging(cache_loggers=True)
    cfg = _load(config_path)
    try:
        OutboxPusher.from_config(None, cfg.outbox)  # https and its token, or no start at all
        if cfg.sms.enabled:  # the same for the SMS gateway, and the key sealing passwords in the outbox
            OutboxPusher.from_config(None, cfg.sms)
            Sealer.from_env(cfg.sms)
    except (OutboxRefused, SmsRefused) as e:
        fail(f"Refusing to start: {e}", EXIT_ENV)
    try:
        controller = Controller.for_sandbox(cfg, Sandbox.discover(build=False), store_url=store_url)
    except Exception:  # noqa: BLE001 - Asterisk runs elsewhere: no CDR replay from here
        controller = Controller(cfg, store_url=store_url)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:  # $HOTLINE_EVENT_LOOP: asyncio or uvloop
        runner.run(serve(controller))


@main.command("demo")
@config_option
@click.option("--once", is_flag=True, help="exit after printing the demo ticket instead of serving")
def demo_cmd(config_path: str | None, once: bool) -> None:
    """Start Asterisk + controller + SQLite, place a demo call answered by a SIP seat, print its ticket."""
    setup_logging(json_logs=False)
    cfg = _load(config_path)
    sys.exit(asyncio.run(run_demo(cfg, _sandbox(cfg), once=once)))


cli_admin.register(main)
cli_cluster.register(main)
cli_tickets.register(main)
cli_deadlines.register(cli_tickets.tickets)
cli_recordings.register(main)
cli_tokens.register(main)
cli_supervise.register(main)
cli_report.register(main)
cli_transcripts.register(main)
cli_status.register(main)

if __name__ == "__main__":
    main()
