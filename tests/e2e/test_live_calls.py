"""Issue 12: the live API of a real controller while real calls run through a real Asterisk 22.

A caller enters the general queue (12358, 价格举报 → general; seat 1001 busy so the caller waits) → the
snapshot shows one waiting and the SSE stream delivers that change within a second of Asterisk's
QueueCallerJoin; an agent token cannot change another seat; a supervisor's action and a read of full
numbers land in audit_log; a call answered by the baresip seat 1001 shows the agent talking on it.
The AMI events the controller received are fed to a fresh LiveModel afterwards: it must agree with the
running one (the recorded streams in tests/unit/fixtures come from this test).

HOTLINE_INSTANCE=liveapi HOTLINE_PORT_OFFSET=300 .venv/bin/pytest -q tests/e2e/test_live_calls.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import Any

import httpx
import pytest
import pytest_asyncio

from hotline.callrobot import CallRobot, wait_ticket
from hotline.controller import Controller
from live.reducer import LiveModel
from live.tokens import new_token, token_hash
from tests.e2e.conftest import polled, seat_phone
from ticketbridge.callbacks import CALLBACK_PREFIX
from ticketbridge.store import TicketStore

pytestmark = pytest.mark.e2e


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


@pytest_asyncio.fixture
async def live(cfg, asterisk, store_url):
    """A controller whose store has tokens before it starts (so its API listens), recording its AMI events."""
    store = TicketStore(store_url, cfg)
    await store.open()
    tokens = {}
    for name, role, s in [("张班长", "supervisor", None), ("坐席1001", "agent", "1001")]:
        t = new_token()
        await store.create_token(name=name, role=role, seat=s, token_hash=token_hash(t))
        tokens[role] = t
    await store.close()
    c = Controller.for_sandbox(cfg, asterisk, store_url=store_url)
    recorded: list[dict[str, Any]] = []
    c.ami.on_event("*", lambda e: recorded.append({**e, "_at": time.time()}))
    # tickets saved for calls this controller never saw live (the CDR replay of earlier tests' calls) count too
    c.on_saved.append(lambda record, saved: recorded.append({"_ticket": record.to_dict(), "_at": time.time()}))
    await c.start()
    await c.ami.wait_connected(10)
    deadline = time.monotonic() + 10
    while c.api is None or c.api.port is None:
        assert time.monotonic() < deadline, "the live API did not start although a token exists"
        await asyncio.sleep(0.1)
    client = httpx.AsyncClient(base_url=f"http://{cfg.api.bind}:{cfg.api.port}/api/v1", timeout=10)
    yield c, client, tokens, recorded
    await client.aclose()
    await c.stop()
    out = os.environ.get("HOTLINE_RECORD_LIVE")
    if out:  # tests/unit/fixtures/live_*.jsonl were made this way
        with open(out, "a", encoding="utf-8") as f:
            for e in recorded:
                # AMI events only (a ticket holds the caller's number), not our callbacks' (live/service.py
                # never feeds them), and no path of this machine's instance
                if "_ticket" not in e and not (e.get("Linkedid") or "").startswith(CALLBACK_PREFIX):
                    f.write(re.sub(r"/var/spool/asterisk-[A-Za-z0-9_-]+/", "/var/spool/asterisk/",
                                   json.dumps(e, ensure_ascii=False)) + "\n")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def snapshot_when(client: httpx.AsyncClient, token: str, check: Any) -> dict[str, Any]:
    """The live snapshot once `check(snap)` holds (or after 8 s): a hang-up reaches the live model through AMI
    events, on the controller's time, not in step with the test's robot."""
    async def snapshot() -> dict[str, Any]:
        return (await client.get("/live", headers=auth(token))).json()

    return await polled(snapshot, check)


async def set_agent(client: httpx.AsyncClient, token: str, agent: str, action: str, **kw: str) -> httpx.Response:
    return await client.post(f"/agents/{agent}/state", json={"action": action, **kw}, headers=auth(token))


async def test_a_waiting_caller_reaches_snapshot_and_stream_within_a_second(live, ami, seat) -> None:
    controller, client, tokens, recorded = live
    sup = tokens["supervisor"]
    r = await set_agent(client, sup, "1001", "busy", reason="培训", why="e2e: the caller must wait")
    assert r.status_code == 200 and r.json()["state"] == "busy"
    joined_at: list[float] = []
    ami.on_event("QueueCallerJoin", lambda e: joined_at.append(time.monotonic()))
    changes: list[tuple[float, dict[str, Any]]] = []
    robot: CallRobot | None = None

    async def read_stream() -> None:
        nonlocal robot
        async with client.stream("GET", "/live/stream", headers=auth(sup)) as resp:
            assert resp.status_code == 200
            name = ""
            async for line in resp.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if name == "snapshot":
                        assert data["queues"]["general"]["waiting"] == 0
                        robot = await CallRobot(ami, number="12358", caller="13900007001").dial()
                        continue
                    changes.append((time.monotonic(), data))
                    if data.get("queues", {}).get("general", {}).get("waiting") == 1:
                        return

    try:
        await asyncio.wait_for(read_stream(), 40)
        assert robot is not None and joined_at
        at, change = next((t, d) for t, d in changes if d.get("queues", {}).get("general", {}).get("waiting") == 1)
        lag = at - joined_at[0]
        print(f"SSE change {lag * 1000:.0f} ms after Asterisk's QueueCallerJoin reached the test")
        assert lag < 1.0
        call = change["calls"][robot.linkedid]
        assert call["phase"] == "queued" and call["caller"] == "139******01" and call["line"] == "12358"
        snap = (await client.get("/live", headers=auth(sup))).json()
        assert snap["queues"]["general"]["waiting"] == 1 and snap["center"]["waiting"] == 1
        assert snap["calls"][robot.linkedid]["ivr_path"] == change["calls"][robot.linkedid]["ivr_path"]
        assert snap["agents"]["1001"]["state"] == "busy" and snap["agents"]["1001"]["reason"] == "培训"
        # full numbers: written to the audit log, then shown
        full = (await client.get("/live?numbers=full", headers=auth(sup))).json()
        assert full["calls"][robot.linkedid]["caller"] == "13900007001"
        entries = await controller.store.audit_entries()
        assert any(e.action == "api live snapshot numbers" and robot.linkedid in e.asked["calls"] for e in entries)
    finally:
        if robot is not None:
            await robot.hangup()
            await robot.wait_hangup(10)
        await set_agent(client, sup, "1001", "ready")
    snap = await snapshot_when(client, sup, lambda s: s["queues"]["general"]["waiting"] == 0
                               and robot.linkedid not in s["calls"] and s["queues"]["general"]["abandoned"] >= 1)
    assert snap["queues"]["general"]["waiting"] == 0 and robot.linkedid not in snap["calls"]
    assert snap["queues"]["general"]["abandoned"] >= 1


async def test_an_agent_token_cannot_act_for_another_seat_and_a_supervisors_action_is_audited(live, seat) -> None:
    controller, client, tokens, _ = live
    r = await set_agent(client, tokens["agent"], "1002", "busy", reason="小休")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # nothing done in its name (1002's phone is not registered here, so main's agents may set it 离线 meanwhile)
    assert not [e for e in await controller.store.agent_events(agent="1002") if e.actor == "api:坐席1001"]
    assert not [e for e in await controller.store.audit_entries() if e.user == "api:坐席1001"]
    r = await client.get("/live", headers=auth(tokens["agent"]))
    assert set(r.json()["agents"]) == {"1001"}
    r = await set_agent(client, tokens["supervisor"], "1001", "busy", reason="会议", why="班前会")
    assert r.status_code == 200 and controller.agents.agents["1001"].state.value == "busy", r.text
    entries = await controller.store.audit_entries()
    assert entries[0].action == "api agent state" and entries[0].user == "api:张班长"
    assert entries[0].asked["agent"] == "1001" and entries[0].asked["reason"] == "会议"
    events = await controller.store.agent_events(agent="1001")
    assert events[-1].actor == "api:张班长" and events[-1].why == "班前会"
    r = await set_agent(client, tokens["supervisor"], "1001", "ready")
    assert r.json()["state"] == "ready", r.text
    r = await client.post("/calls/nope/intervene", json={"mode": "listen", "seat": "9001"},
                          headers=auth(tokens["supervisor"]))
    assert r.status_code == 404


async def test_an_answered_call_shows_the_agent_talking_and_the_replayed_stream_agrees(live, ami, seat) -> None:
    controller, client, tokens, recorded = live
    before = (await client.get("/live", headers=auth(tokens["supervisor"]))).json()["queues"]["general"]
    mark = len(recorded)
    robot = await CallRobot(ami, number="12358", caller="13900007002").dial()
    try:
        await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 25)
        deadline = time.monotonic() + 3
        while True:
            resp = await client.get("/agents/1001", headers=auth(tokens["agent"]))
            me = resp.json()
            assert resp.status_code == 200, resp.text
            if me["state"] == "talking" and me["current_call"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert me["state"] == "talking" and me["call"] == robot.linkedid
        assert me["current_call"]["caller"] == "139******02" and me["current_call"]["phase"] == "talking"
        mine = (await client.get("/live", headers=auth(tokens["agent"]))).json()
        assert list(mine["calls"]) == [robot.linkedid]
        q = (await client.get("/live", headers=auth(tokens["supervisor"]))).json()["queues"]["general"]
        # this call, answered once; besides it only earlier tests' calls the CDR replay saved meanwhile
        others = {t["linkedid"] for t in replayed(recorded, mark) if t["queue"] == "general" and t["agent"]}
        assert q["answered"] == before["answered"] + 1 + len(others - {robot.linkedid}), (before, q, others)
        assert q["talking"] == 1
        await asyncio.sleep(1.0)
    finally:
        await robot.hangup()
        await robot.wait_hangup(10)
    snap = await snapshot_when(client, tokens["supervisor"], lambda s: robot.linkedid not in s["calls"]
                               and s["agents"]["1001"]["call"] is None)
    assert robot.linkedid not in snap["calls"] and snap["agents"]["1001"]["call"] is None
    replay_agrees(controller, recorded)


def replayed(recorded: list[dict[str, Any]], since: int) -> list[dict[str, Any]]:
    """The tickets the CDR replay saved after `recorded[since]`: calls of earlier tests of the session that
    ended before this controller started and settled only now — each counts today once, as it should."""
    return [e["_ticket"] for e in recorded[since:] if "_ticket" in e and e["_ticket"].get("source") == "cdr"]


def replay_agrees(controller: Controller, recorded: list[dict[str, Any]]) -> None:
    """The controller's AMI events, fed to a fresh model, give what the running model shows."""
    now = time.time()
    replay = LiveModel(controller.config.center.timezone, queues=controller.config.queues, now=now)
    for e in recorded:
        if "_ticket" in e:
            replay.note_ticket(e["_ticket"], e["_at"])
        else:
            replay.feed({k: v for k, v in e.items() if k != "_at"}, e["_at"])
    running = controller.live.model
    assert replay.center_view(now) == running.center_view(now)
    for q in running.queues():
        assert replay.queue_view(q, now) == running.queue_view(q, now)
    assert replay.calls.keys() == running.calls.keys() and replay.lines == running.lines
    assert replay.half_hours == running.half_hours


