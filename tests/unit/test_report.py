"""Issue 13 item 5: `hotline report --month` — the HTML a supervisor forwards (admin/report.py, and the CLI)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from html import escape
import xml.etree.ElementTree as ET
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from admin.report import month_bounds, monthly_report
from hotline.cli import main
from model.loading import load_config
from ticketbridge import closure
from ticketbridge.assembler import CallRecord
from ticketbridge.store import TicketStore

SHANGHAI = ZoneInfo("Asia/Shanghai")
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


def test_month_bounds_are_the_centers_month() -> None:
    lo, hi = month_bounds("2026-11", SHANGHAI)
    assert (lo.isoformat(), hi.isoformat()) == ("2026-11-01T00:00:00+08:00", "2026-12-01T00:00:00+08:00")
    assert month_bounds("2026-12", SHANGHAI)[1].isoformat() == "2027-01-01T00:00:00+08:00"
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("2026-13", SHANGHAI)


def test_the_report_has_every_figure_with_its_definition_four_charts_and_no_number() -> None:
    at = dt.datetime(2026, 11, 3, 10, 0, tzinfo=SHANGHAI)
    calls = [dict(ticket_no="1", created_at=at, queue="general", agent="1001", outcome="answered", dialed="12345",
                  category="<script>alert(1)</script>", survey_rating=2, survey_scale=5, queue_wait_s=5.0),
             dict(ticket_no="2", created_at=at + dt.timedelta(days=1), queue="general", agent=None,
                  outcome="abandoned_in_queue", dialed="12315", legacy_line="12315", category="咨询")]
    closing = [dict(ticket_no="1", created_at=at, caller="13912345678", agent="1001", queue="general",
                    dialed="12345", category="咨询", closed_at=at, deadline_at=at + dt.timedelta(hours=2),
                    revisited=False, revisit_out=None, closed_on_spot=True)]
    html = monthly_report("2026-11", calls, closing, center="某市", tz=SHANGHAI)
    assert "13912345678" not in html and "<script>" not in html and "&lt;script&gt;" in html
    for name, _ in closure.REPORT:
        if name in closure.DEFINITIONS:
            assert escape(closure.DEFINITIONS[name]) in html, name
    for label in ("接通率", "办结率", "按时办结率", "回访率", "回访满意率", "当场解答率", "重复来电率"):
        assert label in html
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(svgs) == 4
    for s in svgs:
        ET.fromstring(s)  # well-formed
    per_day = svgs[0]
    assert per_day.count("<rect") == 30  # one bar per day of November
    assert "03: 1" in per_day and "04: 1" in per_day
    assert "by queue" in html and "12315" in html


def test_the_cli_writes_the_report_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"

    async def fill() -> None:
        st = TicketStore(url, load_config(SHIPPED))
        await st.open()
        try:
            await st.save_call(CallRecord(linkedid="r.1", caller="13912345678", dialed="12345", agent="1001",
                                          queue="general", outcome="answered", category="咨询"))
        finally:
            await st.close()

    asyncio.run(fill())
    month = dt.datetime.now(SHANGHAI).strftime("%Y-%m")
    out = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["report", "--month", month, "--out", str(out), "--store", url],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "接通率" in html and "13912345678" not in html
    assert out.stat().st_mode & 0o777 == 0o640
    bad = CliRunner().invoke(main, ["report", "--month", "11-2026", "--store", url])
    assert bad.exit_code == 1 and "YYYY-MM" in bad.output
