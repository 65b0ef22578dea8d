"""`hotline apply`: diff → check → back up → write → reload → verify, or roll back byte for byte.

The one admin job that touches a running Asterisk: through a sandbox (its etc files;
hotline/sandbox.py, or a fake in tests) and an AMI client (reloads, verification).
None of the reloads it issues hangs up a live call. A broken configuration is refused
with every problem listed, and nothing changes on disk or in Asterisk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from admin.check import check_config, problem_dict, render_files
from admin.live_config import notify_controller
from admin.reload import (MANAGER, RELOADS, RESTART_ONLY, AmiLike, StepResult, reload_commands,  # noqa: F401
                          reload_module, verify_loaded)
from ivr.prompts import RECORDINGS, build_prompts, missing_prompts
from model.config import Config
from model.loading import Lines, Problem
from model.secrets import SecretMissing, seat_secret, state_dir
from model.secrets import ami_secret as read_ami_secret
from routing.dialplan import CUSTOM_DIR
from wire.conf import parse

log = structlog.get_logger("hotline.admin.apply")


class SandboxLike(Protocol):
    """What apply needs of hotline.sandbox.Sandbox (a test passes a fake in a tmp dir)."""

    @property
    def etc_dir(self) -> Path: ...

    @property
    def layout(self) -> Any: ...

    def install_config(self, files: dict[str, str]) -> None: ...


@dataclass
class ApplyResult:
    """What apply did; `ok` False means the running Asterisk is on the previous files (rolled back) or untouched."""

    ok: bool
    dry_run: bool
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    diff: str = ""
    problems: list[Problem] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    failed_step: str | None = None
    message: str = ""
    backup_dir: Path | None = None
    rolled_back: bool = False
    needs_restart: list[str] = field(default_factory=list)
    #: what the running controller said about the new configuration ("" when it was not asked)
    controller: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "dry_run": self.dry_run, "changed": self.changed, "removed": self.removed,
                "problems": [problem_dict(p) for p in self.problems],
                "steps": [asdict(s) for s in self.steps], "failed_step": self.failed_step, "message": self.message,
                "backup_dir": str(self.backup_dir) if self.backup_dir else None, "rolled_back": self.rolled_back,
                "needs_restart": self.needs_restart, "controller": self.controller}


_SECRET_LINE = re.compile(r"^(\s*(?:password|secret)\s*=\s*).*$", re.IGNORECASE)


def _mask_secrets(text: str) -> str:
    return "\n".join(_SECRET_LINE.sub(r"\1********", ln) for ln in text.split("\n"))


def unified_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """Reviewable diff of the etc dir, secrets masked (a diff ends up in terminals and tickets)."""
    chunks: list[str] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        chunks.extend(difflib.unified_diff(
            _mask_secrets(a or "").splitlines(keepends=True), _mask_secrets(b or "").splitlines(keepends=True),
            fromfile=f"a/{name}" if a is not None else "/dev/null", tofile=f"b/{name}" if b is not None else "/dev/null"))
        if chunks and not chunks[-1].endswith("\n"):
            chunks[-1] += "\n"
    return "".join(chunks)


def read_installed(etc_dir: Path, names: set[str]) -> dict[str, bytes]:
    """The bytes Asterisk runs now: the files we would write, plus every custom/ and sim/ file of ours."""
    out: dict[str, bytes] = {}
    for name in names:
        p = etc_dir / name
        if p.is_file():
            out[name] = p.read_bytes()
    for sub in ("custom", "sim"):
        d = etc_dir / sub
        if d.is_dir():
            for f in sorted(d.glob("*.conf")):
                out[f"{sub}/{f.name}"] = f.read_bytes()
    return out


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="surrogateescape")


def installed_seat_secrets(installed: Mapping[str, bytes]) -> dict[str, str]:
    """Seat passwords in the running pjsip.conf: kept when this shell lacks the env var (demo secrets are random)."""
    raw = installed.get("pjsip.conf")
    if raw is None:
        return {}
    conf = parse(_text(raw), "pjsip.conf")
    out = {}
    for sec in conf.sections:
        vals = conf.values(sec)
        if vals.get("type") == "auth" and vals.get("username") and vals.get("password"):
            out[vals["username"]] = vals["password"]
    return out


def resolve_seat_secrets(config: Config, installed: Mapping[str, bytes],
                         environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each seat's secret from env / secret_file; otherwise the one Asterisk already has (never a made-up one).

    A seat with neither is left out: `check_config` then reports it and apply refuses.
    """
    kept = installed_seat_secrets(installed)
    out: dict[str, str] = {}
    for ext, seat in config.seats.items():
        try:
            out[ext] = seat_secret(ext, seat, environ)
        except SecretMissing:
            if kept.get(ext):
                out[ext] = kept[ext]
    return out


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.restore")
    tmp.write_bytes(data)
    try:
        st = path.stat()
        os.chmod(tmp, st.st_mode & 0o777)
        os.chown(tmp, st.st_uid, st.st_gid)
    except OSError:
        pass
    os.replace(tmp, path)


