"""Issue 13 (items 3 and 4): callbacks and 回访 that run themselves, through the real Asterisk.

* an abandoned call is called back by the controller's scheduler within the rule's time and an agent of the
  queue takes it; a phone that never answers is tried `max_attempts` times, `spacing_min` apart, then given
  up — every attempt on the missed call's ticket;
* a ticket closed (办结) by a supervisor gets its 回访 call; the citizen's phone (a robot) hears the ticket
  number and category, keys "resolved" and "very dissatisfied", and the ticket reopens to 督办 with the answer;
* two controllers sharing one PostgreSQL dial each callback once.

Short settings (seconds instead of minutes) stand in for the clock; the rules' own timing is unit-tested on an
injected clock (tests/unit/test_outreach_rules.py, test_outreach_store.py). Run with your own instance:
HOTLINE_INSTANCE=loopb HOTLINE_PORT_OFFSET=700 .venv/bin/pytest tests/e2e/test_outreach.py
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from hotline.callrobot import CallRobot, abandoned_call, wait_ticket
from hotline.controller import Controller
from model.config import Hours
from tests.e2e.conftest import fresh_pg_database
from ticketbridge.callbacks import CALLBACK_PREFIX, FOLLOWUP_PREFIX

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ALWAYS = "outreach_e2e_always"


@pytest.fixture(autouse=True)
def outreach_on(cfg):
    """Both schedulers on, with seconds where a center configures minutes; citizens' phones are the sim's
    caller-answer context (numbers starting 000 ring and never answer)."""
    old_cb, old_fu, old_allow, old_hours = (cfg.callbacks.model_copy(deep=True), cfg.followups.model_copy(deep=True),
                                            list(cfg.outbound.allow), dict(cfg.hours))
    cfg.hours[ALWAYS] = Hours(weekly={d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    cb = cfg.callbacks
    cb.dial, cb.ring_s, cb.queue, cb.connect = "Local/{number}@caller-answer", 4, "general", "queue"
    cb.auto = cb.auto.model_copy(update=dict(enabled=True, delay_min=0, within_min=5, max_attempts=2,
                                             spacing_min=0.1, hours=ALWAYS, poll_s=0.5, max_concurrent=4))
    fu = cfg.followups
    fu.dial, fu.ring_s, fu.max_call_s, fu.timeout_s = "Local/{number}@caller-answer", 6, 90, 10
    fu.auto = fu.auto.model_copy(update=dict(enabled=True, delay_min=0, within_min=10, max_attempts=2,
                                             spacing_min=0.1, hours=ALWAYS, poll_s=0.5))
    # only this file's citizens: the controllers replay the session's CDR file, so other tests' missed calls
    # become tickets here too — the outbound policy keeps them from being called back (given up instead)
    cfg.outbound.allow = ["_13577XXXXXX", "_000778XXXX"]
    yield
    cfg.callbacks, cfg.followups, cfg.outbound.allow = old_cb, old_fu, old_allow
    cfg.hours.clear()
    cfg.hours.update(old_hours)


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


class Watch:
    """Every AMI event of the calls the hotline placed itself (Linkedid callback-… / followup-…)."""

    def __init__(self, ami: Any) -> None:
        self.events: list[dict[str, str]] = []
        self._off = ami.on_event("*", self._on)

    def _on(self, e: dict[str, str]) -> None:
        lid = e.get("Linkedid", "")
        if lid.startswith(CALLBACK_PREFIX) or lid.startswith(FOLLOWUP_PREFIX) or e.get("UserEvent", "").startswith(
                "SimCaller"):
            self.events.append(e)

    def of(self, prefix: str, event: str | None = None, **headers: str) -> list[dict[str, str]]:
        return [e for e in self.events if e.get("Linkedid", "").startswith(prefix)
                and (event is None or e.get("Event") == event or e.get("UserEvent") == event)
                and all(e.get(k) == v for k, v in headers.items())]

    async def wait(self, pred, timeout: float, what: str) -> dict[str, str]:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if pred(e):
                    return e
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what} not seen in {timeout} s")

    def close(self) -> None:
        self._off()


async def test_missed_calls_are_called_back_by_themselves_and_an_agent_takes_them(controller, ami, agents) -> None:
    store = controller.store
    sfx = f"{random.randrange(10**4):04d}"
    c_ab, c_never = "1357701" + sfx, "000778" + sfx
    watch = Watch(ami)
    try:
        ab, never = await asyncio.gather(abandoned_call(ami, c_ab), abandoned_call(ami, c_never, in_ivr=True))
        t_ab = await wait_ticket(store, ab.linkedid, 20)
        saved_at = time.monotonic()
        t_never = await wait_ticket(store, never.linkedid, 20)
        assert t_ab.outcome == "abandoned_in_queue" and t_never.outcome == "ended_in_ivr"
        await agents.add("general", talk_s=2)
        # the scheduler rings the citizen back (poll 0.5 s, due at once) and an agent of the queue answers
        prefix = CALLBACK_PREFIX + t_ab.ticket_no
        connect = await watch.wait(lambda e: e.get("Event") == "AgentConnect"
                                   and e.get("Linkedid", "").startswith(prefix), 30, "the callback at an agent")
        took = time.monotonic() - saved_at
        assert took < 15, f"the callback reached an agent {took:.1f} s after the missed call's ticket"
        # the queue call carries the original ticket, and the agent's phone shows the citizen's number and it
        var = await ami.action("Getvar", Channel=connect["Channel"], Variable="HOTLINE_CALLBACK")
        assert var.get("Value") == t_ab.ticket_no, var
        assert (connect.get("CallerIDNum"), connect.get("CallerIDName")) == (c_ab, f"callback {t_ab.ticket_no}"), connect
        deadline = time.monotonic() + 20
        while (cb := await store.callback_for(t_ab.ticket_no)) is None or cb.status != "done":
            assert time.monotonic() < deadline, f"callback not done: {cb}"
            await asyncio.sleep(0.3)
        assert cb.attempts == 1 and "connected to queue general" in (cb.last_result or "")
        moves = [(h.actor, h.from_value, h.to_value) for h in await store.history(t_ab.ticket_no)
                 if h.field == "callback"]
        assert moves == [("scheduler", "pending", "dialing"), ("scheduler", "dialing", "done")], moves
        t_ab2 = await store.get_ticket(t_ab.ticket_no)
        assert t_ab2 is not None and not t_ab2.callback_needed

        # the phone that never answers: 2 attempts, at least 6 s apart, then given up — all on its ticket
        deadline = time.monotonic() + 60
        while True:
            hist = [h for h in await store.history(t_never.ticket_no) if h.field == "callback"]
            if any(h.to_value == "given_up" for h in hist):
                break
            assert time.monotonic() < deadline, [(h.from_value, h.to_value, h.note) for h in hist]
            await asyncio.sleep(0.5)
        assert [(h.from_value, h.to_value) for h in hist] == [
            ("pending", "dialing"), ("dialing", "failed"), ("failed", "dialing"), ("dialing", "failed"),
            ("failed", "given_up")], [(h.from_value, h.to_value, h.note) for h in hist]
        assert hist[1].note == "attempt 1: no answer" and hist[3].note == "attempt 2: no answer"
        gap = (hist[2].at - hist[1].at).total_seconds()
        assert gap >= 6.0, f"the second attempt came {gap:.1f} s after the first failed (spacing 0.1 min)"
        rang = Counter(e.get("Number") for e in watch.events if e.get("UserEvent") == "SimCallerRinging")
        assert rang[c_never] == 2, rang
        # the callbacks never became tickets of their own
        assert not [t for t in await store.list_tickets(limit=1000) if t.linkedid.startswith(CALLBACK_PREFIX)]
        print(f"\ncallback at an agent {took:.1f} s after the missed call's ticket; retry gap {gap:.1f} s")
    finally:
        watch.close()


async def test_callback_offer_mode_asks_first_and_press_1_reaches_an_agent(cfg, controller, ami, agents) -> None:
    cfg.callbacks.connect = "offer"  # read per call by the controller's dialer and scripts (restored by the fixture)
    store = controller.store
    caller = f"1357703{random.randrange(10**4):04d}"
    watch = Watch(ami)
    try:
        t = await wait_ticket(store, (await abandoned_call(ami, caller)).linkedid, 20)
        await agents.add("general", talk_s=2)
        prefix = CALLBACK_PREFIX + t.ticket_no
        await watch.wait(lambda e: e.get("UserEvent") == "HotlinePrompt" and e.get("Prompt") == "callback_offer"
                         and e.get("Linkedid", "").startswith(prefix), 30, "the offer")
        assert not watch.of(prefix, "AgentConnect")  # nobody is queued before the citizen says so
        phone = next(e["Channel"] for e in watch.of(prefix, "Newchannel") if e.get("Channel", "").endswith(";2"))
        await asyncio.sleep(0.5)
        await ami.action("PlayDTMF", Channel=phone, Digit="1", Duration="120")
        await watch.wait(lambda e: e.get("Event") == "AgentConnect" and e.get("Linkedid", "").startswith(prefix),
                         30, "the callback at an agent after pressing 1")
        cb = await store.callback_for(t.ticket_no)
        assert cb is not None and cb.status == "done" and cb.attempts == 1
        assert "offered an agent" in (cb.last_result or "")
    finally:
        watch.close()


async def close_by_cli(store_url: str, ticket_no: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "tickets", "state", ticket_no, "办结", "--actor", "supervisor:e2e",
        "--note", "已办结", "--store", store_url, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_a_closed_ticket_gets_its_followup_and_very_dissatisfied_reopens_it(controller, ami, agents,
                                                                                   store_url) -> None:
    store = controller.store
    caller = f"1357702{random.randrange(10**4):04d}"
    await agents.add("general", talk_s=2)
    robot = await CallRobot(ami, caller=caller).dial()
    await robot.barge("1")  # 咨询
    await robot.wait_for(is_event("AgentConnect"), 30)
    await robot.wait_for(lambda e: e.get("Event") == "Newexten" and e.get("Context") == "hotline-survey", 20)
    await robot.hangup()
    t = await wait_ticket(store, robot.linkedid, 20)
    assert t.category == "咨询" and t.state == "accepted"
    await ami.action("Setvar", Variable="CALLER_HOLD", Value="90")  # the citizen stays on for the questions
    watch = Watch(ami)
    try:
        assert "办结" in await close_by_cli(store_url, t.ticket_no)
        prefix = FOLLOWUP_PREFIX + t.ticket_no
        about = await watch.wait(lambda e: e.get("UserEvent") == "HotlineFollowup" and e.get("Step") == "about"
                                 and e.get("Linkedid", "").startswith(prefix), 30, "the 回访 call")
        assert about.get("Ticket") == t.ticket_no
        # the citizen's phone: the other half of the Local channel the controller originated
        phone = next(e["Channel"] for e in watch.of(prefix, "Newchannel") if e.get("Channel", "").endswith(";2"))
        await watch.wait(lambda e: e.get("UserEvent") == "HotlinePrompt" and e.get("Prompt") == "followup_resolved"
                         and e.get("Linkedid", "").startswith(prefix), 40, "the resolved? question")
        await asyncio.sleep(0.5)
        await ami.action("PlayDTMF", Channel=phone, Digit="1", Duration="120")  # resolved
        await watch.wait(lambda e: e.get("UserEvent") == "HotlinePrompt" and e.get("Prompt") == "followup_rating5"
                         and e.get("Linkedid", "").startswith(prefix), 20, "the satisfaction question")
        await asyncio.sleep(0.5)
        await ami.action("PlayDTMF", Channel=phone, Digit="5", Duration="120")  # 非常不满意
        answered = await watch.wait(lambda e: e.get("UserEvent") == "HotlineFollowup"
                                    and e.get("Step") == "answered" and e.get("Linkedid", "").startswith(prefix),
                                    20, "the answer")
        assert (answered.get("Resolved"), answered.get("Rating"), answered.get("State")) == ("1", "5", "supervised")
        # the very-dissatisfied answer reopens the ticket; that notice's HotlinePrompt is the AGI command after the
        # answer's event: wait for it
        await watch.wait(lambda e: e.get("UserEvent") == "HotlinePrompt" and e.get("Prompt") == "followup_reopened"
                         and e.get("Linkedid", "").startswith(prefix), 10, "the reopened notice")
        said = [e.get("Prompt") for e in watch.of(prefix, "HotlinePrompt")]
        assert said[:2] == ["followup_intro", "followup_category_consult"], said
        t2 = await store.get_ticket(t.ticket_no)
        assert t2 is not None and t2.state == "supervised"
        states = [(h.actor, h.from_value, h.to_value, h.note) for h in await store.history(t.ticket_no)
                  if h.field == "state"]
        assert states[-3:] == [("supervisor:e2e", "accepted", "closed", "已办结"),
                               ("followup", "closed", "revisited", "回访: 已解决, 满意度 5/5 非常不满意"),
                               ("followup", "revisited", "supervised", "回访: 已解决, 满意度 5/5 非常不满意")]
        deadline = time.monotonic() + 30
        while True:  # the attempt is on the ticket: dialing by the scheduler, then the answer
            [row] = await store.followups(ticket_no=t.ticket_no)
            if row.status == "done":
                break
            assert time.monotonic() < deadline, row
            await asyncio.sleep(0.3)
        assert (row.attempts, row.resolved, row.rating, row.scale) == (1, True, 5, 5)
        moves = [(h.actor, h.from_value, h.to_value) for h in await store.history(t.ticket_no) if h.field == "followup"]
        assert moves == [("system", None, "pending"), ("scheduler", "pending", "dialing"),
                         ("followup", "dialing", "done")], moves
        assert not [x for x in await store.list_tickets(limit=1000) if x.linkedid.startswith(FOLLOWUP_PREFIX)]
    finally:
        watch.close()
        await ami.action("Setvar", Variable="CALLER_HOLD", Value="")


@pytest_asyncio.fixture
async def pg_url():
    """A fresh PostgreSQL database of this test (hl_loopb_…), dropped afterwards."""
    async with fresh_pg_database("hl_loopb") as url:
        yield url.render_as_string(hide_password=False)


async def test_two_controllers_on_one_postgresql_dial_each_callback_once(cfg, asterisk, ami, agents, pg_url,
                                                                         tmp_path) -> None:
    # the second controller: same Asterisk, same database, its own FastAGI port (the dialplan uses the first's)
    # one call at a time per controller, so that both place some: each call is claimed where both look for it
    cfg.callbacks.auto.max_concurrent = 1
    cfg2 = cfg.model_copy(deep=True)
    cfg2.asterisk.fastagi.port = 0
    c1 = Controller.for_sandbox(cfg, asterisk, store_url=pg_url, control_path=tmp_path / "c1.sock")
    c2 = Controller.for_sandbox(cfg2, asterisk, store_url=pg_url, control_path=tmp_path / "c2.sock")
    await c1.start()
    await c2.start()
    watch = Watch(ami)
    try:
        await asyncio.gather(c1.ami.wait_connected(10), c2.ami.wait_connected(10))
        assert c1.callbacks.owner != c2.callbacks.owner
        sfx = f"{random.randrange(10**3):03d}"
        callers = [f"135774{i}{sfx}0" for i in range(3)]
        robots = await asyncio.gather(*(abandoned_call(ami, c) for c in callers))
        tickets = [await wait_ticket(c1.store, r.linkedid, 20) for r in robots]
        await agents.add("general", talk_s=1)
        deadline = time.monotonic() + 60
        while True:
            cbs = [await c1.store.callback_for(t.ticket_no) for t in tickets]
            if all(cb is not None and cb.status == "done" for cb in cbs):
                break
            assert time.monotonic() < deadline, cbs
            await asyncio.sleep(0.3)
        await asyncio.sleep(3.0)  # two more scheduler rounds on each: still nothing dialed twice
        answered = Counter(e.get("Number") for e in watch.events if e.get("UserEvent") == "SimCallerAnswered")
        assert {c: answered[c] for c in callers} == {c: 1 for c in callers}, answered
        # the channels the controllers originated (ChannelId callback-<ticket>-<attempt>-<random>, not its -2 half)
        originated = Counter(e["Uniqueid"].split("-")[1] for e in watch.events
                             if e.get("Event") == "Newchannel" and e.get("Uniqueid", "").startswith(CALLBACK_PREFIX)
                             and not e["Uniqueid"].endswith("-2"))
        assert {t.ticket_no: originated[t.ticket_no] for t in tickets} == {t.ticket_no: 1 for t in tickets}, originated
        assert all(cb is not None and cb.attempts == 1 for cb in cbs)
        mine = {t.ticket_no for t in tickets}
        placed = [len([r for r in c.scheduler.placed if r.ticket_no in mine]) for c in (c1, c2)]
        assert sum(placed) == 3, placed
        print(f"\ntwo controllers: callbacks placed by each {placed}, "
              f"claims lost to the other {[c.scheduler.lost for c in (c1, c2)]}")
    finally:
        watch.close()
        await c2.stop()
        await c1.stop()