async def test_callers_in_the_ivr_then_answered_by_a_robot_agent(live, ami, agents) -> None:
    """12345 through the menu and 12315 (a merged line in its transition window): the IVR count, the path,
    the line counts; `0` takes each to the general queue, where a scripted agent answers."""
    controller, client, tokens, recorded = live
    sup = auth(tokens["supervisor"])
    # the baresip seat (module fixture, auto-answering) stays out of it: only the scripted agent answers
    assert (await set_agent(client, tokens["supervisor"], "1001", "busy", reason="培训")).status_code == 200
    a = await CallRobot(ami, number="12345", caller="13900007003").dial()
    b = await CallRobot(ami, number="12315", caller="13900007004").dial()
    try:
        await a.wait_step("menu:main", 30)
        snap = (await client.get("/live", headers=sup)).json()
        assert snap["calls"][a.linkedid]["phase"] == "ivr" and snap["center"]["in_ivr"] >= 1
        assert "menu:main" in snap["calls"][a.linkedid]["ivr_path"]
        await agents.add("general", talk_s=3)
        await a.press("0")
        await b.wait_step("menu:main", 40)
        await b.press("0")
        for r in (a, b):
            await r.wait_for(is_event("AgentConnect", Queue="hotline-general"), 30)
        snap = (await client.get("/live", headers=sup)).json()
        assert snap["lines"].get("12345", 0) >= 1 and snap["lines"].get("12315", 0) >= 1
        assert snap["calls"][b.linkedid]["line"] == "12315"
        for r in (a, b):  # the scripted agent hangs up after 3 s (the caller goes on to the survey)
            await r.wait_for(is_event("AgentComplete", Queue="hotline-general"), 30)
    finally:
        for r in (a, b):
            await r.hangup()
        for r in (a, b):
            await r.wait_hangup(10)
        await set_agent(client, tokens["supervisor"], "1001", "ready")
    snap = await snapshot_when(client, tokens["supervisor"], lambda s: s["center"]["answered"] >= 2
                               and s["center"]["calls_now"] == 0 and s["center"]["in_ivr"] == 0)
    assert snap["center"]["answered"] >= 2 and snap["center"]["calls_now"] == 0 and snap["center"]["in_ivr"] == 0
    replay_agrees(controller, recorded)


