"""`hotline report --month 2026-11`: the monthly report as one HTML file a supervisor can forward.

Thin: reads the month's KPI rows from the store and writes what admin/report.py renders
(figures with their definitions, inline-SVG charts; no caller number) to `--out`
(default `report-<month>.html`), mode 0640.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from admin.report import month_bounds, monthly_report
from hotline.cli_base import EXIT_BAD, fail
from hotline.cli_tickets import store_options, with_store


@click.command("report")
@click.option("--month", required=True, metavar="YYYY-MM", help="the month (center's time zone), e.g. 2026-11")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the HTML file to write (default: report-<month>.html)")
@store_options
def report_cmd(config_path: str | None, store_url: str | None, month: str, out: Path | None) -> None:
    """Write the month's KPI report (HTML with charts; 办结率, 按时办结率, 回访率 … with definitions)."""

    @with_store
    async def run(store: Any, cfg: Any) -> str:
        tz = ZoneInfo(cfg.center.timezone)
        try:
            lo, hi = month_bounds(month, tz)
        except ValueError as e:
            fail(str(e), EXIT_BAD)
        calls = await store.kpi_rows(since=lo, until=hi)
        closing = await store.closure_rows(since=lo, until=hi)
        return monthly_report(month, calls, closing, center=cfg.center.name, tz=tz)

    html = run(config_path=config_path, store_url=store_url)
    path = out or Path(f"report-{month}.html")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(html)
    click.echo(f"wrote {path}")


def register(main: click.Group) -> None:
    main.add_command(report_cmd)
