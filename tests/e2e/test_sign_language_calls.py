"""Issue 18, item 3: sign-language (video) seats, shown by real SIP phones through a real Asterisk 22.

The citizen's phone is Debian's baresip with a camera (`fakevideo`, a synthetic moving picture, encoded VP8)
calling from 127.0.0.2, the simulated carrier's address (tests/e2e/conftest.py: `video: true`); the
sign-language seat 1006 (`seats: video: true`) is another baresip with a camera. Both trace their SIP
messages, so what each one offered and got is read from the wire, not from Asterisk's side alone.

- a video call skips the spoken greeting and the menu, joins the `sign` queue, the seat's INVITE offers
  video, the caller's 200 OK carries an active video stream (m=video with a port), both legs are in one
  bridge with VP8 on each, and pictures arrive both ways; the ticket records the language `csl`;
- an audio-only caller still reaches the same seat: an agent sends a (hearing) caller there with *842.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time

import pytest

from hotline.callrobot import CallRobot, wait_ticket
from hotline.sipseat import BaresipSeat
from model.contract import ASTERISK_QUEUE_PREFIX
from model.contract import Event as UserEventName
from model.secrets import seat_secret
from tests.conftest import require
from tests.e2e.conftest import call_channels, polled, until

pytestmark = pytest.mark.e2e

CARRIER_ADDRESS = "127.0.0.2"


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


def media(message: str) -> dict[str, int]:
    """The m= lines of a SIP message's SDP: media kind → port (0: refused)."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^m=(\w+) (\d+) ", message, re.M)}


def first(messages: list[str], start: str, method: str) -> str:
    """The first traced message whose first line starts with `start` and whose CSeq names `method`."""
    for m in messages:
        if m.startswith(start) and re.search(rf"^CSeq: *\d+ {method}\s*$", m, re.M | re.I):
            return m
    raise AssertionError(f"no {start!r} with CSeq {method!r} among {[m.splitlines()[0] for m in messages]}")


async def video_format(ami, channel: str) -> str:
    r = await ami.action("Getvar", Channel=channel, Variable="CHANNEL(videonativeformat)")
    return dict(r).get("Value", "")


async def member_ready(ami, queue: str, ext: str, timeout: float = 15.0) -> None:
    """Wait until the seat is a member of `queue` that Asterisk would ring (registered, not paused)."""
    async def ready() -> bool:
        rows = await ami.action_list("QueueStatus", Queue=f"{ASTERISK_QUEUE_PREFIX}{queue}")
        return any(r.get("Event") == "QueueMember" and f"PJSIP/{ext}" in (r.get("Location"), r.get("StateInterface"))
                   and r.get("Paused") == "0" and r.get("Status") not in ("4", "5") for r in rows)
    deadline = time.monotonic() + timeout
    while not await ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"seat {ext} is not ready in queue {queue}")
        await asyncio.sleep(0.3)


@pytest.fixture(scope="module")
def sign_seat(cfg, asterisk):
    require(shutil.which("baresip") is not None, "baresip is missing: apt-get install baresip")
    require(cfg.seats["1006"].video, "the shipped config's sign-language seat 1006 has video: true")
    s = BaresipSeat("1006", seat_secret("1006", cfg.seats["1006"]), sip_port=cfg.asterisk.sip.port, video=True)
    s.start()
    s.wait_registered(10)
    yield s
    s.stop()


@pytest.fixture
def agent_seat(cfg, asterisk):
    """Seat 1001 (a general agent, audio only), for the transfer."""
    require(shutil.which("baresip") is not None, "baresip is missing: apt-get install baresip")
    s = BaresipSeat("1001", seat_secret("1001", cfg.seats["1001"]), sip_port=cfg.asterisk.sip.port)
    s.start()
    s.wait_registered(10)
    yield s
    s.stop()


async def test_a_video_call_reaches_the_sign_language_seat_with_video(controller, cfg, ami, sign_seat):
    sign = cfg.access.languages["csl"]
    assert sign.video and sign.queue == "sign"
    events: list[dict[str, str]] = []
    ami.on_event("*", events.append)
    await member_ready(ami, sign.queue, "1006")
    caller = BaresipSeat.caller("13800018030", bind=CARRIER_ADDRESS, sip_port=cfg.asterisk.sip.port)
    caller.start()
    try:
        await asyncio.to_thread(caller.dial, "057112345")  # the carrier's DID of 12345
        leg = await until(lambda: next((e for e in events if e.get("Event") == "Newchannel"
                                        and e.get("Channel", "").startswith("PJSIP/simcarrier-")), None),
                          10, "the caller's call reaches Asterisk")
        linkedid = leg["Linkedid"]
        call = lambda: [e for e in events if e.get("Linkedid") == linkedid]  # noqa: E731
        connect = await until(lambda: next((e for e in call() if e.get("Event") == "AgentConnect"), None),
                              20, "the sign-language seat answers")
        assert connect["Queue"] == f"{ASTERISK_QUEUE_PREFIX}{sign.queue}"
        seat_leg = connect["DestChannel"]
        assert seat_leg.startswith("PJSIP/1006-"), seat_leg
        # nothing was spoken to the video caller: no greeting, notice, offer or menu
        said = [e.get("Prompt") for e in call() if e.get("UserEvent") == UserEventName.PROMPT]
        assert said == [], said
        assert any(e.get("UserEvent") == UserEventName.IVR and e.get("Step") == "video:csl" for e in call())
        # both legs in one bridge, each with VP8 video (passed through, never transcoded)
        entered = lambda: {e["Channel"] for e in call() if e.get("Event") == "BridgeEnter"}  # noqa: E731
        await until(lambda: {leg["Channel"], seat_leg} <= entered(), 10, "both legs enter the bridge")
        rows = {r["Channel"]: r for r in await call_channels(ami, linkedid)}
        assert rows[leg["Channel"]]["BridgeId"] and rows[leg["Channel"]]["BridgeId"] == rows[seat_leg]["BridgeId"]
        assert "vp8" in await video_format(ami, leg["Channel"])
        assert "vp8" in await video_format(ami, seat_leg)
        # on the wire: the seat was offered video, the caller's answer carries an active video stream
        invite = first(sign_seat.sip_messages(), "INVITE sip:1006", "INVITE")
        assert media(invite).get("video", 0) > 0, invite
        ok = first(caller.sip_messages(), "SIP/2.0 200", "INVITE")
        assert media(ok).get("video", 0) > 0 and media(ok).get("audio", 0) > 0, ok
        # and pictures arrive at both ends (each decoded a frame: baresip names its size)
        for phone in (caller, sign_seat):
            await until(lambda p=phone: "video: receiving with resolution" in p.log_path.read_text(errors="replace"),
                        20, f"{phone.ext} receives video")
        await asyncio.to_thread(caller.hangup)
        t = await wait_ticket(controller.store, linkedid, 30)
        assert t.language == "csl" and t.queue == sign.queue and t.agent == "1006"
        assert "video:csl" in t.ivr_path and t.outcome == "answered"
    finally:
        caller.stop()


