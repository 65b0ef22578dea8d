"""Deadlines that mean something: `hotline tickets urgent NO` and `hotline tickets due`.

Thin wrappers over the store (`TicketStore.set_urgent`, `TicketStore.due_tickets`), added to the
`hotline tickets` group (hotline/cli_tickets.py; `register`) with its store plumbing.
`urgent` writes (history row + outbox event `urgent_changed`); `due` only reads.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from hotline.cli_base import fail
from hotline.cli_tickets import _echo_json, _plain, json_option, store_options, with_store
from ticketbridge.lifecycle import parse_state
from ticketbridge.store import TicketNotFound


@click.command("urgent")
@click.argument("ticket_no")
@click.option("--off", is_flag=True, help="no longer urgent (the category's deadline again)")
@click.option("--actor", required=True, help="who decides (e.g. agent:1001, supervisor:li)")
@click.option("--note", default=None, help="why (kept in the history)")
@store_options
def urgent_cmd(config_path: str | None, store_url: str | None, ticket_no: str, off: bool, actor: str,
               note: str | None) -> None:
    """Mark a ticket urgent (紧急): its deadline becomes deadlines.urgent (2 h by default) from acceptance."""

    @with_store
    async def run(store: Any, cfg: Any) -> None:
        try:
            t = await store.set_urgent(ticket_no, not off, actor, note)
        except TicketNotFound:
            fail(f"no ticket {ticket_no}")
        click.echo(f"ticket {t.ticket_no} is {'urgent' if t.urgent else 'not urgent'}; "
                   f"deadline {_plain(t.deadline_at)}")

    run(config_path=config_path, store_url=store_url)


@click.command("due")
@click.option("--within", "within_h", type=click.FloatRange(min=0, min_open=True), default=None,
              help="hours ahead (default: deadline_rules.due_within_h)")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@store_options
def due_cmd(config_path: str | None, store_url: str | None, within_h: float | None, limit: int,
            as_json: bool) -> None:
    """Open tickets (before 办结) whose deadline is near, or past; soonest first."""

    @with_store
    async def run(store: Any, cfg: Any) -> None:
        hours = within_h if within_h is not None else cfg.deadline_rules.due_within_h
        now = dt.datetime.now(dt.timezone.utc)
        rows = await store.due_tickets(dt.timedelta(hours=hours), limit=limit)
        items = [{"ticket_no": t.ticket_no, "state": t.state, "label": parse_state(t.state).label,
                  "urgent": t.urgent, "category": t.category, "deadline_at": _plain(t.deadline_at),
                  "hours_left": round((t.deadline_at - now).total_seconds() / 3600, 1),
                  "overdue": t.deadline_at < now} for t in rows]
        if as_json:
            _echo_json(items)
            return
        if not items:
            click.echo(f"no open ticket is due within {hours:g} h")
            return
        for i in items:
            left = f"OVERDUE {-i['hours_left']:g} h" if i["overdue"] else f"{i['hours_left']:g} h left"
            click.echo(f"{i['ticket_no']}  {i['deadline_at']}  {left:<18} {i['state']} ({i['label']})"
                       f"{'  紧急' if i['urgent'] else ''}  {i['category'] or ''}")

    run(config_path=config_path, store_url=store_url)


def register(tickets_group: click.Group) -> None:
    tickets_group.add_command(urgent_cmd)
    tickets_group.add_command(due_cmd)
