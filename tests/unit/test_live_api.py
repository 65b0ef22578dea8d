"""The live API (live/api.py) in-process: a real aiohttp server on a free port, a real SQLite store, fake AMI.

What a user of the API checks: no token → 401 JSON; an agent token sees and changes only its own seat
(403 for another); a supervisor's action and a read of full numbers land in audit_log before anything
happens; the SSE stream sends a snapshot, then the change an AMI event made; every route is in the
OpenAPI description; intervention answers 501 when no intervention module is wired in.
The `world` fixture: tests/unit/conftest.py.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from live.api import PREFIX
from live.openapi import openapi
from tests.unit.live_world import a_call_waits, auth


async def test_no_token_or_a_wrong_one_is_401_with_a_json_reason(world) -> None:
    r = await world.client.get("/live")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert "Bearer" in r.headers["WWW-Authenticate"]
    r = await world.client.get("/live", headers=auth("hl_nope"))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    r = await world.client.get("/live", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


async def test_a_revoked_token_is_refused_at_its_next_request(world) -> None:
    assert (await world.client.get("/whoami", headers=auth(world.tokens["agent"]))).json()["seat"] == "1001"
    await world.store.revoke_token("坐席1001")
    assert (await world.client.get("/whoami", headers=auth(world.tokens["agent"]))).status_code == 401


async def test_snapshot_shows_the_waiting_caller_masked(world) -> None:
    a_call_waits(world.ami)
    snap = (await world.client.get("/live", headers=auth(world.tokens["supervisor"]))).json()
    assert snap["queues"]["general"]["waiting"] == 1 and snap["center"]["waiting"] == 1
    call = snap["calls"]["1700000000.1"]
    assert call["caller"] == "138******00" and call["phase"] == "queued" and len(snap["half_hours"]) == 48
    assert await world.store.audit_entries() == []  # masked reads are not audited


async def test_full_numbers_are_audited_before_they_are_shown(world) -> None:
    a_call_waits(world.ami)
    r = await world.client.get("/live?numbers=full", headers=auth(world.tokens["supervisor"]))
    assert r.json()["calls"]["1700000000.1"]["caller"] == "13800138000"
    [entry] = await world.store.audit_entries()
    assert entry.user == "api:张班长" and entry.action == "api live snapshot numbers"
    assert entry.asked["calls"] == ["1700000000.1"] and entry.rows == 1
    assert (await world.client.get("/live?numbers=all", headers=auth(world.tokens["supervisor"]))).status_code == 400


async def test_an_agent_token_sees_and_acts_for_its_own_seat_only(world) -> None:
    a_call_waits(world.ami)
    snap = (await world.client.get("/live", headers=auth(world.tokens["agent"]))).json()
    assert set(snap["agents"]) == {"1001"} and snap["calls"] == {}  # the waiting call is nobody's yet
    r = await world.client.post("/agents/1002/state", json={"action": "busy"}, headers=auth(world.tokens["agent"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert (await world.client.get("/agents/1002", headers=auth(world.tokens["agent"]))).status_code == 403
    r = await world.client.post("/agents/1001/state", json={"action": "busy", "reason": "小休"},
                                headers=auth(world.tokens["agent"]))
    assert r.status_code == 200 and world.actions.calls == [("agent", "1001", "busy", "api:坐席1001")]
    r = await world.client.post("/callbacks", json={"ticket": "261130000001"}, headers=auth(world.tokens["agent"]))
    assert r.status_code == 403


async def test_a_supervisors_action_lands_in_the_audit_log_first(world) -> None:
    r = await world.client.post("/agents/1002/state", json={"action": "signout", "why": "下班"},
                                headers=auth(world.tokens["supervisor"]))
    assert r.status_code == 200
    [entry] = await world.store.audit_entries()
    assert entry.action == "api agent state" and entry.asked["agent"] == "1002" and entry.asked["action"] == "signout"
    r = await world.client.post("/callbacks", json={"ticket": "261130000001"}, headers=auth(world.tokens["supervisor"]))
    assert r.status_code == 409 and "not on the callback list" in r.json()["error"]
    assert [e.action for e in await world.store.audit_entries()] == ["api callback", "api agent state"]


async def test_bad_bodies_are_400_with_the_field_named(world) -> None:
    h = auth(world.tokens["supervisor"])
    r = await world.client.post("/agents/1001/state", content=b"{nope",
                                headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    # a cross-site form (text/plain, no preflight) never gets an action through
    r = await world.client.post("/agents/1001/state", content=b'{"action": "busy"}',
                                headers={**h, "Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
    r = await world.client.post("/agents/1001/state", json={"action": 3}, headers=h)
    assert r.status_code == 400 and "action" in r.json()["error"]["message"]
    r = await world.client.post("/agents/9999/state", json={"action": "ready"}, headers=h)
    assert r.status_code == 404


async def test_intervention_is_501_without_an_intervention_module(world) -> None:
    a_call_waits(world.ami)
    lid = "1700000000.1"
    world.ami.push(Event="AgentConnect", Linkedid=lid, Uniqueid=lid, Queue="hotline-general", Interface="PJSIP/1001",
                   DestChannel="PJSIP/1001-00000001", HoldTime="2", Timestamp=f"{time.time():.6f}")
    h = auth(world.tokens["supervisor"])
    r = await world.client.post(f"/calls/{lid}/intervene", json={"mode": "listen", "seat": "1002"}, headers=h)
    assert r.status_code == 501 and "intervention" in r.json()["error"]["message"]
    r = await world.client.post(f"/calls/{lid}/intervene", json={"mode": "listen"},
                                headers=auth(world.tokens["agent"]))
    assert r.status_code == 403
    r = await world.client.post(f"/calls/{lid}/transfer", json={"target": "110"}, headers=auth(world.tokens["agent"]))
    assert r.status_code == 200 and world.actions.calls[-1] == ("transfer", "PJSIP/1001-00000001", "110", lid)


async def test_the_stream_sends_a_snapshot_then_the_change_within_a_second(world) -> None:
    h = auth(world.tokens["supervisor"])
    events: list[tuple[str, dict[str, Any]]] = []
    async with world.client.stream("GET", "/live/stream", headers=h) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.aiter_lines()
        name = ""
        pushed_at = None
        async for line in lines:
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == "snapshot":
                    pushed_at = time.monotonic()
                    a_call_waits(world.ami)
                elif any(d.get("queues", {}).get("general", {}).get("waiting") == 1 for _, d in events[1:]):
                    break
    assert events[0][0] == "snapshot" and events[0][1]["queues"]["general"]["waiting"] == 0
    assert time.monotonic() - pushed_at < 1.0
    change = next(d for n, d in events[1:] if d.get("queues", {}).get("general", {}).get("waiting") == 1)
    assert change["seq"] > events[0][1]["seq"] and change["calls"]["1700000000.1"]["caller"] == "138******00"


async def test_a_full_number_stream_audits_each_call_once_before_showing_it(world) -> None:
    h = auth(world.tokens["supervisor"])
    got: list[dict[str, Any]] = []
    async with world.client.stream("GET", "/live/stream?numbers=full", headers=h) as resp:
        name = ""
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                if name == "snapshot":
                    a_call_waits(world.ami)
                    continue
                got.append(json.loads(line[6:]))
                if len(got) == 1:
                    world.ami.push(Event="UserEvent", UserEvent="HotlineIVR", Step="menu:main",
                                   Linkedid="1700000000.1", Uniqueid="1700000000.1")
                elif any(c and c.get("ivr_path") for c in got[-1].get("calls", {}).values()):
                    break
    shown = [c["caller"] for d in got for c in d.get("calls", {}).values() if c]
    assert shown and set(shown) == {"13800138000"}
    entries = await world.store.audit_entries()
    assert [e.action for e in entries] == ["api live stream numbers"] and entries[0].asked["calls"] == ["1700000000.1"]


class FakeSupervision:
    """Stands in for the intervention module (live/intervention.py's port): records, refuses seat 1003."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str, str]] = []
        self.calls: list[str] = []  # the linkedid each action was bound to

    async def supervise(self, mode: str, seat: str, agent: str, *, actor: str, uid: int, user: str,
                        via: str = "api", call: str = "") -> dict[str, Any]:
        self.asked.append((mode, seat, agent, via))
        self.calls.append(call)
        if seat == "1003":
            return {"ok": False, "reason": "not_supervisor", "error": "seat 1003 is not a supervisor seat"}
        return {"ok": True, "mode": mode, "seat": seat, "agent": agent}


async def test_intervention_goes_to_the_port_with_the_calls_agent_after_the_audit(world) -> None:
    world.api.intervention = sup = FakeSupervision()
    a_call_waits(world.ami)
    lid = "1700000000.1"
    world.ami.push(Event="AgentConnect", Linkedid=lid, Uniqueid=lid, Queue="hotline-general", Interface="PJSIP/1001",
                   DestChannel="PJSIP/1001-00000001", HoldTime="2", Timestamp=f"{time.time():.6f}")
    h = auth(world.tokens["supervisor"])
    r = await world.client.post(f"/calls/{lid}/intervene", json={"mode": "whisper", "seat": "9001"}, headers=h)
    assert r.status_code == 200 and r.json()["mode"] == "whisper"
    assert sup.asked == [("whisper", "9001", "1001", "api")] and sup.calls[0]  # bound to the chosen call
    r = await world.client.post(f"/calls/{lid}/intervene", json={"mode": "barge", "seat": "1003"}, headers=h)
    assert r.status_code == 403 and r.json()["reason"] == "not_supervisor"
    r = await world.client.post(f"/calls/{lid}/intervene", json={"mode": "listen"}, headers=h)
    assert r.status_code == 400 and "seat" in r.json()["error"]["message"]  # a supervisor token with no seat
    r = await world.client.post(f"/calls/{lid}/release", json={"seat": "9001", "why": "骚扰电话"}, headers=h)
    assert r.status_code == 200 and sup.asked[-1] == ("release", "9001", "1001", "api")
    actions = [e.action for e in await world.store.audit_entries()]
    assert actions == ["api release", "api barge", "api whisper"]
    r = await world.client.post(f"/calls/{lid}/release", json={"seat": "9001"}, headers=auth(world.tokens["agent"]))
    assert r.status_code == 403 and len(sup.asked) == 3


def test_every_route_is_in_the_openapi_description() -> None:
    spec = openapi()
    src = Path("live/api.py").read_text(encoding="utf-8")
    routes = {(m.group(1).upper(), PREFIX + m.group(2).replace("{{", "{").replace("}}", "}"))
              for m in re.finditer(r'r\.add_(get|post)\(f"\{PREFIX\}([^"]+)"', src)}
    described = {(verb.upper(), path) for path, ops in spec["paths"].items() for verb in ops}
    assert routes and routes <= described, routes - described


async def test_the_token_is_taken_from_the_header_only(world) -> None:
    """Never from a URL (proxy logs, browser history) or a cookie (other sites' forms would act with it)."""
    token = world.tokens["supervisor"]
    assert (await world.client.get("/live", headers=auth(token))).status_code == 200
    assert (await world.client.get(f"/live?access_token={token}")).status_code == 401
    assert (await world.client.get("/live", headers={"Cookie": f"hotline_token={token}"})).status_code == 401
