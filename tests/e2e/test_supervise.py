"""Issue 12: a supervisor listens to, barges into and force-releases a live call, with REAL SIP seats.

A scripted caller reaches agent seat 1001 (baresip, its "voice" a 440 Hz tone) through the general
queue; supervisor seat 9001 (baresip, a 1300 Hz tone) dials *61 1001. What the caller hears is
recorded on the caller's own leg (MixMonitor, receive side: the `caller-robot-hear` sim context)
and measured: while the supervisor listens, no 1300 Hz reaches the caller (the agent's 440 Hz
does — so the recording does hear the call), nor after key 5 (whisper: the agent only); after the
supervisor keys 6 (barge) it does. Keys are
emulated with AMI PlayDTMF Receive on the supervisor's channel (Asterisk takes them as received
from the phone; baresip 1.0's ctrl_tcp cannot send DTMF in a call). Seat 1003 (role agent) dialing
the same code is refused. Force release through the control socket ends the call, and its ticket's
history names who did it. Every use is in the audit log.
"""

from __future__ import annotations

import array
import asyncio
import math
from pathlib import Path

import pytest
import pytest_asyncio

from hotline.callrobot import CallRobot, wait_ticket
from hotline.control import ask
from hotline.sipseat import BaresipSeat
from model.secrets import seat_secret
from tests.conftest import require

pytestmark = pytest.mark.e2e

AGENT_HZ = 440
SUPERVISOR_HZ = 1300


@pytest.fixture(scope="module")
def seats(cfg, asterisk):
    import shutil

    require(shutil.which("baresip") is not None, "baresip is missing: apt-get install baresip")
    made: dict[str, BaresipSeat] = {}
    try:
        for ext, hz in (("1001", AGENT_HZ), ("9001", SUPERVISOR_HZ), ("1003", AGENT_HZ)):
            s = BaresipSeat(ext, seat_secret(ext, cfg.seats[ext]), sip_port=cfg.asterisk.sip.port, tone_hz=hz)
            made[ext] = s
            s.start()
        for s in made.values():
            s.wait_registered(10)
        yield made
    finally:
        for s in made.values():
            s.stop()