def _restore(etc: Path, before: Mapping[str, bytes], written: list[str], removed: list[str]) -> None:
    """Put back the exact bytes that were there, and drop files that did not exist before."""
    for name in written + removed:
        if name in before:
            _write_bytes_atomic(etc / name, before[name])
        else:
            try:
                (etc / name).unlink()
            except FileNotFoundError:
                pass


async def apply_config(config: Config, sandbox: SandboxLike, ami: AmiLike | None, *, dry_run: bool,
                       custom_dir: Path = CUSTOM_DIR, environ: Mapping[str, str] | None = None,
                       with_sim: bool | None = None, config_file: str = "<config>", lines: Lines | None = None,
                       prompts_dir: Path | None = None, backup_root: Path | None = None,
                       ami_secret: str | None = None, ami_secrets: Mapping[str, str] | None = None,
                       reach_controller: bool = False,
                       snapshot_dir: Path | None = None, controller_timeout_s: float = 5.0,
                       prompts_build_dir: Path | None = None) -> ApplyResult:
    """Render → diff → check → back up → write atomically → reload → verify; on failure restore and reload.

    Nothing on disk changes unless check is clean. Reloads are AMI `Reload` of `pbx_config.so`,
    `app_queue.so`, `res_pjsip.so`, `features` and friends: none of them hangs up a live
    channel. `manager` is reloaded last and only when manager.conf changed, since it can
    drop the AMI link we reload through. `ami_secret`: the controller's AMI secret;
    `ami_secrets`: the apply and sim accounts' (both default to model.secrets).
    `with_sim` None keeps whatever the running dialplan has (the e2e simulation includes).
    `reach_controller`: then hand the configuration to the running controller too (admin/live_config.py) and
    fail, saying so, when it did not take it (`hotline apply` always does; the files stay applied).
    Prompts: a sandbox with `sounds_dir` and `install_sounds` (the real one) gets every prompt it cannot play
    yet built (into `prompts_build_dir`, default the state dir's prompts/) and installed before reloading.
    """
    etc = Path(sandbox.etc_dir)
    res = ApplyResult(ok=False, dry_run=dry_run)
    sounds = Path(sandbox.sounds_dir) / "hotline" if getattr(sandbox, "sounds_dir", None) is not None else None
    # ---------------------------------------------------------------- render
    try:
        current_ext = (etc / "extensions.conf").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        current_ext = ""
    if with_sim is None:
        with_sim = '#include "sim/*.conf"' in current_ext
    if ami_secret is None:
        ami_secret = read_ami_secret(config)
    if ami_secrets is None:
        ami_secrets = {acc: read_ami_secret(config, acc) for acc in ("apply", "sim") if acc == "apply" or with_sim}
    try:
        probe_names = set(render_files(config, {k: "x" for k in config.seats}, ami_secret=ami_secret,
                                       with_sim=with_sim, layout=sandbox.layout, custom_dir=custom_dir,
                                       ami_secrets=ami_secrets))
    except Exception as e:  # noqa: BLE001
        res.failed_step, res.message = "render", f"the configuration does not render: {type(e).__name__}: {e}"
        res.steps.append(StepResult("render", False, res.message))
        return res
    before = read_installed(etc, probe_names)
    secrets = resolve_seat_secrets(config, before, environ)
    # a seat with no secret anywhere renders with a placeholder only to be checked: check reports it, and
    # apply refuses before anything is written
    placeholders = {ext: "no-secret-never-installed" for ext in config.seats}
    files = render_files(config, {**placeholders, **secrets}, ami_secret=ami_secret, with_sim=with_sim,
                         layout=sandbox.layout, custom_dir=custom_dir, ami_secrets=ami_secrets)
    res.steps.append(StepResult("render", True, f"{len(files)} files"))
    # ---------------------------------------------------------------- diff
    old_text = {k: _text(v) for k, v in before.items()}
    res.changed = sorted(n for n, t in files.items() if old_text.get(n) != t)
    res.removed = sorted(n for n in before if n.startswith(("custom/", "sim/")) and n not in files)
    res.diff = unified_diff(old_text, {**{k: v for k, v in old_text.items() if k not in res.removed}, **files})
    res.steps.append(StepResult("diff", True, f"{len(res.changed)} changed, {len(res.removed)} removed"))
    # ---------------------------------------------------------------- check
    # the same check `hotline check` runs, in the same environment (env + the running Asterisk's secrets)
    res.problems = check_config(config, file=config_file, lines=lines, prompts_dir=prompts_dir,
                                custom_dir=custom_dir, environ=environ, files=files,
                                installed_secrets=installed_seat_secrets(before), sounds_dir=sounds)
    if res.problems:
        res.failed_step = "check"
        res.message = f"check found {len(res.problems)} problem(s); nothing was changed"
        res.steps.append(StepResult("check", False, res.message))
        return res
    res.steps.append(StepResult("check", True))
    cmds, res.needs_restart = reload_commands(res.changed + res.removed)
    if dry_run:
        res.ok = True
        res.message = ("dry run: nothing written; would reload " + ", ".join(f"`{c}`" for c in cmds)) if cmds \
            else "dry run: Asterisk already runs this configuration"
        return res
    # ---------------------------------------------------------------- prompts (before anything plays them)
    if sounds is not None and hasattr(sandbox, "install_sounds") and missing_prompts(config, sounds):
        if not await _install_prompts(res, config, sandbox, sounds, prompts_build_dir or state_dir() / "prompts"):
            return res
    if not res.changed and not res.removed:
        res.ok = True
        res.message = "Asterisk already runs this configuration; nothing to do"
        if reach_controller and ami is not None:
            await _reach_controller(res, config, ami, snapshot_dir or etc.parent / "applied", controller_timeout_s)
        return res
    if ami is None:
        res.failed_step, res.message = "connect", "no AMI connection: cannot reload; nothing was changed"
        return res
    # ---------------------------------------------------------------- backup
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    backup = (backup_root or etc.parent / "backups") / stamp
    try:
        # backups hold SIP and AMI secrets: root-only directories and files
        old_umask = os.umask(0o077)
        try:
            for name, data in before.items():
                (backup / name).parent.mkdir(parents=True, exist_ok=True)
                (backup / name).write_bytes(data)
            backup.mkdir(parents=True, exist_ok=True)
            os.chmod(backup.parent, 0o700)
        finally:
            os.umask(old_umask)
    except OSError as e:
        res.failed_step, res.message = "backup", f"cannot back up the current files to {backup}: {e}; nothing changed"
        res.steps.append(StepResult("backup", False, res.message))
        return res
    res.backup_dir = backup
    res.steps.append(StepResult("backup", True, str(backup)))
    log.info("apply_backup", dir=str(backup), files=len(before))
    # ---------------------------------------------------------------- write
    written: list[str] = []
    try:
        for name in res.changed:
            written.append(name)  # before the write: a half-done write is restored too
            sandbox.install_config({name: files[name]})
        for name in res.removed:
            (etc / name).unlink(missing_ok=True)
        res.steps.append(StepResult("write", True, f"{len(written)} written, {len(res.removed)} removed"))
    except Exception as e:  # noqa: BLE001 - any write failure is rolled back; Asterisk has not reloaded yet
        return await _rollback(res, "write", f"writing the files failed: {e}", etc, before, written,
                               res.removed, ami, cmds, reload_after=False)
    # ---------------------------------------------------------------- reload
    # reloading `manager` can drop the very link we reload and verify through: it runs after verification.
    manager_last = [c for c in cmds if c == MANAGER]
    for cmd in [c for c in cmds if c != MANAGER]:
        try:
            out = await reload_module(ami, cmd)
        except Exception as e:  # noqa: BLE001
            return await _rollback(res, f"reload: {cmd}", str(e), etc, before, written, res.removed, ami, cmds)
        res.steps.append(StepResult(f"reload: {cmd}", True, out.strip()[:200]))
        log.info("apply_reloaded", module=cmd)
    # ---------------------------------------------------------------- verify
    try:
        checks = await verify_loaded(config, ami)
    except Exception as e:  # noqa: BLE001
        return await _rollback(res, "verify", f"asking Asterisk what it loaded failed: {e}", etc, before, written,
                               res.removed, ami, cmds)
    res.steps.extend(checks)
    bad = [c for c in checks if not c.ok]
    if bad:
        return await _rollback(res, bad[0].name, "; ".join(c.detail for c in bad), etc, before, written,
                               res.removed, ami, cmds)
    for cmd in manager_last:
        try:
            await reload_module(ami, cmd)
            res.steps.append(StepResult(f"reload: {cmd}", True))
        except Exception as e:  # noqa: BLE001 - the link may drop as AMI users are reloaded; the files are right
            res.steps.append(StepResult(f"reload: {cmd}", True, f"AMI link dropped during the reload ({e}); "
                                        "reconnect with the new secret"))
    res.ok = True
    res.message = f"applied: {len(res.changed)} file(s) changed, reloaded " + ", ".join(f"`{c}`" for c in cmds)
    if res.needs_restart:
        res.message += f"; {', '.join(res.needs_restart)} take effect only at the next Asterisk restart"
    log.info("apply_done", changed=len(res.changed))
    if reach_controller:
        await _reach_controller(res, config, ami, snapshot_dir or etc.parent / "applied", controller_timeout_s)
    return res


