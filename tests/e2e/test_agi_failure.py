"""Issue 14.2: a real Asterisk sees AGISTATUS=FAILURE when our FastAGI server gives up on a call.

res_agi reads a connection closed with nothing sent as "script completed" (SUCCESS); only a
line starting FAILURE fails AGI(). The dialplan's fallback must see FAILURE and still queue
the caller, whether the script is unknown or its handler crashed.
"""

from __future__ import annotations

import pytest

from hotline.callrobot import CallRobot
from model.contract import Context
from wire.fastagi import AgiSession, FastAgiServer

pytestmark = pytest.mark.e2e


def _fallback_noop(e: dict[str, str]) -> bool:
    return (e.get("Event") == "Newexten" and e.get("Context") == Context.INBOUND
            and e.get("Application") == "NoOp" and "AGISTATUS=" in e.get("AppData", ""))


async def _call_through(cfg, ami, route_inbound: bool, caller: str) -> dict[str, str]:
    srv = FastAgiServer(cfg.asterisk.fastagi.host, cfg.asterisk.fastagi.port)
    if route_inbound:
        async def crash(s: AgiSession) -> None:
            await s.get_variable("CALLERID(num)")
            raise RuntimeError("a bug in the IVR")

        srv.route("inbound", crash)
    await srv.start()
    robot = await CallRobot(ami, caller=caller).dial()
    try:
        noop = await robot.wait_for(_fallback_noop, 20)
        join = await robot.wait_for(lambda e: e.get("Event") == "QueueCallerJoin", 20)
        assert join["Queue"].endswith(cfg.center.general_queue)
        return noop
    finally:
        await robot.hangup()
        await srv.stop(1.0)


async def test_crashed_handler_gives_agistatus_failure(cfg, asterisk, ami):
    noop = await _call_through(cfg, ami, route_inbound=True, caller="13700000014")
    assert "AGISTATUS=FAILURE" in noop["AppData"], noop


async def test_unknown_script_gives_agistatus_failure(cfg, asterisk, ami):
    noop = await _call_through(cfg, ami, route_inbound=False, caller="13700000015")
    assert "AGISTATUS=FAILURE" in noop["AppData"], noop