async def test_a_restarted_controller_rebuilds_the_live_state_from_asterisk(live, cfg, asterisk, store_url, ami,
                                                                          seat) -> None:
    """The caller keeps waiting while the controller restarts (the dialplan never depends on it); the new
    controller's snapshot shows the caller waiting since it joined, from QueueStatus/CoreShowChannels, and
    today's figures from the tickets; the answer that follows reaches the new model by events."""
    controller, client, tokens, _ = live
    sup = auth(tokens["supervisor"])
    first = await CallRobot(ami, number="12358", caller="13900007005").dial()  # answered: a ticket today
    await first.wait_for(is_event("AgentConnect", Queue="hotline-general"), 25)
    await first.hangup()
    await first.wait_hangup(10)
    assert (await set_agent(client, tokens["supervisor"], "1001", "busy", reason="会议")).status_code == 200
    robot = await CallRobot(ami, number="12358", caller="13900007006").dial()
    second: Controller | None = None
    try:
        join = await robot.wait_for(is_event("QueueCallerJoin", Queue="hotline-general"), 25)
        joined = float(join["Timestamp"])
        await asyncio.sleep(1.0)  # the first call's ticket is saved
        await controller.stop()
        second = Controller.for_sandbox(cfg, asterisk, store_url=store_url)
        await second.start()
        await second.ami.wait_connected(10)
        deadline = time.monotonic() + 10
        while second.api is None or second.api.port is None or second.live.model.waiting() == []:
            assert time.monotonic() < deadline, "no API or no rebuilt waiting call after the restart"
            await asyncio.sleep(0.1)
        snap = (await client.get("/live", headers=sup)).json()
        call = snap["calls"][robot.linkedid]
        assert call["phase"] == "queued" and call["queue"] == "general" and snap["queues"]["general"]["waiting"] == 1
        assert abs(call["waiting_since"] - joined) < 2.0, (call["waiting_since"], joined)
        assert snap["center"]["calls_today"] >= 2 and snap["center"]["answered"] >= 1
        assert snap["agents"]["1001"]["state"] == "busy"  # restored by the agents' store, asked of AgentService
        assert (await set_agent(client, tokens["supervisor"], "1001", "ready")).status_code == 200
        await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 25)
        deadline = time.monotonic() + 3
        while (await client.get("/live", headers=sup)).json()["calls"][robot.linkedid]["phase"] != "talking":
            assert time.monotonic() < deadline, "the answer after the restart did not reach the live model"
            await asyncio.sleep(0.1)
    finally:
        await robot.hangup()
        await robot.wait_hangup(10)
        if second is not None:
            await second.stop()
        await controller.start()  # the fixture stops it again
        await controller.ami.wait_connected(10)


