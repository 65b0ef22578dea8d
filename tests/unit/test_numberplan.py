"""The number plan: every mode, both sides of the transition window, month ends and the time zone."""

from __future__ import annotations

import calendar
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.config import Config
from model.loading import load_config, parse_config
from model.destinations import Category, DialDest, HangupDest, MenuDest, QueueDest, TransferDest
from routing.numberplan import RouteDecision, add_months, decide, merge_window, transition_calendar

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
UTC = dt.timezone.utc

PLAN = """
center: {number: "12345", entry: "menu:main", greeting: greeting}
prompts: {greeting: g, main: m, t: t, r: r}
menus:
  main: {prompt: main, options: {"1": "queue:general"}}
queues:
  general: {name: 综合}
  own: {name: 专席, overflow: "queue:general"}
  skill: {name: 技能}
branch_centers:
  tax: {name: 税务分中心, dial: Local/12366@branch}
legacy_lines:
  "12315": {name: 市场监管, mode: merged, merged_on: 2026-11-30, transition_months: 3,
            after_window: retire, category: 投诉举报, announcement: t, retirement_notice: r}
  "12369": {name: 环保, mode: merged, merged_on: 2025-03-01, after_window: put_through, announcement: t}
  "12300": {name: 无通知, mode: merged, merged_on: 2020-01-01, after_window: retire}
  "12301": {name: 无日期, mode: merged}
  "12333": {name: 人社, mode: dual_retained, queue: own}
  "12334": {name: 缺队列, mode: dual_retained}
  "12358": {name: 价格, mode: dual_cancelled, queue: skill, category: 投诉举报}
  "12359": {name: 默认队列, mode: dual_cancelled}
  "12366": {name: 纳税, mode: branch_center, branch: tax}
  "12367": {name: 缺分中心, mode: branch_center, branch: nowhere}
  "96196": {name: 交通, mode: forward, forward_to: "12345"}
  "96197": {name: 外转, mode: forward, forward_to: "88001234"}
  "96198": {name: 转旧号, mode: forward, forward_to: "12333"}
  "96201": {name: 环一, mode: forward, forward_to: "96202"}
  "96202": {name: 环二, mode: forward, forward_to: "96201"}
  "12331": {name: 专席, mode: dedicated, queue: own, category: 咨询}
  "12350": {name: 并联, mode: parallel, category: 求助}
"""


@pytest.fixture(scope="module")
def cfg() -> Config:
    return parse_config(PLAN)


def at(y: int, m: int, d: int, hh: int = 10) -> dt.datetime:
    return dt.datetime(y, m, d, hh, 0)


# -- add_months


@pytest.mark.parametrize(
    ("start", "n", "end"),
    [
        (dt.date(2026, 1, 31), 1, dt.date(2026, 2, 28)),
        (dt.date(2028, 1, 31), 1, dt.date(2028, 2, 29)),
        (dt.date(2026, 11, 30), 3, dt.date(2027, 2, 28)),
        (dt.date(2027, 11, 30), 3, dt.date(2028, 2, 29)),
        (dt.date(2099, 11, 30), 3, dt.date(2100, 2, 28)),  # 2100 is not a leap year
        (dt.date(2099, 11, 30), 3 + 12 * 100, dt.date(2200, 2, 28)),
        (dt.date(2026, 9, 1), 3, dt.date(2026, 12, 1)),
        (dt.date(2026, 12, 15), 1, dt.date(2027, 1, 15)),
        (dt.date(2026, 3, 31), -1, dt.date(2026, 2, 28)),
        (dt.date(2026, 5, 31), 0, dt.date(2026, 5, 31)),
    ],
)
def test_add_months(start: dt.date, n: int, end: dt.date) -> None:
    assert add_months(start, n) == end


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(9000, 12, 31)), st.integers(0, 36 * 12))
def test_add_months_lands_in_the_right_month_never_after_the_same_day(start: dt.date, n: int) -> None:
    out = add_months(start, n)
    months = (out.year - start.year) * 12 + out.month - start.month
    assert months == n
    assert out.day <= start.day
    assert out.day == start.day or out.day == calendar.monthrange(out.year, out.month)[1]


# -- center and unknown numbers


def test_center_number_plays_greeting_then_entry(cfg: Config) -> None:
    d = decide(cfg, "12345", "13800000000", at(2026, 3, 2))
    assert d.mode == "center" and d.line is None
    assert d.announcements == ["greeting"]
    assert d.dest == MenuDest(menu="main")
    assert d.warnings == [] and d.reason


