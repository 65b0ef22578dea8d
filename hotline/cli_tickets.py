"""The supervisors' commands: `hotline tickets …` and `hotline kpi`.

Thin: reads options, calls the store / the KPI core / the callback dialer, prints.
Exit codes: 0 ok, 1 the thing asked for is wrong or failed (no such ticket, illegal
state move, callback not answered), 2 usage, 3 environment missing (store unreachable,
controller not running). No tracebacks reach a supervisor.

Access rule for personal data: caller numbers are masked (138******00) in every listing,
`show`, export and JSON unless `--show-numbers` is given; each use of `--show-numbers`
is written to the store's audit log (table audit_log: the real uid and its user name, the
command, what it asked, how many rows) before any number is shown — when it cannot be
written, nothing is shown — and logged (event `caller_numbers_shown`). Who may run these commands
at all is decided by who may read the store (the SQLite file's permissions, the
PostgreSQL role in the store URL) — give supervisors a read-only role plus INSERT on
audit_log; only `state`, `callback`, `outbox --retry` and `--show-numbers` (its audit row) write.

Why one module (≈580 lines): every `hotline tickets …` subcommand is a thin click wrapper sharing
the same store plumbing, number masking and the `--show-numbers` audit; splitting them would
scatter that one access rule over several files.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import getpass
import json
import os
import pwd
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
import structlog

from hotline.cli_base import EXIT_BAD, EXIT_ENV, fail, load, setup_logging
from hotline.control import ControllerNotRunning, ask, control_socket_path
from ticketbridge.transcript import transcript_dict, transcript_lines
from model.config import DEFAULT_TZ
from model.privacy import mask_number
from ticketbridge import agent_kpi, closure, kpi
from ticketbridge.callbacks import CallbackDialer, CallbackError
from ticketbridge.lifecycle import TRANSITIONS, IllegalTransition, parse_state
from ticketbridge.store import TicketNotFound, TicketStore, ticket_payload

log = structlog.get_logger("hotline.cli_tickets")

#: the center's time zone (center.timezone), set as soon as --config is read (an eager option)
_ZONE: ContextVar[ZoneInfo] = ContextVar("center_zone", default=ZoneInfo(DEFAULT_TZ))
T = TypeVar("T")

#: columns of `tickets list` / `tickets export --csv`
LIST_COLUMNS = ("ticket_no", "created_at", "state", "outcome", "caller", "dialed", "legacy_line", "category",
                "queue", "queue_wait_s", "agent", "talk_s", "survey_rating", "survey_scale", "handled_by",
                "callback_needed", "deadline_at", "linkedid")


def parse_when(value: str | None, *, end: bool = False) -> dt.datetime | None:
    """`2026-03-03` or `2026-03-03T08:00[+08:00]`; naive is Beijing time. A bare date as
    --until means the end of that day (so --since D --until D is the whole day D)."""
    if value is None:
        return None
    v = value.strip()
    try:
        if len(v) == 10:
            d = dt.date.fromisoformat(v)
            t = dt.datetime.combine(d, dt.time(), _ZONE.get())
            return t + dt.timedelta(days=1) if end else t
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM)") from None
    return t if t.tzinfo else t.replace(tzinfo=_ZONE.get())


async def _audit_numbers(store: Any, show: bool, what: str, asked: dict[str, Any], rows: int) -> None:
    """`--show-numbers` is written to the store's audit log (real uid, what was asked, how many rows)
    before any number is shown; when it cannot be written, nothing is shown."""
    if not show:
        return
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = ""
    try:
        await store.audit(what, asked, rows, uid=uid, user=user)
    except Exception as e:  # noqa: BLE001 - a read-only role, a broken database: refuse to show
        fail(f"Cannot record this --show-numbers in the audit log ({type(e).__name__}); numbers not shown.", EXIT_ENV)
    log.info("caller_numbers_shown", command=what, uid=uid, os_user=user, rows=rows)


#: a spreadsheet reads a cell starting with one of these as a formula (CSV injection): such cells are
#: written with a leading apostrophe, which spreadsheets show as text and hide
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: the export holds personal data: readable by its owner only
EXPORT_FILE_MODE = 0o600


def csv_cell(value: Any) -> Any:
    """One CSV cell: lists and dicts as JSON, text that a spreadsheet would evaluate made inert."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(CSV_FORMULA_START):
        return "'" + value
    return value