class Watch:
    """AMI events of the test world's own link (ChanSpy, the supervisor's UserEvents, prompts)."""

    def __init__(self, ami) -> None:
        self.events: list[dict[str, str]] = []
        self._new = asyncio.Event()
        self._offs = [ami.on_event(n, self._on) for n in ("ChanSpyStart", "ChanSpyStop", "UserEvent", "Hangup")]

    def _on(self, e: dict[str, str]) -> None:
        self.events.append(e)
        self._new.set()

    def close(self) -> None:
        for off in self._offs:
            off()

    def seen(self, name: str, **h: str) -> list[dict[str, str]]:
        return [e for e in self.events if e.get("Event") == name and all(e.get(k) == v for k, v in h.items())]

    async def wait(self, pred, timeout: float = 15.0, after: int = 0) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for e in self.events[after:]:
                if pred(e):
                    return e
            left = end - loop.time()
            if left <= 0:
                raise TimeoutError(f"no such event in {timeout} s; last: {[x.get('Event') for x in self.events[-15:]]}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass


@pytest_asyncio.fixture
async def watch(ami):
    w = Watch(ami)
    yield w
    w.close()


def spy_started(spyer: str, spyee: str):
    return lambda e: (e.get("Event") == "ChanSpyStart" and e.get("SpyerChannel", "").startswith(spyer)
                      and e.get("SpyeeChannel") == spyee)


async def call_to_agent(ami, caller: str) -> tuple[CallRobot, str]:
    robot = await CallRobot(ami, number="12358", caller=caller).dial()
    connect = await robot.wait_for(lambda e: e.get("Event") == "AgentConnect", 20)
    agent = connect["DestChannel"]
    assert agent.startswith("PJSIP/1001-"), agent
    await asyncio.sleep(0.5)
    return robot, agent


async def hear(ami, asterisk, robot: CallRobot, name: str) -> Path:
    """From now on, record what the caller hears into a new file (the last one is closed)."""
    await ami.action("Setvar", Channel=robot.channel, Variable="ROBOT_HEAR", Value=name)
    await ami.action("Redirect", Channel=robot.channel, Context="caller-robot-hear", Exten="s", Priority="1")
    await robot.wait_user_event("SimRobotHearing", 5, File=name)
    return asterisk.host_path(asterisk.layout.spool) / "monitor" / f"{name}-heard.wav"


def tone_share(path: Path, hz: float, rate: int = 8000) -> float:
    """How much of the recording's power is at `hz` (Goertzel over 100 ms blocks, 0..1)."""
    raw = path.read_bytes()[44:]  # 16-bit mono PCM after the RIFF header (read before or after it is final)
    pcm = array.array("h")
    pcm.frombytes(raw[: len(raw) // 2 * 2])
    n = rate // 10
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    at, total = 0.0, 0.0
    for i in range(0, len(pcm) - n + 1, n):
        block = pcm[i:i + n]
        s1 = s2 = 0.0
        for x in block:
            s1, s2 = x + coeff * s1 - s2, s1
        at += (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2 / n
        total += sum(x * x for x in block)
    assert total > 0, f"{path} holds no audio"
    return at / total


async def audit_rows(controller, action: str) -> list[dict]:
    return [dict(e.asked, uid=e.uid, user=e.user) for e in await controller.store.audit_entries(200)
            if e.action == action]


async def test_listen_and_whisper_are_not_heard_by_the_caller_then_key_6_barges_in(controller, ami, asterisk, seats, watch):
    robot, agent = await call_to_agent(ami, "13900012001")
    try:
        await asyncio.to_thread(seats["9001"].dial, "*611001")
        start = await watch.wait(spy_started("PJSIP/9001-", agent), 15)
        supervisor = start["SpyerChannel"]
        listened = await hear(ami, asterisk, robot, f"sup-listen-{robot.linkedid}")
        await asyncio.sleep(3.0)

        async def key(digit: str, mode: str) -> None:
            """The supervisor keys `digit`: the switch is reported, and ChanSpy attaches again in `mode`."""
            mark = len(watch.events)
            await ami.action("PlayDTMF", Channel=supervisor, Digit=digit, Receive="yes")
            switch = await watch.wait(lambda e: e.get("UserEvent") == "HotlineSupervise"
                                      and e.get("Step") == "switch", 10, after=mark)
            assert (switch["Mode"], switch["Seat"], switch["Agent"], switch["Call"]) == (mode, "9001", "1001",
                                                                                       robot.linkedid)
            await watch.wait(spy_started("PJSIP/9001-", agent), 10, after=mark)

        await key("5", "whisper")  # only the agent hears the supervisor now
        whispered = await hear(ami, asterisk, robot, f"sup-whisper-{robot.linkedid}")
        await asyncio.sleep(3.0)
        await key("6", "barge")
        barged = await hear(ami, asterisk, robot, f"sup-barge-{robot.linkedid}")
        await asyncio.sleep(3.0)
        await hear(ami, asterisk, robot, f"sup-after-{robot.linkedid}")  # closes the barge file
    finally:
        await asyncio.to_thread(seats["9001"].hangup)
        await robot.hangup()
    await robot.wait_hangup(10)

    # while listening the caller hears the agent (440 Hz) and nothing of the supervisor (1300 Hz) …
    assert tone_share(listened, AGENT_HZ) > 0.2, "the recording does not hear the agent: it measures nothing"
    assert tone_share(listened, SUPERVISOR_HZ) < 0.005
    # … nor while whispering to the agent (key 5) …
    assert tone_share(whispered, AGENT_HZ) > 0.2 and tone_share(whispered, SUPERVISOR_HZ) < 0.005
    # … after key 6 (barge) the supervisor is heard by the caller too: three-way
    assert tone_share(barged, SUPERVISOR_HZ) > 0.05
    assert tone_share(barged, AGENT_HZ) > 0.05

    listen = await audit_rows(controller, "supervise listen")
    assert any(r["seat"] == "9001" and r["agent"] == "1001" and r["linkedid"] == robot.linkedid
               and r["via"] == "phone" and r["result"] == "started" and r["user"] == "seat:9001" for r in listen), listen
    whisper = await audit_rows(controller, "supervise whisper")
    assert any(r["via"] == "key" and r["result"] == "switched" and r["linkedid"] == robot.linkedid for r in whisper)
    barge = await audit_rows(controller, "supervise barge")
    assert any(r["via"] == "key" and r["result"] == "switched" and r["linkedid"] == robot.linkedid for r in barge), barge
    await wait_ticket(controller.store, robot.linkedid, 20)
    assert await controller.store.get_by_linkedid(start["SpyerLinkedid"]) is None  # a session is no call of its own


async def test_a_seat_without_the_supervisor_role_is_refused(controller, ami, seats, watch):
    robot, agent = await call_to_agent(ami, "13900012002")
    try:
        await asyncio.to_thread(seats["1003"].dial, "*611001")
        prompt = await watch.wait(lambda e: e.get("UserEvent") == "HotlinePrompt" and e.get("Seat") == "1003", 15)
        assert prompt["Prompt"] == "supervisor_refused" and prompt["Result"] == "not_supervisor"
        await asyncio.sleep(1.5)
        assert not [e for e in watch.seen("ChanSpyStart") if e.get("SpyerChannel", "").startswith("PJSIP/1003-")]
        assert not robot.hung_up  # the call goes on untouched
    finally:
        await asyncio.to_thread(seats["1003"].hangup)
        await robot.hangup()
    refused = await audit_rows(controller, "supervise listen")
    assert any(r["seat"] == "1003" and r["result"] == "refused" and r["reason"] == "not_supervisor"
               for r in refused), refused


async def test_api_listen_rings_the_supervisor_and_force_release_ends_the_call(controller, ami, seats, watch):
    robot, agent = await call_to_agent(ami, "13900012003")
    answer = await controller.supervise("listen", "9001", "1001", actor="supervisor:e2e", uid=0, user="root")
    assert answer["ok"] and answer["linkedid"] == robot.linkedid, answer
    await watch.wait(spy_started("PJSIP/9001-", agent), 15)  # the seat auto-answered; ChanSpy attached

    released = await ask(controller.control.path, {"op": "supervise", "mode": "release", "seat": "9001",
                                                   "agent": "1001", "actor": "supervisor:e2e"})
    assert released["ok"] and released["linkedid"] == robot.linkedid, released
    await robot.wait_hangup(10)
    await watch.wait(lambda e: e.get("Event") == "ChanSpyStop" and e.get("SpyeeChannel") == agent, 10)
    t = await wait_ticket(controller.store, robot.linkedid, 20)
    assert t.outcome == "answered" and t.agent == "1001"
    notes = [h for h in await controller.store.history(t.ticket_no) if h.field == "supervision"]
    assert [(h.to_value, h.actor) for h in notes] == [("released", "supervisor:e2e (seat 9001, agent 1001)")]
    rows = await audit_rows(controller, "supervise release")
    assert any(r["linkedid"] == robot.linkedid and r["via"] == "cli" and r["uid"] == 0 and r["result"] == "released"
               for r in rows), rows
    api = await audit_rows(controller, "supervise listen")
    assert any(r["linkedid"] == robot.linkedid and r["via"] == "api" and r["actor"] == "supervisor:e2e" for r in api)
