"""Per-agent KPIs (ticketbridge/agent_kpi.py) on hand-built days, and `hotline kpi --by agent` on a real store."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
import structlog
from click.testing import CliRunner

from hotline.cli import main
from model.loading import load_config
from routing.agent import Called, Completed, Connected, RingNoAnswer, SetBusy, SetReady, SignOut
from routing.agent_service import AgentService
from ticketbridge import agent_kpi
from tests.unit.test_agent_service import FakeAmi
from tests.unit.test_store import Clock as StoreClock, make_store, rec, store  # noqa: F401 - fixtures

BJ = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def _logging_as_found():
    """The CLI configures structlog for itself (INFO, stderr): later tests capture debug events."""
    yield
    structlog.reset_defaults()


def at(hh: int, mm: int, ss: int = 0, day: int = 30) -> float:
    return dt.datetime(2026, 11, day, hh, mm, ss, tzinfo=BJ).timestamp()


def ev(agent: str, when: float, old: str, new: str, seconds: float, cause: str, reason: str = "",
       old_reason: str = "") -> dict:
    return {"agent": agent, "at": dt.datetime.fromtimestamp(when, dt.timezone.utc), "old": old, "new": new,
            "seconds": seconds, "cause": cause, "reason": reason, "old_reason": old_reason}


def a_day() -> list[dict]:
    """Agent 8001 on 2026-11-30: signs in 09:00, a miss, a 5-minute call with 30 s after-call work, 15 min 小休,
    signs out 12:00."""
    e = [ev("8001", at(9, 0), "signed_out", "ready", 0, "sign_in")]
    e.append(ev("8001", at(9, 10), "ready", "ringing", at(9, 10) - at(9, 0), "called"))
    e.append(ev("8001", at(9, 10, 15), "ringing", "ready", 15, "ring_no_answer"))
    e.append(ev("8001", at(9, 20), "ready", "ringing", at(9, 20) - at(9, 10, 15), "called"))
    e.append(ev("8001", at(9, 20, 5), "ringing", "talking", 5, "connected"))
    e.append(ev("8001", at(9, 25, 5), "talking", "wrap_up", 300, "completed", "话后整理"))
    e.append(ev("8001", at(9, 25, 35), "wrap_up", "ready", 30, "tick", "", "话后整理"))
    e.append(ev("8001", at(10, 0), "ready", "busy", at(10, 0) - at(9, 25, 35), "set_busy", "小休"))
    e.append(ev("8001", at(10, 15), "busy", "ready", 900, "set_ready", "", "小休"))
    e.append(ev("8001", at(12, 0), "ready", "signed_out", at(12, 0) - at(10, 15), "sign_out"))
    return e


TICKETS = [
    {"agent": "8001", "answered_at": dt.datetime.fromtimestamp(at(9, 20, 5), dt.timezone.utc), "talk_s": 298.0},
    {"agent": None, "created_at": dt.datetime.fromtimestamp(at(9, 30), dt.timezone.utc)},  # abandoned: nobody's
    {"agent": "PJSIP/1001", "answered_at": at(11, 0), "talk_s": 60.0},  # before agent IDs: the seat's key
]


def test_one_agent_day_every_figure_by_its_definition():
    rows = {(r.day, r.agent): r for r in agent_kpi.compute(a_day(), TICKETS)}
    f = rows[("2026-11-30", "8001")]
    assert f.signed_in_s == 3 * 3600  # 09:00 → 12:00, every state but 签出
    assert f.ringing_s == 20 and f.talking_s == 300 and f.wrap_up_s == 30
    assert f.busy_s == 900 and f.busy_by_reason == {"小休": 900}
    assert f.ready_s == 3 * 3600 - 20 - 300 - 30 - 900
    assert f.answered == 1 and f.ticket_talk_s == 298 and f.aht_s == 298 + 30  # (talk + after-call) / answered
    assert f.missed == 1
    old = rows[("2026-11-30", "1001")]
    assert old.answered == 1 and old.aht_s == 60 and old.signed_in_s == 0


def test_time_is_split_at_midnight_and_cut_to_the_period():
    e = [ev("8002", at(1, 0, day=30), "ready", "busy", 2 * 3600, "set_busy", "就餐")]  # ready 23:00 → 01:00
    rows = agent_kpi.compute(e, [])
    assert [(r.day, r.ready_s) for r in rows] == [("2026-11-29", 3600), ("2026-11-30", 3600)]
    since = dt.datetime(2026, 11, 30, 0, 30, tzinfo=BJ)
    assert [(r.day, r.ready_s) for r in agent_kpi.compute(e, [], since=since)] == [("2026-11-30", 1800)]
    assert agent_kpi.compute(a_day(), TICKETS, until=dt.datetime(2026, 11, 30, 9, 10, 15, tzinfo=BJ))[0].missed == 0


def test_the_current_state_counts_up_to_now_and_a_refused_pin_spends_no_time():
    current = [{"agent": "1001", "agent_id": "8003", "state": "busy", "reason": "培训", "since": at(14, 0)},
               {"agent": "1002", "agent_id": "1002", "state": "signed_out", "reason": "", "since": at(8, 0)}]
    pin = ev("8003", at(13, 0), "signed_out", "signed_out", 0, "pin_wrong")
    rows = agent_kpi.compute([pin], [], current=current, now=dt.datetime.fromtimestamp(at(14, 30), dt.timezone.utc))
    assert [(r.agent, r.busy_by_reason, r.signed_in_s) for r in rows] == [("8003", {"培训": 1800}, 1800)]


def test_a_same_state_mark_splits_the_time_and_keeps_it():
    """The phone going away while busy is recorded as busy → busy (离线 mark): the time before it still counts."""
    e = [ev("8004", at(10, 10), "busy", "busy", 600, "unreachable", "小休", "小休"),
         ev("8004", at(10, 15), "busy", "ready", 300, "set_ready", "", "小休")]
    [f] = agent_kpi.compute(e, [])
    assert f.busy_by_reason == {"小休": 900} and f.signed_in_s == 900


def test_rows_before_migration_0009_count_misses_by_their_moves():
    legacy = [ev("1001", at(9, 0), "ringing", "ready", 15, ""), ev("1001", at(9, 1), "ringing", "busy", 15, "", "未接"),
              ev("1001", at(9, 2), "ringing", "talking", 3, "")]
    assert agent_kpi.compute(legacy, [])[0].missed == 2


def test_report_has_a_line_per_agent_day_with_the_definitions_headings():
    lines = agent_kpi.report_lines(agent_kpi.compute(a_day(), TICKETS))
    assert lines[0].split()[:4] == ["day", "agent", "signed-in", "ready"]
    row = next(x for x in lines if " 8001 " in x)
    assert "3:00:00" in row and "0:05:28" in row and "小休 0:15:00" in row


async def test_events_recorded_by_the_service_feed_the_figures_on_sqlite_and_postgresql(store):
    """The service's real events through the store (both backends) give the day the agent lived."""
    cfg = load_config("config/hotline.yaml")
    clock = Clock(at(9, 0))
    svc = AgentService(FakeAmi(), cfg, clock=clock, save=store.save_agent, tick_s=3600)
    svc.attach()
    svc.start_from(None)  # first start: everyone signs in (no previous state: no duration)
    await svc.start()
    seat = svc.agents["1001"]
    for inp in (Called(at(9, 10), "general", "L1"), RingNoAnswer(at(9, 10, 15), "general", "L1"),
                Called(at(9, 20), "general", "L2"), Connected(at(9, 20, 5), "general", "L2"),
                Completed(at(9, 25, 5), "general", "L2"), SetBusy(at(10, 0), "小休"), SetReady(at(10, 15)),
                SignOut(at(12, 0))):
        await svc.command("1001", inp)
    await svc.stop()
    assert seat.agent_id == "1001"
    await store.save_call(rec("L2", agent="1001", answered_at=at(9, 20, 5), talk_s=300.0))
    events = [{"agent": e.agent, "at": e.at, "old": e.old, "new": e.new, "reason": e.reason, "old_reason": e.old_reason,
               "seconds": e.seconds, "cause": e.cause} for e in await store.agent_events()]
    assert {e["cause"] for e in events} >= {"sign_in", "called", "ring_no_answer", "connected", "sign_out"}
    f = next(r for r in agent_kpi.compute(events, await store.kpi_rows()) if r.agent == "1001")
    assert (f.signed_in_s, f.missed, f.answered, f.talking_s, f.busy_by_reason) == (3 * 3600, 1, 1, 300, {"小休": 900})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_kpi_by_agent_command_on_a_store(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    import asyncio

    from ticketbridge.store import TicketStore

    async def fill() -> None:
        st = TicketStore(url, load_config("config/hotline.yaml"))
        await st.open()
        svc = AgentService(FakeAmi(), load_config("config/hotline.yaml"), clock=Clock(at(9, 0)), save=st.save_agent)
        svc.attach()
        svc.start_from(None)
        await svc.start()
        await svc.command("1002", RingNoAnswer(at(9, 5), "general", "L9"))
        await svc.command("1002", Called(at(9, 6), "general", "L9"))
        await svc.command("1002", RingNoAnswer(at(9, 6, 15), "general", "L9"))
        await svc.command("1002", SignOut(at(10, 0)))
        await svc.stop()
        await st.close()

    asyncio.run(fill())
    r = CliRunner().invoke(main, ["kpi", "--by", "agent", "--store", url, "--since", "2026-11-30",
                                  "--until", "2026-11-30", "--json"])
    assert r.exit_code == 0, r.output
    rows = {x["agent"]: x for x in json.loads(r.stdout)["rows"]}
    assert rows["1002"]["missed"] == 1 and rows["1002"]["signed_in_s"] == 3600  # ready missed nothing: not a miss
    r = CliRunner().invoke(main, ["kpi", "--help"])
    assert "missed" in r.output and "RINGNOANSWER" in r.output and "AHT" in r.output
