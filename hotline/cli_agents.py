"""`hotline agents`: supervisors see every seat agent's state and force one (强制签出 / 强制示忙 / 示闲).

Everything goes through the running controller's control socket (hotline/control.py, ops `agents` and
`agent`): it owns the agents' state machines and the AMI account that pauses queue members, so this
command holds no AMI secret. The controller records each change with who (the user name of the uid that
connected, SO_PEERCRED; --actor only adds a label) and why. EXT is a seat's extension or an agent ID (工号).
`pin-hash` makes the salted hash of a hot-desk PIN for `agents.roster` (it needs no controller; the PIN is
read without echo and never printed).
Exit 0 done, 1 refused (unknown agent, not possible in its state), 3 controller not running.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from typing import Any

import click

from hotline.cli_base import EXIT_BAD, EXIT_ENV, fail
from hotline.control import ControllerNotRunning, ask, control_socket_path
from model.config import DEFAULT_TZ
from model.passwords import hash_password


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
        if r.get("offline") and r["reason"] != "离线":
            state += " 离线"  # the phone is unreachable (signed out or busy already: only marked)
        click.echo(f"{r['agent']:<8} seat {r.get('seat', r['agent']):<6} {r['state']:<10} {state:<12} "
                   f"since {_since(r['since'])}  "
                   f"calls today {r['calls_today']:<3} queues {','.join(r['queues']) or '-'}"
                   + (f"  helping {','.join(r['helping'])}" if r.get("helping") else "")
                   + (f"  call {r['call']}" if r["call"] else ""))


def _change(action: str, ext: str, reason: str | None, actor: str | None, why: str | None) -> None:
    # who asked is recorded by the controller from the socket's peer uid (SO_PEERCRED); --actor is only a label
    r = _ask({"op": "agent", "action": action, "agent": ext, "reason": reason or "", "actor": actor or "",
              "why": why or ""})
    click.echo(f"agent {r['agent']}: {r['state']}" + (f" ({r['reason']})" if r.get("reason") else ""))


def _options(f: Any) -> Any:
    f = click.option("--why", default=None, help="why (recorded)")(f)
    f = click.option("--actor", default=None, help="a label recorded after your user name (who you are is "
                                                   "the controller's to say: the socket's peer uid)")(f)
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


def _period(p: dict[str, Any]) -> str:
    end = f"ended {_since(p['ended'])} by {p['ended_by']}" if p.get("ended") else f"until {_since(p['until'])}"
    return (f"{p['id']}  {','.join(p['agents'])} → {p['queue']}  from {_since(p['started'])} {end}  "
            f"by {p['by']}: {p['why']}")


@agents.command("help")
@click.option("--group", default=None, help="the helpers: seats (1001,1002) or a skill (every agent whose seat has it)")
@click.option("--queue", default=None, help="the queue they help (with --end: end that queue's periods)")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None, help="how long (at most 720)")
@click.option("--why", default=None, help="why (required to start; recorded)")
@click.option("--end", "end", is_flag=True, help="end help periods now (--id one, --queue that queue's, else all)")
@click.option("--id", "period_id", default=None, help="with --end: the period to end")
@click.option("--actor", default=None, help="a label recorded after your user name")
@click.option("--json", "as_json", is_flag=True)
def help_cmd(group: str | None, queue: str | None, minutes: float | None, why: str | None, end: bool,
             period_id: str | None, actor: str | None, as_json: bool) -> None:
    """多援一: add a group of agents to QUEUE for a while (paused as their own state has it), remove them when
    the time is up or at --end. Without --group/--end: the active periods and the latest ended ones.

    \b
      hotline agents help --group 1001,1002 --queue line_12333 --minutes 30 --why "12333 排队超过 50 人"
      hotline agents help --group general --queue overflow --minutes 60 --why 暴雨应急
      hotline agents help --end [--id h1a2b3c4d5e | --queue line_12333]
    """
    if end:
        r = _ask({"op": "help", "action": "end", "id": period_id or "", "queue": queue or "", "why": why or "",
                  "actor": actor or ""})
        for p in r["ended"]:
            click.echo(json.dumps(p, ensure_ascii=False) if as_json else _period(p))
        return
    if group is not None or queue is not None or minutes is not None:
        missing = [n for n, v in (("--group", group), ("--queue", queue), ("--minutes", minutes), ("--why", why))
                   if not v]
        if missing:
            fail(f"to start a help period give {', '.join(missing)} too", 2)
        r = _ask({"op": "help", "action": "start", "group": group, "queue": queue, "minutes": minutes, "why": why,
                  "actor": actor or ""})
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
            return
        click.echo(_period(r["period"]))
        if r.get("skipped"):
            click.echo(f"left out (already serve or help {queue}): {', '.join(r['skipped'])}")
        return
    r = _ask({"op": "help", "action": "list"})
    if as_json:
        click.echo(json.dumps(r, ensure_ascii=False))
        return
    for p in r["active"]:
        click.echo(_period(p))
    if not r["active"]:
        click.echo("no active help period")
    for p in r["recent"][:10]:
        click.echo(_period(p))
#: a hot-desk PIN: what a phone keys
PIN_DIGITS = (4, 12)


@agents.command("pin-hash")
@click.option("--stdin", "from_stdin", is_flag=True, help="read the PIN from one line of standard input")
def pin_hash_cmd(from_stdin: bool) -> None:
    """Print the salted hash of a hot-desk PIN for agents.roster.<agent ID>.pin_hash (asked twice, not echoed)."""
    if from_stdin:
        pin = sys.stdin.readline().strip()
    else:
        pin = click.prompt("PIN", hide_input=True, confirmation_prompt=True)
    lo, hi = PIN_DIGITS
    if not (pin.isdigit() and lo <= len(pin) <= hi):
        fail(f"a PIN is {lo}-{hi} digits (it is keyed on a phone)", EXIT_BAD)
    click.echo(hash_password(pin))


def register(main: click.Group) -> None:
    main.add_command(agents)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(agents())