async def _install_prompts(res: ApplyResult, config: Config, sandbox: Any, sounds: Path, build_dir: Path) -> bool:
    """Build the prompts the running Asterisk cannot play yet and install them where it plays them."""
    missing = missing_prompts(config, sounds)
    try:
        report = await asyncio.to_thread(build_prompts, config, RECORDINGS, build_dir)
        await asyncio.to_thread(sandbox.install_sounds, build_dir)
    except Exception as e:  # noqa: BLE001 - nothing is written yet: refuse with the reason
        report, why = None, f"{type(e).__name__}: {e}"
    still = missing_prompts(config, sounds)
    if report is None or still:
        failed = report.failed if report is not None else {}
        why = why if report is None else "; ".join(f"{k}: {failed.get(k, 'not built')}" for k in still)
        res.failed_step, res.message = "prompts", f"prompts cannot be played ({why}); nothing was changed"
        res.steps.append(StepResult("prompts", False, res.message))
        return False
    res.steps.append(StepResult("prompts", True, f"built and installed {len(missing)}: {', '.join(missing)}"))
    log.info("apply_prompts_installed", count=len(missing))
    return True


async def _reach_controller(res: ApplyResult, config: Config, ami: AmiLike, snapshot_dir: Path,
                            timeout_s: float) -> None:
    """The controller takes the configuration too, or apply fails and says a restart is needed."""
    try:
        ok, said = await notify_controller(ami, config, snapshot_dir, timeout_s)
    except Exception as e:  # noqa: BLE001 - the files are applied; the admin must hear the controller is not
        ok, said = False, f"controller not reached ({type(e).__name__}: {e}): restart it to take this configuration"
    res.controller = said
    res.steps.append(StepResult("controller", ok, said))
    res.message += f"; {said}"
    if not ok:
        res.ok = False
        res.failed_step = "controller"
    log.info("apply_controller", ok=ok, said=said)


