"""Seat agents in the store (migration 0003): the signed-in set survives a controller restart; changes are recorded."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.exc import IntegrityError

from model.loading import load_config
from routing.agent import AgentState, SetBusy, StateChanged
from routing.agent_service import AgentService, PinRefused
from ticketbridge.store import TicketStore
from tests.unit.test_agent_service import Clock, FakeAmi
from tests.unit.test_store import NOW, make_store  # noqa: F401 - fixture (SQLite and PostgreSQL)

UTC = dt.timezone.utc


async def test_agents_saved_and_restored_across_a_controller_restart(tmp_path):
    cfg = load_config("config/hotline.yaml")
    url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    store = TicketStore(url, cfg)
    await store.open()
    assert await store.agent_states() == {}  # first start: nothing saved
    ami = FakeAmi()
    svc = AgentService(ami, cfg, clock=Clock(), save=store.save_agent)
    svc.attach()
    svc.start_from(await store.agent_states())
    await svc.start()
    await svc.drain()
    await svc.command("1001", SetBusy(Clock.now + 60, "培训", by="班长王", why="强制示忙"))
    await svc.feature("1002", "*52")
    await svc.stop()
    await store.close()

    store = TicketStore(url, cfg)
    await store.open()
    saved = await store.agent_states()
    assert saved["1001"]["state"] == "busy" and saved["1001"]["reason"] == "培训" and saved["1001"]["paused"]
    events = await store.agent_events(agent="1001")
    assert [(e.old, e.new) for e in events] == [("signed_out", "ready"), ("ready", "busy")]
    assert events[-1].actor == "班长王" and events[-1].why == "强制示忙" and events[-1].seconds == 60
    ami2 = FakeAmi()
    svc2 = AgentService(ami2, cfg, clock=Clock(), save=store.save_agent)
    svc2.attach()
    svc2.start_from(saved)
    await svc2.start()
    ami2.push(Event="FullyBooted")
    await svc2.drain()
    assert svc2.agents["1001"].state is AgentState.BUSY and svc2.agents["1002"].state is AgentState.SIGNED_OUT
    assert {(h["Interface"], h["Queue"], h["Paused"], h["Reason"]) for h in ami2.named("QueuePause")} == {
        ("PJSIP/1001", "hotline-general", "true", "培训"),
        ("PJSIP/1002", "hotline-general", "true", "签出"), ("PJSIP/1002", "hotline-overflow", "true", "签出"),
        ("PJSIP/1003", "hotline-expert", "false", ""), ("PJSIP/1003", "hotline-line_12333", "false", ""),
        ("PJSIP/1004", "hotline-english", "false", ""), ("PJSIP/1004", "hotline-tourism", "false", ""),
        ("PJSIP/1005", "hotline-minnan", "false", ""), ("PJSIP/1005", "hotline-campaign_flood", "false", ""),
        ("PJSIP/1006", "hotline-sign", "false", "")}
    await svc2.stop()
    await store.close()


def test_migration_0009_keeps_rows_written_before_agent_ids(tmp_path):
    """A store at 0004 with agents saved upgrades in place: old rows read as the seat's own agent, no cause."""
    import asyncio
    import sqlite3

    from alembic import command
    from alembic.config import Config as AlembicConfig

    from ticketbridge import agent_kpi
    from ticketbridge.store import MIGRATIONS_DIR

    db = tmp_path / "old.db"
    acfg = AlembicConfig()
    acfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    acfg.cmd_opts = type("Opts", (), {"x": [f"url=sqlite+aiosqlite:///{db}"]})()
    command.upgrade(acfg, "0004_audit_log")
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO agent_states (agent, state, reason, since, queues, paused, updated_at) "
                  "VALUES ('1001', 'ready', '', 5000.0, '[\"general\"]', 0, '2026-11-30 01:00:00')")
        c.execute("INSERT INTO agent_events (agent, at, old, new, reason, old_reason, seconds, why, queue, linkedid) "
                  "VALUES ('1001', '2026-11-30 01:00:15', 'ringing', 'ready', '', '', 15, '', 'general', 'L1')")

    async def read() -> tuple[dict, list]:
        cfg = load_config("config/hotline.yaml")
        cfg.seats["1001"].agent_id = "8101"
        store = TicketStore(f"sqlite+aiosqlite:///{db}", cfg)
        await store.open()
        try:
            states, events = await store.agent_states(), await store.agent_events()
            svc = AgentService(FakeAmi(), cfg, clock=Clock())
            svc.start_from(states)
            assert svc.agents["1001"].agent_id == "8101"  # no agent_id saved: the seat's own agent
            return states, events
        finally:
            await store.close()

    states, events = asyncio.run(read())
    assert states["1001"]["agent_id"] is None and states["1001"]["queues"] == ["general"]
    assert (events[0].seat, events[0].cause) == ("", "")
    rows = [{"agent": e.agent, "at": e.at, "old": e.old, "new": e.new, "seconds": e.seconds, "cause": e.cause}
            for e in events]
    assert agent_kpi.compute(rows, [])[0].missed == 1  # a legacy ringing → ready is a miss


