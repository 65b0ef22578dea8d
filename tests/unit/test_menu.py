"""The menu engine: examples of every rule, then generated walks over fixed and generated configs.

The property tests carry GB/T 33358's promise: whatever a caller does (or fails to do),
the walk ends in a Route to a real place within a bound, never a hang-up from a menu,
and 0 always reaches a human.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.config import Config
from model.loading import parse_config
from ivr.menu import (
    MAX_EVENTS,
    Collect,
    Digit,
    Event,
    MenuEngine,
    MenuStateError,
    Play,
    Route,
    SpeechResult,
    Step,
    Timeout,
)
from model.destinations import (
    AnnounceDest,
    Category,
    DialDest,
    HangupDest,
    LegacyDest,
    MenuDest,
    QueueDest,
    SelfServiceDest,
    TransferDest,
    parse_destination,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
MONDAY_10 = dt.datetime(2026, 3, 2, 10, 0)  # a Monday, inside office hours
MONDAY_20 = dt.datetime(2026, 3, 2, 20, 0)  # the same Monday, closed

SMALL = """
center: {entry: "menu:top"}
queues:
  general: {name: 综合受理}
  complaints: {name: 投诉专席}
  expert: {name: 专家座席}
hours:
  office: {weekly: {mon: ["09:00-17:00"]}}
  never: {}
legacy_lines:
  "12315": {name: 市场监管, mode: merged, category: 投诉举报}
transfer_targets:
  "110": {name: 公安报警, dial: Local/110@sim, kind: emergency}
prompts:
  top: 顶层菜单
  notice: 通知
menus:
  top:
    prompt: top
    timeout_s: 4
    max_retries: 2
    options:
      "1": queue:general/咨询
      "2": menu:sub
      "3": menu:expert
      "4": {type: announce, prompt: notice, then: queue:general/求助}
      "5": self_service:progress_query
      "6": menu:top
      "7": hangup
      "8": menu:nowhere
      "9": {type: announce, prompt: bare}
    speech:
      "1": [咨询, 问一下]
      "2": [投诉, 举报]
  sub:
    prompt: sub
    max_retries: 0
    options:
      "1": queue:complaints/投诉举报
      "2": menu:top
      "3": legacy:12315
      "4": transfer:110
      "5": queue:missing
      "6": menu:expert
      "7": dial:12366
    agent: queue:complaints/投诉举报
  expert:
    prompt: expert
    hours: office
    options: {"1": queue:expert}
    closed: {type: announce, prompt: expert_closed, then: queue:general}
  night:
    prompt: night
    hours: never
  loop_a: {prompt: a, hours: never, closed: "menu:loop_b"}
  loop_b: {prompt: b, hours: never, closed: "menu:loop_a"}
