"""Carrier trunks: a real SIP UA (SIPp, Debian's sip-tester) plays the carrier and sends INVITEs to Asterisk.

The carrier is IP-identified (127.0.0.2, tests/e2e/conftest.py): its INVITEs enter hotline-carrier-<name>,
which reads the dialed number from the Diversion header, the To header or the Request-URI, maps the DID
and hands the call to hotline-inbound with the caller's number as the carrier sent it. The controller
routes it and the call leaves a ticket with the right dialed number and caller.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from hotline.callrobot import wait_ticket
from hotline.sipcarrier import UacDialog, reply_ok, uac_scenario
from tests.conftest import require
from tests.e2e.conftest import SIM_CARRIER_PORT, SIPP_MEDIA_PORT

pytestmark = pytest.mark.e2e

#: the carrier holds the call until Asterisk hangs up (the test does, once the route is known)
HOLD_MS = 60000


def scenario(ruri: str, to: str, caller: str, diversion: str | None) -> str:
    div = f"      Diversion: <sip:{diversion}@carrier.example>;reason=unconditional\n" if diversion else ""
    d = UacDialog(caller, ruri=ruri, to=to, headers=div)
    return uac_scenario("carrier INVITE", d.invite() + f"""\
  <recv request="BYE" timeout="{HOLD_MS}"/>
""" + reply_ok())


async def carrier_call(tmp_path: Path, sip_port: int, *, ruri: str, to: str, caller: str,
                       diversion: str | None = None) -> tuple[int, str]:
    """One call from the carrier (SIPp from 127.0.0.2); returns SIPp's exit code and its error log."""
    xml = tmp_path / f"carrier-{caller}.xml"
    xml.write_text(scenario(ruri, to, caller, diversion), encoding="ascii")
    err = tmp_path / f"carrier-{caller}-errors.log"
    proc = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{sip_port}", "-sf", str(xml), "-i", "127.0.0.2", "-p", str(SIM_CARRIER_PORT),
        "-mi", "127.0.0.2", "-mp", str(SIPP_MEDIA_PORT), "-m", "1", "-l", "1", "-nostdin",
        "-timeout", "90s", "-timeout_error", "-trace_err", "-error_file", str(err),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    _, stderr = await asyncio.wait_for(proc.communicate(), 100)
    log = (err.read_text(errors="replace") if err.exists() else "") + stderr.decode(errors="replace")
    return proc.returncode, log


@pytest.mark.parametrize("ruri,to,diversion,dialed", [
    ("12345", "12345", None, "12345"),            # the DID in Request-URI and To
    ("trunk-in", "12315", None, "12315"),         # only the To header carries the dialed number
    ("057112345", "057112345", "12315", "12315"),  # forwarded to our main DID: Diversion says 12315 was dialed
    ("057112345", "057112345", None, "12345"),     # a configured DID mapped to the center number
], ids=["ruri-12345", "to-12315", "diversion-12315", "did-057112345"])
async def test_carrier_invite_reaches_its_route_and_leaves_a_ticket(controller, ami, cfg, tmp_path,
                                                                    ruri, to, diversion, dialed):
    require(shutil.which("sipp") is not None, "sipp (Debian package sip-tester) plays the carrier")
    caller = {"12345": "13800006001", "12315": "13800006002"}[dialed] if diversion is None else "13800006003"
    if ruri == "057112345" and diversion is None:
        caller = "13800006004"
    seen: list[dict[str, str]] = []
    off = ami.on_event("UserEvent", seen.append)

    async def first(pred, timeout: float) -> dict[str, str]:  # noqa: ANN001
        for _ in range(int(timeout * 10)):
            hits = [e for e in seen if pred(e)]
            if hits:
                return hits[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"not seen within {timeout} s: {[(e.get('UserEvent'), e.get('Caller')) for e in seen]}")

    sipp = asyncio.create_task(carrier_call(tmp_path, cfg.asterisk.sip.port, ruri=ruri, to=to, caller=caller,
                                            diversion=diversion))
    try:
        call = await first(lambda e: e.get("UserEvent") == "HotlineCall" and e.get("Caller") == caller, 15)
        assert call["Dialed"] == dialed
        linkedid = call["Linkedid"]
        route = await first(lambda e: e.get("UserEvent") == "HotlineRoute" and e.get("Linkedid") == linkedid, 45)
        if dialed == "12315":
            assert route["Line"] == "12315" and route["Mode"] == "merged"
        else:
            assert route.get("Mode") != "fallback" and route.get("Line") in ("", None, "12345")
        await ami.action("Hangup", Channel=call["Channel"])  # Asterisk sends the carrier its BYE
        rc, log = await sipp
    finally:
        off()
        if not sipp.done():
            sipp.cancel()
    assert rc == 0, f"SIPp (the carrier) failed, exit {rc}:\n{log[-3000:]}"
    t = await wait_ticket(controller.store, linkedid, 20)
    assert t.dialed == dialed and t.caller == caller  # caller ID passed through from the carrier's From
    assert t.handled_by != "fallback"