def _private_file(path: Path) -> Any:
    """Open `path` for writing, created (or tightened to) EXPORT_FILE_MODE; a symbolic link is refused."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, EXPORT_FILE_MODE)
    try:
        os.fchmod(fd, EXPORT_FILE_MODE)
        return os.fdopen(fd, "w", encoding="utf-8-sig", newline="")
    except BaseException:
        os.close(fd)
        raise


def _num(number: str | None, show: bool) -> str:
    return (number or "") if show else mask_number(number)


def _plain(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.astimezone(_ZONE.get()).isoformat(timespec="seconds")
    return v


def ticket_dict(t: Any, show_numbers: bool) -> dict[str, Any]:

    d = ticket_payload(t, "ticket")
    d.pop("event", None)
    d["caller"] = _num(t.caller, show_numbers)
    return d


# --------------------------------------------------------------------------- plumbing


def _store_url(config_path: str | None, store_url: str | None) -> tuple[str, Any]:
    cfg = load(config_path)
    return store_url or cfg.store.url, cfg


def _read_zone(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Eager --config callback: dates on the command line are in the center's zone, so read it first."""
    _ZONE.set(ZoneInfo(load(value).center.timezone))
    return value


def with_store(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Open the store (from --store or the config), run the coroutine, close; errors explained."""

    @wraps(fn)
    def wrapper(*args: Any, config_path: str | None = None, store_url: str | None = None, **kw: Any) -> T:

        url, cfg = _store_url(config_path, store_url)

        async def go() -> T:
            store = TicketStore(url, cfg)
            try:
                await store.open()
            except Exception as e:  # noqa: BLE001 - unreachable database, bad URL
                fail(f"Cannot open the ticket store: {type(e).__name__}: {e}", EXIT_ENV)
            try:
                return await fn(store, cfg, *args, **kw)
            finally:
                await store.close()

        return asyncio.run(go())

    return wrapper


def store_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--store", "store_url", default=None, metavar="URL",
                     help="SQLAlchemy URL of the ticket store (default: store.url of the config)")(f)
    return click.option("--config", "-c", "config_path", metavar="FILE", is_eager=True, callback=_read_zone,
                        help="hotline YAML (default: $HOTLINE_CONFIG or config/hotline.yaml)")(f)


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--state", default=None, help="lifecycle state (accepted or 受理, …)"),
        click.option("--outcome", default=None,
                     help="answered, abandoned_in_queue, ended_in_ivr, transferred, forwarded, retired, in_progress"),
        click.option("--caller", default=None, help="caller number (exact)"),
        click.option("--dialed", default=None, help="number dialed (12345 or a legacy line)"),
        click.option("--since", default=None, help="created at or after (YYYY-MM-DD[THH:MM], Beijing time)"),
        click.option("--until", default=None, help="created before this time; a bare date includes that day"),
        click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000)),
    ]):
        f = opt(f)
    return f


def _filters(state: str | None, outcome: str | None, caller: str | None, dialed: str | None,
             since: str | None, until: str | None) -> dict[str, Any]:
    if state is not None:

        try:
            parse_state(state)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--state") from None
    return dict(state=state, outcome=outcome, caller=caller, dialed=dialed, since=parse_when(since),
                until=parse_when(until, end=True))


show_numbers_option = click.option("--show-numbers", is_flag=True,
                                   help="print callers' numbers in full (logged; masked otherwise)")
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def _setup_logs() -> None:
    """Logs as JSON lines on stderr, so stdout is only the answer (pipeable, --json parseable)."""
    setup_logging(json_logs=True)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


# --------------------------------------------------------------------------- commands


def register(main: click.Group) -> None:
    from hotline import cli_agents  # the other supervisor group (agents' states)

    main.add_command(tickets)
    main.add_command(kpi_cmd)
    cli_agents.register(main)


@click.group()
def tickets() -> None:
    """Read and move tickets; missed-call callbacks; the outbox to the provincial platform."""
    _setup_logs()


@tickets.command("list")
@filter_options
@show_numbers_option
@json_option
@store_options
def list_cmd(config_path: str | None, store_url: str | None, state: str | None, outcome: str | None,
             caller: str | None, dialed: str | None, since: str | None, until: str | None, limit: int,
             show_numbers: bool, as_json: bool) -> None:
    """Tickets, newest first (caller numbers masked unless --show-numbers)."""
    filters = _filters(state, outcome, caller, dialed, since, until)

    @with_store
    async def run(store: Any, cfg: Any) -> None:
        rows = await store.list_tickets(limit=limit, **filters)
        await _audit_numbers(store, show_numbers, "tickets list", {**filters, "limit": limit}, len(rows))
        if as_json:
            _echo_json([ticket_dict(t, show_numbers) for t in rows])
            return
        if not rows:
            click.echo("no tickets")
            return
        click.echo(f"{'ticket':<13}{'created (Beijing)':<20}{'state':<12}{'outcome':<20}{'caller':<14}"
                   f"{'dialed':<8}{'queue':<10}{'wait':>6}  agent")
        for t in rows:
            created = t.created_at.astimezone(_ZONE.get()).strftime("%Y-%m-%d %H:%M:%S") if t.created_at else ""
            wait = f"{t.queue_wait_s:.0f}s" if t.queue_wait_s is not None else "-"
            click.echo(f"{t.ticket_no:<13}{created:<20}{t.state:<12}{t.outcome:<20}"
                       f"{_num(t.caller, show_numbers):<14}{t.dialed:<8}{(t.queue or '-'):<10}{wait:>6}  "
                       f"{t.agent or '-'}")

    run(config_path=config_path, store_url=store_url)


@tickets.command("show")
@click.argument("ticket_no")
@show_numbers_option
@json_option
@store_options
def show_cmd(config_path: str | None, store_url: str | None, ticket_no: str, show_numbers: bool,
             as_json: bool) -> None:
    """One ticket with its history, callback and outbox deliveries."""

    @with_store
    async def run(store: Any, cfg: Any) -> None:

        t = await store.get_ticket(ticket_no)
        if t is None:
            fail(f"no ticket {ticket_no}")
        hist = await store.history(ticket_no)
        cb = await store.callback_for(ticket_no)
        fus = await store.followups(ticket_no=ticket_no, limit=1)
        box = await store.outbox_for(ticket_no)
        history = [{"at": _plain(h.at), "actor": h.actor, "field": h.field, "from": h.from_value,
                    "to": h.to_value, "note": h.note} for h in hist]
        callback = None if cb is None else {"status": cb.status, "attempts": cb.attempts,
                                            "last_result": cb.last_result, "at": _plain(cb.at),
                                            "given_up": cb.gave_up_at is not None}
        followup = None if not fus else {"status": fus[0].status, "attempts": fus[0].attempts,
                                         "last_result": fus[0].last_result, "resolved": fus[0].resolved,
                                         "rating": fus[0].rating, "scale": fus[0].scale,
                                         "given_up": fus[0].gave_up_at is not None}
        outbox = [{"key": o.idempotency_key, "event": o.payload.get("event"), "attempts": o.attempts,
                   "delivered_at": _plain(o.delivered_at), "dead_at": _plain(o.dead_at),
                   "last_error": o.last_error} for o in box]
        await _audit_numbers(store, show_numbers, "tickets show", {"ticket_no": ticket_no}, 1)
        d = ticket_dict(t, show_numbers)
        if as_json:
            _echo_json({**d, "history": history, "callback": callback, "followup": followup, "outbox": outbox,
                        "transcript": transcript_dict(t.transcript)})
            return
        click.echo(f"ticket {t.ticket_no}   state {t.state} ({parse_state(t.state).label})   outcome {t.outcome}")
        for k in ("created_at", "deadline_at", "caller", "dialed", "legacy_line", "mode", "category", "ivr_path",
                  "requested_dest", "actual_dest", "queue", "queue_wait_s", "agent", "answered_at", "talk_s",
                  "transfers", "survey_rating", "survey_scale", "self_query", "recording", "recording_purged_at",
                  "handled_by", "source", "started_at", "ended_at", "callback_needed", "linkedid", "version"):
            v = d.get(k)
            if v not in (None, "", [], {}):
                click.echo(f"  {k:<15} {json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v}")
        if callback:
            click.echo(f"  callback        {'given up' if callback['given_up'] else callback['status']}, "
                       f"{callback['attempts']} attempt(s)"
                       + (f": {callback['last_result']}" if callback["last_result"] else ""))
        if followup:
            click.echo(f"  followup 回访    {'given up' if followup['given_up'] else followup['status']}, "
                       f"{followup['attempts']} attempt(s)"
                       + (f": {followup['last_result']}" if followup["last_result"] else ""))
        said = transcript_lines(t.transcript)
        if said:
            click.echo("transcript:")
            for line in said:
                click.echo(line)
        click.echo("history:")
        for h in history:
            move = f"{h['from'] or ''} → {h['to'] or ''}"
            click.echo(f"  {h['at']}  {h['actor']:<16} {h['field']:<10} {move}" + (f"  ({h['note']})" if h['note']
                                                                                 else ""))
        delivered = sum(1 for o in outbox if o["delivered_at"])
        dead = sum(1 for o in outbox if o["dead_at"])
        click.echo(f"outbox: {len(outbox)} change(s), {delivered} delivered, {dead} dead")

    run(config_path=config_path, store_url=store_url)


@tickets.command("state")
@click.argument("ticket_no")
@click.argument("target")
@click.option("--actor", required=True, help="who makes the move (e.g. supervisor:li, dept:tax)")
@click.option("--note", default=None, help="why (kept in the history)")
@store_options
def state_cmd(config_path: str | None, store_url: str | None, ticket_no: str, target: str, actor: str,
              note: str | None) -> None:
    """Move a ticket along 受理 → 派单 → 办理 → 答复 → (督办) → 办结 → 回访 → 评价 (English or Chinese names)."""

    @with_store
    async def run(store: Any, cfg: Any) -> None:
        try:
            t = await store.change_state(ticket_no, target, actor, note)
        except TicketNotFound:
            fail(f"no ticket {ticket_no}")
        except IllegalTransition as e:
            cur = (await store.get_ticket(ticket_no)).state
            allowed = sorted(TRANSITIONS[parse_state(cur)], key=lambda s: list(TRANSITIONS).index(s))
            options = ", ".join(f"{s.value} ({s.label})" for s in allowed) or "none: the ticket's loop is finished"
            fail(f"{e}.\nTicket {ticket_no} is {parse_state(cur).value} ({parse_state(cur).label}); "
                  f"from there it may move to: {options}.")
        click.echo(f"ticket {t.ticket_no} is now {t.state} ({parse_state(t.state).label})")

    run(config_path=config_path, store_url=store_url)


@tickets.command("export")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="file to write (UTF-8 with BOM, so spreadsheet programs read the Chinese)")
@filter_options
@show_numbers_option
@store_options
def export_cmd(config_path: str | None, store_url: str | None, csv_path: Path, state: str | None,
               outcome: str | None, caller: str | None, dialed: str | None, since: str | None, until: str | None,
               limit: int, show_numbers: bool) -> None:
    """Tickets to a CSV file (same filters as list; --limit defaults to 100, raise it for a full export)."""
    filters = _filters(state, outcome, caller, dialed, since, until)

    @with_store
    async def run(store: Any, cfg: Any) -> int:
        rows = await store.list_tickets(limit=limit, **filters)
        await _audit_numbers(store, show_numbers, "tickets export",
                             {**filters, "limit": limit, "csv": str(csv_path)}, len(rows))
        try:
            f = _private_file(csv_path)
        except OSError as e:
            fail(f"Cannot write {csv_path}: {e.strerror or e}")
        with f:
            w = csv.writer(f)
            w.writerow(LIST_COLUMNS)
            for t in rows:
                d = ticket_dict(t, show_numbers)
                w.writerow([csv_cell(d.get(c)) for c in LIST_COLUMNS])
        return len(rows)

    n = run(config_path=config_path, store_url=store_url)
    click.echo(f"wrote {n} ticket(s) to {csv_path}")


@tickets.command("outbox")
@click.option("--dead", is_flag=True, help="only dead letters (gave up after outbox.max_attempts)")
@click.option("--pending", is_flag=True, help="only changes not yet delivered")
@click.option("--retry", "retry_id", type=int, default=None, metavar="ID", help="give dead letter ID another round")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@store_options
def outbox_cmd(config_path: str | None, store_url: str | None, dead: bool, pending: bool, retry_id: int | None,
               limit: int, as_json: bool) -> None:
    """Changes pushed (or owed) to the provincial platform."""

    @with_store
    async def run(store: Any, cfg: Any) -> None:
        if retry_id is not None:
            try:
                row = await store.outbox_retry(retry_id)
            except LookupError:
                fail(f"no outbox row {retry_id}")
            click.echo(f"outbox {row.id} ({row.ticket_no}) will be pushed again")
            return
        rows = await store.outbox_list(dead=True if dead else None, delivered=False if pending else None,
                                       limit=limit)
        items = [{"id": o.id, "ticket_no": o.ticket_no, "key": o.idempotency_key, "event": o.payload.get("event"),
                  "attempts": o.attempts, "created_at": _plain(o.created_at),
                  "next_attempt_at": _plain(o.next_attempt_at), "delivered_at": _plain(o.delivered_at),
                  "dead_at": _plain(o.dead_at), "last_error": o.last_error} for o in rows]
        if as_json:
            _echo_json(items)
            return
        if not items:
            click.echo("no dead letters" if dead else "outbox empty")
            return
        for o in items:
            status = ("dead " + str(o["dead_at"])) if o["dead_at"] else (
                "delivered " + str(o["delivered_at"]) if o["delivered_at"] else "pending, next " + str(o["next_attempt_at"]))
            click.echo(f"{o['id']:>6}  {o['ticket_no']}  {o['event']:<14} attempts {o['attempts']:<3} {status}"
                       + (f"\n        last error: {o['last_error']}" if o["last_error"] else ""))

    run(config_path=config_path, store_url=store_url)


@tickets.command("callbacks")
@click.option("--status", type=click.Choice(["pending", "dialing", "done", "failed"]), default=None,
              help="only callbacks in this status (default: all not done)")
@click.option("--all", "show_all", is_flag=True, help="include done callbacks")
@click.option("--since", default=None, help="missed at or after (YYYY-MM-DD[THH:MM], Beijing time)")
@click.option("--until", default=None, help="missed before; a bare date includes that day")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@show_numbers_option
@json_option
@store_options
def callbacks_cmd(config_path: str | None, store_url: str | None, status: str | None, show_all: bool,
                  since: str | None, until: str | None, limit: int, show_numbers: bool, as_json: bool) -> None:
    """The missed-call callback list (漏接电话回拨), oldest first."""

    @with_store
    async def run(store: Any, cfg: Any) -> None:
        rows = await store.callbacks(status=status, since=parse_when(since), until=parse_when(until, end=True),
                                     limit=limit)
        if status is None and not show_all:
            rows = [r for r in rows if r.status != "done"]
        await _audit_numbers(store, show_numbers, "tickets callbacks",
                             {"status": status, "all": show_all, "since": since, "until": until, "limit": limit},
                             len(rows))
        items = [{"ticket_no": r.ticket_no, "caller": _num(r.caller, show_numbers), "dialed": r.dialed,
                  "outcome": r.outcome, "status": r.status, "attempts": r.attempts, "last_result": r.last_result,
                  "given_up": r.gave_up_at is not None,
                  "missed_at": _plain(r.created_at), "updated_at": _plain(r.at)} for r in rows]
        if as_json:
            _echo_json(items)
            return
        if not items:
            click.echo("no callbacks owed")
            return
        for i in items:
            click.echo(f"{i['ticket_no']}  {i['missed_at']}  {i['caller']:<14} {i['outcome']:<20} "
                       f"{'given up' if i['given_up'] else i['status']:<8} "
                       f"attempts {i['attempts']}" + (f"  ({i['last_result']})" if i["last_result"] else ""))

    run(config_path=config_path, store_url=store_url)


@tickets.command("followups")
@click.option("--status", type=click.Choice(["pending", "dialing", "done", "failed"]), default=None,
              help="only follow-ups in this status (default: all not done)")
@click.option("--all", "show_all", is_flag=True, help="include done follow-ups")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@show_numbers_option
@json_option
@store_options
def followups_cmd(config_path: str | None, store_url: str | None, status: str | None, show_all: bool, limit: int,
                  show_numbers: bool, as_json: bool) -> None:
    """The 回访 list: tickets that reached 办结, their follow-up calls and the citizens' answers, oldest first."""

    @with_store
    async def run(store: Any, cfg: Any) -> None:
        rows = await store.followups(status=status, limit=limit)
        if status is None and not show_all:
            rows = [r for r in rows if r.status != "done"]
        await _audit_numbers(store, show_numbers, "tickets followups",
                             {"status": status, "all": show_all, "limit": limit}, len(rows))
        items = [{"ticket_no": r.ticket_no, "caller": _num(r.caller, show_numbers), "category": r.category,
                  "closed_at": _plain(r.since), "status": r.status, "attempts": r.attempts,
                  "given_up": r.gave_up_at is not None, "resolved": r.resolved, "rating": r.rating, "scale": r.scale,
                  "last_result": r.last_result} for r in rows]
        if as_json:
            _echo_json(items)
            return
        if not items:
            click.echo("no follow-ups owed")
            return
        for i in items:
            click.echo(f"{i['ticket_no']}  {i['closed_at']}  {i['caller']:<14} {i['category'] or '':<6} "
                       f"{'given up' if i['given_up'] else i['status']:<8} attempts {i['attempts']}"
                       + (f"  ({i['last_result']})" if i["last_result"] else ""))

    run(config_path=config_path, store_url=store_url)


@tickets.command("callback")
@click.argument("ticket_no")
@click.option("--actor", default=None, help="who calls back (default: the OS user)")
@store_options
def callback_cmd(config_path: str | None, store_url: str | None, ticket_no: str, actor: str | None) -> None:
    """Call the citizen of a missed call back now: the running controller places it (an agent of
    callbacks.queue takes it); this command holds no AMI secret, it asks over the controller's local
    socket (hotline/control.py). The result — done or failed, attempts — is written onto the same
    ticket. Exit 1 if not answered, 3 if the controller is not running.
    """
    actor = actor or f"supervisor:{getpass.getuser()}"

    @with_store
    async def run(store: Any, cfg: Any) -> Any:
        cb = await store.callback_for(ticket_no)
        if cb is None or cb.status == "done":
            try:  # explained without touching Asterisk
                await CallbackDialer(store, None, cfg.callbacks, policy=cfg).call_back(ticket_no, actor=actor)
            except CallbackError as e:
                fail(str(e))
        path = control_socket_path()
        try:
            answer = await ask(path, {"op": "callback", "ticket": ticket_no, "actor": actor})
        except ControllerNotRunning as e:
            fail(f"Cannot call back: {e}. Start it (`hotline run`); callbacks are placed by the controller",
                 EXIT_ENV)
        except (OSError, ValueError) as e:
            fail(f"Cannot ask the controller at {path}: {e}", EXIT_ENV)
        if not answer.get("ok"):
            fail(str(answer.get("error") or "the controller refused the callback"))
        return answer

    r = run(config_path=config_path, store_url=store_url)
    click.echo(f"ticket {r.get('ticket')}: callback {r.get('status')} after {r.get('attempts')} attempt(s): "
               f"{r.get('result')}")
    if r.get("status") != "done":
        sys.exit(EXIT_BAD)


#: `hotline kpi --help`: the per-agent definitions next to the figures (ticketbridge/agent_kpi.py)
AGENT_KPI_HELP = """\b
--by agent: one row per agent ID (工号) per day (Beijing):
  signed-in   time in any state but 签出 (ready, ringing, talking, after-call work, busy)
  ready       time in 示闲, waiting for a call
  busy        time in 示忙; "busy by reason" splits it (小休, 就餐, …; 未接 = set busy after misses)
  after-call  time in 话后整理, from the end of a call until ready
  answered    tickets naming the agent (who answered), by the day answered
  AHT         average handling time = (talk seconds of those tickets + after-call time) / answered
  missed      queue calls that rang the agent and were not answered (RINGNOANSWER)
Times come from agent_events (the seconds spent in each state) plus each agent's current state up to now."""


@click.command("kpi", epilog=AGENT_KPI_HELP)
@click.option("--since", default=None, help="from (YYYY-MM-DD[THH:MM], Beijing time; default: everything)")
@click.option("--until", default=None, help="to (exclusive; a bare date includes that day)")
@click.option("--by", "by", type=click.Choice(["day", "week", "month", "queue", "line", "category", "agent"]),
              default=None, help="one block of figures per day, ISO week, month, queue, dialed line or category; "
                                 "agent: per agent per day (below)")
@json_option
@store_options
def kpi_cmd(config_path: str | None, store_url: str | None, since: str | None, until: str | None, by: str | None,
            as_json: bool) -> None:
    """The hotline's KPIs: 接通率, 15 s answer, abandon, 当场解答率, 满意率, transfers, lines, callbacks; and the
    closure KPIs (办结率, 按时办结率, 回访率, 回访满意率, 重复来电), each with its definition."""
    _setup_logs()
    lo, hi = parse_when(since), parse_when(until, end=True)
    if by == "agent":
        _agent_kpi(config_path, store_url, lo, hi, as_json)
        return

    @with_store
    async def run(store: Any, cfg: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await store.kpi_rows(since=lo, until=hi), await store.closure_rows(since=lo, until=hi)

    rows, closure_rows = run(config_path=config_path, store_url=store_url)
    total = kpi.compute(rows)
    closed_total = closure.compute(closure_rows)
    if by in kpi.GROUPINGS:
        groups = kpi.grouped(rows, by, tz=_ZONE.get())
    elif by:
        key = closure.period_key(by, _ZONE.get())
        split: dict[str, list[Any]] = {}
        for r in rows:
            split.setdefault(key(r), []).append(r)
        groups = {k: kpi.compute(v) for k, v in sorted(split.items())}
    else:
        groups = {}
    closed_groups = closure.grouped(closure_rows, by, tz=_ZONE.get()) if by else {}
    if as_json:
        out: dict[str, Any] = {"since": _plain(lo), "until": _plain(hi), "total": total.to_dict(),
                               "closure": closed_total.to_dict(), "definitions": closure.DEFINITIONS}
        if by:
            out["by"] = by
            out["groups"] = {k: v.to_dict() for k, v in groups.items()}
            out["closure_groups"] = {k: v.to_dict() for k, v in closed_groups.items()}
        _echo_json(out)
        return
    span = f"{_plain(lo) or 'start'} … {_plain(hi) or 'now'}"
    click.echo(f"KPIs {span} (definitions: README, Tickets and KPIs)")
    click.echo("total:")
    for line in kpi.report_lines(total) + closure.report_lines(closed_total):
        click.echo(line)
    for k, f in groups.items():
        click.echo(f"{by} {k}:")
        for line in kpi.report_lines(f) + closure.report_lines(closed_groups.get(k) or closure.Closure(),
                                                                   definitions=False):
            click.echo(line)


def _agent_kpi(config_path: str | None, store_url: str | None, lo: dt.datetime | None, hi: dt.datetime | None,
               as_json: bool) -> None:
    """`kpi --by agent`: agent_events, the current states and the tickets of the period → per agent per day."""

    @with_store
    async def run(store: Any, cfg: Any) -> list[agent_kpi.AgentDay]:
        events = [{"agent": e.agent, "at": e.at, "old": e.old, "new": e.new, "reason": e.reason,
                   "old_reason": e.old_reason, "seconds": e.seconds, "cause": e.cause}
                  for e in await store.agent_events(since=lo)]
        current = list((await store.agent_states()).values())
        tickets = await store.kpi_rows(since=lo, until=hi)
        return agent_kpi.compute(events, tickets, current=current, since=lo, until=hi,
                                 now=dt.datetime.now(dt.timezone.utc), tz=_ZONE.get())

    rows = run(config_path=config_path, store_url=store_url)
    if as_json:
        _echo_json({"since": _plain(lo), "until": _plain(hi), "by": "agent", "rows": [r.to_dict() for r in rows]})
        return
    click.echo(f"agent KPIs {_plain(lo) or 'start'} … {_plain(hi) or 'now'} (definitions: hotline kpi --help)")
    if not rows:
        click.echo("no agent activity")
        return
    for line in agent_kpi.report_lines(rows):
        click.echo(line)