async def test_an_audio_only_caller_reaches_the_sign_language_seat_by_the_agents_transfer(
        controller, cfg, ami, sign_seat, agent_seat):
    target = cfg.transfer_targets["sign"]
    assert target.feature_code == "*842"
    await member_ready(ami, "sign", "1006")
    await member_ready(ami, cfg.center.general_queue, "1001")
    before = len(sign_seat.sip_messages())
    # a relative calls for a deaf citizen: 12358 goes to the general queue with no menu
    robot = await CallRobot(ami, number="12358", caller="13800018031", hold_s=60).dial()
    try:
        connect = await robot.wait_for(is_event("AgentConnect", Queue=f"{ASTERISK_QUEUE_PREFIX}general"), 30)
        agent = connect["DestChannel"]
        assert agent.startswith("PJSIP/1001-"), agent
        await asyncio.sleep(0.5)
        for d in target.feature_code:  # the agent keys *842 (DTMF received on the seat's channel)
            await ami.action("PlayDTMF", Channel=agent, Digit=d, Receive="yes")
            await asyncio.sleep(0.12)
        await robot.wait_for(is_event("AgentConnect", Queue=f"{ASTERISK_QUEUE_PREFIX}sign"), 20)
        await asyncio.sleep(0.5)
        for d in "*2":  # the agent hands the caller over
            await ami.action("PlayDTMF", Channel=agent, Digit=d, Receive="yes")
            await asyncio.sleep(0.12)
        done = await robot.wait_user_event(UserEventName.TRANSFER, 15, Outcome="completed")
        assert done["Target"] == "sign"
        # Asterisk moves the channels on its own time, not in step with the controller's event
        def handed_over(rows: list[dict[str, str]]) -> bool:
            sign = [r for r in rows if r["Channel"].startswith("PJSIP/1006-")]
            return bool(sign and sign[0].get("BridgeId")) and not any(r["Channel"].startswith("PJSIP/1001-")
                                                                       for r in rows)

        rows = await polled(lambda: call_channels(ami, robot.linkedid), handed_over)
        seat_rows = [r for r in rows if r["Channel"].startswith("PJSIP/1006-")]
        assert seat_rows and seat_rows[0].get("BridgeId"), rows  # the sign seat is in the call
        assert not any(r["Channel"].startswith("PJSIP/1001-") for r in rows), "the agent is free again"
        assert "vp8" not in await video_format(ami, seat_rows[0]["Channel"])
        # the video seat was rung audio-only and answered: the call works without video
        invite = first(sign_seat.sip_messages()[before:], "INVITE sip:1006", "INVITE")
        assert media(invite).get("audio", 0) > 0 and media(invite).get("video", 0) == 0, invite
        await robot.hangup()
        t = await wait_ticket(controller.store, robot.linkedid, 30)
        assert t.language == "csl"
        assert [(x["target"], x["outcome"]) for x in t.transfers] == [("sign", "completed")]
    finally:
        await robot.hangup()


async def test_with_the_controller_down_a_video_caller_still_reaches_the_sign_language_seat(cfg, ami, sign_seat):
    """No controller (FastAGI refused): the dialplan's own fallback sends a video call to `sign`, not `general`."""
    events: list[dict[str, str]] = []
    ami.on_event("*", events.append)
    await member_ready(ami, "sign", "1006")
    caller = BaresipSeat.caller("13800018032", bind=CARRIER_ADDRESS, sip_port=cfg.asterisk.sip.port)
    caller.start()
    try:
        await asyncio.to_thread(caller.dial, "057112345")
        join = await until(lambda: next((e for e in events if e.get("Event") == "QueueCallerJoin"
                                         and e.get("Channel", "").startswith("PJSIP/simcarrier-")), None),
                           40, "the video caller joins a queue")
        assert join["Queue"] == f"{ASTERISK_QUEUE_PREFIX}sign"
        assert any(e.get("UserEvent") == UserEventName.ROUTE and e.get("Fallback") == "1" for e in events)
        connect = await until(lambda: next((e for e in events if e.get("Event") == "AgentConnect"
                                            and e.get("Linkedid") == join["Linkedid"]), None), 20, "1006 answers")
        assert connect["DestChannel"].startswith("PJSIP/1006-")
        assert "vp8" in await video_format(ami, connect["DestChannel"])
    finally:
        await asyncio.to_thread(caller.hangup)
        caller.stop()
