"""Issue 14 item 14: the chrooted Asterisk's uid/gid are its own, explicit and checked on both sides."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from tests.conftest import require
from hotline.service_user import ServiceUserError, check_ids, chown_tree, ensure_in_root, with_entry

PASSWD = "root:x:0:0:root:/root:/bin/bash\nasterisk:x:101:101:Asterisk PBX daemon:/var/lib/asterisk:/usr/sbin/nologin\n"


def test_the_user_is_added_once_with_the_hosts_id() -> None:
    line = "hotline-asterisk:x:990:990::/:/usr/sbin/nologin"
    once = with_entry(PASSWD, "hotline-asterisk", 990, line)
    assert once.endswith(line + "\n") and with_entry(once, "hotline-asterisk", 990, line) == once


def test_an_id_held_by_another_account_in_the_root_filesystem_is_refused() -> None:
    with pytest.raises(ServiceUserError, match="'asterisk'"):
        with_entry(PASSWD, "hotline-asterisk", 101, "hotline-asterisk:x:101:101::/:/usr/sbin/nologin")
    taken = PASSWD + "hotline-asterisk:x:990:990::/:/usr/sbin/nologin\n"
    with pytest.raises(ServiceUserError, match="990"):
        with_entry(taken, "hotline-asterisk", 991, "hotline-asterisk:x:991:991::/:/usr/sbin/nologin")


def test_a_uid_belonging_to_another_host_account_is_refused() -> None:
    """What happened here: the root filesystem's asterisk uid 101 is the host's postgres."""
    someone = pwd.getpwuid(0).pw_name  # root: surely not our service user
    with pytest.raises(ServiceUserError, match=f"host's '{someone}'"):
        check_ids(0, 0, "hotline-asterisk")
    with pytest.raises(ServiceUserError, match="nobody"):
        check_ids(4_000_000_000 - 7, 0, "hotline-asterisk")


def test_the_root_filesystem_gets_the_user_and_group(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(PASSWD)
    (tmp_path / "etc/group").write_text("root:x:0:\nasterisk:x:101:\n")
    ensure_in_root(tmp_path, "hotline-asterisk", 990, 991)
    assert "hotline-asterisk:x:990:991:" in (tmp_path / "etc/passwd").read_text()
    assert "hotline-asterisk:x:991:" in (tmp_path / "etc/group").read_text()
    assert "asterisk:x:101:101" in (tmp_path / "etc/passwd").read_text()  # the package's user is untouched


def test_files_left_to_the_old_uid_are_given_to_the_new_one(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "chown needs root")
    d = tmp_path / "spool"
    (d / "monitor").mkdir(parents=True)
    (d / "monitor" / "a.wav").write_bytes(b"x")
    (d / "link").symlink_to("/etc/passwd")
    for p in (d, d / "monitor", d / "monitor" / "a.wav"):
        os.chown(p, 101, 101)
    assert chown_tree(d, 4242, 4243) >= 3
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in (d, d / "monitor", d / "monitor" / "a.wav", d / "link")} \
        == {(4242, 4243)}
    assert Path("/etc/passwd").stat().st_uid == 0  # a link is never followed
    assert chown_tree(d, 4242, 4243) == 0
