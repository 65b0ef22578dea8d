"""The account the chrooted Asterisk runs as: a host system user of its own, with the same uid inside.

The Debian-sid root filesystem's `asterisk` user has whatever uid its packages got (101 in ours),
which on the host may belong to someone else entirely — here the host's `postgres`: that account
would own the hotline's configuration, secrets, CDR and recordings. So the chrooted Asterisk runs as
`hotline-asterisk`, a system user created on the host (`useradd --system`) and written into the
root filesystem with the same uid and gid; both are checked before anything is chowned to them, and
a uid or gid that names another account on either side is refused with the reason.
A system Asterisk (Debian's package) keeps its own `asterisk` user.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

SERVICE_USER = "hotline-asterisk"


class ServiceUserError(Exception):
    """The uid/gid for Asterisk belongs to another account, or the account cannot be made."""


def with_entry(text: str, name: str, ident: int, line: str) -> str:
    """`text` (an /etc/passwd or /etc/group) holding `line` for `name` with id `ident` (third field).

    Unchanged when it is there already; raises ServiceUserError when another name holds `ident`, or
    `name` has another id."""
    for row in text.splitlines():
        parts = row.split(":")
        if len(parts) < 3 or not parts[2].isdigit():
            continue
        if parts[0] == name and int(parts[2]) != ident:
            raise ServiceUserError(f"{name} has id {parts[2]} in the root filesystem, {ident} on the host")
        if parts[0] != name and int(parts[2]) == ident:
            raise ServiceUserError(f"id {ident} of the host's {name} is {parts[0]!r} in the root filesystem")
        if parts[0] == name:
            return text
    return text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"


def host_ids(name: str = SERVICE_USER, *, create: bool = True) -> tuple[int, int]:
    """The host's uid and gid of `name` (created as a system user with its own group when missing),
    checked: the uid's account and the gid's group are `name` itself."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if not create:
            raise ServiceUserError(f"no user {name} on this host") from None
        r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", "--comment", "hotline12345 Asterisk", name],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise ServiceUserError(f"cannot create the system user {name}: {r.stderr.strip()} (run as root)")
        pw = pwd.getpwnam(name)
    check_ids(pw.pw_uid, pw.pw_gid, name)
    return pw.pw_uid, pw.pw_gid


def check_ids(uid: int, gid: int, name: str = SERVICE_USER) -> None:
    """Refuse a uid or gid that belongs to another host account or group than `name`."""
    try:
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        owner = None
    if owner != name:
        raise ServiceUserError(f"uid {uid} is the host's {owner or 'nobody'!r}, not {name}: files Asterisk "
                               f"writes (config, secrets, CDR, recordings) would belong to that account")
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = None
    if group != name:
        raise ServiceUserError(f"gid {gid} is the host's group {group or 'none'!r}, not {name}")


def ensure_in_root(root: Path, name: str, uid: int, gid: int) -> None:
    """Give the root filesystem `name` with the host's uid and gid (atomically; no change when there)."""
    for rel, ident, line in (("etc/group", gid, f"{name}:x:{gid}:"),
                             ("etc/passwd", uid, f"{name}:x:{uid}:{gid}:hotline12345 Asterisk:/var/lib/asterisk:"
                                                 "/usr/sbin/nologin")):
        path = root / rel
        text = path.read_text()
        new = with_entry(text, name, ident, line)
        if new != text:
            tmp = path.with_name(f".{path.name}.hotline")
            tmp.write_text(new)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)


def chown_tree(top: Path, uid: int, gid: int) -> int:
    """Give `top` and everything under it (not following links) to uid:gid; returns how many changed."""
    changed = 0
    for d, dirs, files in os.walk(top):
        for p in [Path(d), *(Path(d) / f for f in files), *(Path(d) / x for x in dirs if (Path(d) / x).is_symlink())]:
            st = p.lstat()
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.lchown(p, uid, gid)
                changed += 1
    return changed
