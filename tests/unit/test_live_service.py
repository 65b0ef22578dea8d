"""live/service.py: what a delta carries (agents' states asked of AgentService, a new day), and viewers' filters."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

from live.service import LiveService, Viewer
from live.tokens import Principal
from model.loading import load_config
from routing.agent import SetBusy
from routing.agent_service import AgentService
from tests.unit.live_world import FakeAmi as Ami

Z = ZoneInfo("Asia/Shanghai")


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 30, 23, 59, 50, tzinfo=Z).timestamp()

    def __call__(self) -> float:
        return self.now


def service() -> tuple[LiveService, AgentService, Ami, Clock]:
    cfg = load_config("config/hotline.yaml")
    ami, clock = Ami(), Clock()
    agents = AgentService(ami, cfg, clock=clock)
    agents.start_from(None)
    live = LiveService(ami, cfg, agents, clock=clock)
    live.attach()
    return live, agents, ami, clock


async def test_an_agents_state_change_is_published_without_any_ami_event() -> None:
    live, agents, _, clock = service()
    live.publish()
    assert live.publish() is None  # nothing moved
    agents.agents["1001"].feed(SetBusy(clock(), "就餐", by="api:张班长"))
    d = live.publish()
    assert d is not None and set(d.parts["agents"]) == {"1001"}
    a = d.parts["agents"]["1001"]
    assert (a["state"], a["label"], a["reason"], a["name"]) == ("busy", "示忙", "就餐", "话务员一号")


async def test_a_call_and_then_midnight() -> None:
    live, _, ami, clock = service()
    ami.push(Event="Newchannel", Linkedid="L1", Uniqueid="L1", Context="hotline-inbound", CallerIDNum="13800138000",
             Exten="12345", Timestamp=str(clock.now))
    d = live.publish()
    assert d is not None and d.parts["calls"]["L1"]["phase"] == "ivr" and d.parts["center"]["calls_today"] == 1
    assert d.parts["lines"] == {"12345": 1} and sum(d.parts["half_hours"]) == 1
    clock.now += 20  # 00:00:10 the next day
    d = live.publish()
    assert d is not None and d.parts["center"]["calls_today"] == 0 and d.parts["lines"] == {}
    assert d.parts["center"]["calls_now"] == 1 and set(d.parts["queues"]) >= {"general"}


async def test_an_agent_viewer_sees_its_own_call_and_is_told_when_it_is_gone() -> None:
    live, _, ami, clock = service()
    me = Viewer(Principal(1, "坐席1001", "agent", "1001"))
    for lid, seat in (("L1", "1001"), ("L2", "1002")):
        ami.push(Event="QueueCallerJoin", Linkedid=lid, Uniqueid=lid, Queue="hotline-general", Timestamp=str(clock.now))
        ami.push(Event="AgentConnect", Linkedid=lid, Uniqueid=lid, Queue="hotline-general", Interface=f"PJSIP/{seat}",
                 DestChannel=f"PJSIP/{seat}-0000000{seat[-1]}", HoldTime="1", Timestamp=str(clock.now))
    parts, shown = me.render(live.publish().parts)
    assert list(parts["calls"]) == ["L1"] and set(parts["agents"]) == {"1001"} and shown == []
    ami.push(Event="Hangup", Linkedid="L1", Uniqueid="L1", Channel="x")
    ami.push(Event="Hangup", Linkedid="L2", Uniqueid="L2", Channel="y")
    parts, _ = me.render(live.publish().parts)
    assert parts["calls"] == {"L1": None}  # its call ended; the other seat's call is not its business
    assert me.seen_calls == set()


async def test_a_full_numbers_viewer_keeps_nothing_of_calls_that_ended() -> None:
    """A wallboard left open all day with full numbers: what it remembers per call goes when the call ends."""
    live, _, ami, clock = service()
    wall = Viewer(Principal(2, "班长", "supervisor", None), full_numbers=True)
    for i in range(50):
        ami.push(Event="Newchannel", Linkedid=f"L{i}", Uniqueid=f"L{i}", Context="hotline-inbound",
                 CallerIDNum="13800138000", Exten="12345", Timestamp=str(clock.now))
    _, shown = wall.render(live.publish().parts)
    wall.audited.update(shown)
    assert len(shown) == 50 and len(wall.seen_calls) == 50
    for i in range(50):
        ami.push(Event="Hangup", Linkedid=f"L{i}", Uniqueid=f"L{i}", Channel="x")
    wall.render(live.publish().parts)
    assert wall.seen_calls == set() and wall.audited == set()


async def test_a_saved_ticket_counts_only_when_the_live_events_did_not_see_the_call_whole() -> None:
    from live.state import FINISHED_KEEP_S

    live, _, _, clock = service()
    base = {"started_at": clock.now - 5, "dialed": "12345", "outcome": "ended_in_ivr", "gap": False}
    # seen whole live, saved later than the model remembers its end (a store that was away): not again
    live.note_saved({**base, "linkedid": "A1", "source": "ami", "ended_at": clock.now - FINISHED_KEEP_S - 1})
    assert live.model.calls_today == 0
    # a recent one the model did not count (it missed the call's opening events): counted from its ticket
    live.note_saved({**base, "linkedid": "A2", "source": "ami", "ended_at": clock.now - 1})
    assert live.model.calls_today == 1
    live.note_saved({**base, "linkedid": "C1", "source": "cdr"})  # the CDR replay's: never seen live
    live.note_saved({**base, "linkedid": "G1", "source": "ami", "gap": True})  # joined mid-way
    live.note_saved({**base, "linkedid": "G1", "source": "ami", "gap": True})  # saved again: once
    assert live.model.calls_today == 3


async def test_nobody_subscribed_the_publisher_compares_no_agent_and_a_stream_wakes_it_at_once() -> None:
    live, agents, ami, clock = service()
    live.poll_s, live.flush_s = 0.01, 0.0
    compared: list[int] = []
    marks = live._agent_fingerprints
    live._agent_fingerprints = lambda: compared.append(1) or marks()  # type: ignore[method-assign]
    await live.start()
    compared.clear()  # (start takes the agents' marks once)
    try:
        for i in range(20):  # events, and many poll periods, with nobody reading
            ami.push(Event="Newchannel", Linkedid=f"L{i}", Uniqueid=f"L{i}", Context="hotline-inbound",
                     CallerIDNum="13800138000", Exten="12345", Timestamp=str(clock.now))
            await asyncio.sleep(0.01)
        assert compared == [] and "L19" in live.model.calls  # the model kept up; no agent was compared
        q = live.subscribe()
        agents.agents["1002"].feed(SetBusy(clock(), "培训", by="api:张班长"))
        d = await asyncio.wait_for(q.get(), 0.5)  # polled again from the first stream on, not after UNREAD_TICK_S
        assert d is not None and set(d.parts["agents"]) == {"1002"}
        live.unsubscribe(q)
    finally:
        await live.stop()


async def test_nobody_subscribed_the_day_still_turns_and_a_snapshot_is_of_today() -> None:
    live, _, ami, clock = service()  # 23:59:50 local
    await live.start()
    try:
        ami.push(Event="Newchannel", Linkedid="L1", Uniqueid="L1", Context="hotline-inbound",
                 CallerIDNum="13800138000", Exten="12345", Timestamp=str(clock.now))
        ami.push(Event="Hangup", Linkedid="L1", Uniqueid="L1", Cause="16", Timestamp=str(clock.now + 1))
        await asyncio.sleep(0.05)
        assert live.model.calls_today == 1
        clock.now += 20  # past midnight, no event since
        snap, _ = live.snapshot(Viewer(Principal(2, "班长", "supervisor", None)))
        assert snap["center"]["calls_today"] == 0 and live.model.calls_today == 0  # today's figures, not yesterday's
        clock.now += 86400  # another day, still nobody subscribed and no event: the slow turn resets it
        live.unread_tick_s = 0.01
        live._wake.set()  # (the publisher was asleep for UNREAD_TICK_S)
        await asyncio.sleep(0.1)
        assert live.model.day == dt.datetime.fromtimestamp(clock.now, Z).date()
    finally:
        await live.stop()


@contextlib.asynccontextmanager
async def streaming_without_poll() -> AsyncIterator[tuple[AgentService, Clock, asyncio.Queue[Any]]]:
    """The agents' service and the publisher running, one stream subscribed, the safety-net poll never due."""
    live, agents, _, clock = service()
    live.poll_s, live.flush_s = 60.0, 0.0
    await agents.start()
    await live.start()
    try:
        q = live.subscribe()
        await asyncio.sleep(0.05)  # (the subscribe's own turn: nothing moved)
        yield agents, clock, q
        live.unsubscribe(q)
    finally:
        await live.stop()
        await agents.stop()