async def _rollback(res: ApplyResult, step: str, why: str, etc: Path, before: Mapping[str, bytes],
                    written: list[str], removed: list[str], ami: AmiLike, cmds: list[str],
                    reload_after: bool = True) -> ApplyResult:
    res.failed_step = step
    res.steps.append(StepResult(step, False, why))
    log.warning("apply_failed_rolling_back", step=step, why=why)
    try:
        _restore(etc, before, written, removed)
    except OSError as e:
        res.message = (f"{step} failed ({why}), and restoring the previous files failed too: {e}. "
                       f"The backup is in {res.backup_dir}; copy it back into {etc} by hand")
        return res
    res.rolled_back = True
    again: list[str] = []
    if reload_after:
        for cmd in cmds:
            try:
                await reload_module(ami, cmd)
            except Exception as e:  # noqa: BLE001
                again.append(f"`{cmd}` ({e})")
    res.steps.append(StepResult("rollback", not again, "previous files restored" +
                                (f"; reload after restore failed: {', '.join(again)}" if again else "")))
    res.message = f"{step} failed: {why}. The previous files are back in place"
    res.message += (" and Asterisk reloaded them" if reload_after and not again else
                    "" if not reload_after else f", but reloading them failed: {', '.join(again)}; reload those by hand "
                    "(`asterisk -rx 'module reload MODULE'`)")
    return res


def write_rendered(files: Mapping[str, str], out: Path) -> list[Path]:
    """`hotline render --out DIR`: the files for review.

    They hold the AMI secrets and seat passwords: every file is written 0600 and every
    folder 0700 (an existing DIR and files already there are tightened too), never
    readable in between.
    """
    written = []
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    for name, text in sorted(files.items()):
        p = out / name
        if p.parent != out:
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(p.parent, 0o700)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file left by an earlier, looser render
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        written.append(p)
    return written