async def test_one_key_transfer_from_the_api_by_the_agents_own_token(live, ami, seat) -> None:
    """一键转接 from the API: the agent's token hands its own caller to the water utility (the same
    TransferService as the *831 key); the outcome lands on the ticket; another call is not its to move."""
    controller, client, tokens, _ = live
    robot = await CallRobot(ami, number="12358", caller="13900007007").dial()
    try:
        await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 25)
        deadline = time.monotonic() + 3
        while controller.live.agent_call("1001") is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # both sides are in the bridge
        r = await client.post("/calls/not-a-call/transfer", json={"target": "water"}, headers=auth(tokens["agent"]))
        assert r.status_code == 404
        r = await client.post(f"/calls/{robot.linkedid}/transfer", json={"target": "water"},
                              headers=auth(tokens["agent"]))
        assert r.status_code == 200 and r.json()["ok"], r.text
        reached = await robot.wait_user_event("SimTrunkReached", 15)
        assert reached["Target"] == "water"
        await robot.wait_user_event("HotlineTransfer", 10, Outcome="completed")
        entries = await controller.store.audit_entries()
        assert entries[0].action == "api transfer" and entries[0].user == "api:坐席1001"
    finally:
        await robot.hangup()
        await robot.wait_hangup(10)
    t = await wait_ticket(controller.store, robot.linkedid, 20)
    assert ("water", "completed") in [(x["target"], x["outcome"]) for x in t.transfers]


