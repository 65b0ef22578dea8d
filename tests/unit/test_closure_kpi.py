"""Issue 13 item 5: every closure KPI definition on hand-built rows, and the store's rows on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.unit.test_store import NOW, StoreFactory, make_store, rec  # noqa: F401 - fixture
from ticketbridge import closure

UTC = dt.timezone.utc
D = dt.datetime(2026, 11, 10, 2, 0, tzinfo=UTC)  # 10:00 in Beijing


def row(no: str, *, agent: str | None = "1001", at: dt.datetime = D, closed: dt.datetime | None = None,
        due: dt.datetime | None = None, revisited: bool = False, out: str | None = None, spot: bool = False,
        caller: str = "", **kw: Any) -> dict[str, Any]:
    return dict(ticket_no=no, agent=agent, created_at=at, closed_at=closed, deadline_at=due, revisited=revisited,
                revisit_out=out, closed_on_spot=spot, caller=caller, **kw)


def test_closure_on_time_revisit_and_satisfaction_as_defined() -> None:
    h = dt.timedelta(hours=1)
    rows = [
        row("a", closed=D + h, due=D + 2 * h, spot=True),                       # closed on time, on the spot
        row("b", closed=D + 3 * h, due=D + 2 * h, revisited=True, out="rated"),  # late; follow-up satisfied
        row("c", closed=D + h, due=None, revisited=True, out="handling"),      # no deadline; follow-up: not resolved
        row("d", closed=D + h, due=D + h, revisited=True),                     # on time exactly; follow-up unanswered
        row("e"),                                                                # still open
        row("f", agent=None),                                                    # no request (IVR only)
    ]
    f = closure.compute(rows)
    assert (f.tickets, f.requests, f.closed) == (6, 5, 4)
    assert f.closure_rate == 0.8                         # 4 closed / 5 requests
    assert (f.closed_on_time, f.closed_with_deadline) == (2, 3) and f.on_time_rate == round(2 / 3, 4)
    assert f.revisited == 3 and f.revisit_rate == 0.75   # 3 of 4 closed reached 回访
    assert (f.revisit_satisfied, f.revisit_answered) == (1, 2) and f.revisit_satisfaction_rate == 0.5
    assert f.on_spot == 1 and f.on_spot_rate == 0.2
    assert closure.compute([]).closure_rate is None      # nothing to divide by: no figure, not 0%


def test_repeated_calls_within_seven_days_count_earlier_calls_outside_the_period() -> None:
    day = dt.timedelta(days=1)
    rows = [
        row("old", caller="13800000001", at=D - 3 * day, in_period=False),  # read only: before the period
        row("r1", caller="13800000001", at=D),                              # 3 days after: repeated
        row("r2", caller="13800000001", at=D + 8 * day),                    # 8 days after r1: not repeated
        row("n1", caller="13900000002", at=D),
        row("n2", caller="13900000002", at=D + 7 * day),                    # exactly 7 days: repeated
        row("x", caller="", at=D),                                          # no number: left out
    ]
    f = closure.compute(rows)
    assert f.tickets == 5 and f.calls_with_number == 4
    assert f.repeat_calls == 2 and f.repeat_rate == 0.5


def test_groupings_by_day_week_month_queue_line_category() -> None:
    rows = [row("a", at=D, queue="general", dialed="12345", category="咨询", closed=D),
            row("b", at=D + dt.timedelta(days=7), queue="tax", dialed="12366", legacy_line="12366",
                category="投诉举报"),
            row("c", at=D + dt.timedelta(days=25), queue="general", dialed="12345", category="咨询", closed=D)]
    assert list(closure.grouped(rows, "day")) == ["2026-11-10", "2026-11-17", "2026-12-05"]
    assert list(closure.grouped(rows, "week")) == ["2026-W46", "2026-W47", "2026-W49"]
    months = closure.grouped(rows, "month")
    assert {k: v.closed for k, v in months.items()} == {"2026-11": 1, "2026-12": 1}
    assert {k: v.requests for k, v in closure.grouped(rows, "queue").items()} == {"general": 2, "tax": 1}
    assert list(closure.grouped(rows, "line")) == ["12345", "12366"]
    assert {k: v.closure_rate for k, v in closure.grouped(rows, "category").items()} == {"咨询": 1.0, "投诉举报": 0.0}


def test_every_rate_has_its_definition_next_to_it() -> None:
    lines = closure.report_lines(closure.compute([row("a", closed=D, due=D)]))
    for name, _ in closure.REPORT:
        if name.endswith("_rate"):
            assert any(closure.DEFINITIONS[name] in line for line in lines), name


async def test_the_store_gives_closure_rows_from_the_history(make_store: StoreFactory) -> None:  # noqa: F811
    st = await make_store()
    a = (await st.save_call(rec("c.1"))).ticket_no
    await st.change_state(a, "closed", "agent:1001")                       # 当场解答
    b = (await st.save_call(rec("c.2", caller="13800138000"))).ticket_no    # the same number again
    for target in ("dispatched", "handling", "replied", "closed", "revisited", "handling"):
        await st.change_state(b, target, "dept")
    since = NOW - dt.timedelta(minutes=1)
    rows = {r["ticket_no"]: r for r in await st.closure_rows(since=since, until=NOW + dt.timedelta(days=1))}
    assert rows[a]["closed_on_spot"] and rows[a]["closed_at"] is not None and not rows[a]["revisited"]
    assert rows[b]["revisited"] and rows[b]["revisit_out"] == "handling" and not rows[b]["closed_on_spot"]
    f = closure.compute(rows.values())
    assert (f.requests, f.closed, f.on_time_rate, f.revisit_rate, f.revisit_satisfaction_rate) == (2, 2, 1.0, 0.5,
                                                                                                   0.0)
    assert f.repeat_calls == 1  # both calls from 13800138000 within 7 days


def test_the_automated_followups_answer_decides_its_satisfaction() -> None:
    rows = [row("s", closed=D, revisited=True, out="rated", followup_rating=2, followup_scale=5),
            row("u", closed=D, revisited=True, out="rated", followup_rating=3, followup_scale=5),   # 基本满意: not
            row("n", closed=D, revisited=True, out="supervised", followup_rating=1, followup_scale=3,
                followup_resolved=False),                                                           # not resolved
            row("t", closed=D, revisited=True, out="rated", followup_rating=1, followup_scale=3),
            row("q", closed=D, revisited=True, followup_resolved=True)]                            # no rating
    f = closure.compute(rows)
    assert (f.revisit_satisfied, f.revisit_answered) == (2, 4) and f.revisit_satisfaction_rate == 0.5
