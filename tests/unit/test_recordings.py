"""Recording retention: the pure rule (ticketbridge/retention.py), the store's marking on SQLite and
PostgreSQL, the schema upgrade of an older store, and `hotline recordings purge` on real files."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hotline.cli import main
from hotline.cli_recordings import purge
from model.loading import load_config
from tests.conftest import PG_URL, require
from ticketbridge.assembler import CallRecord
from ticketbridge.retention import FoundFile, TicketRecording, plan_purge, recording_name
from ticketbridge.store import MIGRATIONS_DIR, TicketStore

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC)
DAY = 86400.0


# --------------------------------------------------------------------------- the pure rule


def test_recording_names_never_leave_the_monitor_dir() -> None:
    m = "/var/spool/asterisk/monitor"
    assert recording_name("hotline/20260303/1.wav", m) == "hotline/20260303/1.wav"
    assert recording_name("/var/spool/asterisk/monitor/hotline/a.wav", m) == "hotline/a.wav"
    assert recording_name("hotline/../hotline/a.wav", m) == "hotline/a.wav"
    for bad in ("../a.wav", "hotline/../../a.wav", "/etc/passwd", "/var/spool/asterisk/monitor-x/a.wav",
                "/var/spool/asterisk/monitor", "", ".", ".."):
        assert recording_name(bad, m) is None, bad


def test_plan_chooses_old_calls_and_old_unnamed_files_only() -> None:
    before = NOW - dt.timedelta(days=30)
    old, new = NOW - dt.timedelta(days=40), NOW - dt.timedelta(days=2)
    tickets = [TicketRecording("1", "hotline/a/1.wav", old), TicketRecording("2", "hotline/a/2.wav", old),
               TicketRecording("3", "hotline/b/3.wav", new), TicketRecording("4", "../../etc/x", old)]
    files = [FoundFile("hotline/a/1.wav", old.timestamp()),
             FoundFile("hotline/b/3.wav", old.timestamp()),      # old mtime, but a recent call names it
             FoundFile("hotline/20250701/orphan.wav", old.timestamp()),
             FoundFile("voicemail/default/1234/INBOX/msg0000.wav", old.timestamp()),  # not a call recording
             FoundFile("hotline/notes.txt", old.timestamp()),
             FoundFile("hotline/c/held.wav", old.timestamp()),   # named by a recent ticket (in_use)
             FoundFile("hotline/c/fresh.wav", new.timestamp())]
    plan = plan_purge(tickets, files, monitor_dir="/m", before=before, in_use=["hotline/c/held.wav"])
    assert [(t.ticket_no, t.name, t.exists) for t in plan.tickets] == [
        ("1", "hotline/a/1.wav", True), ("2", "hotline/a/2.wav", False)]
    # only files shaped like a call recording (hotline/YYYYMMDD/<linkedid>.wav) are ever orphans
    assert plan.orphans == ("hotline/20250701/orphan.wav",)
    assert plan.files == ("hotline/a/1.wav", "hotline/20250701/orphan.wav")
    assert [(r.ticket_no, r.recording) for r in plan.refused] == [("4", "../../etc/x")]


# --------------------------------------------------------------------------- stores


@pytest.fixture(params=["sqlite", "pg"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TicketStore]:
    cfg = load_config(SHIPPED)
    schema = f"r_{uuid.uuid4().hex[:12]}"
    options: dict[str, Any] = {}
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/tickets.db"
    else:
        url = PG_URL
        admin = create_async_engine(PG_URL, connect_args={"timeout": 3})
        try:
            async with admin.begin() as c:
                await c.execute(text(f'CREATE SCHEMA "{schema}"'))
        except Exception as e:  # noqa: BLE001
            require(False, f"PostgreSQL unreachable at {PG_URL}: {e}")
        finally:
            await admin.dispose()
        options = {"connect_args": {"server_settings": {"search_path": schema}}}
    st = TicketStore(url, cfg, engine_options=options)
    await st.open()
    try:
        yield st
    finally:
        await st.close()
        if request.param == "pg":
            admin = create_async_engine(PG_URL)
            async with admin.begin() as c:
                await c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await admin.dispose()


def rec(linkedid: str, age_days: float, recording: str | None) -> CallRecord:
    t0 = NOW.timestamp() - age_days * DAY
    return CallRecord(linkedid=linkedid, caller="13800138000", dialed="12345", queue="general", agent="seat1001",
                      outcome="answered", answered_at=t0 + 10, started_at=t0, ended_at=t0 + 60, talk_s=50.0,
                      recording=recording)


def put(root: Path, name: str, age_days: float) -> Path:
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"RIFF....WAVE")
    t = NOW.timestamp() - age_days * DAY
    os.utime(p, (t, t))
    return p


async def world(store: TicketStore, tmp_path: Path) -> dict[str, Any]:
    """Monitor dir with: an old call's file, an old call whose file is gone, a recent call's file, an old
    unnamed file, a ticket naming a file outside the dir, and that outside file."""
    root = tmp_path / "monitor"
    root.mkdir()
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"keep me")
    os.utime(outside, (0, 0))
    old = (await store.save_call(rec("L.old", 200, "hotline/20250801/L.old.wav"))).ticket_no
    gone = (await store.save_call(rec("L.gone", 190, "hotline/20250811/L.gone.wav"))).ticket_no
    new = (await store.save_call(rec("L.new", 3, "hotline/20260301/L.new.wav"))).ticket_no
    evil = (await store.save_call(rec("L.evil", 200, "../outside.wav"))).ticket_no
    none = (await store.save_call(rec("L.none", 200, None))).ticket_no
    files = {"old": put(root, "hotline/20250801/L.old.wav", 200), "new": put(root, "hotline/20260301/L.new.wav", 3),
             "orphan": put(root, "hotline/20250701/lost.wav", 250)}
    return dict(root=root, outside=outside, old=old, gone=gone, new=new, evil=evil, none=none, files=files)


async def test_purge_deletes_old_marks_tickets_keeps_new_and_outside(store: TicketStore, tmp_path: Path) -> None:
    w = await world(store, tmp_path)
    done = await purge(store, w["root"], 180, actor="retention:test")
    assert not w["files"]["old"].exists() and not w["files"]["orphan"].exists()
    assert w["files"]["new"].exists() and w["outside"].read_bytes() == b"keep me"
    assert not (w["root"] / "hotline/20250801").exists()      # emptied day folders go
    assert (w["root"] / "hotline/20260301").is_dir()
    assert done.marked == 2 and not done.failed
    assert [r.ticket_no for r in done.plan.refused] == [w["evil"]]
    for key in ("old", "gone"):                                   # a missing file is still marked
        t = await store.get_ticket(w[key])
        assert t is not None and t.recording_purged_at is not None and t.recording.endswith(".wav")
        hist = [h for h in await store.history(w[key]) if h.field == "recording"]
        assert len(hist) == 1 and hist[0].to_value == "purged" and hist[0].actor == "retention:test"
        assert [o.payload["event"] for o in await store.outbox_for(w[key])][-1] == "recording_purged"
        assert (await store.outbox_for(w[key]))[-1].payload["recording_purged_at"] is not None
    for key in ("new", "evil", "none"):
        t = await store.get_ticket(w[key])
        assert t is not None and t.recording_purged_at is None
    again = await purge(store, w["root"], 180)                     # idempotent: nothing left to do
    assert again.marked == 0 and again.plan.files == ()


async def test_dry_run_changes_nothing(store: TicketStore, tmp_path: Path) -> None:
    w = await world(store, tmp_path)
    versions = {k: (await store.get_ticket(w[k])).version for k in ("old", "gone")}  # type: ignore[union-attr]
    done = await purge(store, w["root"], 180, dry_run=True)
    assert done.marked == 2 and set(done.plan.files) == {"hotline/20250801/L.old.wav", "hotline/20250701/lost.wav"}
    assert all(p.exists() for p in w["files"].values())
    for k in ("old", "gone"):
        t = await store.get_ticket(w[k])
        assert t is not None and t.recording_purged_at is None and t.version == versions[k]


async def test_a_link_out_of_the_dir_is_never_followed(store: TicketStore, tmp_path: Path) -> None:
    root = tmp_path / "monitor"
    (root / "hotline").mkdir(parents=True)
    target_dir = tmp_path / "elsewhere"
    target_dir.mkdir()
    victim = put(target_dir, "L.x.wav", 300)
    (root / "hotline" / "day").symlink_to(target_dir)               # a folder link inside the dir
    no = (await store.save_call(rec("L.x", 300, "hotline/day/L.x.wav"))).ticket_no
    done = await purge(store, root, 30)
    assert victim.exists() and "hotline/day/L.x.wav" in done.failed
    t = await store.get_ticket(no)
    assert t is not None and t.recording_purged_at is None


async def test_an_older_store_gains_the_column_on_open(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    db = tmp_path / "old.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")

    def to_0001(conn: Any) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001_initial")

    async with engine.begin() as c:
        await c.run_sync(to_0001)
        cols = [r[1] for r in (await c.execute(text("PRAGMA table_info(tickets)"))).all()]
        assert "recording_purged_at" not in cols
    await engine.dispose()
    st = TicketStore(f"sqlite+aiosqlite:///{db}", load_config(SHIPPED))
    await st.open()
    try:
        no = (await st.save_call(rec("L.m", 200, "hotline/x/L.m.wav"))).ticket_no
        assert await st.mark_recording_purged([no], "t", "n") == 1
        t = await st.get_ticket(no)
        assert t is not None and t.recording_purged_at is not None
    finally:
        await st.close()


# --------------------------------------------------------------------------- the command


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["recordings", "purge", *args], catch_exceptions=False)


def test_command_purges_with_config_default_and_dry_run_json(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/tickets.db"

    async def setup() -> dict[str, Any]:
        st = TicketStore(url, load_config(SHIPPED))
        await st.open()
        try:
            return await world(st, tmp_path)
        finally:
            await st.close()

    w = asyncio.run(setup())
    common = ["--store", url, "--dir", str(w["root"]), "-c", str(SHIPPED)]
    r = _cli(*common, "--dry-run", "--json")                       # default days: recording.retention_days (180)
    out = json.loads(r.stdout)
    assert out["dry_run"] and out["older_than_days"] == load_config(SHIPPED).recording.retention_days == 180
    assert {t["file"] for t in out["tickets"]} == {"deleted", "missing"} and out["unnamed_files"]
    assert r.exit_code == 1 and out["refused"][0]["recording"] == "../outside.wav"
    assert w["files"]["old"].exists()
    r = _cli(*common, "--older-than", "100")
    assert r.exit_code == 1, r.output  # the ticket naming a file outside the dir is reported
    assert "deleted 1 recording(s) named by tickets and 1 file(s)" in r.stdout and "marked 2 ticket(s)" in r.stdout
    assert not w["files"]["old"].exists() and w["files"]["new"].exists() and w["outside"].exists()
    r = CliRunner().invoke(main, ["tickets", "show", w["old"], "--store", url, "-c", str(SHIPPED)])
    assert "recording_purged_at" in r.stdout and "hotline/20250801/L.old.wav" in r.stdout


def test_command_without_a_retention_period_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "h.yaml"
    cfg.write_text(SHIPPED.read_text(encoding="utf-8").replace("retention_days: 180", "retention_days: null"),
                   encoding="utf-8")
    r = CliRunner().invoke(main, ["recordings", "purge", "-c", str(cfg), "--store",
                                  f"sqlite+aiosqlite:///{tmp_path}/t.db", "--dir", str(tmp_path)])
    assert r.exit_code == 2 and "--older-than" in r.output