"""


@pytest.fixture(scope="module")
def small() -> Config:
    return parse_config(SMALL, "small.yaml")


@pytest.fixture(scope="module")
def shipped() -> Config:
    return parse_config(SHIPPED.read_text(encoding="utf-8"), str(SHIPPED))


def begin(cfg: Config, at: dt.datetime = MONDAY_10, entry: str | None = None) -> tuple[MenuEngine, Step]:
    engine = MenuEngine(cfg, at)
    step = engine.start(parse_destination(entry) if entry else cfg.center.entry)
    return engine, step


def walk(engine: MenuEngine, step: Step, *keys: str | None) -> Step:
    for k in keys:
        step = engine.feed(Timeout() if k is None else Digit(k))
    return step


# --------------------------------------------------------------------------- entry and keys


def test_non_menu_entry_routes_at_once() -> None:
    cfg = parse_config("queues: {general: {name: g}}")
    engine, step = begin(cfg)
    assert step.done and step.actions == (Route(QueueDest(queue="general"), None, "entry"),)
    assert engine.path == ["route:queue:general"]
    with pytest.raises(MenuStateError):
        engine.feed(Digit("1"))


def test_menu_entry_collects_one_digit_with_barge_in_keys(small: Config) -> None:
    engine, step = begin(small)
    assert step.actions == (Collect("top", 4.0, "1234567890*#", speech=False),)
    assert not step.done and step.route is None and step.plays == ()
    assert engine.menu == "top" and engine.path == ["menu:top"]


def test_valid_key_routes_at_once_with_category(small: Config) -> None:
    engine, step = begin(small)
    step = engine.feed(Digit("1"))
    assert step.route == Route(QueueDest(queue="general", category=Category.consult), Category.consult, "option")
    assert engine.category is Category.consult
    assert engine.path == ["menu:top", "key:1", "route:queue:general/咨询"]


def test_submenu_then_option(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, "2")
    assert step.final == Collect("sub", 5.0, "12345670*#")
    step = walk(engine, step, "1")
    assert step.route is not None and step.route.category is Category.complaint
    assert engine.path == ["menu:top", "key:2", "menu:sub", "key:1", "route:queue:complaints/投诉举报"]


@pytest.mark.parametrize("keys", [["0"], ["2", "0"], ["2", "#", "0"], ["6", "6", "0"]])
def test_zero_goes_to_the_current_menus_agent(small: Config, keys: list[str]) -> None:
    engine, step = begin(small)
    step = walk(engine, step, *keys[:-1])
    menu = small.menus[engine.menu or ""]
    step = engine.feed(Digit("0"))
    assert step.route == Route(menu.agent, getattr(menu.agent, "category", None), "agent_key")
    assert engine.path[-2:] == ["agent:0", f"route:{menu.agent.label()}"]


def test_star_repeats_without_counting_an_error(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, None, None, "*", "*", "*")
    assert step.actions == (Collect("top", 4.0, "1234567890*#"),)
    # both retries were used by the timeouts; * neither reset nor added to them: the third timeout routes
    assert engine.feed(Timeout()).route is not None
    assert engine.path[:-2] == ["menu:top", "timeout", "timeout", "repeat", "repeat", "repeat", "timeout"]


def test_hash_goes_back_and_repeats_at_the_top(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, "#")
    assert step.final == Collect("top", 4.0, "1234567890*#") and engine.path[-1] == "back:top"
    step = walk(engine, step, "2", "#")
    assert engine.menu == "top" and step.final.prompt == "top"  # type: ignore[union-attr]
    assert engine.path == ["menu:top", "back:top", "key:2", "menu:sub", "back", "menu:top"]
    step = walk(engine, step, "#")
    assert engine.path[-1] == "back:top"


def test_back_goes_up_one_level_at_a_time(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, "2", "6", "#")  # top > sub > expert, back to sub
    assert engine.menu == "sub"
    step = walk(engine, step, "#")
    assert engine.menu == "top"


# --------------------------------------------------------------------------- retries


def test_timeouts_replay_then_reach_the_agent(small: Config) -> None:
    engine, step = begin(small)
    for _ in range(2):
        step = engine.feed(Timeout())
        assert step.actions == (Play("no_input"), Collect("top", 4.0, "1234567890*#"))
    step = engine.feed(Timeout())
    assert step.route == Route(QueueDest(queue="general"), None, "no_input")
    assert engine.path == ["menu:top", "timeout", "timeout", "timeout", "agent:retries", "route:queue:general"]


def test_invalid_keys_replay_then_reach_the_agent(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, "#", "*")  # neither counts
    for _ in range(2):
        step = engine.feed(Digit("A"))
        assert step.actions == (Play("invalid_input"), Collect("top", 4.0, "1234567890*#"))
    step = engine.feed(Digit("12"))
    assert step.route is not None and step.route.reason == "invalid_input"
    assert engine.path[-4:] == ["invalid:A", "invalid:12", "agent:retries", "route:queue:general"]


def test_timeout_and_invalid_counts_are_separate(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, None, "x", None, "")  # 2 timeouts + 2 invalids: still in the menu
    assert not step.done and isinstance(step.final, Collect)
    step = walk(engine, step, None)
    assert step.route is not None and step.route.reason == "no_input"


def test_zero_retries_means_the_first_miss_reaches_the_agent(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, "2", None)
    assert step.route == Route(QueueDest(queue="complaints", category=Category.complaint), Category.complaint, "no_input")


def test_entering_a_menu_resets_its_counts(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, None, None, "6")  # self option: re-enter, counts reset
    assert engine.path[-2:] == ["key:6", "menu:top"]
    step = walk(engine, step, None, None)
    assert not step.done
    step = walk(engine, step, "#")  # re-entering itself pushed nothing
    assert engine.path[-1] == "back:top"


# --------------------------------------------------------------------------- hours, announce, fail open


def test_menu_open_in_hours(small: Config) -> None:
    engine, step = begin(small, MONDAY_10)
    step = walk(engine, step, "3")
    assert step.final == Collect("expert", 5.0, "10*#")


def test_menu_closed_goes_to_closed_destination(small: Config) -> None:
    engine, step = begin(small, MONDAY_20)
    step = walk(engine, step, "3")
    assert step.actions == (Play("expert_closed", interruptible=False), Route(QueueDest(queue="general"), None, "closed"))
    assert engine.path == ["menu:top", "key:3", "closed:expert", "announce:expert_closed", "route:queue:general"]


def test_closed_without_closed_goes_to_the_menus_agent(small: Config) -> None:
    engine, step = begin(small, entry="menu:night")
    assert step.route == Route(QueueDest(queue="general"), None, "closed")
    assert engine.path == ["closed:night", "route:queue:general"]


def test_closed_loop_fails_open(small: Config) -> None:
    engine, step = begin(small, entry="menu:loop_a")
    assert step.route is not None and step.route.dest == QueueDest(queue="general")
    assert engine.path[-2:] == ["fail_open:loop", "route:queue:general"]


def test_announce_option_plays_then_continues(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, "4")
    assert step.actions == (
        Play("notice", interruptible=False),
        Route(QueueDest(queue="general", category=Category.help), Category.help, "option"),
    )


def test_announce_without_then_reaches_the_menus_agent(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, "9")
    assert step.actions == (Play("bare", interruptible=False), Route(QueueDest(queue="general"), None, "option"))


def test_long_announce_chain_is_cut(small: Config) -> None:
    dest: object = {"type": "queue", "queue": "general"}
    for i in range(40):
        dest = {"type": "announce", "prompt": f"p{i}", "then": dest}
    engine = MenuEngine(small, MONDAY_10)
    step = engine.start(parse_destination(dest))
    assert step.route is not None and step.route.reason == "fail_open"
    assert all(isinstance(a, Play) for a in step.plays) and engine.path[-2] == "fail_open:loop"


def test_hangup_from_a_menu_becomes_the_agent(small: Config) -> None:
    engine, step = begin(small)
    step = walk(engine, step, "7")
    assert step.route == Route(QueueDest(queue="general"), None, "fail_open")
    assert engine.path[-2:] == ["fail_open:hangup", "route:queue:general"]


def test_hangup_allowed_only_as_an_explicit_non_menu_start(small: Config) -> None:
    engine = MenuEngine(small, MONDAY_10)
    step = engine.start(AnnounceDest(prompt="retired", then=HangupDest()))
    assert step.actions == (Play("retired", interruptible=False), Route(HangupDest(), None, "entry"))


@pytest.mark.parametrize(
    ("keys", "label", "dest"),
    [
        (["8"], "fail_open:unknown_menu:nowhere", QueueDest(queue="general")),
        (["2", "5"], "fail_open:unknown_queue:missing", QueueDest(queue="general")),
    ],
)
def test_broken_references_fail_open(small: Config, keys: list[str], label: str, dest: QueueDest) -> None:
    engine, step = begin(small)
    step = walk(engine, step, *keys)
    assert step.route is not None and step.route.dest == dest and label in engine.path


@pytest.mark.parametrize(
    ("key", "dest", "category"),
    [
        ("3", LegacyDest(line="12315"), Category.complaint),
        ("4", TransferDest(target="110"), None),
        ("7", DialDest(number="12366"), None),
    ],
)
def test_other_non_menu_destinations_route(small: Config, key: str, dest: object, category: Category | None) -> None:
    engine, step = begin(small)
    step = walk(engine, step, "2", key)
    assert step.route == Route(dest, category, "option")  # type: ignore[arg-type]


def test_self_service_routes(small: Config) -> None:
    engine, step = begin(small)
    assert walk(engine, step, "5").route == Route(SelfServiceDest(), None, "option")


def test_agent_that_is_not_a_human_fails_open_to_the_general_queue() -> None:
    cfg = parse_config(
        """
