"""Issue 12: a supervisor listens to, barges into and force-releases a live call, with REAL SIP seats.

A scripted caller reaches agent seat 1001 (baresip, its "voice" a 440 Hz tone) through the general
queue; supervisor seat 9001 (baresip, a 1300 Hz tone) dials *61 1001. What the caller hears is
recorded on the caller's own leg (MixMonitor, receive side: the `caller-robot-hear` sim context)
and measured: while the supervisor listens, no 1300 Hz reaches the caller (the agent's 440 Hz
does — so the recording does hear the call), nor after key 5 (whisper: the agent only); after the
supervisor keys 6 (barge) it does. Keys are
emulated with AMI PlayDTMF Receive on the supervisor's channel (Asterisk takes them as received
from the phone; baresip 1.0's ctrl_tcp cannot send DTMF in a call). Seat 1003 (role agent) dialing
the same code is refused. What the agent's phone receives is recorded too (baresip's sndfile): the
supervisor is heard there after key 5 (whisper), not before. Force release through the control socket ends the call, and its ticket's
history names who did it. Every use is in the audit log.
"""

from __future__ import annotations

import array
import asyncio
import pwd
import os
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
CALLER_HZ = 700


@pytest.fixture(scope="module")
def seats(cfg, asterisk, tmp_path_factory):
    import shutil

    require(shutil.which("baresip") is not None, "baresip is missing: apt-get install baresip")
    made: dict[str, BaresipSeat] = {}
    heard = tmp_path_factory.mktemp("agent-heard")  # what agent 1001's phone receives, one file per call
    try:
        for ext, hz in (("1001", AGENT_HZ), ("9001", SUPERVISOR_HZ), ("1003", AGENT_HZ)):
            s = BaresipSeat(ext, seat_secret(ext, cfg.seats[ext]), sip_port=cfg.asterisk.sip.port, tone_hz=hz,
                            record_dir=heard if ext == "1001" else None)
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
    """From now on, record what the caller hears into a new file (the last one is closed); the caller
    "speaks" a CALLER_HZ tone meanwhile (so the agent's phone receives a steady stream)."""
    await ami.action("Setvar", Channel=robot.channel, Variable="ROBOT_TONE", Value=str(CALLER_HZ))
    await ami.action("Setvar", Channel=robot.channel, Variable="ROBOT_HEAR", Value=name)
    await ami.action("Redirect", Channel=robot.channel, Context="caller-robot-hear", Exten="s", Priority="1")
    await robot.wait_user_event("SimRobotHearing", 5, File=name)
    return asterisk.host_path(asterisk.layout.spool) / "monitor" / f"{name}-heard.wav"


