"""Seat agents in the store (migration 0003): the signed-in set survives a controller restart; changes are recorded."""

from __future__ import annotations

from model.loading import load_config
from routing.agent import AgentState, SetBusy
from routing.agent_service import AgentService
from ticketbridge.store import TicketStore
from tests.unit.test_agent_service import Clock, FakeAmi


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
