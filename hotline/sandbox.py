"""Provision and run Asterisk 22 for the hotline: the machine's own, or a cached Debian-sid root filesystem.

Debian 12 has no `asterisk` package. When the machine has none, we build a sid root
filesystem once with mmdebstrap (about 40 s), cache it, and run Asterisk chrooted
into it. It shares the host's network, so AMI, PJSIP and FastAGI meet on loopback.
The mirror is read from this machine's own apt sources, never written in the repo.
"""

from __future__ import annotations

import filecmp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from hotline.service_user import SERVICE_USER, ServiceUserError, chown_tree, ensure_in_root, host_ids
from model.contract import CDR_FILE
from routing.dialplan import Layout

log = structlog.get_logger("hotline.sandbox")

CACHE = Path(os.environ.get("HOTLINE_CACHE", "/var/cache/hotline12345"))
ROOTFS = Path(os.environ.get("HOTLINE_ROOTFS", str(CACHE / "rootfs-sid")))
PACKAGES = "asterisk,asterisk-core-sounds-en-wav"


class SandboxError(Exception):
    """Asterisk cannot be provisioned or started; the message says exactly why and what to do."""


def apt_mirror() -> str:
    """The Debian mirror this machine already uses (deb822 or one-line sources)."""
    candidates = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for f in candidates:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if "security" not in uri:
                        return uri.rstrip("/")
            if line.startswith("deb ") and "security" not in line:
                parts = [p for p in line.split() if not p.startswith("[")]
                if len(parts) >= 2:
                    return parts[1].rstrip("/")
    raise SandboxError("no Debian mirror found in /etc/apt/sources.list{,.d}: cannot build the Asterisk root filesystem")