def blocks(path: Path, hz: float, rate: int = 8000, channels: int = 1) -> list[tuple[float, float]]:
    """(power at `hz`, total power) of each 100 ms block of a 16-bit PCM WAV (Goertzel; the first channel)."""
    raw = path.read_bytes()[44:]  # PCM after the RIFF header (read before or after the header is final)
    pcm = array.array("h")
    pcm.frombytes(raw[: len(raw) // 2 * 2])
    pcm = pcm[::channels]
    n = rate // 10
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    out = []
    for i in range(0, len(pcm) - n + 1, n):
        block = pcm[i:i + n]
        s1 = s2 = 0.0
        for x in block:
            s1, s2 = x + coeff * s1 - s2, s1
        out.append(((s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2 / n, float(sum(x * x for x in block))))
    return out


def tone_share(path: Path, hz: float, rate: int = 8000, channels: int = 1, start_s: float = 0.0,
               end_s: float | None = None) -> float:
    """How much of the recording's power (between start_s and end_s) is at `hz`, 0..1."""
    b = blocks(path, hz, rate, channels)[int(start_s * 10): None if end_s is None else int(end_s * 10)]
    total = sum(t for _, t in b)
    assert total > 0, f"{path} holds no audio there"
    return sum(a for a, _ in b) / total


def wav_format(path: Path) -> tuple[int, int]:
    """(sample rate, channels) from a WAV header."""
    import struct

    channels, rate = struct.unpack("<HI", path.read_bytes()[22:28])
    return rate, channels


async def supervision_notes(controller, ticket_no: str, within_s: float = 10.0) -> list:
    """The ticket's 强拆 history rows: written in the transaction that saves the call's final record, which may
    come after the ticket's first save, so looked for again until they are there or `within_s` has passed."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        notes = [h for h in await controller.store.history(ticket_no) if h.field == "supervision"]
        if notes or asyncio.get_running_loop().time() > deadline:
            return notes
        await asyncio.sleep(0.2)


async def audit_rows(controller, action: str) -> list[dict]:
    return [dict(e.asked, uid=e.uid, user=e.user) for e in await controller.store.audit_entries(200)
            if e.action == action]


async def test_listen_and_whisper_are_not_heard_by_the_caller_then_key_6_barges_in(controller, ami, asterisk, seats, watch):
    heard_dir = seats["1001"].record_dir
    for old in heard_dir.glob("*.wav"):
        old.unlink()
    robot, agent = await call_to_agent(ami, "13900012001")
    loop = asyncio.get_running_loop()
    try:
        await asyncio.to_thread(seats["9001"].dial, "*611001")
        start = await watch.wait(spy_started("PJSIP/9001-", agent), 15)
        supervisor = start["SpyerChannel"]
        listened = await hear(ami, asterisk, robot, f"sup-listen-{robot.linkedid}")
        t0 = loop.time()  # the agent's phone receives the caller's tone from about now
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

        t_whisper = loop.time() - t0
        attach = watch.seen("UserEvent", UserEvent="HotlineSupervise", Step="attach", Seat="9001")
        assert [(e["Mode"], e["Agent"], e["Call"], e["Target"]) for e in attach] == [
            ("listen", "1001", robot.linkedid, agent)]
        await key("5", "whisper")  # only the agent hears the supervisor now
        whispered = await hear(ami, asterisk, robot, f"sup-whisper-{robot.linkedid}")
        await asyncio.sleep(3.0)
        t_barge = loop.time() - t0
        await key("6", "barge")
        barged = await hear(ami, asterisk, robot, f"sup-barge-{robot.linkedid}")
        await asyncio.sleep(3.0)
        await hear(ami, asterisk, robot, f"sup-after-{robot.linkedid}")  # closes the barge file
    finally:
        await asyncio.to_thread(seats["9001"].hangup)
        await robot.hangup()
    await robot.wait_hangup(10)

    modes = [e["Mode"] for e in watch.seen("UserEvent", UserEvent="HotlineSupervise", Step="attach", Seat="9001")]
    assert modes == ["listen", "whisper", "barge"]
    # while listening the caller hears the agent (440 Hz) and nothing of the supervisor (1300 Hz) …
    assert tone_share(listened, AGENT_HZ) > 0.2, "the recording does not hear the agent: it measures nothing"
    assert tone_share(listened, SUPERVISOR_HZ) < 0.005
    # … nor while whispering to the agent (key 5) …
    assert tone_share(whispered, AGENT_HZ) > 0.2 and tone_share(whispered, SUPERVISOR_HZ) < 0.005
    # the agent's phone: the supervisor is not heard while listening, heard once whispering (key 5)
    [agent_heard] = list(heard_dir.glob("*dec.wav"))
    rate, channels = wav_format(agent_heard)
    # the file's clock: t0 is where the caller's tone begins in it
    onset = next(i for i, (a, t) in enumerate(blocks(agent_heard, CALLER_HZ, rate, channels)) if t and a / t > 0.5)
    at = onset / 10 + 0.2
    assert tone_share(agent_heard, CALLER_HZ, rate, channels, at, at + t_whisper - 0.5) > 0.2  # it hears the caller
    assert tone_share(agent_heard, SUPERVISOR_HZ, rate, channels, at, at + t_whisper - 0.5) < 0.005
    assert tone_share(agent_heard, SUPERVISOR_HZ, rate, channels, at + t_whisper + 1.0, at + t_barge - 0.5) > 0.05
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


async def test_a_seat_without_the_supervisor_role_is_refused_then_the_supervisor_releases(controller, ami, seats,
                                                                                          watch):
    robot, agent = await call_to_agent(ami, "13900012002")
    try:
        await asyncio.to_thread(seats["1003"].dial, "*611001")
        prompt = await watch.wait(lambda e: e.get("UserEvent") == "HotlinePrompt" and e.get("Seat") == "1003", 15)
        assert prompt["Prompt"] == "supervisor_refused" and prompt["Result"] == "not_supervisor"
        await asyncio.sleep(1.5)
        assert not [e for e in watch.seen("ChanSpyStart") if e.get("SpyerChannel", "").startswith("PJSIP/1003-")]
        assert not robot.hung_up  # the call goes on untouched
        await asyncio.to_thread(seats["1003"].hangup)
        await asyncio.to_thread(seats["1003"].dial, "*691001")  # nor may it force release
        await watch.wait(lambda e: e.get("UserEvent") == "HotlinePrompt" and e.get("Seat") == "1003"
                         and e.get("Result") == "not_supervisor" and e is not prompt, 15)
        await asyncio.sleep(1.0)
        assert not robot.hung_up

        await asyncio.to_thread(seats["9001"].dial, "*691001")  # 强拆 from the supervisor's phone
        done = await watch.wait(lambda e: e.get("UserEvent") == "HotlinePrompt" and e.get("Seat") == "9001", 15)
        assert done["Prompt"] == "supervisor_released"
        await robot.wait_hangup(10)
    finally:
        await asyncio.to_thread(seats["1003"].hangup)
        await asyncio.to_thread(seats["9001"].hangup)
        await robot.hangup()
    refused = await audit_rows(controller, "supervise listen") + await audit_rows(controller, "supervise release")
    assert sum(r["seat"] == "1003" and r["result"] == "refused" and r["reason"] == "not_supervisor"
               for r in refused) == 2, refused
    t = await wait_ticket(controller.store, robot.linkedid, 20)
    notes = [(h.field, h.to_value, h.actor) for h in await supervision_notes(controller, t.ticket_no)]
    assert notes == [("supervision", "released", "seat:9001 (seat 9001, agent 1001)")]


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
    notes = await supervision_notes(controller, t.ticket_no)
    # who released it is the socket's peer (the kernel's word: root here), the client's actor only a label
    me = pwd.getpwuid(os.getuid()).pw_name
    assert [(h.to_value, h.actor) for h in notes] == [("released", f"{me} (supervisor:e2e) (seat 9001, agent 1001)")]
    rows = await audit_rows(controller, "supervise release")
    assert any(r["linkedid"] == robot.linkedid and r["via"] == "cli" and r["uid"] == 0 and r["result"] == "released"
               for r in rows), rows
    api = await audit_rows(controller, "supervise listen")
    assert any(r["linkedid"] == robot.linkedid and r["via"] == "api" and r["actor"] == "supervisor:e2e"
               and r["result"] == "ringing" for r in api), api