queues: {general: {name: g}}
center: {entry: "menu:m"}
menus:
  m: {prompt: m, agent: "menu:m"}
  n: {prompt: n, agent: "hangup"}
  o: {prompt: o, agent: "self_service:progress_query"}
"""
    )
    for name in ("m", "n", "o"):
        engine = MenuEngine(cfg, MONDAY_10)
        engine.start(MenuDest(menu=name))
        assert engine.feed(Digit("0")).route == Route(QueueDest(queue="general"), None, "fail_open")


def test_max_events_caps_a_stuck_key(small: Config) -> None:
    engine, step = begin(small)
    for _ in range(MAX_EVENTS):
        step = engine.feed(Digit("*"))
        assert not step.done
    step = engine.feed(Digit("*"))
    assert step.route is not None and step.route.reason == "max_events"


# --------------------------------------------------------------------------- speech


def test_speech_word_acts_as_its_key(small: Config) -> None:
    engine, step = begin(small)
    step = engine.feed(SpeechResult("我想投诉一下", 0.9))
    assert engine.menu == "sub" and engine.path == ["menu:top", "speech:投诉", "key:2", "menu:sub"]


def test_speech_earliest_word_wins(small: Config) -> None:
    engine, step = begin(small)
    step = engine.feed(SpeechResult("问一下怎么投诉", 0.9))
    assert step.route is not None and step.route.category is Category.consult


def test_speech_agent_words_act_as_zero(small: Config) -> None:
    engine, step = begin(small)
    step = engine.feed(SpeechResult("转人工", 0.8))
    assert step.route is not None and step.route.reason == "agent_key" and "agent:0" in engine.path


def test_low_confidence_recollects_without_counting(small: Config) -> None:
    engine, step = begin(small)
    for _ in range(10):
        step = engine.feed(SpeechResult("投诉", 0.59))
        assert step.actions == (Collect("top", 4.0, "1234567890*#"),)
    assert engine.path[-1] == "speech:low"
    step = engine.feed(SpeechResult("咨询", float("nan")))
    assert engine.path[-1] == "speech:low"
    step = walk(engine, step, "1")
    assert step.route is not None


def test_confident_unknown_speech_counts_invalid_and_empty_counts_no_input(small: Config) -> None:
    engine, step = begin(small)
    step = engine.feed(SpeechResult("今天天气不错", 0.95))
    assert step.actions[0] == Play("invalid_input") and engine.path[-1] == "invalid:speech"
    step = engine.feed(SpeechResult("   ", 0.95))
    assert step.actions[0] == Play("no_input") and engine.path[-1] == "timeout"


def test_collect_offers_speech_when_a_model_is_configured() -> None:
    cfg = parse_config('queues: {general: {name: g}}\ncenter: {entry: "menu:m"}\nmenus: {m: {prompt: m}}\nspeech: {model: /m}')
    _, step = begin(cfg)
    assert isinstance(step.final, Collect) and step.final.speech


# --------------------------------------------------------------------------- misuse


def test_misuse_raises_clear_errors(small: Config) -> None:
    engine = MenuEngine(small, MONDAY_10)
    with pytest.raises(MenuStateError, match="before start"):
        engine.feed(Timeout())
    engine.start(small.center.entry)
    with pytest.raises(MenuStateError, match="twice"):
        engine.start(small.center.entry)
    with pytest.raises(TypeError):
        engine.feed("1")  # type: ignore[arg-type]
    engine.feed(Digit("0"))
    with pytest.raises(MenuStateError, match="already ended"):
        engine.feed(Digit("1"))


def test_step_shape_is_enforced() -> None:
    with pytest.raises(ValueError):
        Step((Play("x"),))
    with pytest.raises(ValueError):
        Step((Collect("m", 1, "0"), Route(HangupDest(), None, "x")))


# --------------------------------------------------------------------------- shipped config and explain


def test_shipped_config_walks(shipped: Config) -> None:
    engine, step = begin(shipped)
    step = walk(engine, step, "2", "1")
    assert engine.path == ["menu:main", "key:2", "menu:complaint", "key:1", "route:queue:general/投诉举报"]
    engine, step = begin(shipped)
    assert walk(engine, step, None).route == Route(QueueDest(queue="general"), None, "no_input")
    engine, step = begin(shipped)
    step = walk(engine, step, "2", None, None)
    assert step.route is not None and step.route.category is Category.complaint
    engine, step = begin(shipped)
    assert walk(engine, step, "5").route == Route(SelfServiceDest(), None, "option")


# --------------------------------------------------------------------------- properties

KEYS = list("0123456789*#") + ["A", "", "12"]
TEXTS = ["", "投诉", "咨询", "转人工", "随便说说", "查询进度", "建议"]

#: every distinct input worth generating; one sampled_from draw each keeps thousands of walks fast
ALL_EVENTS: list[Event] = [
    *(Digit(k) for k in KEYS),
    Timeout(),
    *(SpeechResult(t, c) for t in TEXTS for c in (0.0, 0.3, 0.6, 0.9, 1.0)),
]
events_st: st.SearchStrategy[Event] = st.sampled_from(ALL_EVENTS)

AGENT_TYPES = (QueueDest, TransferDest, DialDest)


def _is_real_end(cfg: Config, route: Route) -> bool:
    d = route.dest
    if isinstance(d, QueueDest):
        return d.queue in cfg.queues and route.category == d.category
    if isinstance(d, TransferDest):
        return cfg.trunk(d.target) is not None
    if isinstance(d, LegacyDest):
        return d.line in cfg.legacy_lines
    return isinstance(d, (SelfServiceDest, DialDest))


def run_walk(cfg: Config, events: list[Event], at: dt.datetime) -> tuple[MenuEngine, Step, int]:
    """Feed `events`, then timeouts, checking every invariant on the way; return engine, last step, feeds."""
    engine = MenuEngine(cfg, at)
    step = engine.start(cfg.center.entry)
    feeds = 0
    queue = list(events)
    bound = MAX_EVENTS + 1
    while not step.done:
        assert isinstance(step.final, Collect)
        assert engine.menu in cfg.menus and step.final.prompt == cfg.menus[engine.menu].prompt
        assert [lb for lb in engine.path if lb.startswith("menu:")][-1] == f"menu:{engine.menu}"
        before, menu = len(engine.path), cfg.menus[engine.menu]
        ev = queue.pop(0) if queue else Timeout()
        step = engine.feed(ev)
        feeds += 1
        assert len(engine.path) > before  # every input leaves a trace
        assert feeds <= bound
        if ev == Digit("0"):
            # 0 always reaches a human: the menu's agent, or the general queue when that is broken
            assert step.route is not None and isinstance(step.route.dest, AGENT_TYPES)
            assert engine.path[before] == "agent:0"
            agent = menu.agent.then if isinstance(menu.agent, AnnounceDest) else menu.agent
            assert step.route.dest in (agent, QueueDest(queue=cfg.center.general_queue))
    route = step.route
    assert route is not None and route is engine.route
    assert not isinstance(route.dest, (HangupDest, MenuDest, AnnounceDest))
    assert _is_real_end(cfg, route)
    assert engine.category == route.category
    assert engine.path[-1] == f"route:{route.dest.label()}"
    assert sum(lb.startswith("route:") for lb in engine.path) == 1
    with pytest.raises(MenuStateError):
        engine.feed(Timeout())
    return engine, step, feeds


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SHIPPED_CFG = parse_config(SHIPPED.read_text(encoding="utf-8"))
_SMALL_CFG = parse_config(SMALL)
times_st = st.sampled_from([MONDAY_10, MONDAY_20, dt.datetime(2026, 2, 17, 10, 0), dt.datetime(2026, 2, 14, 10, 0)])
#: several walks per example: drawing a config costs more than walking it
walks_st = st.lists(st.lists(events_st, max_size=30), min_size=1, max_size=8)


@FAST
@given(walks=walks_st, at=times_st, which=st.sampled_from(["shipped", "small"]))
def test_any_walk_ends_in_a_real_route(walks: list[list[Event]], at: dt.datetime, which: str) -> None:
    cfg = _SHIPPED_CFG if which == "shipped" else _SMALL_CFG
    for events in walks:
        run_walk(cfg, events, at)


misses_st = st.lists(st.sampled_from([Timeout(), *(Digit(k) for k in ["7", "8", "9", "A", "", "12"])]), max_size=40)


@FAST
@given(walks=st.lists(misses_st, min_size=1, max_size=8), at=times_st)
def test_only_misses_end_at_the_agent_quickly(walks: list[list[Event]], at: dt.datetime) -> None:
    cfg = _SHIPPED_CFG  # 7, 8, 9 are invalid in every shipped menu
    max_retries = max(m.max_retries for m in cfg.menus.values())
    for events in walks:
        engine, step, feeds = run_walk(cfg, events, at)
        assert feeds <= len(cfg.menus) * (max_retries + 2) * 2
        assert feeds <= 2 * max_retries + 2  # no navigation happens, so it is the first menu's bound
        assert step.route is not None and step.route.dest == cfg.menus["main"].agent
        assert engine.path[-2] == "agent:retries"


# -- generated configs: random menu graphs with cycles, self-loops, hours and broken references

_TARGETS = [
    "queue:general",
    "queue:general/咨询",
    "queue:second/求助",
    "queue:missing",
    "menu:missing",
    "hangup",
    "self_service:progress_query",
    "legacy:12315",
    "legacy:99999",
    "transfer:110",
    "transfer:nowhere",
    "dial:12366",
    {"type": "announce", "prompt": "a", "then": "queue:second"},
    {"type": "announce", "prompt": "b"},
    {"type": "announce", "prompt": "c", "then": "hangup"},
]
_AGENTS = ["queue:general", "queue:second/投诉举报", "queue:missing", "transfer:110", "hangup", "menu:m0",
           {"type": "announce", "prompt": "agent", "then": "queue:second"}]


@st.composite
def configs(draw: st.DrawFn) -> Config:
    """A random menu graph; built with model_validate (the YAML path is covered above and is 100× slower)."""
    n = draw(st.integers(1, 5))
    names = [f"m{i}" for i in range(n)]
    # few, cheap draws: a bitmask of option keys and indexes into the target table
    targets = [*_TARGETS, *(f"menu:{m}" for m in names)]
    target = st.integers(0, len(targets) - 1)
    menus = {}
    for name in names:
        mask = draw(st.integers(0, 511))
        picks = draw(st.lists(target, min_size=9, max_size=9))
        menu: dict[str, object] = {
            "prompt": f"p_{name}",
            "max_retries": draw(st.integers(0, 5)),
            "options": {str(k): targets[picks[k - 1]] for k in range(1, 10) if mask >> (k - 1) & 1},
            "agent": draw(st.sampled_from(_AGENTS)),
            "speech": {"1": ["投诉"], "2": ["咨询"]},
        }
        hours = draw(st.sampled_from([None, "office", "never", "unknown"]))
        if hours:
            menu["hours"] = hours
            closed = draw(st.integers(-1, len(targets) - 1))
            if closed >= 0:
                menu["closed"] = targets[closed]
        menus[name] = menu
    data = {
        "center": {"entry": f"menu:{draw(st.sampled_from(names))}"},
        "queues": {"general": {"name": "综合"}, "second": {"name": "第二"}},
        "hours": {"office": {"weekly": {"mon": ["09:00-17:00"]}}, "never": {}},
        "legacy_lines": {"12315": {"name": "l", "mode": "merged"}},
        "transfer_targets": {"110": {"name": "公安", "dial": "Local/110@sim"}},
        "menus": menus,
    }
    return Config.model_validate(data)


GEN = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GEN
@given(cfg=configs(), walks=walks_st, at=times_st)
def test_generated_menu_graphs_always_end_in_a_real_route(cfg: Config, walks: list[list[Event]], at: dt.datetime) -> None:
    for events in walks:
        run_walk(cfg, events, at)


@GEN
@given(cfg=configs(), walks=st.lists(misses_st, min_size=1, max_size=8), at=times_st)
def test_generated_graphs_end_within_the_miss_bound(cfg: Config, walks: list[list[Event]], at: dt.datetime) -> None:
    max_retries = max(m.max_retries for m in cfg.menus.values())
    for events in walks:
        # keys 7-9 may be options here, so only timeouts and non-keys count as pure misses
        events = [e for e in events if not (isinstance(e, Digit) and e.key and e.key in "789")]
        _, _, feeds = run_walk(cfg, events, at)
        assert feeds <= len(cfg.menus) * (max_retries + 2) * 2


@GEN
@given(cfg=configs(), prefixes=st.lists(st.lists(events_st, max_size=15), min_size=1, max_size=8), at=times_st)
def test_generated_graphs_zero_reaches_a_human(cfg: Config, prefixes: list[list[Event]], at: dt.datetime) -> None:
    for prefix in prefixes:
        run_walk(cfg, [*prefix, Digit("0")], at)


@settings(max_examples=80, deadline=None)
@given(cfg=configs(), seed=st.integers(0, 2**32), at=times_st)
def test_bulk_random_walks(cfg: Config, seed: int, at: dt.datetime) -> None:
    """Volume: 50 walks per example from a seeded Random (hypothesis draws are the slow part; the seed replays)."""
    rnd = random.Random(seed)
    for cfg_ in (cfg, _SHIPPED_CFG):
        for _ in range(25):
            run_walk(cfg_, [rnd.choice(ALL_EVENTS) for _ in range(rnd.randrange(30))], at)