def _event(e) -> dict:
    return {k: getattr(e, k) for k in ("agent", "at", "old", "new", "reason", "old_reason", "seconds", "actor", "why",
                                       "queue", "linkedid", "seat", "cause")}


async def test_every_field_of_a_seat_and_its_events_is_stored_and_read_back(make_store):  # noqa: F811
    """A seat saved for the first time, then again (its row updated in place), a second seat, with a StateChanged
    and a refused PIN: every column comes back as saved, cut to its column's length where the store cuts."""
    store = await make_store()
    clock = make_store.clock
    t0 = NOW.timestamp() - 600
    first = StateChanged("8101", AgentState.READY, AgentState.BUSY, t0 + 1.25, None, reason="培" * 40,
                         old_reason="o" * 40, by="班长" * 40, why="强制示忙" * 60, queue="q" * 70,
                         linkedid="1772472600.1" * 6, seat="1001" * 9, cause="set_busy_by_supervisor_x")
    pin = PinRefused("8" * 40, "1001", t0 + 2.5, AgentState.BUSY, 3, True, "pin_locked")
    await store.save_agent({"agent": "1001", "state": "busy", "reason": "培训", "since": t0 + 1.25,
                            "queues": ["general", "overflow"], "paused": True, "agent_id": "8101"}, [first, pin])
    assert await store.agent_states() == {"1001": {
        "agent": "1001", "state": "busy", "reason": "培训", "since": t0 + 1.25, "queues": ["general", "overflow"],
        "paused": True, "agent_id": "8101"}}
    events = await store.agent_events()
    assert [_event(e) for e in events] == [
        {"agent": "8101", "at": dt.datetime.fromtimestamp(t0 + 1.25, UTC), "old": "ready", "new": "busy",
         "reason": "培" * 32, "old_reason": "o" * 32, "seconds": 0.0, "actor": ("班长" * 40)[:64],
         "why": ("强制示忙" * 60)[:200], "queue": "q" * 64, "linkedid": ("1772472600.1" * 6)[:64],
         "seat": ("1001" * 9)[:32], "cause": "set_busy_by_supervisor_x"[:24]},
        {"agent": "8" * 32, "at": dt.datetime.fromtimestamp(t0 + 2.5, UTC), "old": "busy", "new": "busy",
         "reason": "", "old_reason": "", "seconds": 0.0, "actor": "8" * 32, "why": "3 wrong PIN(s) in a row; locked",
         "queue": "", "linkedid": "", "seat": "1001", "cause": "pin_locked"}]
    assert all(e.at.utcoffset() is not None for e in events)  # aware, as every time the store gives back

    # the same seat again: its one row updated (no agent ID now: the seat's own), and a new seat beside it
    clock.now = NOW + dt.timedelta(minutes=5)
    back = StateChanged("8101", AgentState.BUSY, AgentState.READY, t0 + 61.5, 60.25, old_reason="培训", by=None,
                        queue="general", linkedid="L2", seat="1001", cause="set_ready")
    await store.save_agent({"agent": "1001", "state": "ready", "reason": "", "since": t0 + 61.5,
                            "queues": ["general"], "paused": False, "agent_id": ""}, [back])
    await store.save_agent({"agent": "1002", "state": "signed_out", "reason": "", "since": t0, "queues": [],
                            "paused": False, "agent_id": None}, [])
    assert await store.agent_states() == {
        "1001": {"agent": "1001", "state": "ready", "reason": "", "since": t0 + 61.5, "queues": ["general"],
                 "paused": False, "agent_id": None},
        "1002": {"agent": "1002", "state": "signed_out", "reason": "", "since": t0, "queues": [], "paused": False,
                 "agent_id": None}}
    # updated_at is the store's clock at each save: the cluster's sync asks for what changed since a time
    assert set(await store.agent_states(changed_since=NOW + dt.timedelta(minutes=1))) == {"1001", "1002"}
    assert await store.agent_states(changed_since=NOW + dt.timedelta(minutes=6)) == {}
    events = await store.agent_events(agent="8101")
    assert len(events) == 2 and _event(events[-1]) == {
        "agent": "8101", "at": dt.datetime.fromtimestamp(t0 + 61.5, UTC), "old": "busy", "new": "ready",
        "reason": "", "old_reason": "培训", "seconds": 60.25, "actor": None, "why": "", "queue": "general",
        "linkedid": "L2", "seat": "1001", "cause": "set_ready"}
    assert [e.new for e in await store.agent_events(since=dt.datetime.fromtimestamp(t0 + 2, UTC))] == [
        "busy", "ready"]


async def test_a_save_that_fails_raises_and_leaves_nothing_half_written(make_store):  # noqa: F811
    """The seat's row and its events are one transaction: an event the database refuses (no agent: NOT NULL)
    fails the save, to the caller, and the row written before it in the same save is rolled back."""
    store = await make_store()
    bad = StateChanged(None, AgentState.READY, AgentState.BUSY, NOW.timestamp(), 1.0)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        await store.save_agent({"agent": "1003", "state": "busy", "reason": "", "since": NOW.timestamp(),
                                "queues": ["general"], "paused": True, "agent_id": "8103"}, [bad])
    assert await store.agent_states() == {} and await store.agent_events() == []
