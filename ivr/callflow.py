"""The inbound call flow, written once: a pure generator of actions that two drivers run.

A call to the center or a legacy line goes: number plan decision → its announcements
(a key pressed during them is the first menu input: barge-in) → the menu engine →
legacy lines chosen in a menu (bounded hops; a retired one gives an agent, never a
hang-up) → self-service → the closed-queue rule → the route handed to the dialplan.

This module decides all of that and performs nothing. `inbound_flow()` is a generator:
it yields an action, the driver performs it and sends back the answer (see each
action's docstring), until the generator returns. Two drivers exist:

* `ivr/calls.py` — the live FastAGI script (plays, collects DTMF/speech, sets variables);
* `admin/explain.py` — `hotline explain` (narrates each action; inputs come from --digits).

So what `explain` prints is what a caller meets; `tests/unit/test_callflow.py` walks
several configurations through both drivers and compares them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from dataclasses import dataclass
from typing import cast

from ivr.menu import Collect, Digit, Event, MenuEngine, Play, Route, SpeechResult, Timeout
from model.config import Config
from model.contract import Route as RouteName
from model.contract import Var
from model.destinations import (
    MAX_LINE_HOPS,
    AnnounceDest,
    Category,
    Destination,
    DialDest,
    HangupDest,
    LegacyDest,
    MenuDest,
    QueueDest,
    SelfServiceDest,
    TransferDest,
)
from routing.dialplan import dial_string
from model.hours import local
from routing.access import campaign_queue, greeting_choices, language_of_queue, video_language
from routing.numberplan import RouteDecision, decide
from routing.queues import resolve_queue


@dataclass(frozen=True)
class Decided:
    """The number plan decided where the call goes first (`chosen`: a legacy line picked in a menu). Answer: None."""

    decision: RouteDecision
    chosen: bool = False


@dataclass(frozen=True)
class OpenTicket:
    """The call's ticket number, allocated now, while the caller is on the line (live: the store, the number
    set in `Var.TICKET` for the agent and the dialplan; explain: a sample). Answer: the number, or None when
    it could not be had in time (the ticket then gets its number when the call ends)."""


@dataclass(frozen=True)
class Greeted:
    """The greeting/announcements are over (the dialplan's fallback must not greet again). Answer: None."""


@dataclass(frozen=True)
class MenuPath:
    """The menu engine took these decisions (labels as in `MenuEngine.path`). Answer: None."""

    labels: tuple[str, ...]


@dataclass(frozen=True)
class MenuExit:
    """The menu engine ended in this route. Answer: None."""

    route: Route


@dataclass(frozen=True)
class Note:
    """Something worth a log line / an explain line: `kind` is `fail_open`, `hours`, `priority`, `campaign` or
    `video`.

    Answer: None."""

    kind: str
    text: str


@dataclass(frozen=True)
class Now:
    """What time is it now? Answer: a datetime (live: the clock, as the call leaves the IVR; explain: the call's time).

    The closed-queue rule judges hours when the route is handed over, not when the call arrived:
    a caller who spends two minutes in menus around closing time meets the queue as it is then.
    """


@dataclass(frozen=True)
class SelfService:
    """Run the self-service `service` (办理进度查询). Answer: where the call goes next (a Destination)."""

    service: str


@dataclass(frozen=True)
class SetRoute:
    """Hand the route to the dialplan: report it (HotlineRoute), then set `variables` (in order) and `Var.ROUTE`
    to `route`, last, in one round trip.

    Answer: None. Always the last action.
    """

    route: RouteName
    variables: tuple[tuple[Var, str], ...]
    dest: Destination
    category: Category | None
    decision: RouteDecision
    #: 老年人优先: `listed` (the center's list) or `key` (pressed in the greeting); None: no priority
    priority: str | None = None
    #: the language path (access.languages key) or None for the center's own
    language: str | None = None


#: what the flow yields: `Play` (answer: the key pressed during it, or None) and `Collect`
#: (answer: a menu Event — Digit, Timeout or SpeechResult) come from the menu engine's vocabulary
FlowAction = Decided | OpenTicket | Greeted | Play | Collect | MenuPath | MenuExit | Note | Now | SelfService | SetRoute
Flow = Generator[FlowAction, object, None]


def inbound_flow(config: Config, dialed: str, caller: str, now: dt.datetime, video: bool = False) -> Flow:
    """The whole inbound script of one call, as actions (see the module docstring).

    `video`: the call arrived with video (the dialplan's `Var.VIDEO`): the sign-language path, if configured."""
    decision = decide(config, dialed, caller, now)
    yield Decided(decision)
    yield OpenTicket()
    # the 12345 flow (a menu ahead) accepts the access keys (language, campaign, priority: routing/access.py)
    center_flow = isinstance(decision.dest, (MenuDest, AnnounceDest))
    choices = {c.key: c for c in greeting_choices(config, _day(config, now))} if center_flow else {}
    # 老年人优先: a listed caller skips any menu and queues with priority (a line's own queue keeps its queue)
    priority = "listed" if (config.access.priority.listed(caller)
                            and not isinstance(decision.dest, (HangupDest, DialDest, TransferDest))) else None
    # a video call to the 12345 flow: straight to the sign-language seats; nothing spoken (the caller may not
    # hear it: the seat greets them in sign language), no menu (keys would need the greeting)
    sign = video_language(config) if video and center_flow else None
    if sign is not None:
        queue = config.access.languages[sign].queue
        yield Note("video", f"a video call: the sign-language seats ({sign}, queue:{queue}) with video; "
                            "no spoken greeting or menu")
        yield Greeted()
        yield MenuPath((f"video:{sign}",))
        yield from _route(config, QueueDest(queue=queue), decision.category, decision, now, priority, sign)
        return
    # barge-in: a key pressed during the greeting skips the rest and is the first menu input
    pending: str | None = None
    for prompt in decision.announcements:
        if pending is None:
            pending = yield from _play(prompt)
    # the emergency notice: once for every caller (also when a merged line's announcement replaced the
    # greeting, or a line has no greeting), never cut short; a key pressed during the greeting still counts
    if config.center.emergency_notice:
        yield from _play(config.center.emergency_notice, interruptible=False)
    # the access offers ("For English service, press 8"), after the notice, while keys are accepted
    for offer in dict.fromkeys(c.offer for c in choices.values() if c.offer):
        if pending is None and priority is None:
            pending = yield from _play(offer)
    choice = choices.get(pending) if pending is not None else None
    language: str | None = None
    yield Greeted()
    if choice is not None:
        pending = None
        yield MenuPath((choice.label,))
        if choice.kind == "priority":
            priority = "key"
        elif choice.kind == "language":
            language = choice.code
            for prompt in config.access.languages[choice.code].prompts:
                yield from _play(prompt)
    if priority is not None:
        yield Note("priority", f"老年人优先 ({priority}): no menu, queued with priority "
                               f"{config.access.priority.priority}")
        if config.access.priority.prompt:
            yield from _play(config.access.priority.prompt)
    if priority is not None and center_flow:
        dest, category = QueueDest(queue=config.access.priority.queue or config.center.general_queue), None
    elif choice is not None and choice.kind != "priority":
        dest, category = QueueDest(queue=choice.queue), None
    else:
        dest, category = yield from _walk(config, now, decision.dest, pending)
    category = category or decision.category
    hops = 0
    while isinstance(dest, LegacyDest) and hops < MAX_LINE_HOPS:
        hops += 1
        sub = decide(config, dest.line, caller, now)
        yield Decided(sub, chosen=True)
        for prompt in sub.announcements:
            if prompt not in (config.center.greeting, config.center.emergency_notice):
                yield from _play(prompt)
        if isinstance(sub.dest, HangupDest):
            if sub.dest.prompt:
                yield from _play(sub.dest.prompt, interruptible=False)
            yield Note("fail_open", f"{dest.line} chosen from a menu is retired: an agent instead, never a "
                                    "hang-up (不挂机，转人工)")
            dest = QueueDest(queue=config.center.general_queue)
            break
        dest, cat2 = yield from _walk(config, now, sub.dest)
        category = cat2 or sub.category or category
    if isinstance(dest, SelfServiceDest):
        dest = cast(Destination, (yield SelfService(dest.service)))
    yield from _route(config, dest, category, decision, now, priority, language)


def _play(prompt: str, *, interruptible: bool = True) -> Generator[FlowAction, object, str | None]:
    key = yield Play(prompt, interruptible)
    return key if interruptible and isinstance(key, str) and key else None


def _walk(config: Config, now: dt.datetime, dest: Destination,
          pending: str | None = None) -> Generator[FlowAction, object, tuple[Destination, Category | None]]:
    """Run menus until a non-menu destination; `pending` (a barge-in key) is fed to the first Collect."""
    if not isinstance(dest, (MenuDest, AnnounceDest)):
        return dest, None
    engine = MenuEngine(config, now)
    step = engine.start(dest)
    reported = 0
    while True:
        # the path so far is reported before the caller is kept waiting (a prompt or a question follows: a caller
        # who hangs up there leaves it on the ticket) and always before the exit. Only the first turn can have a
        # key pressed ahead (barge-in): it skips this step's question and the prompts a key may cut short, and
        # when nothing else is played before the next turn, that turn reports this step's decisions with its
        # own: one HotlineIVR event and one AGI round trip fewer (issue 15)
        waits = pending is None or any(not p.interruptible for p in step.plays)
        if len(engine.path) > reported and (waits or isinstance(step.final, Route)):
            yield MenuPath(tuple(engine.path[reported:]))
            reported = len(engine.path)
        for action in step.plays:
            if not action.interruptible:
                # never cut short, and never skipped (an announcement, a closed menu's notice): a key pressed
                # ahead still counts after it, as after the emergency notice
                yield from _play(action.prompt, interruptible=False)
            elif pending is None:
                pending = yield from _play(action.prompt)
        final = step.final
        if isinstance(final, Route):
            yield MenuExit(final)
            return final.dest, final.category
        event: Event
        if pending is not None:
            event, pending = Digit(pending), None
        else:
            answer = yield final
            assert isinstance(answer, (Digit, Timeout, SpeechResult)), "a Collect is answered with an Event"
            event = answer
        step = engine.feed(event)


def _day(config: Config, at: dt.datetime | dt.date) -> dt.date:
    return local(at, config.center.timezone).date() if isinstance(at, dt.datetime) else at


def _route(config: Config, dest: Destination, category: Category | None, decision: RouteDecision,
           now: dt.datetime, priority: str | None = None,
           language: str | None = None) -> Generator[FlowAction, object, None]:
    """The closed-queue rule (at the time the route is handed over), the prompts before the route, the route."""
    current = cast(dt.datetime, (yield Now()))
    if isinstance(dest, QueueDest):
        queue, note = campaign_queue(config, dest.queue, _day(config, current or now))
        if note:
            yield Note("campaign", note)
            dest = QueueDest(queue=queue, category=dest.category)
    dest, prompts, notes = resolve_queue(config, dest, current)
    for note in notes:
        yield Note("hours", note)
    for prompt in prompts:
        yield from _play(prompt)
    route, variables = RouteName.QUEUE, [(Var.QUEUE, config.center.general_queue)]
    if isinstance(dest, QueueDest):
        variables = [(Var.QUEUE, dest.queue)]
        category = dest.category or category
        language = language or language_of_queue(config, dest.queue)
        lang = config.access.languages.get(language) if language else None
        if lang is not None:
            # this language's own recording notice instead of the center's (the dialplan then skips it)
            if lang.recording_notice and config.recording.notice:
                yield from _play(lang.recording_notice)
                variables.append((Var.RECORDING_NOTICED, "1"))
        elif config.center.queue_prompt:
            yield from _play(config.center.queue_prompt)
        if priority is not None:
            variables += [(Var.QUEUE_PRIO, str(config.access.priority.priority)), (Var.PRIORITY, priority)]
        if language:
            variables.append((Var.LANGUAGE, language))
    elif isinstance(dest, DialDest):
        route, variables = RouteName.DIAL, [(Var.DIAL, dial_string(dest.number))]
    elif isinstance(dest, TransferDest):
        route, variables = RouteName.TRANSFER, [(Var.TRANSFER, dest.target)]
    elif isinstance(dest, HangupDest):
        if dest.prompt:
            yield from _play(dest.prompt, interruptible=False)
        route, variables = RouteName.HANGUP, []
    else:
        # anything the flow cannot carry out (a menu left over, an unknown kind) goes to the general queue
        yield Note("fail_open", f"{dest.label()} is not a route the dialplan takes: the general queue")
        dest = QueueDest(queue=config.center.general_queue)
    variables.append((Var.CATEGORY, category.value if category else ""))
    queued = isinstance(dest, QueueDest)
    yield SetRoute(route, tuple(variables), dest, category, decision, priority if queued else None,
                   language if queued else None)