@pytest.mark.parametrize("dialed", ["99999", "", "  "])
def test_unknown_number_goes_to_the_center_flow_with_a_warning(cfg: Config, dialed: str) -> None:
    d = decide(cfg, dialed, "", at(2026, 3, 2))
    assert d.mode == "unknown" and d.line is None
    assert d.dest == cfg.center.entry
    assert d.announcements == ["greeting"]
    assert d.warnings and "not in the number plan" in d.warnings[0]


def test_decision_is_frozen(cfg: Config) -> None:
    d = decide(cfg, "12345", "", at(2026, 3, 2))
    with pytest.raises(AttributeError):
        d.mode = "x"  # type: ignore[misc]
    assert isinstance(d, RouteDecision)


# -- merged


def test_merged_on_its_first_day_announces_without_greeting(cfg: Config) -> None:
    d = decide(cfg, "12315", "", at(2026, 11, 30, 0))
    assert d.mode == "merged" and d.line == "12315"
    assert d.announcements == ["t"]
    assert d.dest == MenuDest(menu="main")
    assert d.category is Category.complaint
    assert d.window_end == dt.date(2027, 2, 28)
    assert d.days_left == 90


def test_merged_last_day_of_window_still_announces(cfg: Config) -> None:
    d = decide(cfg, "12315", "", dt.datetime(2027, 2, 27, 23, 59, 59))
    assert d.announcements == ["t"] and d.dest == MenuDest(menu="main")
    assert d.days_left == 1
    assert "2027-02-27 inclusive" in d.reason


def test_merged_window_end_is_exclusive_retire(cfg: Config) -> None:
    d = decide(cfg, "12315", "", dt.datetime(2027, 2, 28, 0, 0))
    assert d.dest == HangupDest(prompt="r")
    assert d.announcements == []
    assert d.days_left == 0 and d.window_end == dt.date(2027, 2, 28)


def test_merged_before_merge_date_is_put_through_with_greeting(cfg: Config) -> None:
    d = decide(cfg, "12315", "", at(2026, 11, 29))
    assert d.announcements == ["greeting"] and d.dest == MenuDest(menu="main")
    assert d.days_left is None and d.window_end == dt.date(2027, 2, 28)


def test_merged_put_through_after_window_plays_greeting_only(cfg: Config) -> None:
    inside = decide(cfg, "12369", "", at(2025, 5, 31))
    assert inside.announcements == ["t"] and inside.window_end == dt.date(2025, 6, 1)
    after = decide(cfg, "12369", "", at(2025, 6, 1))
    assert after.announcements == ["greeting"]
    assert after.dest == MenuDest(menu="main")
    assert after.days_left == 0 and after.warnings == []


def test_retired_without_notice_never_hangs_up_in_silence(cfg: Config) -> None:
    d = decide(cfg, "12300", "", at(2026, 1, 1))
    assert not isinstance(d.dest, HangupDest)
    assert d.dest == MenuDest(menu="main")
    assert any("retirement_notice" in w for w in d.warnings)


def test_merged_without_date_or_announcement_still_announces_something(cfg: Config) -> None:
    d = decide(cfg, "12301", "", at(2026, 1, 1))
    assert d.announcements == ["greeting"] and d.dest == MenuDest(menu="main")
    assert d.window_end is None and d.days_left is None
    assert len(d.warnings) == 2


def test_zero_month_window_retires_on_the_merge_day() -> None:
    c = parse_config(PLAN.replace("transition_months: 3,", "transition_months: 0,"))
    assert decide(c, "12315", "", at(2026, 11, 30)).dest == HangupDest(prompt="r")
    assert decide(c, "12315", "", at(2026, 11, 29)).announcements == ["greeting"]


# -- time zone


