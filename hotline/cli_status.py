"""`hotline status`: is the running controller healthy — its AMI link, tickets waiting for the store.

Asks the controller over its control socket (hotline/control.py, op `status`; see
Controller.health). Exit 0 healthy, 1 degraded (AMI down or its event dispatcher dead, tickets
held because the store is away), 3 no controller running.
"""

from __future__ import annotations

import asyncio
import json

import click

from hotline.cli_base import EXIT_BAD, EXIT_ENV, EXIT_OK, fail
from hotline.control import ControllerNotRunning, ask, control_socket_path


def _age(v: float | None) -> str:
    return "never" if v is None else f"{v:.1f} s ago"


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="the controller's answer as JSON")
def status_cmd(as_json: bool) -> None:
    """The running controller's health: AMI link, event queue, last event, tickets held for the store."""
    path = control_socket_path()
    try:
        h = asyncio.run(ask(path, {"op": "status"}, timeout=10))
    except ControllerNotRunning as e:
        fail(f"{e}: no controller is running for this instance (`hotline run`)", EXIT_ENV)
    except (OSError, ValueError) as e:
        fail(f"Cannot ask the controller at {path}: {e}", EXIT_ENV)
    if not h.get("ok"):
        fail(str(h.get("error") or "the controller refused"), EXIT_BAD)
    if as_json:
        click.echo(json.dumps(h, ensure_ascii=False, indent=2))
    else:
        a, s = h["ami"], h["store"]
        click.echo(f"controller: {'healthy' if h['healthy'] else 'DEGRADED'}  (config generation "
                   f"{h['config_generation']}, {h['calls_in_progress']} call(s) in progress)")
        click.echo(f"AMI:   {'connected' if a['connected'] else 'NOT CONNECTED'}; dispatcher "
                   f"{'running' if a['dispatcher_alive'] else 'DEAD'} (restarts {a['dispatcher_restarts']}); "
                   f"{a['queued_events']} event(s) queued, last event {_age(a['last_event_age_s'])}; "
                   f"dropped {a['events_dropped']}, handler failures {a['handler_failures']}, late {a['handlers_late']}")
        if s["held_tickets"]:
            click.echo(f"store: UNAVAILABLE ({s['reason']}) for {s['down_for_s']} s; {s['held_tickets']} ticket(s) "
                       "held in memory, written when it returns")
        else:
            click.echo("store: ok")
        if s["left_to_cdr"]:
            click.echo(f"       {s['left_to_cdr']} ticket(s) let go while it was away (rebuilt from the CDR)")
        if h.get("agents") or h.get("cdr_replay"):  # several controllers share the node's jobs (README)
            click.echo(f"jobs:  agents {h.get('agents') or '-'}; CDR replay {h.get('cdr_replay') or '-'}")
    raise SystemExit(EXIT_OK if h["healthy"] else EXIT_BAD)


def register(main: click.Group) -> None:
    main.add_command(status_cmd)
