"""The live FastAGI driver (ivr/calls.py) against transcripts of what it must say to Asterisk.

tests/unit/test_callflow.py shows that the live IVR and `explain` agree; this file pins
what the live one does on the wire, so a bug in the shared core cannot hide behind that
agreement: barge-in, when HOTLINE_GREETED is set, the order of the route variables and
the HotlineRoute event, hours judged when the route is handed over, the self-query with
a real password check, and failing open.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from ivr.calls import CallScripts
from model.config import Config
from model.contract import Event, Var, ivr_steps
from model.destinations import AnnounceDest, MenuDest, QueueDest, parse_destination
from model.hours import local
from model.loading import default_config_path, load_config
from model.passwords import hash_password

MONDAY_10 = local(dt.datetime(2026, 3, 9, 10, 0))


class Transcript:
    """An AGI peer that logs every call in order; keys are pressed during prompts (`barge`) or at GET DATA."""

    def __init__(self, dialed: str = "12345", *, keys: list[str | None] | None = None,
                 barge: dict[str, str] | None = None) -> None:
        self.env = {"agi_extension": dialed, "agi_callerid": "13800138000"}
        self.args: list[str] = []  # a dialplan of before the script's arguments: the channel is asked
        self.uniqueid = "1.1"
        self.command_timeout = 5.0
        self.keys: deque[str | None] = deque(keys or [])
        self.barge = dict(barge or {})
        self.log: list[tuple[Any, ...]] = []

    async def get_variable(self, name: str) -> str | None:
        self.log.append(("get", str(name)))
        return None

    async def set_variable(self, name: str, value: Any) -> None:
        self.log.append(("set", str(name), str(value)))

    async def set_variables(self, pairs: Sequence[tuple[str, Any]]) -> None:  # (one MSet on a real session)
        self.log.append(("set_variables", tuple(pairs)))
        for name, value in pairs:
            await self.set_variable(name, value)

    async def user_event(self, name: str, **headers: Any) -> None:
        self.log.append(("event", str(name), headers))

    async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
        self.log.append(("play", name))
        key = self.barge.pop(name.rsplit("/", 1)[-1], None)
        return key if key and key in escape_digits else None

    async def get_data(self, name: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        self.log.append(("ask", name))
        key = self.keys.popleft() if self.keys else None
        return ("", True) if key is None else (key, False)

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return None

    def sets(self) -> list[tuple[str, str]]:
        return [(e[1], e[2]) for e in self.log if e[0] == "set"]

    def index(self, kind: str, name: str) -> int:
        return next(i for i, e in enumerate(self.log) if e[0] == kind and e[1] == name)

    def prompts(self) -> list[str]:
        return [e[2]["Prompt"] for e in self.log if e[0] == "event" and e[1] == Event.PROMPT]


def shipped() -> Config:
    return load_config(default_config_path())


def clock_at(*times: dt.datetime) -> Any:
    it: Iterator[dt.datetime] = iter(times)
    last = [times[0]]

    def now() -> dt.datetime:
        last[0] = next(it, last[0])
        return last[0]
    return now


async def test_a_key_during_the_greeting_skips_the_rest_and_is_the_first_choice() -> None:
    cfg = shipped()
    greeting = cfg.center.greeting
    agi = Transcript(barge={greeting: "1"})
    await CallScripts(cfg, clock=lambda: MONDAY_10).inbound(agi)  # type: ignore[arg-type]
    steps = [step for e in agi.log if e[0] == "event" and e[1] == Event.IVR for step in ivr_steps(e[2])]
    assert steps[:2] == ["menu:main", "key:1"]
    assert ("ask", "hotline/main_menu") not in agi.log  # the menu prompt is not played: the key chose already
    assert dict(agi.sets())[Var.CATEGORY] == "咨询"


async def test_the_menu_decisions_between_two_prompts_are_one_userevent() -> None:
    """Issue 15: one HotlineIVR event per batch of decisions (Step, Step2, …), not one AGI command per step."""
    cfg = shipped()
    agi = Transcript(keys=["1"])
    await CallScripts(cfg, clock=lambda: MONDAY_10).inbound(agi)  # type: ignore[arg-type]
    events = [e[2] for e in agi.log if e[0] == "event" and e[1] == Event.IVR]
    assert events[0] == {"Step": "menu:main"}  # reported before the menu is played
    assert events[1] == {"Step": "key:1", "Step2": "route:queue:general/咨询"}  # the key and where it led: one event
    assert len(events) == 2


async def test_a_key_pressed_ahead_is_reported_with_where_it_led_in_one_userevent() -> None:
    """Issue 15: with a key pressed during the greeting nobody waits in the main menu, so entering it is not
    reported on its own: the menu, the key and the route are one HotlineIVR event (one AGI round trip)."""
    cfg = shipped()
    agi = Transcript(barge={cfg.center.greeting: "1"})
    await CallScripts(cfg, clock=lambda: MONDAY_10).inbound(agi)  # type: ignore[arg-type]
    events = [e[2] for e in agi.log if e[0] == "event" and e[1] == Event.IVR]
    assert events == [{"Step": "menu:main", "Step2": "key:1", "Step3": "route:queue:general/咨询"}]


async def test_a_key_pressed_ahead_into_a_submenu_is_reported_before_the_submenu_asks() -> None:
    """The submenu's question keeps the caller waiting: the path up to it is reported first, as without a
    key pressed ahead, so a caller who hangs up there leaves it on the ticket."""
    cfg = shipped()
    agi = Transcript(barge={cfg.center.greeting: "2"}, keys=["1"])
    await CallScripts(cfg, clock=lambda: MONDAY_10).inbound(agi)  # type: ignore[arg-type]
    events = [e[2] for e in agi.log if e[0] == "event" and e[1] == Event.IVR]
    assert events[0] == {"Step": "menu:main", "Step2": "key:2", "Step3": "menu:complaint"}
    assert agi.log.index(("event", Event.IVR, events[0])) < agi.index("ask", "hotline/complaint_menu")
    assert [s for e in events for s in ivr_steps(e)][3:] == ["key:1", "route:queue:general/投诉举报"]


async def test_a_key_pressed_ahead_into_a_closed_menu_still_reports_the_path_at_the_exit() -> None:
    """The main menu is closed at night: the call leaves the menus at once. With a key pressed ahead nobody
    waits anywhere, and the path (closed, then where it led) is still reported once, before the route."""
    cfg = shipped().model_copy(deep=True)
    cfg.menus["main"].hours = "office"
    night = local(dt.datetime(2026, 3, 9, 22, 0))
    agi = Transcript(barge={cfg.center.greeting: "1"})
    await CallScripts(cfg, clock=lambda: night).inbound(agi)  # type: ignore[arg-type]
    events = [e[2] for e in agi.log if e[0] == "event" and e[1] == Event.IVR]
    assert [s for e in events for s in ivr_steps(e)] == ["closed:main", "route:queue:general"]
    assert len(events) == 1 and agi.index("event", Event.IVR) < agi.index("event", Event.ROUTE)


async def test_a_key_pressed_ahead_never_skips_an_announcement_that_may_not_be_cut_short() -> None:
    """A closed menu's notice (an announce node: never cut short) is heard even when a key was pressed during
    the greeting, as the emergency notice is; the path up to it is reported before it plays."""
    cfg = shipped().model_copy(deep=True)
    cfg.menus["main"].hours = "office"
    cfg.menus["main"].closed = AnnounceDest(prompt="closed_generic", then=QueueDest(queue="general"))
    night = local(dt.datetime(2026, 3, 9, 22, 0))
    agi = Transcript(barge={cfg.center.greeting: "1"})
    await CallScripts(cfg, clock=lambda: night).inbound(agi)  # type: ignore[arg-type]
    assert ("play", "hotline/closed_generic") in agi.log
    events = [e[2] for e in agi.log if e[0] == "event" and e[1] == Event.IVR]
    assert events == [{"Step": "closed:main", "Step2": "announce:closed_generic", "Step3": "route:queue:general"}]
    assert agi.index("event", Event.IVR) < agi.index("play", "hotline/closed_generic")


async def test_an_announcement_ahead_of_the_menu_plays_after_a_key_pressed_ahead_the_key_then_chooses() -> None:
    """The entry is an announcement, then the main menu; a key pressed during the greeting: the announcement is
    heard (the path up to the menu reported before it, for a caller who hangs up during it), then the key
    chooses in the menu without its question being asked."""
    cfg = shipped().model_copy(deep=True)
    cfg.center.entry = AnnounceDest(prompt="closed_generic", then=MenuDest(menu="main"))
    agi = Transcript(barge={cfg.center.greeting: "1"})
    await CallScripts(cfg, clock=lambda: MONDAY_10).inbound(agi)  # type: ignore[arg-type]
    events = [e[2] for e in agi.log if e[0] == "event" and e[1] == Event.IVR]
    assert events == [{"Step": "announce:closed_generic", "Step2": "menu:main"},
                      {"Step": "key:1", "Step2": "route:queue:general/咨询"}]
    assert agi.log.index(("event", Event.IVR, events[0])) < agi.index("play", "hotline/closed_generic")
    assert ("ask", "hotline/main_menu") not in agi.log
    assert dict(agi.sets())[Var.CATEGORY] == "咨询"


async def test_the_dialplan_hands_the_linkedid_and_video_flag_over_as_arguments() -> None:
    """Issue 15: `inbound,<linkedid>,<video>` saves two GET VARIABLE round trips per call; a dialplan rendered
    before (no arguments) still works, asking the channel."""
    cfg = shipped()
    agi = Transcript()
    agi.args = ["1764478839.42", "1"]
    await CallScripts(cfg, clock=lambda: MONDAY_10).inbound(agi)  # type: ignore[arg-type]
    assert [e for e in agi.log if e[0] == "get"] == []
    route = next(e[2] for e in agi.log if e[0] == "event" and e[1] == Event.ROUTE)
    assert route["Dest"].startswith("queue:sign")  # the video flag took the call to the sign-language seats
    old = Transcript()
    await CallScripts(cfg, clock=lambda: MONDAY_10).inbound(old)  # type: ignore[arg-type]
    assert [e[1] for e in old.log if e[0] == "get"] == ["CHANNEL(linkedid)", Var.VIDEO]
    assert not next(e[2] for e in old.log if e[0] == "event" and e[1] == Event.ROUTE)["Dest"].startswith("queue:sign")


async def test_greeted_is_set_after_the_announcements_and_before_the_menu() -> None:
    cfg = shipped()
    agi = Transcript(keys=["1"])
    await CallScripts(cfg, clock=lambda: MONDAY_10).inbound(agi)  # type: ignore[arg-type]
    greeted = agi.log.index(("set", Var.GREETED.value, "1"))
    assert greeted > agi.index("play", f"hotline/{cfg.center.greeting}")
    assert greeted < agi.index("event", Event.IVR) < agi.index("ask", "hotline/main_menu")


async def test_the_route_event_then_the_route_variables_in_one_round_trip_the_route_last() -> None:
    cfg = shipped()
    agi = Transcript(keys=["2", "1"])
    await CallScripts(cfg, clock=lambda: MONDAY_10).inbound(agi)  # type: ignore[arg-type]
    sets = agi.sets()
    assert sets[-1] == (Var.ROUTE.value, "queue")  # the dialplan acts on ROUTE: it must come last
    assert (Var.QUEUE.value, "general") in sets and (Var.CATEGORY.value, "投诉举报") in sets
    route_event = agi.index("event", Event.ROUTE)
    (batch,) = [e for e in agi.log if e[0] == "set_variables"]  # one MSet on a real session (wire/fastagi.py)
    assert batch[1] == ((Var.QUEUE, "general"), (Var.CATEGORY, "投诉举报"), (Var.ROUTE, "queue"))
    assert route_event < agi.log.index(batch) < agi.log.index(("set", Var.ROUTE.value, "queue"))
    assert agi.log[route_event][2] == {"Line": "", "Mode": "center", "Dest": "queue:general/投诉举报",
                                       "Category": "投诉举报", "Fallback": "0"}


async def test_queue_hours_are_judged_when_the_call_leaves_the_ivr() -> None:
    """Arrives at 17:29:50 (expert open), leaves the IVR after closing: told why, and queued in general."""
    cfg = shipped()
    cfg = cfg.model_copy(update={"center": cfg.center.model_copy(update={"entry": parse_destination("queue:expert")})})
    arrive, leave = local(dt.datetime(2026, 3, 9, 17, 29, 50)), local(dt.datetime(2026, 3, 9, 17, 31))
    agi = Transcript()
    await CallScripts(cfg, clock=clock_at(arrive, leave)).inbound(agi)  # type: ignore[arg-type]
    assert "expert_closed" in agi.prompts()
    assert dict(agi.sets())[Var.QUEUE] == "general"
    still_open = Transcript()
    await CallScripts(cfg, clock=clock_at(arrive, arrive)).inbound(still_open)  # type: ignore[arg-type]
    assert dict(still_open.sets())[Var.QUEUE] == "expert"


class OneTicket:
    """The store's verify_query with the real password hash."""

    def __init__(self, ticket_no: str, password: str) -> None:
        self.ticket_no, self.hash = ticket_no, hash_password(password)

    async def verify_query(self, ticket_no: str, password: str, caller: str | None = None) -> Any:
        from model.passwords import check_password

        if ticket_no == self.ticket_no and check_password(password, self.hash):
            return type("T", (), {"state": "handling"})()
        return None


