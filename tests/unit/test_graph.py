"""Whole-graph validation: one test per kind of problem, each naming its field; the shipped config is clean."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from model.loading import Problem, config_lines, load_config_with_lines, parse_config
from routing.graph import validate
from model.ticket_state import TicketState

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"

BASE: dict[str, Any] = {
    "center": {"number": "12345", "entry": "menu:main", "greeting": "greeting", "queue_prompt": "connecting"},
    "prompts": {k: k for k in (
        "greeting", "connecting", "main", "sub", "invalid_input", "no_input", "survey", "survey_thanks",
        "queue_position", "queue_position_unit", "query_ticket", "query_password", "query_wrong",
        "query_locked", "query_ticket_is", "query_state", "query_done", "t", "r", "closed_msg",
        "notice_ticket_is", "notice_password_is", "notice_repeat")}
    | {f"state_{s.value}": s.value for s in TicketState},
    "menus": {
        "main": {"prompt": "main", "hours": "office", "closed": "queue:general",
                 "options": {"1": "queue:general/咨询", "2": "menu:sub", "5": "self_service:progress_query"},
                 "speech": {"1": ["咨询"], "2": ["投诉"]}},
        "sub": {"prompt": "sub", "options": {"1": "queue:general/投诉举报"}, "agent": "queue:general"},
    },
    "queues": {
        "general": {"name": "综合", "members": ["1001", "1002"], "overflow": "queue:overflow"},
        "overflow": {"name": "支援", "members": ["1002"]},
        "own": {"name": "专席", "members": ["1001"], "overflow": "queue:general"},
    },
    "seats": {"1001": {"name": "一号", "secret_env": "S"}, "1002": {"name": "二号", "secret_file": "/run/s"}},
    "legacy_lines": {
        "12315": {"name": "市场监管", "mode": "merged", "merged_on": "2026-09-01", "announcement": "t",
                  "retirement_notice": "r"},
        "12333": {"name": "人社", "mode": "dual_retained", "queue": "own"},
        "12358": {"name": "价格", "mode": "dual_cancelled", "category": "投诉举报"},
        "12366": {"name": "纳税", "mode": "branch_center", "branch": "tax"},
        "96196": {"name": "交通", "mode": "forward", "forward_to": "12345"},
        "12331": {"name": "专席", "mode": "dedicated", "queue": "own"},
        "12350": {"name": "并联", "mode": "parallel"},
    },
    "branch_centers": {"tax": {"name": "税务", "dial": "Local/12366@b", "feature_code": "*71"}},
    "transfer_targets": {
        "110": {"name": "公安", "dial": "Local/110@e", "kind": "emergency", "feature_code": "*810"},
        "water": {"name": "供水", "dial": "Local/water@e", "kind": "utility", "feature_code": "*831"},
    },
    "hours": {"office": {"weekly": {"mon": ["08:30-17:30"]}}},
}


def check(change: Callable[[dict[str, Any]], None] | None = None, **kw: Any) -> list[Problem]:
    data = copy.deepcopy(BASE)
    if change:
        change(data)
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    return validate(parse_config(text, "t.yaml"), filename="t.yaml", lines=config_lines(text), **kw)


def only(problems: list[Problem], field: str, *words: str) -> Problem:
    """The single problem at `field`, whose message names every word."""
    hits = [p for p in problems if p.field == field]
    assert len(hits) == 1, f"expected one problem at {field}, got {[str(p) for p in problems]}"
    for w in words:
        assert w in hits[0].message, hits[0].message
    return hits[0]


# -- clean configs


def test_base_is_clean() -> None:
    assert check() == []


def test_shipped_config_validates_clean() -> None:
    cfg, lines = load_config_with_lines(SHIPPED)
    assert lines  # the line map is filled
    assert validate(cfg, lines=lines) == []
    assert validate(cfg, prompt_exists=lambda _: False) == []


# -- dangling references


@pytest.mark.parametrize(("dest", "word"), [
    ("menu:nope", "menu 'nope'"),
    ("queue:nope", "queue 'nope'"),
    ("legacy:99999", "legacy line '99999'"),
    ("transfer:nope", "transfer target 'nope'"),
])
def test_dangling_destination(dest: str, word: str) -> None:
    ps = check(lambda d: d["menus"]["main"]["options"].__setitem__("3", dest))
    p = only(ps, "menus.main.options.3", word, "not defined")
    assert p.line is not None and p.file == "t.yaml"


def test_dangling_inside_an_announcement_names_the_then_path() -> None:
    ps = check(lambda d: d["menus"]["main"]["options"].__setitem__(
        "3", {"type": "announce", "prompt": "t", "then": "queue:nope"}))
    only(ps, "menus.main.options.3.then", "queue 'nope'")


def test_dangling_hours() -> None:
    only(check(lambda d: d["queues"]["own"].__setitem__("hours", "night")), "queues.own.hours", "'night'")


def test_dangling_legacy_queue_and_branch() -> None:
    def change(d: dict[str, Any]) -> None:
        d["legacy_lines"]["12333"]["queue"] = "gone"
        d["legacy_lines"]["12366"]["branch"] = "gone"
    ps = check(change)
    only(ps, "legacy_lines.12333.queue", "queue 'gone'")
    only(ps, "legacy_lines.12366.branch", "branch center 'gone'")


def test_missing_prompt() -> None:
    ps = check(lambda d: d["menus"]["sub"].__setitem__("prompt", "nope"))
    only(ps, "menus.sub.prompt", "prompt 'nope'")


def test_missing_prompt_rescued_by_audio_and_reported_without_it() -> None:
    def change(d: dict[str, Any]) -> None:
        d["menus"]["main"]["options"]["3"] = {"type": "announce", "prompt": "recorded_only", "then": "queue:general"}
    assert check(change, prompt_exists=lambda pid: pid == "recorded_only") == []
    only(check(change, prompt_exists=lambda pid: False), "menus.main.options.3.prompt", "recorded_only", "no audio")


def test_self_service_needs_its_prompts() -> None:
    ps = check(lambda d: d["prompts"].pop("query_password"))
    only(ps, "menus.main.options.5", "query_password")


def test_legacy_announcement_prompt_missing() -> None:
    only(check(lambda d: d["prompts"].pop("t")), "legacy_lines.12315.announcement", "prompt 't'")


# -- self references and loops


def test_queue_overflow_to_itself() -> None:
    only(check(lambda d: d["queues"]["own"].__setitem__("overflow", "queue:own")),
         "queues.own.overflow", "own queue")


def test_menu_option_to_its_own_menu() -> None:
    ps = check(lambda d: d["menus"]["sub"]["options"].__setitem__("2", "menu:sub"))
    only(ps, "menus.sub.options.2", "own menu")


def test_menu_closed_to_itself() -> None:
    ps = check(lambda d: d["menus"]["main"].__setitem__("closed", "menu:main"))
    only(ps, "menus.main.closed", "own menu")


def test_legacy_line_forwarding_to_itself() -> None:
    ps = check(lambda d: d["legacy_lines"]["96196"].__setitem__("forward_to", "96196"))
    only(ps, "legacy_lines.96196.forward_to", "itself")


def test_queue_overflow_loop() -> None:
    ps = check(lambda d: d["queues"]["overflow"].__setitem__("overflow", "queue:general"))
    only(ps, "queues.general.overflow", "loops", "general -> overflow -> general")


def test_announce_loop_through_a_merged_line() -> None:
    def change(d: dict[str, Any]) -> None:
        d["center"]["entry"] = {"type": "announce", "prompt": "t", "then": "legacy:12315"}
    ps = check(change)
    only(ps, "center.entry", "without waiting", "center.entry -> legacy:12315 -> center.entry")
    only(ps, "menus.main", "unreachable")  # nothing leads to main any more


def test_forward_loop_between_legacy_lines() -> None:
    def change(d: dict[str, Any]) -> None:
        d["legacy_lines"]["96197"] = {"name": "x", "mode": "forward", "forward_to": "96198"}
        d["legacy_lines"]["96198"] = {"name": "y", "mode": "forward", "forward_to": "96197"}
    only(check(change), "legacy_lines.96197", "legacy:96197 -> legacy:96198 -> legacy:96197")


def test_closed_menus_loop() -> None:
    def change(d: dict[str, Any]) -> None:
        d["menus"]["main"]["closed"] = "menu:sub"
        d["menus"]["sub"]["hours"] = "office"
        d["menus"]["sub"]["closed"] = {"type": "announce", "prompt": "closed_msg", "then": "menu:main"}
    only(check(change), "menus.main.closed", "without waiting", "menu:main -> menu:sub -> menu:main")


def test_menu_whose_options_only_loop_back() -> None:
    def change(d: dict[str, Any]) -> None:
        d["menus"]["main"]["options"]["3"] = "menu:a"
        d["menus"]["a"] = {"prompt": "main", "options": {"1": "menu:b"}}
        d["menus"]["b"] = {"prompt": "main", "options": {"1": "menu:a", "2": "menu:a"}}
    ps = check(change)
    only(ps, "menus.a.options", "leads back", "a, b")
    only(ps, "menus.b.options", "leads back")
    assert not [p for p in ps if p.field == "menus.main.options"]


def test_unreachable_menu() -> None:
    ps = check(lambda d: d["menus"].__setitem__("orphan", {"prompt": "main", "options": {"1": "queue:general"}}))
    only(ps, "menus.orphan", "unreachable")


def test_menu_reached_only_from_an_unreachable_menu_is_unreachable_too() -> None:
    def change(d: dict[str, Any]) -> None:
        d["menus"]["orphan"] = {"prompt": "main", "options": {"1": "menu:child"}}
        d["menus"]["child"] = {"prompt": "main", "options": {"1": "queue:general"}}
    ps = check(change)
    only(ps, "menus.orphan", "unreachable")
    only(ps, "menus.child", "unreachable")


# -- a person at the end


def test_hangup_in_a_menu() -> None:
    only(check(lambda d: d["menus"]["sub"]["options"].__setitem__("2", "hangup")),
         "menus.sub.options.2", "hang up on a citizen")


def test_hangup_as_queue_overflow() -> None:
    ps = check(lambda d: d["queues"]["own"].__setitem__("overflow", "hangup"))
    only(ps, "queues.own.overflow", "hang up")


def test_agent_that_is_not_a_person() -> None:
    only(check(lambda d: d["menus"]["sub"].__setitem__("agent", "menu:main")),
         "menus.sub.agent", "person", "menu:main")


def test_overflow_that_is_not_a_queue() -> None:
    only(check(lambda d: d["queues"]["own"].__setitem__("overflow", "menu:main")),
         "queues.own.overflow", "overflow must be")


# -- legacy modes


@pytest.mark.parametrize(("number", "drop", "field", "word"), [
    ("12315", "merged_on", "merged_on", "merged_on"),
    ("12315", "announcement", "announcement", "announcement"),
    ("12315", "retirement_notice", "retirement_notice", "retirement_notice"),
    ("12333", "queue", "queue", "dual_retained"),
    ("12331", "queue", "queue", "dedicated"),
    ("12366", "branch", "branch", "branch"),
    ("96196", "forward_to", "forward_to", "forward_to"),
])
def test_legacy_mode_requirements(number: str, drop: str, field: str, word: str) -> None:
    ps = check(lambda d: d["legacy_lines"][number].pop(drop))
    only(ps, f"legacy_lines.{number}.{field}", word)


def test_put_through_needs_no_retirement_notice() -> None:
    def change(d: dict[str, Any]) -> None:
        d["legacy_lines"]["12315"].pop("retirement_notice")
        d["legacy_lines"]["12315"]["after_window"] = "put_through"
    assert check(change) == []


# -- numbers and feature codes


def test_center_number_as_legacy_line() -> None:
    ps = check(lambda d: d["legacy_lines"].__setitem__("12345", {"name": "x", "mode": "parallel"}))
    only(ps, "legacy_lines.12345", "center number")


def test_legacy_number_equal_to_transfer_target_key() -> None:
    ps = check(lambda d: d["legacy_lines"].__setitem__("110", {"name": "x", "mode": "parallel"}))
    only(ps, "legacy_lines.110", "transfer_targets.110")


def test_legacy_number_equal_to_branch_key() -> None:
    ps = check(lambda d: d["legacy_lines"].__setitem__("tax", {"name": "x", "mode": "parallel"}))
    only(ps, "legacy_lines.tax", "branch_centers.tax")


def test_legacy_number_equal_to_a_feature_code() -> None:
    ps = check(lambda d: d["legacy_lines"].__setitem__("*71", {"name": "x", "mode": "parallel"}))
    only(ps, "legacy_lines.*71", "feature code", "branch_centers.tax")


def test_duplicate_feature_code() -> None:
    ps = check(lambda d: d["transfer_targets"]["water"].__setitem__("feature_code", "*810"))
    only(ps, "transfer_targets.water.feature_code", "also used by transfer_targets.110")


def test_feature_code_prefix_of_another() -> None:
    ps = check(lambda d: d["transfer_targets"]["water"].__setitem__("feature_code", "*81"))
    only(ps, "transfer_targets.water.feature_code", "prefix", "*810")


@pytest.mark.parametrize(("code", "builtin"), [
    ("*2", "atxfer"), ("*0", "disconnect"), ("*1", "automon"), ("*3", "automixmon"), ("#72", "parkcall"),
    ("*15", "automon"), ("#9", "blindxfer"), ("*8", "pickupexten"),
])
def test_feature_code_clashing_with_asterisk_builtins(code: str, builtin: str) -> None:
    ps = check(lambda d: d["transfer_targets"]["water"].__setitem__("feature_code", code))
    p = [p for p in ps if p.field == "transfer_targets.water.feature_code" and builtin in p.message]
    assert p, [str(x) for x in ps]


def test_pickupexten_is_dialed_so_a_longer_code_is_fine() -> None:
    assert check(lambda d: d["transfer_targets"]["water"].__setitem__("feature_code", "*89")) == []


def test_feature_code_with_non_dtmf_characters() -> None:
    ps = check(lambda d: d["transfer_targets"]["water"].__setitem__("feature_code", "*8a"))
    only(ps, "transfer_targets.water.feature_code", "DTMF")


# -- seats and speech


def test_queue_member_not_a_defined_seat() -> None:
    ps = check(lambda d: d["queues"]["own"]["members"].append("1009"))
    p = only(ps, "queues.own.members.1", "'1009'", "seats")
    assert p.line is not None


def test_queue_member_listed_twice() -> None:
    ps = check(lambda d: d["queues"]["own"]["members"].append("1001"))
    only(ps, "queues.own.members.1", "twice")


def test_seat_without_secret() -> None:
    ps = check(lambda d: d["seats"]["1001"].pop("secret_env"))
    only(ps, "seats.1001", "secret_env", "secret_file")


def test_speech_key_that_is_not_an_option() -> None:
    ps = check(lambda d: d["menus"]["main"]["speech"].__setitem__("7", ["七"]))
    only(ps, "menus.main.speech.7", "not an option")


# -- reporting


def test_every_problem_is_reported_at_once_with_lines() -> None:
    def change(d: dict[str, Any]) -> None:
        d["queues"]["own"]["overflow"] = "queue:own"
        d["menus"]["sub"]["prompt"] = "nope"
        d["legacy_lines"]["12333"].pop("queue")
        d["seats"]["1001"].pop("secret_env")
        d["menus"]["orphan"] = {"prompt": "main"}
    ps = check(change)
    fields = {p.field for p in ps}
    assert {"queues.own.overflow", "menus.sub.prompt", "legacy_lines.12333.queue", "seats.1001",
            "menus.orphan"} <= fields
    assert all(p.line for p in ps)
    assert all(str(p).startswith("t.yaml:") for p in ps)


def test_line_numbers_point_at_the_field() -> None:
    text = SHIPPED.read_text(encoding="utf-8").replace("overflow: queue:overflow", "overflow: queue:nowhere")
    ps = validate(parse_config(text), lines=config_lines(text))
    p = only(ps, "queues.general.overflow", "'nowhere'")
    assert p.line is not None
    assert "overflow: queue:nowhere" in text.splitlines()[p.line - 1]
