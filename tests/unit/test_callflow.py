"""One call flow, two drivers: the live FastAGI script and `hotline explain` must tell the same story.

Every case runs the live script (ivr.calls.CallScripts over a scripted AGI session that
answers as Asterisk would) and `admin.explain.explain_call` with the same keys, and
compares what the caller hears (prompts in order), the menu path reported on AMI,
the route handed to the dialplan and the ticket's category.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest

from admin.explain import explain_call
from ivr.calls import CallScripts
from model.config import Config
from model.contract import Event, Var, ivr_steps
from model.destinations import parse_destination
from model.hours import local
from model.loading import default_config_path, load_config
from routing.access import greeting_choices

MONDAY_10 = local(dt.datetime(2026, 3, 9, 10, 0))
SUNDAY_10 = local(dt.datetime(2026, 3, 8, 10, 0))
IN_12315_WINDOW = local(dt.datetime(2026, 11, 30, 9, 30))
AFTER_12315_WINDOW = local(dt.datetime(2026, 12, 1, 9, 30))


class ScriptedAgi:
    """Answers the AGI calls CallScripts makes the way Asterisk would, with the caller's keys scripted.

    Only GET DATA consumes the caller's inputs (no barge-in during plain prompts), except the greeting's
    own keys (`greeting_keys`) before the first menu step: that is also what explain assumes.
    """

    def __init__(self, dialed: str, digits: list[str | None], greeting_keys: frozenset[str] = frozenset()) -> None:
        self.greeting_keys = greeting_keys
        self.env = {"agi_extension": dialed, "agi_callerid": "13800138000", "agi_uniqueid": "1.1"}
        self.args: list[str] = []  # a dialplan of before the script's arguments: the channel is asked
        self.uniqueid = "1.1"
        self.command_timeout = 5.0
        self.inputs: deque[str | None] = deque(k for d in digits for k in ([None] if d is None else list(d)))
        self.vars: dict[str, str] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def get_variable(self, name: str) -> str | None:
        return self.vars.get(name)

    async def set_variable(self, name: str, value: Any) -> None:
        self.vars[str(name)] = str(value)

    async def set_variables(self, pairs: Sequence[tuple[str, Any]]) -> None:  # (one MSet on a real session)
        for name, value in pairs:
            await self.set_variable(name, value)

    async def user_event(self, name: str, **headers: Any) -> None:
        self.events.append((str(name), headers))

    async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
        # a greeting key (access: language, campaign, 老年人优先) is pressed during the greeting and its
        # offers, before any menu step: what explain assumes too
        if escape_digits and self.inputs and self.inputs[0] in self.greeting_keys and not self.path():
            return self.inputs.popleft()
        return None

    async def get_data(self, name: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        key = self.inputs.popleft() if self.inputs else None
        return ("", True) if key is None else (key, False)

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return None

    def heard(self) -> list[str]:
        return [h["Prompt"] for n, h in self.events if n == Event.PROMPT]

    def path(self) -> list[str]:
        return [step for n, h in self.events if n == Event.IVR for step in ivr_steps(h)]

    def route_event(self) -> dict[str, Any]:
        (route,) = [h for n, h in self.events if n == Event.ROUTE]
        return route


def shipped() -> Config:
    return load_config(default_config_path())


def with_entry(cfg: Config, entry: str) -> Config:
    return cfg.model_copy(update={"center": cfg.center.model_copy(update={"entry": parse_destination(entry)})})


def with_option(cfg: Config, menu: str, key: str, dest: str) -> Config:
    m = cfg.menus[menu]
    menus = dict(cfg.menus)
    menus[menu] = m.model_copy(update={"options": {**m.options, key: parse_destination(dest)}})
    return cfg.model_copy(update={"menus": menus})


CONFIGS = {
    "shipped": shipped(),
    "expert_entry": with_entry(shipped(), "queue:expert"),
    "legacy_in_menu": with_option(shipped(), "main", "6", "legacy:12315"),
    "branch_in_menu": with_option(shipped(), "main", "7", "legacy:12366"),
    "forward_in_menu": with_option(shipped(), "main", "8", "legacy:96196"),
}
DIALED = ["12345", "12315", "12369", "12333", "12358", "12366", "96196", "95555"]
DIGITS: list[list[str | None]] = [[], ["1"], ["2", "1"], ["2", None, "1", "9"], ["0"], ["9", "9", "9"], ["5"],
                                  ["*", "3"], ["2", "#", "4"], ["6"], ["6", "2", "2"], ["7"], ["8", "1"]]
TIMES = {"monday": MONDAY_10, "sunday": SUNDAY_10, "12315_last_day": IN_12315_WINDOW,
         "12315_retired": AFTER_12315_WINDOW}


def explained_prompts(exp: Any) -> list[str]:
    return [s.data["prompt"] for s in exp.steps if "prompt" in s.data and s.kind in ("announcement", "menu")]


async def live_call(cfg: Config, dialed: str, digits: list[str | None], at: dt.datetime) -> ScriptedAgi:
    keys = frozenset(c.key for c in greeting_choices(cfg, at.date()))
    agi = ScriptedAgi(dialed, digits, keys)
    await CallScripts(cfg, clock=lambda: at).inbound(agi)  # type: ignore[arg-type]
    return agi


@pytest.mark.parametrize("when", list(TIMES))
@pytest.mark.parametrize("config_name", list(CONFIGS))
async def test_live_ivr_and_explain_agree(config_name: str, when: str) -> None:
    cfg, at = CONFIGS[config_name], TIMES[when]
    compared = 0
    for dialed in DIALED:
        for digits in DIGITS:
            agi = await live_call(cfg, dialed, digits, at)
            exp = explain_call(cfg, dialed, "13800138000", at, digits)
            case = f"{config_name} {when} call to {dialed} keys {digits}"
            assert agi.heard() == explained_prompts(exp), case
            assert agi.path() == exp.path, case
            route = agi.route_event()
            assert route["Dest"] == exp.final, case
            final = [s for s in exp.steps if s.kind == "final"]
            assert len(final) == 1 and final[0].data["dest"] == exp.final, case
            category = agi.vars[Var.CATEGORY]
            assert route["Category"] == category, case
            assert (f", category {category}" in final[0].text) == bool(category), case
            route_var = agi.vars[Var.ROUTE]
            assert route_var == {"queue": "queue", "dial": "dial", "transfer": "transfer",
                                 "hangup": "hangup"}[exp.final.split(":")[0]], case
            if route_var == "queue":
                assert f"queue:{agi.vars[Var.QUEUE]}" == exp.final.split("/")[0], case
            compared += 1
    assert compared == len(DIALED) * len(DIGITS)


async def test_the_drivers_see_barge_in_and_menus_the_same_way() -> None:
    """Spot checks that the comparison above compares something: a menu walk, a retirement, a hop."""
    cfg = CONFIGS["legacy_in_menu"]
    agi = await live_call(cfg, "12345", ["2", None, "1"], MONDAY_10)
    assert agi.path()[:4] == ["menu:main", "key:2", "menu:complaint", "timeout"]
    assert agi.vars[Var.ROUTE] == "queue" and agi.vars[Var.CATEGORY] == "投诉举报"
    retired = await live_call(cfg, "12315", [], AFTER_12315_WINDOW)
    assert retired.vars[Var.ROUTE] == "hangup"
    assert retired.heard() == [p for p in (cfg.center.emergency_notice, cfg.legacy_lines["12315"].retirement_notice) if p]
    # 12315 chosen in a menu after its retirement: the notice, then an agent (never a hang-up)
    hop = await live_call(cfg, "12345", ["6"], AFTER_12315_WINDOW)
    assert hop.vars[Var.ROUTE] == "queue" and cfg.legacy_lines["12315"].retirement_notice in hop.heard()
    exp = explain_call(cfg, "12345", None, AFTER_12315_WINDOW, ["6"])
    assert any(s.kind == "fail_open" and "12315" in s.text for s in exp.steps)


def test_explain_walk_on_the_shipped_config() -> None:
    cfg = CONFIGS["shipped"]
    exp = explain_call(cfg, "12345", None, MONDAY_10, ["2", None, "1", "9"])
    text = "\n".join(exp.lines())
    assert "enter menu complaint" in text and "no input, timeout" in text
    assert "category complaint/report (投诉举报)" in text and "综合受理" in text
    assert "1 more input(s) ignored" in text
    assert exp.path == ["menu:main", "key:2", "menu:complaint", "timeout", "key:1", "route:queue:general/投诉举报"]


def test_explain_silent_caller_ends_at_an_agent() -> None:
    cfg = CONFIGS["shipped"]
    exp = explain_call(cfg, "12345", None, MONDAY_10, [])
    # the shipped main menu does not replay on no input (no_input_retries: 0): one timeout, an agent
    assert exp.path == ["menu:main", "timeout", "agent:retries", "route:queue:general"]
    assert sum("no more input" in s.text for s in exp.steps) == 1
    # several keys in one entry are pressed one by one
    assert explain_call(cfg, "12345", None, MONDAY_10, ["21"]).path[-2:] == ["key:1", "route:queue:general/投诉举报"]