async def test_self_query_reads_the_state_and_ends_the_call_unless_the_caller_presses_0() -> None:
    cfg = shipped()
    store = OneTicket("261129000042", "123456")
    agi = Transcript(keys=["5", "261129000042", "123456"])
    await CallScripts(cfg, clock=lambda: MONDAY_10, store=store).inbound(agi)  # type: ignore[arg-type]
    assert [e[2]["Result"] for e in agi.log if e[0] == "event" and e[1] == Event.SELF_QUERY] == ["found"]
    assert "state_handling" in agi.prompts()
    assert agi.sets()[-1] == (Var.ROUTE.value, "hangup")
    assert all("123456" not in str(e) for e in agi.log if e[0] == "event")  # never the password
    wrong = Transcript(keys=["5", "261129000042", "000000"] * 3)
    await CallScripts(cfg, clock=lambda: MONDAY_10, store=store).inbound(wrong)  # type: ignore[arg-type]
    results = [e[2]["Result"] for e in wrong.log if e[0] == "event" and e[1] == Event.SELF_QUERY]
    assert results == ["wrong", "wrong", "wrong", "locked"]
    assert wrong.sets()[-1] == (Var.ROUTE.value, "queue")  # locked out of the query, not out of the call


async def test_a_caller_past_the_guess_limits_goes_to_an_agent_without_a_password_check() -> None:
    from model.ticket_state import QueryLimited

    asked: list[str | None] = []

    class Limited:
        async def verify_query(self, ticket_no: str, password: str, caller: str | None = None) -> Any:
            asked.append(caller)
            raise QueryLimited("caller")

    agi = Transcript(keys=["5", "261129000042", "123456"] * 3)
    await CallScripts(shipped(), clock=lambda: MONDAY_10, store=Limited()).inbound(agi)  # type: ignore[arg-type]
    results = [e[2]["Result"] for e in agi.log if e[0] == "event" and e[1] == Event.SELF_QUERY]
    assert results == ["locked"] and len(asked) == 1  # no second try in this call either
    assert asked[0] is not None  # the caller's number is what the limits count
    assert agi.sets()[-1] == (Var.ROUTE.value, "queue")


async def test_anything_going_wrong_fails_open_to_the_dialplan_fallback() -> None:
    class Broken:
        async def verify_query(self, ticket_no: str, password: str, caller: str | None = None) -> Any:
            raise RuntimeError("database gone")

    agi = Transcript(keys=["5", "261129000042", "123456"])
    await CallScripts(shipped(), clock=lambda: MONDAY_10, store=Broken()).inbound(agi)  # type: ignore[arg-type]
    assert agi.sets()[-1] == (Var.ROUTE.value, "")  # empty route: the dialplan queues the caller