def test_utc_evening_is_next_day_in_shanghai(cfg: Config) -> None:
    # 2027-02-27 16:30 UTC is 2027-02-28 00:30 in Shanghai: the first day after the window
    late = dt.datetime(2027, 2, 27, 16, 30, tzinfo=UTC)
    assert decide(cfg, "12315", "", late).dest == HangupDest(prompt="r")
    early = dt.datetime(2027, 2, 27, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai, still inside
    assert decide(cfg, "12315", "", early).announcements == ["t"]


def test_naive_time_is_local_and_aware_local_time_is_unchanged(cfg: Config) -> None:
    sh = dt.datetime(2027, 2, 28, 0, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert decide(cfg, "12315", "", sh).dest == HangupDest(prompt="r")
    assert decide(cfg, "12315", "", sh.replace(tzinfo=None)).dest == HangupDest(prompt="r")


# -- the other modes


def test_dual_retained_goes_to_its_own_queue(cfg: Config) -> None:
    d = decide(cfg, "12333", "", at(2026, 3, 2))
    assert d.mode == "dual_retained" and d.dest == QueueDest(queue="own")
    assert d.announcements == [] and d.warnings == []


def test_dual_retained_without_queue_fails_open_to_general(cfg: Config) -> None:
    d = decide(cfg, "12334", "", at(2026, 3, 2))
    assert d.dest == QueueDest(queue="general") and d.warnings


def test_dual_cancelled_is_tagged_with_category(cfg: Config) -> None:
    d = decide(cfg, "12358", "", at(2026, 3, 2))
    assert d.dest == QueueDest(queue="skill", category=Category.complaint)
    assert d.category is Category.complaint
    assert decide(cfg, "12359", "", at(2026, 3, 2)).dest == QueueDest(queue="general")


def test_branch_center_transfers_to_the_branch(cfg: Config) -> None:
    d = decide(cfg, "12366", "", at(2026, 3, 2))
    assert d.dest == TransferDest(target="tax") and d.warnings == []


def test_branch_center_with_unknown_branch_fails_open(cfg: Config) -> None:
    d = decide(cfg, "12367", "", at(2026, 3, 2))
    assert d.dest == MenuDest(menu="main") and "nowhere" in d.warnings[0]


def test_forward_to_the_center_number_is_the_center_flow(cfg: Config) -> None:
    d = decide(cfg, "96196", "", at(2026, 3, 2))
    assert d.mode == "forward" and d.line == "96196"
    assert d.announcements == ["greeting"] and d.dest == MenuDest(menu="main")


def test_forward_elsewhere_dials(cfg: Config) -> None:
    assert decide(cfg, "96197", "", at(2026, 3, 2)).dest == DialDest(number="88001234")


def test_forward_to_a_legacy_line_follows_it(cfg: Config) -> None:
    d = decide(cfg, "96198", "", at(2026, 3, 2))
    assert d.dest == QueueDest(queue="own") and d.line == "96198"


def test_forward_loop_fails_open(cfg: Config) -> None:
    d = decide(cfg, "96201", "", at(2026, 3, 2))
    assert d.dest == MenuDest(menu="main")
    assert any("loop" in w for w in d.warnings)


def test_dedicated_goes_to_its_queue(cfg: Config) -> None:
    d = decide(cfg, "12331", "", at(2026, 3, 2))
    assert d.dest == QueueDest(queue="own", category=Category.consult)


def test_parallel_is_the_center_flow(cfg: Config) -> None:
    d = decide(cfg, "12350", "", at(2026, 3, 2))
    assert d.mode == "parallel" and d.dest == MenuDest(menu="main")
    assert d.category is Category.help and d.announcements == ["greeting"]


def test_every_number_of_the_shipped_plan_routes_somewhere() -> None:
    c = load_config(SHIPPED)
    for number in [c.center.number, *c.legacy_lines, "00000"]:
        for when in (at(2024, 1, 1), at(2026, 10, 1), at(2030, 1, 1)):
            d = decide(c, number, "13800000000", when)
            assert d.dest is not None and d.reason
            if isinstance(d.dest, HangupDest):
                assert d.dest.prompt  # a retired line always says why


# -- the admin calendar


def test_transition_calendar(cfg: Config) -> None:
    rows = {r.line: r for r in transition_calendar(cfg, dt.date(2027, 1, 1))}
    assert rows["12315"].status == "announcing" and rows["12315"].days_left == 58
    assert rows["12315"].window_end == dt.date(2027, 2, 28)
    assert rows["12369"].status == "put_through"
    assert rows["12300"].status == "retired"
    assert rows["12333"].status == "n/a" and rows["12333"].window_end is None
    first = transition_calendar(cfg, dt.date(2027, 1, 1))[0]
    assert first.mode == "merged"
    assert transition_calendar(cfg, dt.date(2026, 1, 1))[0].status in {"pending", "retired", "put_through",
                                                                       "announcing"}


def test_transition_calendar_accepts_an_aware_datetime(cfg: Config) -> None:
    rows = {r.line: r for r in transition_calendar(cfg, dt.datetime(2027, 2, 27, 16, 30, tzinfo=UTC))}
    assert rows["12315"].status == "retired"


def test_merge_window_pending() -> None:
    c = parse_config(PLAN)
    assert merge_window(c.legacy_lines["12315"], dt.date(2026, 1, 1))[0] == "pending"