async def test_an_agents_move_through_the_service_is_streamed_at_once_not_at_the_next_poll() -> None:
    async with streaming_without_poll() as (agents, clock, q):
        await agents.command("1001", SetBusy(clock(), "培训", by="api:张班长"))
        d = await asyncio.wait_for(q.get(), 1.0)
        assert d is not None and d.parts["agents"]["1001"]["state"] == "busy"


async def test_a_cluster_nodes_mirrored_agent_state_is_streamed_at_once() -> None:
    async with streaming_without_poll() as (agents, clock, q):
        row = {"agent": "1002", "state": "busy", "reason": "就餐", "since": clock.now + 1,
               "queues": list(agents.agents["1002"].queues), "paused": True, "agent_id": "1002"}
        assert agents.mirror_saved({"1002": row}) == 1  # another node's 示忙, taken here without its machine's input
        d = await asyncio.wait_for(q.get(), 1.0)
        assert d is not None and d.parts["agents"]["1002"]["state"] == "busy"


async def test_nobody_subscribed_renders_nothing_and_a_later_stream_gets_what_changed_after_it_came() -> None:
    live, agents, ami, clock = service()
    live.poll_s, live.flush_s = 0.01, 0.0
    rendered: list[object] = []
    parts = live._parts
    live._parts = lambda ch, now: rendered.append(ch) or parts(ch, now)  # type: ignore[method-assign]
    await live.start()
    try:
        ami.push(Event="Newchannel", Linkedid="L1", Uniqueid="L1", Context="hotline-inbound",
                 CallerIDNum="13800138000", Exten="12345", Timestamp=str(clock.now))
        agents.agents["1001"].feed(SetBusy(clock(), "就餐", by="api:张班长"))
        await asyncio.sleep(0.1)  # several publisher turns
        assert rendered == [] and live.seq == 0  # no stream: no view built, no delta numbered
        snap, _ = live.snapshot(Viewer(Principal(2, "班长", "supervisor", None)))
        assert "L1" in snap["calls"] and snap["agents"]["1001"]["state"] == "busy"  # the model kept up
        q = live.subscribe()
        agents.agents["1002"].feed(SetBusy(clock(), "培训", by="api:张班长"))
        d = await asyncio.wait_for(q.get(), 2)
        assert d is not None and set(d.parts["agents"]) == {"1002"}  # 1001's change was not carried over
        live.unsubscribe(q)
    finally:
        await live.stop()
