"""`hotline supervise listen|whisper|barge|release --seat 9001 --agent 1001`: 监听 / 耳语 / 强插 / 强拆.

Asks the running controller over its control socket (op `supervise`, hotline/control.py); the
controller decides (routing/supervise.py: a supervisor seat, an agent in a call), writes the audit
row (your uid as the socket reports it, --actor, the call's linkedid) and then rings the supervisor
seat into a ChanSpy session on the agent's call, or hangs the call up (release). During a session
the supervisor switches by key: 4 listen, 5 whisper, 6 barge.
Exit 0 done, 1 refused (not a supervisor seat, agent not in a call, …), 3 controller not running.
"""

from __future__ import annotations

import getpass
import json

import click

from hotline.cli_agents import _ask
from routing.supervise import MODE_LABELS, Mode


@click.command("supervise")
@click.argument("mode", type=click.Choice([m.value for m in Mode]))
@click.option("--seat", required=True, help="the supervisor's seat (role: supervisor); its phone rings")
@click.option("--agent", required=True, help="the agent's seat whose call is listened to / released")
@click.option("--actor", default=None, help="who (default: supervisor:<OS user>); recorded")
@click.option("--json", "as_json", is_flag=True, help="the controller's answer as JSON")
def supervise(mode: str, seat: str, agent: str, actor: str | None, as_json: bool) -> None:
    """监听 listen / 耳语 whisper / 强插 barge (the seat's phone rings, then hears the call) or 强拆 release."""
    user = getpass.getuser()
    r = _ask({"op": "supervise", "mode": mode, "seat": seat, "agent": agent,
              "actor": actor or f"supervisor:{user}"}, needs="Supervisors' sessions are started by")
    if as_json:
        click.echo(json.dumps(r, ensure_ascii=False))
        return
    label = MODE_LABELS[Mode(mode)]
    if mode == Mode.RELEASE:
        click.echo(f"{label}: agent {agent}'s call {r.get('linkedid')} hung up ({len(r.get('channels') or [])} channels)")
    else:
        click.echo(f"{label}: seat {seat} is ringing; answer it to hear agent {agent}'s call {r.get('linkedid')} "
                   "(keys: 4 监听, 5 耳语, 6 强插)")


def register(main: click.Group) -> None:
    main.add_command(supervise)
