"""The IVR menu engine: a pure state machine — events in, actions out, no I/O, no asyncio.

Why pure: every rule below is then testable by the thousand in milliseconds, and the
FastAGI adapter only carries DTMF/speech in and plays/collects/routes out.

GB/T 33358 says phone intake should not make callers navigate an IVR, so a menu
must never stand between a caller and an agent:

* ``0`` in any menu goes to that menu's ``agent`` destination;
* no input ends with an agent: timeouts and invalid keys are counted separately,
  and the first count that goes past its limit routes to ``agent`` (invalid keys:
  ``max_retries``; timeouts: ``no_input_retries``, default ``max_retries`` — 0 sends a
  silent caller to an agent at the first timeout, without replaying the menu);
* once a caller has been in a menu nothing reachable from it hangs up: a
  ``hangup`` destination is replaced by the menu's agent (graph validation in
  ``routing/graph.py`` should reject it first; this is the last line of defence);
* a broken reference (unknown menu, queue, legacy line or transfer target), an
  endless announce/closed chain, or more than ``max_events`` inputs in one call
  fail open to a queue, never to silence; an unknown ``hours`` name counts as
  open (``model.hours.is_open(None)``), since an open menu still offers 0.
* ``0``, retries used up and a closed menu without ``closed`` need a human: only
  a queue, transfer or dial may end those; anything else there (a menu, a
  self-service, a legacy line, a hang-up) is replaced by the general queue.

What the engine does not do: the greeting, ``center.queue_prompt`` and a queue's
own hours/overflow belong to whoever executes the Route (adapter, dialplan,
number plan). The words `hotline explain` prints for each step are in admin/explain.py.

Usage (the adapter's loop)::

    engine = MenuEngine(config, now)
    step = engine.start(config.center.entry)
    while True:
        for action in step:            # zero or more Play, then one Collect or Route
            ...perform it...
        if step.done:                  # the last action was a Route: leave the menu
            break
        step = engine.feed(event)      # Digit / Timeout / SpeechResult for that Collect

Key semantics:

* A valid key acts at once: one digit per menu, so the adapter stops listening
  at the first digit and never waits out the timeout after it.
* ``*`` repeats the current menu (not an error), ``#`` goes back to the previous
  menu (at the top menu it repeats).
* Speech (``SpeechResult``): confidence at or above ``config.speech.min_confidence``
  and text containing a word of ``menu.speech[key]`` acts as that key; the words
  in ``AGENT_WORDS`` (转人工…) act as ``0`` in every menu. Below the threshold the
  engine falls back to DTMF: it re-collects *without* counting an error, because
  a recogniser's doubt is not the caller's mistake. A confident result that names
  no option counts as an invalid input (the caller did say something, so
  "invalid input, please choose again" is the right prompt). Empty text counts as
  no input (a timeout).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from model.config import Config, Menu
from model.destinations import (
    MAX_REDIRECTS,
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
from model.hours import is_open

__all__ = [
    "AGENT_WORDS",
    "Action",
    "Collect",
    "Digit",
    "Event",
    "MenuEngine",
    "MenuStateError",
    "Play",
    "Route",
    "SpeechResult",
    "Step",
    "Timeout",
]

#: Spoken words that act as ``0`` (agent) in every menu, besides ``menu.speech["0"]``.
AGENT_WORDS: tuple[str, ...] = ("人工", "话务员", "客服")

#: Default cap on inputs in one call; past it the caller goes to the agent (stuck key, noise).
MAX_EVENTS = 60


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Play:
    """Play a prompt. ``interruptible``: a digit pressed during it is fed to the next Collect."""

    prompt: str
    interruptible: bool = True


@dataclass(frozen=True)
class Collect:
    """Play the menu prompt and wait ``timeout_s`` for ONE input (barge-in: a digit during the prompt counts).

    ``valid_keys`` lists the keys with a meaning here (options, 0, *, #). The adapter
    should still stop on and feed any digit it hears: other keys count as invalid.
    ``speech``: speech navigation is configured, the adapter may listen as well.
    """

    prompt: str
    timeout_s: float
    valid_keys: str
    speech: bool = False
    #: the words speech may say here (the menu's and AGENT_WORDS): the recogniser's runtime grammar
    words: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Route:
    """Terminal: leave the menu for a non-menu destination (queue, self-service, legacy, transfer, dial)."""

    dest: Destination
    category: Category | None
    reason: str


Action = Play | Collect | Route


@dataclass(frozen=True)
class Step:
    """What the adapter does next: zero or more Play, then exactly one Collect or Route."""

    actions: tuple[Action, ...]

    def __post_init__(self) -> None:
        if not self.actions or not isinstance(self.actions[-1], (Collect, Route)):
            raise ValueError("a Step ends in a Collect or a Route")
        if any(not isinstance(a, Play) for a in self.actions[:-1]):
            raise ValueError("only Play actions may precede the final action")

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)

    @property
    def final(self) -> Collect | Route:
        return self.actions[-1]  # type: ignore[return-value]

    @property
    def plays(self) -> tuple[Play, ...]:
        return self.actions[:-1]  # type: ignore[return-value]

    @property
    def done(self) -> bool:
        return isinstance(self.actions[-1], Route)

    @property
    def route(self) -> Route | None:
        return self.actions[-1] if isinstance(self.actions[-1], Route) else None


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Digit:
    """One DTMF key. Anything but 0-9, * and # (A-D, several characters) counts as invalid."""

    key: str


@dataclass(frozen=True)
class Timeout:
    """The Collect's timeout passed with no input."""


@dataclass(frozen=True)
class SpeechResult:
    text: str
    confidence: float


Event = Digit | Timeout | SpeechResult


class MenuStateError(RuntimeError):
    """The engine was used out of order (fed before start, after its Route, or started twice)."""


# --------------------------------------------------------------------------- engine


class MenuEngine:
    """One call's walk through the menus.

    ``path`` records short labels of every decision (``menu:main``, ``key:2``,
    ``timeout``, ``invalid:7``, ``agent:0``, ``agent:retries``, ``repeat``, ``back``,
    ``closed:X``, ``announce:P``, ``speech:WORD``, ``speech:low``,
    ``fail_open:WHY``, ``max_events``, ``route:DEST``) for the ticket's IVR path;
    ``category`` and ``route`` hold the outcome once the engine is done.
    """

    def __init__(self, config: Config, clock_now: dt.datetime, *, max_events: int = MAX_EVENTS) -> None:
        self.config = config
        #: one instant per call: hours are judged when the call arrives, so a walk is deterministic.
        self.now = clock_now
        self.max_events = max_events
        self.path: list[str] = []
        self.category: Category | None = None
        self.route: Route | None = None
        #: the menu the caller is in (None before start and when no menu was ever entered)
        self.menu: str | None = None
        self._stack: list[str] = []
        self._timeouts = 0
        self._invalids = 0
        self._events = 0
        self._started = False
        self._entered_menu = False

    # -- public

    @property
    def done(self) -> bool:
        return self.route is not None

    def start(self, dest: Destination) -> Step:
        """Begin at `dest` (usually ``config.center.entry``); a non-menu entry yields its Route at once."""
        if self._started:
            raise MenuStateError("MenuEngine.start() called twice; use one engine per call")
        self._started = True
        return self._go(dest, "entry")

    def feed(self, event: Event) -> Step:
        """Answer the last Collect with one input event; total over every event in every menu state."""
        if not self._started:
            raise MenuStateError("MenuEngine.feed() before start()")
        if self.route is not None:
            raise MenuStateError(f"the menu already ended with a Route to {self.route.dest.label()}; nothing to feed")
        assert self.menu is not None  # started and not routed => waiting in a menu
        menu = self.config.menus[self.menu]
        self._events += 1
        if self._events > self.max_events:
            self.path.append("max_events")
            return self._go(menu.agent, "max_events", agent=True)
        if isinstance(event, Timeout):
            return self._no_input(menu)
        if isinstance(event, Digit):
            return self._key(menu, event.key)
        if isinstance(event, SpeechResult):
            return self._speech(menu, event)
        raise TypeError(f"not a menu event: {event!r}")

    # -- inputs

    def _collect(self, menu: Menu, *plays: Play) -> Step:
        keys = "".join(sorted(menu.options)) + "0*#"
        on = self.config.speech.model is not None
        words = tuple(dict.fromkeys([w for ws in menu.speech.values() for w in ws if w] + list(AGENT_WORDS)))
        return Step((*plays, Collect(menu.prompt, menu.timeout_s, keys, on, words if on else ())))

    def _no_input(self, menu: Menu) -> Step:
        self._timeouts += 1
        self.path.append("timeout")
        limit = menu.max_retries if menu.no_input_retries is None else menu.no_input_retries
        if self._timeouts > limit:
            self.path.append("agent:retries")
            return self._go(menu.agent, "no_input", agent=True)
        return self._collect(menu, Play(menu.timeout_prompt))

    def _key(self, menu: Menu, key: str) -> Step:
        if key == "0":
            self.path.append("agent:0")
            return self._go(menu.agent, "agent_key", agent=True)
        if key == "*":
            self.path.append("repeat")
            return self._collect(menu)
        if key == "#":
            if not self._stack:
                self.path.append("back:top")
                return self._collect(menu)
            self.path.append("back")
            return self._go(MenuDest(menu=self._stack.pop()), "back", push=False)
        if key in menu.options:
            self.path.append(f"key:{key}")
            return self._go(menu.options[key], "option")
        return self._invalid(menu, key)

    def _invalid(self, menu: Menu, what: str) -> Step:
        self._invalids += 1
        self.path.append(f"invalid:{what}")
        if self._invalids > menu.max_retries:
            self.path.append("agent:retries")
            return self._go(menu.agent, "invalid_input", agent=True)
        return self._collect(menu, Play(menu.invalid_prompt))

    def _speech(self, menu: Menu, event: SpeechResult) -> Step:
        text = event.text.strip()
        if not text:
            return self._no_input(menu)
        if not event.confidence >= self.config.speech.min_confidence:  # NaN counts as low
            self.path.append("speech:low")
            return self._collect(menu)
        hit = _match_speech(menu, text)
        if hit is None:
            return self._invalid(menu, "speech")
        word, key = hit
        self.path.append(f"speech:{word}")
        return self._key(menu, key)

    # -- destinations

    def _go(self, dest: Destination, reason: str, *, agent: bool = False, push: bool = True) -> Step:
        """Follow `dest` to the next Collect or to a Route, failing open on anything broken.

        ``agent``: `dest` stands for a human, so only a queue, transfer or dial may end
        it (anything else falls back to the general queue).
        """
        cfg = self.config
        general = QueueDest(queue=cfg.center.general_queue)
        plays: list[Play] = []
        for _ in range(MAX_REDIRECTS):
            if isinstance(dest, MenuDest):
                self._entered_menu = True  # from here on, nothing may hang up (even a closed menu)
                menu = cfg.menus.get(dest.menu)
                if agent:
                    self.path.append("fail_open:agent_is_menu")
                    dest, reason = general, "fail_open"
                    continue
                if menu is None:
                    self.path.append(f"fail_open:unknown_menu:{dest.menu}")
                    dest, reason, agent = self._agent_dest(), "fail_open", True
                    continue
                if menu.hours and not is_open(cfg.hours.get(menu.hours), self.now, cfg.center.timezone):
                    self.path.append(f"closed:{dest.menu}")
                    if menu.closed is None:
                        dest, agent = menu.agent, True
                    else:
                        dest = menu.closed
                    reason = "closed"
                    continue
                if push and self.menu is not None and self.menu != dest.menu:
                    self._stack.append(self.menu)
                self.menu = dest.menu
                self._timeouts = self._invalids = 0
                self.path.append(f"menu:{dest.menu}")
                return self._collect(menu, *plays)
            if isinstance(dest, AnnounceDest):
                self.path.append(f"announce:{dest.prompt}")
                plays.append(Play(dest.prompt, interruptible=False))
                if dest.then is not None:
                    dest = dest.then
                elif agent:
                    dest = general
                else:
                    dest, agent = self._agent_dest(), True
                continue
            broken = self._broken(dest, agent)
            if broken:
                self.path.append(f"fail_open:{broken}")
                if isinstance(dest, HangupDest) and not agent:
                    dest, agent = self._agent_dest(), True
                else:
                    dest = general
                reason = "fail_open"
                continue
            category = dest.category if isinstance(dest, QueueDest) else None
            if category is None and isinstance(dest, LegacyDest):
                category = cfg.legacy_lines[dest.line].category
            self.category = category
            self.route = Route(dest, category, reason)
            self.path.append(f"route:{dest.label()}")
            return Step((*plays, self.route))
        self.path.append("fail_open:loop")
        self.category = None
        self.route = Route(general, None, "fail_open")
        self.path.append(f"route:{general.label()}")
        return Step((*plays, self.route))

    def _broken(self, dest: Destination, agent: bool) -> str | None:
        """Why `dest` cannot end a menu walk here, or None when it can."""
        cfg = self.config
        if isinstance(dest, HangupDest):
            # only an explicit non-menu start (a retired line's notice) may hang up
            return "hangup" if (self._entered_menu or agent) else None
        if isinstance(dest, QueueDest):
            return None if dest.queue in cfg.queues else f"unknown_queue:{dest.queue}"
        if isinstance(dest, TransferDest):
            return None if cfg.trunk(dest.target) is not None else f"unknown_target:{dest.target}"
        if isinstance(dest, DialDest):
            return None
        if agent:
            return f"not_an_agent:{dest.label()}"
        if isinstance(dest, LegacyDest):
            return None if dest.line in cfg.legacy_lines else f"unknown_line:{dest.line}"
        if isinstance(dest, SelfServiceDest):
            return None
        return f"unknown_destination:{dest.label()}"  # pragma: no cover - the union is closed

    def _agent_dest(self) -> Destination:
        """The human for where the caller is: the current menu's agent, else the general queue."""
        menu = self.config.menus.get(self.menu) if self.menu else None
        return menu.agent if menu is not None else QueueDest(queue=self.config.center.general_queue)


def _match_speech(menu: Menu, text: str) -> tuple[str, str] | None:
    """The (word, key) whose word appears earliest in `text` (longest word on a tie), or None."""
    words = [(w, k) for k, ws in menu.speech.items() for w in ws if w]
    words += [(w, "0") for w in AGENT_WORDS]
    best: tuple[int, int, str, str] | None = None
    for word, key in words:
        at = text.find(word)
        if at >= 0 and (best is None or (at, -len(word)) < (best[0], best[1])):
            best = (at, -len(word), word, key)
    return (best[2], best[3]) if best else None
