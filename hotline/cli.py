"""`hotline` — the command line for operators and admins.

Every command has --help; exit codes: 0 ok, 1 the thing checked is wrong (bad config,
failed call), 2 usage error, 3 the environment is missing something (no Asterisk,
not root). Errors are explained, never dumped as tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click
import structlog

from model.config import Config, ConfigError, default_config_path, load_config

EXIT_BAD = 1
EXIT_ENV = 3
STATE = Path(os.environ.get("HOTLINE_STATE", "/var/lib/hotline12345"))


def setup_logging(json_logs: bool = True, level: int = logging.INFO) -> None:
    """structlog JSON lines on stderr: stable event names, masked personal data."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.format_exc_info,
    ]
    processors.append(structlog.processors.JSONRenderer(ensure_ascii=False) if json_logs
                      else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(processors=processors, wrapper_class=structlog.make_filtering_bound_logger(level),
                        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr), cache_logger_on_first_use=False)


def _load(path: str | None) -> Config:
    p = Path(path) if path else default_config_path()
    try:
        return load_config(p)
    except ConfigError as e:
        click.echo(f"The configuration {p} has {len(e.problems)} problem(s):", err=True)
        for prob in e.problems:
            click.echo(f"  {prob}", err=True)
        sys.exit(EXIT_BAD)


config_option = click.option("--config", "-c", "config_path", metavar="FILE",
                             help="hotline YAML (default: $HOTLINE_CONFIG or config/hotline.yaml)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """hotline12345: IVR and call routing for the 12345 government service hotline, on Asterisk."""


# ---------------------------------------------------------------------------- asterisk
@main.group()
def asterisk() -> None:
    """Provision, start and stop the Asterisk 22 the hotline runs on."""


def _sandbox(cfg: Config):
    from hotline.sandbox import Sandbox, SandboxError

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


def _secrets(cfg: Config, demo: bool) -> dict[str, str]:
    from routing.dialplan import SecretMissing, seat_secrets

    env = dict(os.environ)
    if demo:
        for seat in cfg.seats.values():
            if seat.secret_env and not env.get(seat.secret_env):
                env[seat.secret_env] = os.environ.setdefault(seat.secret_env, secrets.token_hex(8))
    try:
        return seat_secrets(cfg, env)
    except SecretMissing as e:
        click.echo(f"Seat secrets missing: {e}", err=True)
        sys.exit(EXIT_BAD)


def install_everything(cfg: Config, sb: Any, *, with_sim: bool, demo_secrets: bool, prompts_dir: Path,
                       rtp_range: tuple[int, int] = (10000, 10999)) -> None:
    """Render config, build prompts and put both where Asterisk reads them."""
    from hotline.controller import ami_secret
    from ivr.prompts import build_prompts
    from routing.dialplan import RenderInputs, custom_files, render

    files = render(cfg, RenderInputs(ami_secret=ami_secret(cfg), seat_secrets=_secrets(cfg, demo_secrets),
                                     with_sim=with_sim, layout=sb.layout, sip_bind=cfg.asterisk.ami.host,
                                     rtp_range=rtp_range))
    files.update(custom_files())
    sb.remove_stale(set(files))
    sb.install_config(files)
    recordings = Path(__file__).resolve().parent.parent / "recordings"
    total = len(cfg.prompts)

    def progress(i: int, n: int, name: str, *_: Any) -> None:
        click.echo(f"  prompts [{i}/{n}] {name}", err=True)

    report = build_prompts(cfg, recordings, prompts_dir, progress=progress if total > 0 else None)
    if getattr(report, "failed", None):
        for k, why in report.failed.items():
            click.echo(f"  prompt {k} failed: {why}", err=True)
    sb.install_sounds(prompts_dir)


@asterisk.command("start")
@config_option
@click.option("--sim/--no-sim", default=False, help="also load the simulated outside world (caller robot, 110 trunk…)")
def asterisk_start(config_path: str | None, sim: bool) -> None:
    """Render the configuration, install prompts and start Asterisk; waits until AMI answers."""
    from hotline.sandbox import SandboxError

    setup_logging(json_logs=False)
    cfg = _load(config_path)
    sb = _sandbox(cfg)
    install_everything(cfg, sb, with_sim=sim, demo_secrets=sim, prompts_dir=STATE / "prompts")
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
    """Build prompt audio: admin recordings in recordings/prompts win, the rest is synthesized (espeak-ng)."""
    from ivr.prompts import build_prompts

    cfg = _load(config_path)
    out = out or STATE / "prompts"
    recordings = Path(__file__).resolve().parent.parent / "recordings"
    report = build_prompts(cfg, recordings, out, force=force,
                           progress=lambda i, n, name, *_: click.echo(f"[{i}/{n}] {name}", err=True))
    click.echo(f"built {len(report.built)}, reused {len(report.reused)}, recorded {len(report.recorded)}, "
               f"failed {len(report.failed)} → {out}")
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
    from hotline.controller import Controller, serve
    from hotline.sandbox import Sandbox

    setup_logging()
    cfg = _load(config_path)
    try:
        controller = Controller.for_sandbox(cfg, Sandbox.discover(build=False), store_url=store_url)
    except Exception:  # noqa: BLE001 - Asterisk runs elsewhere: no CDR replay from here
        controller = Controller(cfg, store_url=store_url)
    asyncio.run(serve(controller))


@main.command("demo")
@config_option
@click.option("--once", is_flag=True, help="exit after printing the demo ticket instead of serving")
def demo_cmd(config_path: str | None, once: bool) -> None:
    """Start Asterisk + controller + SQLite, place a demo call answered by a SIP seat, print its ticket."""
    from hotline.demo import run_demo

    setup_logging(json_logs=False)
    cfg = _load(config_path)
    sys.exit(asyncio.run(run_demo(cfg, _sandbox(cfg), once=once)))


def _register_groups() -> None:
    """Admin and supervisor command groups live in their own modules."""
    import importlib

    for mod in ("hotline.cli_admin", "hotline.cli_tickets"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real missing dependency must not hide a command group
                raise
            continue
        m.register(main)


_register_groups()

if __name__ == "__main__":
    main()
