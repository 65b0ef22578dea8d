"""`hotline recordings purge`: the retention rule for call recordings (录音保存期限).

Thin: finds the recordings dir, asks the store which tickets hold unpurged recordings, lets
the pure rule (ticketbridge/retention.py) decide what is due, deletes those files and marks
their tickets (`recording_purged_at`, a history row, an outbox row; the recording's name
stays on the ticket). Run it daily (cron or a systemd timer, see docs/production.md).

The recordings dir is, in this order: `--dir`; the monitor spool of this machine's Asterisk
for this instance ($HOTLINE_INSTANCE), where MixMonitor writes; `recording.dir` of the config
when no Asterisk is installed here. Nothing outside it is ever deleted.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import structlog

from hotline.cli_base import EXIT_BAD, dump, explained, json_option
from hotline.cli_tickets import _setup_logs, store_options, with_store
from hotline.sandbox import Sandbox, SandboxError
from model.config import Config
from ticketbridge.retention import FoundFile, PurgePlan, cutoff, plan_purge
from ticketbridge.schema import UTC

log = structlog.get_logger("hotline.cli_recordings")


def register(main: click.Group) -> None:
    main.add_command(recordings)


@click.group()
def recordings() -> None:
    """Call recordings: the retention rule."""
    _setup_logs()


def monitor_dir(cfg: Config, given: Path | None) -> tuple[Path, str]:
    """Where the recordings are, and why there."""
    if given is not None:
        return given, "--dir"
    try:
        sb = Sandbox.discover(ami_host=cfg.asterisk.ami.host, ami_port=cfg.asterisk.ami.port, build=False)
    except SandboxError:
        return Path(cfg.recording.dir), "recording.dir (no Asterisk on this machine)"
    return sb.host_path(f"{sb.layout.spool}/monitor"), f"the monitor spool of this machine's Asterisk " \
                                                       f"(instance {sb.layout.instance})"


def scan(root: Path) -> list[FoundFile]:
    """Regular files under root (symbolic links neither followed nor listed)."""
    out: list[FoundFile] = []
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for f in files:
            p = Path(dirpath) / f
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if p.is_symlink() or not p.is_file():
                continue
            out.append(FoundFile(p.relative_to(root).as_posix(), st.st_mtime))
    return out


def delete(root: Path, names: tuple[str, ...]) -> tuple[set[str], dict[str, str]]:
    """Delete the files (each checked to lie inside root once links are resolved); then empty folders."""
    real_root = root.resolve()
    gone: set[str] = set()
    failed: dict[str, str] = {}
    for name in names:
        p = root / name
        try:
            real = p.parent.resolve() / p.name
            if real_root not in real.parents:
                failed[name] = f"resolves outside {root}"
                continue
            real.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            failed[name] = e.strerror or str(e)
            continue
        gone.add(name)
    # the day folders (hotline/YYYYMMDD) emptied here go too; never root, never one we did not empty
    for folder in sorted({(root / n).parent for n in gone}, key=lambda d: -len(d.parts)):
        while folder != root and root in folder.parents and not folder.is_symlink():
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
            folder = folder.parent
    return gone, failed


@recordings.command("purge")
@click.option("--older-than", "days", type=click.IntRange(min=1), default=None, metavar="DAYS",
              help="delete recordings of calls older than DAYS days (default: recording.retention_days)")
@click.option("--dry-run", is_flag=True, help="only say what would be deleted and marked")
@click.option("--dir", "given_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="the recordings dir (default: this machine's Asterisk monitor spool for this instance)")
@json_option
@store_options
@explained
def purge_cmd(config_path: str | None, store_url: str | None, days: int | None, dry_run: bool,
              given_dir: Path | None, as_json: bool) -> None:
    """Delete recording files older than DAYS days (by the ticket's call time; files no ticket names by
    their modification time) and mark their tickets: the recording's name stays, `recording_purged_at`
    and a history row are added. A ticket whose file is already gone is marked too."""

    @with_store
    async def run(store: Any, cfg: Config) -> int:
        keep_days = days if days is not None else cfg.recording.retention_days
        if keep_days is None:
            raise click.UsageError("no retention period: give --older-than DAYS or set recording.retention_days")
        root, why = monitor_dir(cfg, given_dir)
        done = await purge(store, root, keep_days, dry_run=dry_run, actor=f"retention:{_user()}")
        _report(done, root, why, keep_days, dry_run, as_json)
        return EXIT_BAD if done.failed or done.plan.refused else 0

    code = run(config_path=config_path, store_url=store_url)
    if code:
        raise SystemExit(code)


@dataclass
class PurgeResult:
    plan: PurgePlan
    before: dt.datetime
    #: files not deleted, and why (their tickets stay unmarked)
    failed: dict[str, str]
    marked: int


async def purge(store: Any, root: Path, days: int, *, dry_run: bool = False, now: dt.datetime | None = None,
                actor: str = "retention") -> PurgeResult:
    """The retention rule over one recordings dir and one store (what `hotline recordings purge` does)."""
    before = cutoff(now or dt.datetime.now(UTC), days)
    files = scan(root) if root.is_dir() else []
    due = await store.unpurged_recordings(before=before)
    old_unnamed = sorted({f.name for f in files if f.mtime < before.timestamp()} - {t.recording for t in due})
    in_use = [t.recording for t in await store.unpurged_recordings(names=old_unnamed)] if old_unnamed else []
    plan = plan_purge(due, files, monitor_dir=str(root), before=before, in_use=in_use)
    if dry_run:
        return PurgeResult(plan, before, {}, len(plan.tickets))
    gone, failed = delete(root, plan.files)
    for t in plan.tickets:  # not found by the scan, yet there: behind a link, or a newer ticket's
        if not t.exists and os.path.lexists(root / t.name):
            failed[t.name] = "there, but not as a file of this dir (a link?): left alone"
    mark = [t.ticket_no for t in plan.tickets if t.name not in failed and (not t.exists or t.name in gone)]
    marked = await store.mark_recording_purged(mark, actor=actor,
                                               note=f"recording deleted (older than {days} days)")
    log.info("recordings_purged", dir=str(root), older_than_days=days, files=len(gone), tickets=marked,
             failed=len(failed), refused=len(plan.refused))
    return PurgeResult(plan, before, failed, marked)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "?"


def _report(done: PurgeResult, root: Path, why: str, days: int, dry_run: bool, as_json: bool) -> None:
    plan, before, failed, marked = done.plan, done.before, done.failed, done.marked
    tickets = [{"ticket_no": t.ticket_no, "recording": t.name,
                "file": "failed" if t.name in failed else ("deleted" if t.exists else "missing")}
               for t in plan.tickets]
    if as_json:
        dump({"ok": not failed and not plan.refused, "dry_run": dry_run, "dir": root, "dir_from": why,
              "older_than_days": days, "before": before, "tickets": tickets, "tickets_marked": marked,
              "unnamed_files": list(plan.orphans),
              "refused": [{"ticket_no": r.ticket_no, "recording": r.recording, "why": r.why} for r in plan.refused],
              "failed": [{"file": k, "why": v} for k, v in failed.items()]})
        return
    verb = "would delete" if dry_run else "deleted"
    deleted = sum(1 for t in plan.tickets if t.exists and t.name not in failed)
    click.echo(f"recordings of calls before {before.isoformat(timespec='seconds')} ({days} days) in {root} ({why})")
    click.echo(f"{verb} {deleted} recording(s) named by tickets and {len(plan.orphans)} file(s) no ticket names; "
               f"{'would mark' if dry_run else 'marked'} {marked} ticket(s) "
               f"({sum(1 for t in plan.tickets if not t.exists)} whose file was already gone)")
    for r in plan.refused:
        click.echo(f"  refused: ticket {r.ticket_no}: {r.recording}: {r.why}", err=True)
    for k, v in failed.items():
        click.echo(f"  not deleted: {k}: {v} (its ticket stays unmarked)", err=True)
    if failed or plan.refused:
        click.echo(f"{len(failed) + len(plan.refused)} recording(s) not purged", err=True)