async def test_a_supervisor_calls_a_missed_caller_back_from_the_api(live, cfg, ami, agents, seat) -> None:
    """漏接回拨 from the API: the caller who hung up waiting is rung back (the sim's phone answers) into the
    queue, where a scripted agent takes it; the callback never shows as a call of its own on the board."""
    controller, client, tokens, recorded = live
    sup = auth(tokens["supervisor"])
    old_cb, old_allow = cfg.callbacks.model_copy(), list(cfg.outbound.allow)
    cfg.callbacks.dial, cfg.callbacks.ring_s = "Local/{number}@caller-answer", 4
    assert (await set_agent(client, tokens["supervisor"], "1001", "busy", reason="小休")).status_code == 200
    seen: set[str] = set()
    try:
        robot = await CallRobot(ami, number="12358", caller="13900007008").dial()
        await robot.wait_for(is_event("QueueCallerJoin", Queue="hotline-general"), 25)
        await robot.hangup()
        await robot.wait_hangup(10)
        t = await wait_ticket(controller.store, robot.linkedid, 20)
        assert t.outcome == "abandoned_in_queue" and t.callback_needed
        calls_before, mark = controller.live.model.calls_today, len(recorded)
        await agents.add("general", talk_s=2)
        q = controller.live.subscribe()
        r = await client.post("/callbacks", json={"ticket": t.ticket_no}, headers=sup)
        assert r.status_code == 200, r.text
        assert r.json()["ok"] and r.json()["status"] == "done", r.json()
        await asyncio.sleep(4.0)  # the callback reaches the scripted agent and ends
        while not q.empty():
            delta = q.get_nowait()
            if delta is not None:
                seen |= set(delta.parts.get("calls", {}))
        controller.live.unsubscribe(q)
        assert not any(lid.startswith(CALLBACK_PREFIX) or t.ticket_no in lid for lid in seen), seen
        # today's count grew only by earlier tests' calls the CDR replay saved meanwhile, never by the callback
        others = {x["linkedid"] for x in replayed(recorded, mark)} - {robot.linkedid}
        assert not any(lid.startswith(CALLBACK_PREFIX) for lid in others), others
        assert controller.live.model.calls_today == calls_before + len(others), (calls_before, others)
        assert (await controller.store.audit_entries())[0].action == "api callback"
    finally:
        cfg.callbacks, cfg.outbound.allow = old_cb, old_allow
        await set_agent(client, tokens["supervisor"], "1001", "ready")


