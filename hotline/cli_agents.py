"""`hotline agents`: supervisors see every seat agent's state and force one (强制签出 / 强制示忙 / 示闲).

Everything goes through the running controller's control socket (hotline/control.py, ops `agents` and
`agent`): it owns the agents' state machines and the AMI account that pauses queue members, so this
command holds no AMI secret. The controller records each change with who (--actor) and why.
Exit 0 done, 1 refused (unknown agent, not possible in its state), 3 controller not running.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import sys
from typing import Any

import click

from hotline.cli_base import EXIT_BAD, EXIT_ENV, fail
from hotline.control import ControllerNotRunning, ask, control_socket_path
from model.config import DEFAULT_TZ


def _ask(request: dict[str, Any], needs: str = "Agents' states live in") -> dict[str, Any]:
    path = control_socket_path()
    try:
        answer = asyncio.run(ask(path, request, timeout=30))
    except ControllerNotRunning as e:
        fail(f"{e}. {needs} the running controller (`hotline run`)", EXIT_ENV)
    except (OSError, ValueError) as e:
        fail(f"Cannot ask the controller at {path}: {e}", EXIT_ENV)
    if not answer.get("ok"):
        fail(str(answer.get("error") or "the controller refused"), EXIT_BAD)
    return answer


def _since(ts: float) -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(ts, ZoneInfo(DEFAULT_TZ)).strftime("%m-%d %H:%M:%S") if ts else "-"


@click.group("agents", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per agent")
@click.pass_context
def agents(ctx: click.Context, as_json: bool) -> None:
    """Seat agents: state (签出/示闲/振铃/通话/话后整理/示忙), reason, since, queues, calls answered today."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _ask({"op": "agents"})["agents"]
    for r in rows:
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
            continue
        state = f"{r['label']}({r['reason']})" if r["reason"] else r["label"]
        click.echo(f"{r['agent']:<6} {r['state']:<10} {state:<12} since {_since(r['since'])}  "
                   f"calls today {r['calls_today']:<3} queues {','.join(r['queues']) or '-'}"
                   + (f"  call {r['call']}" if r["call"] else ""))


def _change(action: str, ext: str, reason: str | None, actor: str | None, why: str | None) -> None:
    actor = actor or f"supervisor:{getpass.getuser()}"
    r = _ask({"op": "agent", "action": action, "agent": ext, "reason": reason or "", "actor": actor,
              "why": why or ""})
    click.echo(f"agent {r['agent']}: {r['state']}" + (f" ({r['reason']})" if r.get("reason") else ""))


def _options(f: Any) -> Any:
    f = click.option("--why", default=None, help="why (recorded)")(f)
    f = click.option("--actor", default=None, help="who (default: supervisor:<OS user>)")(f)
    return click.argument("ext")(f)


@agents.command("busy")
@click.option("--reason", default=None, help="a busy reason of agents.busy_reasons (default: the first)")
@_options
def busy_cmd(ext: str, reason: str | None, actor: str | None, why: str | None) -> None:
    """强制示忙: no queue call reaches EXT until it is ready again (during a call: when it ends)."""
    _change("busy", ext, reason, actor, why)


@agents.command("signout")
@_options
def signout_cmd(ext: str, actor: str | None, why: str | None) -> None:
    """强制签出: EXT stays a member of its queues, paused (签出)."""
    _change("signout", ext, None, actor, why)


@agents.command("ready")
@_options
def ready_cmd(ext: str, actor: str | None, why: str | None) -> None:
    """示闲: EXT takes queue calls again (ends busy or after-call work)."""
    _change("ready", ext, None, actor, why)


@agents.command("signin")
@_options
def signin_cmd(ext: str, actor: str | None, why: str | None) -> None:
    """签入: EXT into every queue it serves, ready."""
    _change("signin", ext, None, actor, why)


def register(main: click.Group) -> None:
    main.add_command(agents)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(agents())