def port_in_use(host: str, port: int, udp: bool = False) -> bool:
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Sandbox:
    """One Asterisk instance: where it lives and how to drive it."""

    root: Path  # "/" for a system Asterisk, else the chroot
    layout: Layout
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038

    # ------------------------------------------------------------------ discovery / build
    @classmethod
    def discover(cls, *, ami_host: str = "127.0.0.1", ami_port: int = 5038, build: bool = True,
                 instance: str | None = None) -> "Sandbox":
        """`instance` (or $HOTLINE_INSTANCE) runs a separate Asterisk beside the main one."""
        inst = instance if instance is not None else os.environ.get("HOTLINE_INSTANCE", "")
        system = shutil.which("asterisk") or (Path("/usr/sbin/asterisk").exists() and "/usr/sbin/asterisk")
        if system and not os.environ.get("HOTLINE_FORCE_ROOTFS"):
            return cls(Path("/"), _layout_for(Path("/")).for_instance(inst), ami_host, ami_port)
        if not (ROOTFS / "usr/sbin/asterisk").exists():
            if not build:
                raise SandboxError(f"no Asterisk: neither a system asterisk nor a root filesystem at {ROOTFS}")
            build_rootfs(ROOTFS)
        return cls(ROOTFS, _layout_for(ROOTFS).for_instance(inst), ami_host, ami_port)

    @property
    def chrooted(self) -> bool:
        return self.root != Path("/")

    def host_path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    @property
    def etc_dir(self) -> Path:
        return self.host_path(self.layout.etc)

    @property
    def sounds_dir(self) -> Path:
        return self.host_path("/usr/share/asterisk/sounds")

    @property
    def log_dir(self) -> Path:
        return self.host_path(self.layout.log)

    @property
    def cdr_csv(self) -> Path:
        return self.log_dir / "cdr-custom" / CDR_FILE

    @property
    def user(self) -> str:
        """The account Asterisk runs as: our own system user in the chroot (hotline/service_user.py),
        the package's `asterisk` for a system Asterisk."""
        return SERVICE_USER if self.chrooted else "asterisk"

    def _uid_gid(self) -> tuple[int, int]:
        if self.chrooted:
            if not (self.root / "etc/passwd").exists():
                raise SandboxError(f"{self.root}/etc/passwd is missing: the root filesystem is damaged; delete it")
            try:
                uid, gid = host_ids(SERVICE_USER)
                ensure_in_root(self.root, SERVICE_USER, uid, gid)
            except ServiceUserError as e:
                raise SandboxError(f"Asterisk's account: {e}") from None
            return uid, gid
        try:
            pw = pwd.getpwnam("asterisk")
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            return os.getuid(), os.getgid()

    # ------------------------------------------------------------------ files
    def install_config(self, files: dict[str, str]) -> None:
        """Write rendered files atomically into Asterisk's etc dir, owned by the asterisk user."""
        uid, gid = self._uid_gid()
        etc = self.etc_dir
        etc.mkdir(parents=True, exist_ok=True)
        os.chown(etc, uid, gid)
        for name, text in files.items():
            target = etc / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chown(target.parent, uid, gid)
            tmp = target.with_name(f".{target.name}.tmp")
            # created 0600: pjsip.conf and manager.conf hold secrets, never readable in between
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chown(tmp, uid, gid)
            os.chmod(tmp, 0o640)
            os.replace(tmp, target)

    def remove_stale(self, keep: set[str]) -> None:
        """Drop files of ours that the new render no longer has (e.g. sim/ when leaving test mode)."""
        for sub in ("sim", "custom"):
            d = self.etc_dir / sub
            if d.is_dir():
                for f in d.glob("*.conf"):
                    if f"{sub}/{f.name}" not in keep:
                        f.unlink()

    def install_sounds(self, built: Path) -> None:
        """Copy built prompt audio under sounds/hotline (and Mandarin digits under sounds/zh/digits).

        The sounds are shared by every instance in this root filesystem, and another Asterisk may be playing
        a file at this moment (parallel test workers, the demo beside a test run): nothing is removed, a file
        already the same is left alone, and a changed one is written beside it and renamed over it, so a
        player opens either the old file or the new one, never a half-written one."""
        uid, gid = self._uid_gid()
        dest = self.sounds_dir / "hotline"
        dest.mkdir(parents=True, exist_ok=True)
        os.chown(dest, uid, gid)
        for src in sorted(built.rglob("*")):
            if src.name.endswith(".tmp"):  # another process's file being written
                continue
            target = dest / src.relative_to(built)
            if src.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                os.chown(target, uid, gid)
            else:
                _install_file(src, target, uid, gid)
        digits = built / "digits"
        if digits.is_dir():
            zh = self.sounds_dir / "zh" / "digits"
            zh.mkdir(parents=True, exist_ok=True)
            for f in digits.glob("*.wav"):
                _install_file(f, zh / f.name, None, None)

    # ------------------------------------------------------------------ process
    def pid(self) -> int | None:
        pidfile = self.host_path(self.layout.run) / "asterisk.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def _prepare_runtime(self) -> None:
        uid, gid = self._uid_gid()
        if self.chrooted:
            proc = self.root / "proc"
            proc.mkdir(exist_ok=True)
            if not os.path.ismount(proc):
                r = subprocess.run(["mount", "-t", "proc", "proc", str(proc)], capture_output=True, text=True)
                if r.returncode != 0:
                    raise SandboxError(f"cannot mount /proc in {self.root}: {r.stderr.strip()} (run as root)")
            # name resolution for PJSIP inside the chroot
            for f in ("etc/hosts", "etc/resolv.conf"):
                if Path("/" + f).exists():
                    shutil.copy2("/" + f, self.root / f)
        own = (self.layout.run, self.layout.log, self.layout.db, self.layout.spool, f"{self.layout.spool}/monitor")
        # shared by every instance in one root filesystem: Asterisk only reads them (its astdb, logs and
        # spool are the instance's own), so another instance's owner is left alone
        shared = ("/var/lib/asterisk", "/var/cache/asterisk")
        for inside in (*own, *shared):
            d = self.host_path(inside)
            d.mkdir(parents=True, exist_ok=True)
            if inside in own or not self.chrooted:
                os.chown(d, uid, gid)
        if self.chrooted:  # files an older version left to the root filesystem's `asterisk` uid
            for inside in (self.layout.log, self.layout.db, self.layout.spool, self.layout.etc):
                chown_tree(self.host_path(inside), uid, gid)
        (self.log_dir / "cdr-custom").mkdir(parents=True, exist_ok=True)
        os.chown(self.log_dir / "cdr-custom", uid, gid)
        # logs, CDR, recordings: personal data, for Asterisk (and root) only
        for d in (self.log_dir, self.log_dir / "cdr-custom", self.host_path(self.layout.spool),
                  self.host_path(f"{self.layout.spool}/monitor")):
            os.chmod(d, 0o750)
        for f in [*self.log_dir.rglob("*"), *self.host_path(self.layout.spool).rglob("*")]:
            if not f.is_symlink() and f.stat().st_mode & 0o007:
                os.chmod(f, f.stat().st_mode & 0o770)  # left by an older, looser version (or the package)

    def start(self, *, timeout: float = 30.0, sip_port: int | None = 5060) -> int:
        """Start Asterisk and wait until AMI answers. Says exactly why when it cannot."""
        if os.geteuid() != 0:
            raise SandboxError("Asterisk must be started as root (it chroots and drops to the asterisk user): run with sudo")
        if self.running():
            raise SandboxError(f"Asterisk is already running (pid {self.pid()}); `hotline asterisk stop` first")
        if port_in_use(self.ami_host, self.ami_port):
            raise SandboxError(f"AMI port {self.ami_host}:{self.ami_port} is taken by another program (`ss -ltnp`)")
        if sip_port and port_in_use("127.0.0.1", sip_port, udp=True):
            raise SandboxError(f"SIP port 127.0.0.1:{sip_port}/udp is taken by another program (`ss -lunp`)")
        if not (self.etc_dir / "asterisk.conf").exists():
            raise SandboxError(f"no rendered configuration in {self.etc_dir}: render it first")
        self._prepare_runtime()
        conf = f"{self.layout.etc}/asterisk.conf"
        cmd = ["/usr/sbin/asterisk", "-U", self.user, "-G", self.user, "-C", conf, "-f", "-n"]
        if self.chrooted:
            cmd = ["chroot", str(self.root), *cmd]
        fd = os.open(self.log_dir / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        os.fchmod(fd, 0o640)
        out = os.fdopen(fd, "ab")
        # recordings and logs hold personal data: nothing Asterisk writes is world-readable
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=lambda: os.umask(0o027))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = _tail(self.log_dir / "console.log")
                raise SandboxError(f"Asterisk exited with code {proc.returncode} while starting:\n{tail}")
            if _ami_banner(self.ami_host, self.ami_port):
                if self._fully_booted(deadline):
                    log.info("asterisk_started", pid=proc.pid, root=str(self.root))
                    return proc.pid
            time.sleep(0.2)
        proc.kill()
        raise SandboxError(f"Asterisk did not answer on AMI {self.ami_host}:{self.ami_port} within {timeout:.0f} s:\n"
                           + _tail(self.log_dir / "console.log"))

    def _fully_booted(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            out = self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
            if "fully booted" in out.lower():
                return True
            time.sleep(0.2)
        return False

    def cli(self, command: str, timeout: float = 10.0) -> str:
        """Run one Asterisk CLI command through the control socket."""
        cmd = ["/usr/sbin/asterisk", "-C", f"{self.layout.etc}/asterisk.conf", "-rx", command]
        if self.chrooted:
            cmd = ["chroot", str(self.root), *cmd]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return ""
        return r.stdout + r.stderr

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop gracefully (core stop gracefully), then by signal. True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        self.cli("core stop now", timeout=5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pid, 9)
            except OSError:
                pass
        # the kernel lets go of the AMI listener a moment after the process: a start right after a
        # stop (a restart) would find the port taken
        while port_in_use(self.ami_host, self.ami_port) and time.monotonic() < deadline + 5:
            time.sleep(0.1)
        log.info("asterisk_stopped", pid=pid)
        return True


def _install_file(src: Path, target: Path, uid: int | None, gid: int | None) -> None:
    """Put a copy of `src` at `target` whole (written beside it, then renamed over it); one already the same
    is left as it is. `uid`/`gid`: its owner (None: as the copy is made)."""
    try:
        same = target.stat().st_size == src.stat().st_size and filecmp.cmp(src, target, shallow=False)
    except OSError:
        same = False
    if not same:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copy2(src, tmp_name)
            if uid is not None and gid is not None:
                os.chown(tmp_name, uid, gid)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    elif uid is not None and gid is not None and (target.stat().st_uid, target.stat().st_gid) != (uid, gid):
        os.chown(target, uid, gid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours still "exists"
        status = Path(f"/proc/{pid}/status").read_text()
        return "State:\tZ" not in status
    except OSError:
        return False


def _layout_for(root: Path) -> Layout:
    moddir = "/usr/lib/x86_64-linux-gnu/asterisk/modules"
    for cand in sorted((root / "usr/lib").glob("*/asterisk/modules")):
        moddir = "/" + str(cand.relative_to(root))
    if not (root / moddir.lstrip("/")).exists() and (root / "usr/lib/asterisk/modules").exists():
        moddir = "/usr/lib/asterisk/modules"
    if root == Path("/"):
        return Layout(etc="/etc/hotline12345/asterisk", run="/run/hotline12345-asterisk",
                      log="/var/log/hotline12345-asterisk", moddir=moddir, db="/var/lib/hotline12345-asterisk",
                      spool="/var/spool/hotline12345-asterisk")
    return Layout(moddir=moddir)


def _ami_banner(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.settimeout(1.0)
            return s.recv(64).startswith(b"Asterisk Call Manager")
    except OSError:
        return False


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def build_rootfs(target: Path) -> None:
    """Build the Debian-sid root filesystem with Asterisk 22 (cached; about 40 s)."""
    if os.geteuid() != 0:
        raise SandboxError("building the Asterisk root filesystem needs root (mmdebstrap, chroot): run with sudo")
    if not shutil.which("mmdebstrap"):
        raise SandboxError("mmdebstrap is missing: apt-get install mmdebstrap")
    mirror = apt_mirror()
    tmp = target.with_name(target.name + ".building")
    if tmp.exists():
        shutil.rmtree(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("asterisk_rootfs_building", target=str(target))
    cmd = ["mmdebstrap", "--variant=apt", f"--include={PACKAGES}",
           "--aptopt=Acquire::Check-Valid-Until \"false\"", "sid", str(tmp), f"deb {mirror} sid main"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not (tmp / "usr/sbin/asterisk").exists():
        raise SandboxError("building the Asterisk root filesystem failed:\n" + "\n".join(r.stderr.splitlines()[-15:]))
    tmp.rename(target)
    log.info("asterisk_rootfs_built", target=str(target))
