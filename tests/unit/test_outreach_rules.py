"""The rules of automatic calls (ticketbridge/outreach_rules.py), each on hand-built data with a fixed clock,
and what a 回访 answer does to a ticket."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from model.config import AutoDialRules, Hours
from model.ticket_state import TicketState
from ticketbridge.lifecycle import allowed
from ticketbridge.outreach_rules import Owed, Verdict, decide, followup_outcome, plan

BJ = ZoneInfo("Asia/Shanghai")
#: a Monday, 10:00 Beijing time
NOW = dt.datetime(2026, 11, 30, 10, 0, tzinfo=BJ)
RULES = AutoDialRules(enabled=True, delay_min=0, within_min=120, max_attempts=3, spacing_min=10)
MOBILE = "13800138000"


def allow_all(number: str) -> str | None:
    return None


def owed(**kw) -> Owed:  # noqa: ANN003
    base = dict(id=1, kind="callback", ticket_no="261130000001", number=MOBILE,
                since=NOW - dt.timedelta(minutes=5), attempts=0, status="pending")
    return Owed(**{**base, **kw})


def verdict(o: Owed, rules: AutoDialRules = RULES, now: dt.datetime = NOW, **kw) -> Verdict:  # noqa: ANN003
    return decide(o, rules, now, refusal=kw.pop("refusal", allow_all), **kw).verdict


def test_a_fresh_missed_call_is_due_at_once() -> None:
    d = decide(owed(), RULES, NOW, refusal=allow_all)
    assert d.verdict is Verdict.DIAL and d.reason == "attempt 1 of 3"


def test_within_n_minutes_of_the_call_and_not_after() -> None:
    assert verdict(owed(since=NOW - dt.timedelta(minutes=119, seconds=59))) is Verdict.DIAL
    assert verdict(owed(since=NOW - dt.timedelta(minutes=120))) is Verdict.DIAL  # the edge is still in
    late = decide(owed(since=NOW - dt.timedelta(minutes=120, seconds=1)), RULES, NOW, refusal=allow_all)
    assert late.verdict is Verdict.GIVE_UP and "within 120 min" in late.reason


def test_not_before_the_delay() -> None:
    rules = RULES.model_copy(update={"delay_min": 30})
    d = decide(owed(since=NOW - dt.timedelta(minutes=29)), rules, NOW, refusal=allow_all)
    assert d.verdict is Verdict.WAIT and d.not_before == NOW + dt.timedelta(minutes=1)
    assert verdict(owed(since=NOW - dt.timedelta(minutes=30)), rules) is Verdict.DIAL


def test_at_most_k_attempts() -> None:
    last = NOW - dt.timedelta(minutes=30)
    assert verdict(owed(attempts=2, status="failed", last_attempt_at=last)) is Verdict.DIAL
    d = decide(owed(attempts=3, status="failed", last_attempt_at=last), RULES, NOW, refusal=allow_all)
    assert d.verdict is Verdict.GIVE_UP and "3 attempt(s)" in d.reason
    one = RULES.model_copy(update={"max_attempts": 1})
    assert verdict(owed(attempts=1, status="failed", last_attempt_at=last), one) is Verdict.GIVE_UP


def test_attempts_spaced_m_minutes() -> None:
    d = decide(owed(attempts=1, status="failed", last_attempt_at=NOW - dt.timedelta(minutes=9)), RULES, NOW,
               refusal=allow_all)
    assert d.verdict is Verdict.WAIT and d.not_before == NOW + dt.timedelta(minutes=1)
    assert verdict(owed(attempts=1, status="failed", last_attempt_at=NOW - dt.timedelta(minutes=10))) is Verdict.DIAL


def test_only_during_calling_hours() -> None:
    office = Hours(weekly={"mon": ["08:30-12:00", "14:00-17:30"]}, holidays=[dt.date(2026, 12, 7)])
    assert verdict(owed(), hours=office) is Verdict.DIAL
    lunch = NOW.replace(hour=12, minute=30)
    assert verdict(owed(since=lunch - dt.timedelta(minutes=5)), now=lunch, hours=office) is Verdict.WAIT
    holiday = dt.datetime(2026, 12, 7, 10, 0, tzinfo=BJ)  # a Monday, but a holiday
    assert verdict(owed(since=holiday - dt.timedelta(minutes=5)), now=holiday, hours=office) is Verdict.WAIT
    # none configured: 08:00-20:00 every day, so never at night, Sunday daytime yes
    night = dt.datetime(2026, 11, 30, 22, 0, tzinfo=BJ)
    assert verdict(owed(since=night - dt.timedelta(minutes=5)), now=night) is Verdict.WAIT
    sunday = dt.datetime(2026, 11, 29, 9, 0, tzinfo=BJ)
    assert verdict(owed(since=sunday - dt.timedelta(minutes=5)), now=sunday) is Verdict.DIAL
    # the clock's zone does not matter: 02:00 UTC is 10:00 in Beijing
    utc = NOW.astimezone(dt.timezone.utc)
    assert verdict(owed(since=utc - dt.timedelta(minutes=5)), now=utc, hours=office) is Verdict.DIAL


def test_only_numbers_the_outbound_policy_allows() -> None:
    d = decide(owed(number="0044207946000"), RULES, NOW,
               refusal=lambda n: "not on the outbound allow-list" if n.startswith("00") else None)
    assert d.verdict is Verdict.GIVE_UP and d.reason == "refused by the outbound policy (outbound.allow)"
    assert "0044" not in d.reason  # reasons are logged: never the number


def test_never_a_number_that_called_again_and_was_answered() -> None:
    d = decide(owed(answered_since="261130000007"), RULES, NOW, refusal=allow_all)
    assert d.verdict is Verdict.NOT_NEEDED and "261130000007" in d.reason


def test_a_live_claim_is_left_alone_and_an_expired_one_is_due_again() -> None:
    live = owed(status="dialing", attempts=1, last_attempt_at=NOW - dt.timedelta(minutes=20),
                lease_until=NOW + dt.timedelta(seconds=30))
    assert verdict(live) is Verdict.WAIT
    dead = owed(status="dialing", attempts=1, last_attempt_at=NOW - dt.timedelta(minutes=20),
                lease_until=NOW - dt.timedelta(seconds=1))
    assert verdict(dead) is Verdict.DIAL


def test_done_is_never_dialed() -> None:
    assert verdict(owed(status="done", attempts=1)) is Verdict.NOT_NEEDED


def test_the_order_of_the_rules() -> None:
    # answered meanwhile wins over everything; attempts used up wins over the window and the policy
    both = owed(attempts=3, status="failed", answered_since="261130000002", since=NOW - dt.timedelta(days=1))
    assert verdict(both) is Verdict.NOT_NEEDED
    used_up_and_late = owed(attempts=3, status="failed", since=NOW - dt.timedelta(days=1))
    assert "attempt" in decide(used_up_and_late, RULES, NOW, refusal=allow_all).reason


def test_plan_oldest_first_limited_and_without_waits() -> None:
    a = owed(id=1, since=NOW - dt.timedelta(minutes=5))
    b = owed(id=2, since=NOW - dt.timedelta(minutes=50))
    c = owed(id=3, since=NOW - dt.timedelta(minutes=30))
    waiting = owed(id=4, attempts=1, status="failed", last_attempt_at=NOW - dt.timedelta(minutes=1))
    late = owed(id=5, since=NOW - dt.timedelta(hours=5))
    out = plan([a, b, c, waiting, late], RULES, NOW, refusal=allow_all, limit=2)
    assert [(d.owed.id, d.verdict) for d in out] == [(5, Verdict.GIVE_UP), (2, Verdict.DIAL), (3, Verdict.DIAL)]


def test_rules_refuse_a_window_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError, match="delay_min"):
        AutoDialRules(delay_min=60, within_min=30)


# --------------------------------------------------------------------------- 回访 answers


@pytest.mark.parametrize("resolved,rating,scale,states,reopened", [
    (True, 1, 5, ["revisited", "rated"], False),
    (True, 4, 5, ["revisited", "rated"], False),        # 不满意 is recorded, not reopened
    (True, 5, 5, ["revisited", "supervised"], True),    # 非常不满意 reopens
    (False, 1, 5, ["revisited", "supervised"], True),   # not resolved reopens, whatever the rating
    (False, None, 5, ["revisited", "supervised"], True),
    (True, None, 5, ["revisited"], False),              # no rating: 已回访 only
    (None, 2, 5, ["revisited", "rated"], False),
    (True, 2, 3, ["revisited", "rated"], False),
    (True, 3, 3, ["revisited", "supervised"], True),    # 不满意 is the worst of 3 levels
])
def test_followup_answers(resolved, rating, scale, states, reopened) -> None:  # noqa: ANN001
    out = followup_outcome(resolved, rating, scale)
    assert [s.value for s in out.states] == states and out.reopened is reopened
    chain = ["closed", *states]
    assert all(allowed(a, b) for a, b in zip(chain, chain[1:])), chain
    assert out.note.startswith("回访: ")


def test_followup_answer_note_says_what_was_answered() -> None:
    assert followup_outcome(False, 5, 5).note == "回访: 未解决, 满意度 5/5 非常不满意"
    assert followup_outcome(True, None, 3).note == "回访: 已解决, 未评价"


def test_followup_answer_out_of_scale_is_refused() -> None:
    with pytest.raises(ValueError):
        followup_outcome(True, 4, 3)
    with pytest.raises(ValueError):
        followup_outcome(True, 1, 4)


def test_the_reopening_move_exists_in_the_lifecycle() -> None:
    assert allowed(TicketState.revisited, TicketState.supervised)
    assert allowed(TicketState.supervised, TicketState.handling)
