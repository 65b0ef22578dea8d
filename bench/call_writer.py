"""CPU of a store's call-writer thread per call: `open_ticket` (IVR entry) + `save_call` (hang-up);
with `--agents`, per seat-agent state save (`save_agent`: a snapshot and one StateChanged, 2-3 per answered call).

Every call's two write transactions run in the store's call-writer thread (ticketbridge/store.py
`TicketStore._call_tx`, ticketbridge/call_db.py `DbapiCallDb`: sqlite3 on SQLite, psycopg on PostgreSQL).
This times that thread's own CPU (`time.thread_time` read in it) over `--calls` sequential open + save pairs
on a fresh SQLite file (`--backend pg`: a fresh schema of the test PostgreSQL, $HOTLINE_TEST_PG), after a
warm-up, and the process's CPU beside it (the event loop's side included). `--agents` times `--calls`
sequential `save_agent` calls instead (six seats in turn, each save moving its seat ready <-> talking: the
update of an existing row, as in production). `--profile` runs cProfile in the writer thread only and prints
its top functions; `--profile-out FILE` keeps the stats.

Run:  .venv/bin/python bench/call_writer.py [--backend sqlite|pg] [--agents] [--calls 2000] [--warmup 200]
      [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from routing.agent import AgentState, StateChanged  # noqa: E402
from ticketbridge.assembler import CallRecord  # noqa: E402
from ticketbridge.store import TicketStore  # noqa: E402
from bench.ticket_saves import with_store  # noqa: E402


def record(lid: str, i: int) -> CallRecord:
    """An answered call's complete record (as bench/ticket_saves.py saves)."""
    t0 = time.time() - 300
    return CallRecord(linkedid=lid, caller=f"138{i:08d}", dialed="12345", mode="center",
                      requested_dest="queue:general/咨询", actual_dest="agent:seat1001", category="咨询",
                      ivr_path=["menu:main", "key:1"], queue="general", queue_wait_s=12.0, agent="1001",
                      answered_at=t0 + 20, talk_s=95.0,
                      participants=[("caller", "PJSIP/trunk-1"), ("agent", "PJSIP/1001-2")],
                      outcome="answered", started_at=t0, ended_at=t0 + 120, survey_rating=1, survey_scale=5)


async def calls(store: TicketStore, first: int, n: int) -> None:
    for i in range(first, first + n):
        lid = f"1700000000.{i}"
        await store.open_ticket(lid, caller=f"138{i:08d}", dialed="12345")
        await store.save_call(record(lid, i))


#: the seats `agent_saves` moves in turn
SEATS = ("1001", "1002", "1003", "1004", "1005", "1006")


async def agent_saves(store: TicketStore, first: int, n: int) -> None:
    """`n` saves of a seat's snapshot with the StateChanged that moved it (as routing/agent_service.py
    `_worker` saves), the seats in turn, each alternately answering a call and back to ready."""
    t0 = time.time() - 3600
    for i in range(first, first + n):
        seat, talking = SEATS[i % len(SEATS)], (i // len(SEATS)) % 2 == 0
        old, new = (AgentState.READY, AgentState.TALKING) if talking else (AgentState.TALKING, AgentState.READY)
        at = t0 + i * 0.01
        change = StateChanged(f"8{seat}", old, new, at, 30.0, queue="general", linkedid=f"1700000000.{i}",
                              seat=seat, cause="connected" if talking else "completed")
        await store.save_agent({"agent": seat, "state": new.value, "reason": "", "since": at,
                                "queues": ["general", "overflow"], "paused": False, "agent_id": f"8{seat}"},
                               [change])


async def main_async(a: argparse.Namespace) -> None:
    await with_store(a.backend, lambda store: measure(store, a))


async def measure(store: TicketStore, a: argparse.Namespace) -> None:
    thread = store._call_thread
    assert thread is not None, "no call-writer thread (SQLite in memory?)"

    def in_thread(fn, *args):  # type: ignore[no-untyped-def]
        return asyncio.wrap_future(thread.submit(fn, *args))

    unit, what = (agent_saves, "agent saves") if a.agents else (calls, "calls (open + save)")
    per = "save" if a.agents else "call"
    await unit(store, 0, a.warmup)
    # (timed by the thread's CPU clock: waits, for the GIL or the next job, are not counted)
    prof = cProfile.Profile(time.thread_time) if a.profile or a.profile_out else None
    first = a.warmup
    for r in range(a.rounds):
        if prof is not None:
            await in_thread(prof.enable)
        t_thread0 = await in_thread(time.thread_time)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await unit(store, first, a.calls)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        t_thread = await in_thread(time.thread_time) - t_thread0
        if prof is not None:
            await in_thread(prof.disable)
        first += a.calls
        print(f"round {r + 1}: {a.calls} {what}, writer thread CPU "
              f"{t_thread / a.calls * 1000:.3f} ms/{per}, process CPU {cpu / a.calls * 1000:.3f} ms/{per}, "
              f"wall {wall / a.calls * 1000:.3f} ms/{per}", flush=True)
    if prof is not None:
        if a.profile_out:
            prof.dump_stats(a.profile_out)
        if a.profile:
            st = pstats.Stats(prof)
            st.sort_stats("tottime").print_stats(25)
            st.sort_stats("cumulative").print_stats(40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite")
    ap.add_argument("--agents", action="store_true", help="time save_agent (snapshot + one StateChanged) instead")
    ap.add_argument("--calls", type=int, default=2000, help="calls (with --agents: saves) a round")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile the writer thread, print its top functions")
    ap.add_argument("--profile-out", help="keep the writer thread's profile stats in this file")
    a = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main_async(a))


if __name__ == "__main__":
    main()