async def test_a_branch_center_call_is_put_through_not_in_the_ivr(live, ami) -> None:
    """设分中心 12366: dialed on to the tax branch's own seats; once the branch answers the board shows it
    `connected` (not in the IVR, not waiting), counted on line 12366."""
    controller, client, tokens, _ = live
    sup = auth(tokens["supervisor"])
    robot = await CallRobot(ami, number="12366", caller="13900007009").dial()
    try:
        await robot.wait_user_event("SimTrunkReached", 15)
        deadline = time.monotonic() + 5
        while True:
            snap = (await client.get("/live", headers=sup)).json()
            call = snap["calls"].get(robot.linkedid)
            if call and call["phase"] == "connected" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert call is not None and call["phase"] == "connected", call
        assert call["line"] == "12366" and call["mode"] == "branch_center"
        assert snap["center"]["connected"] >= 1 and snap["lines"]["12366"] >= 1
    finally:
        await robot.hangup()
        await robot.wait_hangup(10)


@pytest.fixture(scope="module")
def supervisor_phone(cfg, asterisk):
    """Supervisor seat 9001 (role: supervisor), a real baresip phone that auto-answers."""
    with seat_phone(cfg, "9001") as s:
        yield s


async def test_a_supervisor_token_listens_then_force_releases_a_call_through_the_api(live, ami, seat,
                                                                                 supervisor_phone) -> None:
    """监听 from the API: the supervisor's seat 9001 rings and ChanSpy attaches to agent 1001's leg; an agent's
    token may not; 强拆 from the API ends the call and its ticket names the token's holder."""
    controller, client, tokens, _ = live
    sup = auth(tokens["supervisor"])
    spies: list[dict[str, str]] = []
    ami.on_event("ChanSpyStart", lambda e: spies.append(e))
    robot = await CallRobot(ami, number="12358", caller="13900007010").dial()
    try:
        connect = await robot.wait_for(is_event("AgentConnect", Queue="hotline-general"), 25)
        agent_channel = connect["DestChannel"]
        deadline = time.monotonic() + 3
        while controller.live.agent_call("1001") is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        r = await client.post(f"/calls/{robot.linkedid}/intervene", json={"mode": "listen", "seat": "9001"},
                              headers=auth(tokens["agent"]))
        assert r.status_code == 403
        r = await client.post(f"/calls/{robot.linkedid}/intervene", json={"mode": "listen", "seat": "1001"},
                              headers=sup)
        assert r.status_code == 403 and r.json()["reason"] == "not_supervisor", r.text  # a seat without the role
        r = await client.post(f"/calls/{robot.linkedid}/intervene", json={"mode": "listen", "seat": "9001"},
                              headers=sup)
        assert r.status_code == 200 and r.json()["linkedid"] == robot.linkedid, r.text
        deadline = time.monotonic() + 15
        while not any(e.get("SpyerChannel", "").startswith("PJSIP/9001-") and e.get("SpyeeChannel") == agent_channel
                      for e in spies):
            assert time.monotonic() < deadline, f"ChanSpy never attached: {spies}"
            await asyncio.sleep(0.2)
        r = await client.post(f"/calls/{robot.linkedid}/release", json={"seat": "9001", "why": "e2e"}, headers=sup)
        assert r.status_code == 200, r.text
        await robot.wait_hangup(10)
    finally:
        await robot.hangup()
        await asyncio.to_thread(supervisor_phone.hangup)
    t = await wait_ticket(controller.store, robot.linkedid, 20)
    notes = [h for h in await controller.store.history(t.ticket_no) if h.field == "supervision"]
    assert [(h.to_value, h.actor) for h in notes] == [("released", "api:张班长 (seat 9001, agent 1001)")]
    actions = [e.action for e in await controller.store.audit_entries(50)]
    for a in ("api listen", "api release", "supervise listen", "supervise release"):
        assert a in actions, (a, actions)
