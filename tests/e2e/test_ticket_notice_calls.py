"""Issue 13, item 1 through the real Asterisk: the caller leaves with their ticket number and query password.

A caller reaches a scripted agent; the ticket number exists while they talk (the agent's channel
has it); the agent hangs up; the IVR reads the ticket number and a fresh query password digit by
digit, * repeats it; then the survey. What the caller heard is read from Asterisk's own events (the
sim account's `agi` and `dialplan` classes: the files of each reading's one Playback, its
PLAYBACKSTATUS and how long it played), so the test checks the numbers the caller really heard are
the ticket's, with a pause between two digits. A second call keys them into the self-query and
hears the ticket's state.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import wave
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hotline.callrobot import CallRobot, wait_ticket
from tests.unit.test_outbox import Receiver
from tests.e2e.test_ivr import (  # noqa: F401 - make_controller is a fixture
    during_greeting,
    is_event,
    joined_queue,
    make_controller,
    prompts,
    wait_prompt,
    wait_user_event,
)

pytestmark = pytest.mark.e2e

_PLAYBACK = re.compile(r'^EXEC Playback "([^"]+)"$')
_DIGIT = re.compile(r"^hotline/digits/(\d)$")


def agi_commands(robot: CallRobot) -> list[str]:
    """The AGI commands Asterisk ran on this call, in order (AGIExecStart; the sim account reads `agi`)."""
    return [e.get("Command", "") for e in robot.events if e.get("Event") == "AGIExecStart"]


def notice_playbacks(robot: CallRobot) -> list[tuple[list[str], float, str]]:
    """Each reading of the notice as Asterisk played it: (the files of its Playback, in order; how long the
    Playback ran, s; its PLAYBACKSTATUS: SUCCESS when every file was found and played)."""
    out: list[tuple[list[str], float, str]] = []
    start: dict[str, str] | None = None
    files: list[str] = []
    status = ""
    for e in robot.events:
        kind = e.get("Event")
        if kind == "AGIExecStart" and (m := _PLAYBACK.match(e.get("Command", ""))) and "notice_" in m.group(1):
            start, files, status = e, m.group(1).split("&"), ""
        elif start is None or e.get("Channel") != start.get("Channel"):
            continue
        elif kind == "VarSet" and e.get("Variable") == "PLAYBACKSTATUS":
            status = e.get("Value", "")
        elif kind == "AGIExecEnd" and e.get("CommandId") == start.get("CommandId"):
            out.append((files, float(e["Timestamp"]) - float(start["Timestamp"]), status))
            start = None
    return out


def read_out(files: list[str], gap: str) -> tuple[str, str]:
    """(ticket digits, password digits) of one reading's files, checking its shape on the way: the ticket
    prompt, the number's digits, the password prompt, the password's digits, and `gap` between every two
    digits of a number, nowhere else."""
    i = files.index("hotline/notice_password_is")
    assert files[0] == "hotline/notice_ticket_is", files
    numbers = []
    for run in (files[1:i], files[i + 1:]):
        assert run[1::2] == [gap] * (len(run) // 2), run  # a pause between every two digits
        numbers.append("".join(_DIGIT.fullmatch(f).group(1) for f in run[::2]))  # type: ignore[union-attr]
    return numbers[0], numbers[1]


def seconds_of(sounds: Path, name: str) -> float:
    with wave.open(str(sounds / f"{name}.wav"), "rb") as w:
        return w.getnframes() / w.getframerate()


async def test_the_caller_hears_number_and_password_after_the_agent_hangs_up_and_queries_with_them(
        make_controller, cfg, ami, agents, asterisk, monkeypatch):  # noqa: F811
    # with the SMS option on: a local gateway receives the same notice through the outbox
    gateway = Receiver()
    gateway.start()
    monkeypatch.setenv("E2E_SMS_TOKEN", "sms-token")
    monkeypatch.setenv("E2E_SMS_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    with_sms = cfg.model_copy(deep=True)
    with_sms.sms.url, with_sms.sms.token_env, with_sms.sms.key_env = gateway.url, "E2E_SMS_TOKEN", "E2E_SMS_KEY"
    with_sms.sms.allow_http, with_sms.sms.poll_s = True, 0.5
    try:
        await _told_then_queried(make_controller, with_sms, ami, agents, gateway, asterisk.sounds_dir)
    finally:
        gateway.stop()


async def _told_then_queried(make_controller, cfg, ami, agents, gateway: Receiver,  # noqa: F811
                             sounds: Path) -> None:
    c = await make_controller(cfg)
    await agents.add("general", talk_s=3)  # the agent hangs up first
    with capture_logs() as logs:
        robot = await CallRobot(ami, caller="13900000131").dial()
        await during_greeting(robot, "0")
        assert await joined_queue(robot) == "hotline-general"
        # the number exists while the caller waits and talks: in the store and on the agent's channel
        early = await wait_ticket(c.store, robot.linkedid, 10, complete=False)
        assert early.outcome == "in_progress" and len(early.ticket_no) == 12 and early.query_password_hash == ""
        answered = await robot.wait_for(is_event("UserEvent", UserEvent="SimAgentAnswered"), 30)
        assert answered["Ticket"] == early.ticket_no
        await wait_prompt(robot, "notice_repeat", 1, timeout=60)
        await robot.press("*")  # "press * to hear it again"
        await wait_prompt(robot, "notice_repeat", 2, timeout=60)
        await wait_prompt(robot, "survey", timeout=30)  # silence: on to the survey
        await robot.press("2")
        await wait_user_event(robot, "HotlineSurvey", 20)
        await robot.wait_hangup(30)
        t = await wait_ticket(c.store, robot.linkedid, 20)
    assert t.ticket_no == early.ticket_no and t.outcome == "answered" and t.survey_rating == 2

    # what was played, in order: the notice twice, then the survey
    order = [e["Prompt"] for e in robot.user_events("HotlinePrompt")]
    start = order.index("notice_ticket_is")
    assert order[start:] == ["notice_ticket_is", "notice_password_is", "notice_repeat"] * 2 + ["survey",
                                                                                              "survey_thanks"]
    first = next(e for e in robot.user_events("HotlinePrompt") if e["Prompt"] == "notice_ticket_is")
    repeat = next(e for e in robot.user_events("HotlinePrompt") if e["Prompt"] == "notice_repeat")
    print(f"\nthe notice, once: {float(repeat['Timestamp']) - float(first['Timestamp']):.1f} s "
          f"(ticket number and password, digit by digit)")
    told = notice_playbacks(robot)
    assert len(told) == 2 and told[0][0] == told[1][0]  # told, then again on *: the same numbers
    gap = "hotline/silence/300ms"  # ticket_notice.digit_gap_s: 0.3
    assert seconds_of(sounds, gap) == cfg.ticket_notice.digit_gap_s
    ticket_digits, password = read_out(told[0][0], gap)
    assert ticket_digits == t.ticket_no  # the numbers the caller heard are the ticket's
    assert re.fullmatch(r"\d{6}", password)
    assert await c.store.verify_query(t.ticket_no, password) is not None
    # every file of each reading was found and played to its end, the pauses too: the Playback took as long
    # as its files (and a little per file to open it)
    length = sum(seconds_of(sounds, f) for f in told[0][0])
    for files, took, status in told:
        assert status == "SUCCESS"
        assert length - 0.2 <= took <= length + 0.05 * len(files) + 0.5, (took, length)
    print(f"the notice's Playback: {len(told[0][0])} files, {length:.1f} s of audio, played in "
          f"{told[0][1]:.1f} s")
    # a handful of AGI commands per reading (issue 15): its prompts' HotlinePrompt events, one Playback,
    # then the repeat question (its prompt's event, the prompt, a wait for the key when none came during it)
    cmds = agi_commands(robot)
    first = next(i for i, cmd in enumerate(cmds) if "Prompt: notice_ticket_is" in cmd)
    survey = next(i for i, cmd in enumerate(cmds) if "Prompt: survey" in cmd)
    notice_cmds = cmds[first:survey]
    print(f"AGI commands of the notice, told twice: {len(notice_cmds)}")
    assert [cmd.split('"')[0] for cmd in notice_cmds if not cmd.startswith("WAIT FOR DIGIT")] == [
        "EXEC UserEvent ", "EXEC UserEvent ", "EXEC Playback ", "EXEC UserEvent ", "STREAM FILE hotline/notice_repeat "
    ] * 2 and len(notice_cmds) <= 12, notice_cmds

    # the password is stored hashed only: never in a log, an event, the ticket's other columns or the outbox
    assert not any(password in repr(e) for e in logs)
    for e in robot.events:
        if e.get("Event") == "UserEvent":
            assert password not in repr(e), e
    row = {k: v for k, v in vars(t).items() if k not in ("query_password_hash", "_sa_instance_state")}
    assert password not in repr(row)
    for o in await c.store.outbox_for(t.ticket_no):
        assert password not in repr(o.payload) and password not in (o.secret or "")
    issued = [h for h in await c.store.history(t.ticket_no) if h.field == "query_password"]
    assert [(h.to_value, h.actor) for h in issued] == [("issued", "ivr")]
    # the SMS: the same number and password, in that one message only; its outbox row kept it sealed, now erased
    for _ in range(50):
        if gateway.posts:
            break
        await asyncio.sleep(0.2)
    assert len(gateway.posts) == 1, gateway.posts
    key, sms = gateway.posts[0]
    assert sms == {"to": "13900000131", "ticket_no": t.ticket_no,
                   "text": f"您的工单编号{t.ticket_no}，查询密码{password}。拨打12345按5可查询办理进度。"}
    rows = [o for o in await c.store.outbox_for(t.ticket_no) if o.endpoint == "sms"]
    assert len(rows) == 1 and rows[0].idempotency_key == key and rows[0].payload == {"event": "sms_notice",
                                                                                    "ticket_no": t.ticket_no}
    for _ in range(25):
        rows = [o for o in await c.store.outbox_for(t.ticket_no) if o.endpoint == "sms"]
        if rows[0].delivered_at is not None:
            break
        await asyncio.sleep(0.2)
    assert rows[0].delivered_at is not None and rows[0].secret is None

    # a second call: the self-query with what the caller heard reads the ticket's state
    second = await CallRobot(ami, caller="13900000132").dial()
    await during_greeting(second, "5")
    await wait_prompt(second, "query_ticket")
    await second.press(t.ticket_no + "#", gap_s=0.2)
    await wait_prompt(second, "query_password")
    await second.press(password + "#", gap_s=0.2)
    found = await wait_user_event(second, "HotlineSelfQuery", 20)
    assert found["Result"] == "found" and found["Ticket"] == t.ticket_no
    await wait_prompt(second, "query_state")
    await wait_prompt(second, "state_accepted")  # its state: 已受理
    await wait_prompt(second, "query_done")
    await second.wait_hangup(30)
    # a call that ended in the IVR without a request: numbered, no password, no notice
    own = await wait_ticket(c.store, second.linkedid, 20)
    assert own.ticket_no != t.ticket_no and own.query_password_hash == ""
    assert not prompts(second, "notice_ticket_is")
    await asyncio.sleep(1.0)
    assert [p["ticket_no"] for _, p in gateway.posts] == [t.ticket_no]  # and no SMS for it


async def test_a_caller_hanging_up_during_the_notice_ends_the_script_at_once(make_controller, cfg, ami,  # noqa: F811
                                                                             agents):
    """A caller hanging up in the middle of a reading's Playback: the script sees the hang-up there (result -1,
    confirmed), announces no repeat question to a dead channel, asks no survey and does not log the notice
    as heard."""
    c = await make_controller(cfg)
    await agents.add("general", talk_s=2)
    with capture_logs() as logs:
        robot = await CallRobot(ami, caller="13900000133").dial()
        await during_greeting(robot, "0")
        await robot.wait_for(is_event("UserEvent", UserEvent="SimAgentAnswered"), 30)
        await wait_prompt(robot, "notice_password_is", timeout=30)  # announced as the reading's Playback starts
        await asyncio.sleep(2.0)  # well inside the reading (about 8 s)
        await robot.hangup()
        await robot.wait_hangup(10)
        t = await wait_ticket(c.store, robot.linkedid, 20)
        ours = {e.get("Uniqueid") for e in robot.events}
        for _ in range(50):
            ended = [e for e in logs if e["event"] == "agi_session_ended" and e.get("script") == "survey"
                     and e.get("uniqueid") in ours]
            if ended:
                break
            await asyncio.sleep(0.1)
    assert t.outcome == "answered" and t.survey_rating is None
    assert [e["outcome"] for e in ended] == ["hangup"], ended
    assert not prompts(robot, "notice_repeat") and not prompts(robot, "survey")
    assert not [e for e in logs if e["event"] == "ticket_notice_told"]
    cmds = agi_commands(robot)
    after = cmds[next(i for i, cmd in enumerate(cmds) if cmd.startswith("EXEC Playback")) + 1:]
    assert after in ([], ["CHANNEL STATUS"]), after  # nothing but the hang-up's confirmation
