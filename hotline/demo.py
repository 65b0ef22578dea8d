"""The main job, end to end: Asterisk + controller + SQLite, one demo call, its ticket.

A scripted caller dials 12345, keys 1 (咨询) during the greeting, waits in the
general queue; seat 1001 (a real baresip SIP phone) answers; the agent hangs up and
the caller rates the call 1 (非常满意). The ticket is printed, then the hotline keeps
serving until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import click

from hotline.callrobot import CallRobot, wait_ticket
from model.config import Config
from hotline.controller import Controller
from hotline.install import install_everything
from model.contract import Context, Event
from model.privacy import mask_number
from model.secrets import ami_secret, seat_secret, state_dir
from hotline.sandbox import Sandbox, SandboxError
from hotline.sipseat import BaresipSeat, SeatError
from wire.ami import AmiClient

STATE = state_dir()


def ticket_summary(t: Any) -> dict[str, Any]:
    keys = ["ticket_no", "state", "outcome", "handled_by", "caller", "dialed", "legacy_line", "category",
            "ivr_path", "queue", "queue_wait_s", "agent", "talk_s", "survey_rating", "survey_scale",
            "transfers", "recording", "deadline_at", "created_at"]
    out = {}
    for k in keys:
        v = getattr(t, k, None)
        out[k] = v.isoformat() if hasattr(v, "isoformat") else v
    out["caller"] = mask_number(out["caller"])  # as every listing does unless asked (see `hotline tickets`)
    return out


async def run_demo(cfg: Config, sb: Sandbox, *, once: bool = False) -> int:
    store_url = os.environ.get("HOTLINE_STORE", f"sqlite+aiosqlite:///{STATE}/tickets.db")
    if sb.running():
        click.echo("Stopping the Asterisk left from an earlier run…", err=True)
        sb.stop()
    click.echo("Rendering configuration and building Mandarin prompts…", err=True)
    install_everything(cfg, sb, with_sim=True, demo_secrets=True, prompts_dir=STATE / "prompts")
    try:
        sb.start(sip_port=cfg.asterisk.sip_port)
    except SandboxError as e:
        click.echo(f"Asterisk did not start: {e}", err=True)
        return 3
    click.echo("Asterisk 22 is up.", err=True)
    controller = Controller.for_sandbox(cfg, sb, store_url=store_url)
    seat: BaresipSeat | None = None
    robot_ami: AmiClient | None = None
    code = 0
    try:
        await controller.start()
        await controller.ami.wait_connected(10)
        seat_ext = next(iter(cfg.queues[cfg.center.general_queue].members), "1001")
        seat = BaresipSeat(seat_ext, seat_secret(seat_ext, cfg.seats[seat_ext]), sip_port=cfg.asterisk.sip_port)
        seat.start()
        await asyncio.to_thread(seat.wait_registered, 15)
        click.echo(f"Seat {seat_ext} (baresip) registered; placing the demo call to {cfg.center.number}…", err=True)

        # the scripted caller keys DTMF and watches the dialplan run: the sim account (rendered with --sim),
        # never the controller's (it sees no dtmf/agi/dialplan events)
        a = cfg.asterisk.ami
        robot_ami = AmiClient(a.host, a.port, a.sim_username, ami_secret(cfg, "sim"))
        await robot_ami.start()
        await robot_ami.wait_connected(10)
        robot = await CallRobot(robot_ami, number=cfg.center.number, caller="13800138000").dial()
        await robot.wait_step("menu:main", 20)
        await robot.press("1")
        await robot.wait_for(lambda e: e.get("Event") == "AgentConnect", 40)
        click.echo("The seat answered; the agent talks for 3 s, then hangs up first.", err=True)
        await asyncio.sleep(3)
        await seat.ahangup()
        await robot.wait_for(lambda e: e.get("Event") == "AGIExecStart" or
                             (e.get("Event") == "Newexten" and e.get("Context") == Context.SURVEY), 15)
        # first the caller hears the ticket number and query password, digit by digit; the rating is
        # keyed once the survey asks for it
        click.echo("The caller hears the ticket number and query password, then the survey.", err=True)
        await robot.wait_user_event(Event.PROMPT, 60, Prompt="survey")
        await asyncio.sleep(1.0)
        await robot.press("1")
        await robot.wait_user_event(Event.SURVEY, 20)
        await robot.hangup()
        ticket = await wait_ticket(controller.store, robot.linkedid or "", 30)
        click.echo("\nThe demo call's ticket:")
        click.echo(json.dumps(ticket_summary(ticket), ensure_ascii=False, indent=2, default=str))
        if once:
            return 0
        click.echo(f"\nServing. Call {cfg.center.number} from a SIP phone registered as a seat, or Ctrl-C to stop.",
                   err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    except (SeatError, TimeoutError) as e:
        click.echo(f"The demo call did not complete: {e}", err=True)
        click.echo(f"Asterisk's log: {sb.log_dir / 'messages.log'}", err=True)
        code = 1
    finally:
        if seat:
            seat.stop()
        if robot_ami is not None:
            await robot_ami.close()
        await controller.stop()
        sb.stop()
    return code
