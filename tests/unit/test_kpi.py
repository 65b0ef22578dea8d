"""KPI computation (pure): every figure's numerator and denominator, edge cases, groupings."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ticketbridge.kpi import compute, grouped, report_lines, satisfied

SH = dt.timezone(dt.timedelta(hours=8))
DAY1 = dt.datetime(2026, 3, 3, 10, 0, tzinfo=SH)
DAY2 = dt.datetime(2026, 3, 4, 0, 30, tzinfo=SH)


def row(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(ticket_no="260303000001", created_at=DAY1, started_at=None, dialed="12345",
                                legacy_line=None, mode="center", queue=None, agent=None, outcome="ended_in_ivr",
                                handled_by="controller", queue_wait_s=None, answered_at=None, talk_s=None,
                                survey_rating=None, survey_scale=None, transfers=[], state="accepted",
                                category=None, callback_needed=False, closed_on_spot=False, callback_status=None)
    base.update(kw)
    return base


def answered(wait: float | None = 5.0, **kw: Any) -> dict[str, Any]:
    return row(queue="general", agent="robot2", outcome="answered", queue_wait_s=wait, talk_s=60.0,
               answered_at=DAY1, **kw)


def test_empty_has_no_rates() -> None:
    f = compute([])
    assert f.calls == 0 and f.answer_rate is None and f.satisfaction_rate is None and f.lines == {}
    assert all("–" in line for line in report_lines(f) if "rate" in line)


def test_answer_rate_counts_only_calls_that_reached_a_queue_or_agent() -> None:
    rows = [answered(), answered(), answered(),
            row(queue="general", outcome="abandoned_in_queue", callback_status="pending"),
            row(outcome="ended_in_ivr", callback_status="pending"),  # never offered
            row(outcome="forwarded", dialed="96196")]  # forwarded by a legacy rule: not offered
    f = compute(rows)
    assert (f.calls, f.offered, f.answered, f.abandoned) == (6, 4, 3, 1)
    assert f.answer_rate == 0.75 and f.abandon_rate == 0.25
    assert f.ended_in_ivr == 1
    assert f.outcomes == {"abandoned_in_queue": 1, "answered": 3, "ended_in_ivr": 1, "forwarded": 1}


def test_answered_within_15_s_boundary_and_unknown_waits() -> None:
    rows = [answered(15.0), answered(15.01), answered(0.0), answered(None)]
    f = compute(rows)
    assert f.answered == 4 and f.answered_wait_known == 3 and f.answered_wait_unknown == 1
    assert f.answered_within == 2  # 15.0 counts (≤ 15), 15.01 does not
    assert f.answered_within_rate == round(2 / 3, 4)
    assert f.avg_wait_s == round((15.0 + 15.01 + 0.0) / 3, 2)
    assert compute(rows, answer_within_s=20).answered_within == 3


@pytest.mark.parametrize(("rating", "scale", "want"), [
    (1, 5, True), (2, 5, True), (3, 5, False), (5, 5, False), (1, 3, True), (2, 3, False),
    (None, 5, None), (1, None, True), (2, None, True)])
def test_satisfied(rating: Any, scale: Any, want: bool | None) -> None:
    assert satisfied(rating, scale) is want


def test_satisfaction_and_survey_rate() -> None:
    rows = [answered(survey_rating=1, survey_scale=5), answered(survey_rating=2, survey_scale=5),
            answered(survey_rating=4, survey_scale=5), answered(survey_rating=1, survey_scale=3), answered()]
    f = compute(rows)
    assert (f.rated, f.satisfied) == (4, 3)
    assert f.satisfaction_rate == 0.75 and f.survey_rate == 0.8


def test_on_the_spot_resolution_over_answered() -> None:
    rows = [answered(closed_on_spot=True, state="closed"), answered(state="dispatched"),
            answered(closed_on_spot=True, state="revisited"), answered(), row()]
    f = compute(rows)
    assert f.closed_on_spot == 2 and f.on_spot_rate == 0.5


def test_transfers_lines_callbacks_fallback() -> None:
    rows = [answered(transfers=[{"target": "110", "kind": "emergency", "outcome": "completed"}]),
            answered(transfers=[{"target": "tax", "kind": "branch_center", "outcome": "no_answer"},
                                {"target": "tax", "kind": "branch_center", "outcome": "completed"}]),
            row(dialed="12315", legacy_line="12315", queue="general", outcome="abandoned_in_queue",
                callback_status="done"),
            row(dialed="12315", legacy_line="12315", callback_status="failed", handled_by="fallback"),
            row(callback_status="dialing"), row(callback_status="pending")]
    f = compute(rows)
    assert f.transfers == {"completed": 2, "no_answer": 1}
    assert f.transfer_kinds == {"branch_center": 2, "emergency": 1}
    assert f.lines == {"12345": 4, "12315": 2}
    assert (f.callbacks_needed, f.callbacks_done, f.callbacks_failed, f.callbacks_pending) == (4, 1, 1, 2)
    assert f.callback_rate == 0.25 and f.fallback == 1


def test_garbage_values_are_missing_not_errors() -> None:
    f = compute([answered("abc", survey_rating="x", transfers=None), row(outcome=None, created_at=None)])
    assert f.answered_wait_unknown == 1 and f.rated == 0 and f.in_progress == 1


def test_grouped_by_day_queue_line() -> None:
    rows = [answered(created_at=DAY1), answered(created_at=DAY2),
            row(created_at=dt.datetime(2026, 3, 3, 16, 30, tzinfo=dt.timezone.utc))]  # = 03-04 00:30 Beijing
    by_day = grouped(rows, "day")
    assert list(by_day) == ["2026-03-03", "2026-03-04"]
    assert by_day["2026-03-03"].calls == 1 and by_day["2026-03-04"].calls == 2
    by_queue = grouped(rows, "queue")
    assert by_queue["general"].answered == 2 and by_queue["(none)"].calls == 1
    by_line = grouped(rows + [row(dialed="12333", legacy_line="12333")], "line")
    assert set(by_line) == {"12345", "12333"}
    with pytest.raises(ValueError, match="unknown grouping"):
        grouped(rows, "agent")


def test_report_lines_are_readable() -> None:
    text = "\n".join(report_lines(compute([answered(survey_rating=1, survey_scale=5)])))
    assert "接通率 answer rate" in text and "100.0%" in text and "calls by line" in text
