"""The pages' routes (live/pages.py) on a real aiohttp server with a real SQLite store and a fake AMI.

What a user checks: the two pages and their scripts load without a token (they hold no data) while
every API route still wants one; the screen pop of a call ringing a seat shows it masked with this
call's ticket (opened now) and the caller's earlier tickets; the intake lands in the ticket row; an
agent saves only into its own current or last call (403 otherwise), bad input is 400 naming the
field, a ticket that moved on is 409; every save and every full-number read is in the audit log.
"""

from __future__ import annotations

import asyncio
import re
import time

from live.api import PREFIX
from live.openapi import openapi
from live.pages import ASSETS
from tests.unit.live_world import FakeAmi, a_call_waits, auth
from ticketbridge.assembler import CallRecord

LID = "1700000000.1"
CALLER = "13800138000"


def rings(ami: FakeAmi, lid: str = LID, seat: str = "1001") -> None:
    ami.push(Event="AgentCalled", Linkedid=lid, Uniqueid=lid, Queue="hotline-general", Interface=f"PJSIP/{seat}",
             DestChannel=f"PJSIP/{seat}-00000001", Timestamp=f"{time.time():.6f}")


def answers(ami: FakeAmi, lid: str = LID, seat: str = "1001") -> None:
    ami.push(Event="AgentConnect", Linkedid=lid, Uniqueid=lid, Queue="hotline-general", Interface=f"PJSIP/{seat}",
             DestChannel=f"PJSIP/{seat}-00000001", HoldTime="2", Timestamp=f"{time.time():.6f}")


def hangs_up(ami: FakeAmi, lid: str = LID, seat: str = "1001") -> None:
    ami.push(Event="AgentComplete", Linkedid=lid, Uniqueid=lid, Queue="hotline-general", Interface=f"PJSIP/{seat}",
             DestChannel=f"PJSIP/{seat}-00000001", Timestamp=f"{time.time():.6f}")
    for ch, uid in ((f"PJSIP/{seat}-00000001", lid + "1"), ("PJSIP/trunk-1", lid)):
        ami.push(Event="Hangup", Linkedid=lid, Uniqueid=uid, Channel=ch, Timestamp=f"{time.time():.6f}")


INTAKE = {"text": "咨询公积金提取", "category": "咨询", "department": "", "disposition": "on_spot"}


async def test_pages_and_scripts_load_without_a_token_the_api_does_not(world) -> None:
    for path in ("/wallboard", "/agent"):
        r = await world.site.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert world.cfg.center.name in r.text and "$" not in re.sub(r"<script.*?</script>", "", r.text, flags=re.S)
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'self': own scripts only
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
    r = await world.site.get("/wallboard")
    assert 'data-wait-red="15"' in r.text and 'data-answer-min="0.95"' in r.text and "综合受理" in r.text
    for name in ASSETS:
        r = await world.site.get(f"/pages/{name}")
        assert r.status_code == 200 and r.content
    assert (await world.site.get("/pages/../api.py")).status_code == 404
    assert (await world.site.get("/pages/nothing.js")).status_code == 404
    assert (await world.site.get(f"{PREFIX}/live")).status_code == 401
    assert (await world.site.get(f"{PREFIX}/calls/{LID}/screenpop")).status_code == 401
    r = await world.site.get("/")
    assert r.status_code == 302 and r.headers["location"] == "/wallboard"


async def test_the_screen_pop_of_a_ringing_call_masked_with_its_ticket_and_earlier_ones(world) -> None:
    earlier = await world.store.save_call(CallRecord(linkedid="1699.9", caller=CALLER, dialed="12345", category="求助",
                                                     outcome="answered", started_at=time.time() - 86400))
    a_call_waits(world.ami, LID, CALLER)
    rings(world.ami)
    r = await world.site.get(f"{PREFIX}/calls/{LID}/screenpop", headers=auth(world.tokens["1001"]))
    assert r.status_code == 200, r.text
    pop = r.json()
    assert pop["call"]["caller"] == "138******00" and CALLER not in r.text
    assert pop["call"]["queue"] == "general" and pop["call"]["wait_s"] is not None
    t = await world.store.get_by_linkedid(LID)
    assert t is not None and pop["ticket"]["ticket_no"] == t.ticket_no and pop["ticket"]["state_label"] == "受理"
    assert [p["ticket_no"] for p in pop["previous"]] == [earlier.ticket_no]
    assert "咨询" in pop["categories"] and pop["departments"]
    # the same call through another seat's token: not its call
    r = await world.site.get(f"{PREFIX}/calls/{LID}/screenpop", headers=auth(world.tokens["1002"]))
    assert r.status_code == 404
    # full numbers for the agent's own call: shown, and audited first
    r = await world.site.get(f"{PREFIX}/calls/{LID}/screenpop?numbers=full", headers=auth(world.tokens["1001"]))
    assert r.json()["call"]["caller"] == CALLER
    assert (await world.store.audit_entries())[0].action == "api screenpop numbers"


async def test_the_agent_saves_its_call_during_and_after_it_another_seat_may_not(world) -> None:
    a_call_waits(world.ami, LID, CALLER)
    rings(world.ami)
    answers(world.ami)
    h = auth(world.tokens["1001"])
    r = await world.site.put(f"{PREFIX}/calls/{LID}/intake", json={"text": "先记一下"}, headers=h)
    assert r.status_code == 200 and r.json()["ticket"]["state_label"] == "受理"
    r = await world.site.put(f"{PREFIX}/calls/{LID}/intake", json=INTAKE, headers=auth(world.tokens["1002"]))
    assert r.status_code == 403 and "1002" in r.json()["error"]["message"]
    hangs_up(world.ami)
    await asyncio.sleep(0.2)  # the live model drops the call; its last call stays the seat's
    assert world.live.call(LID) is None
    r = await world.site.put(f"{PREFIX}/calls/{LID}/intake", json=INTAKE, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["ticket"]["state"] == "closed"
    t = await world.store.get_by_linkedid(LID)
    assert t is not None and (t.request_text, t.category, t.disposition, t.intake_agent) == (
        "咨询公积金提取", "咨询", "on_spot", "1001")
    assert (await world.store.audit_entries())[0].action == "api intake"
    # 当场解答 done: 派单 now is a conflict naming the field; bad input a 400 naming its field
    r = await world.site.put(f"{PREFIX}/calls/{LID}/intake", headers=h,
                               json={**INTAKE, "disposition": "dispatch", "department": "税务局"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "disposition"
    r = await world.site.put(f"{PREFIX}/calls/{LID}/intake", json={**INTAKE, "category": "闲聊"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["field"] == "category"
    # a newer call answered: the earlier one is no longer the seat's to write
    a_call_waits(world.ami, "1700000001.1", "13900000000")
    rings(world.ami, "1700000001.1")
    answers(world.ami, "1700000001.1")
    await asyncio.sleep(0.2)
    r = await world.site.put(f"{PREFIX}/calls/{LID}/intake", json=INTAKE, headers=h)
    assert r.status_code == 403
    # a supervisor may write any call's ticket
    r = await world.site.put(f"{PREFIX}/calls/{LID}/intake", json={"text": "班长补记"},
                               headers=auth(world.tokens["supervisor"]))
    assert r.status_code == 200


def test_the_pages_routes_are_in_the_openapi_description() -> None:
    paths = openapi()["paths"]
    assert "get" in paths[f"{PREFIX}/calls/{{linkedid}}/screenpop"]
    assert "put" in paths[f"{PREFIX}/calls/{{linkedid}}/intake"]
