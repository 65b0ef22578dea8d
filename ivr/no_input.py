"""How long a caller who presses nothing waits from answer to a queue: the third driver of the call flow.

GB/T 33358: phone intake must not force menu navigation, so a caller who cannot use
keys (an elderly caller) must reach a queue quickly. `no_input_time()` runs
`ivr.callflow.inbound_flow` — the generator the live IVR and `hotline explain` run —
answering every Collect with a Timeout and every Play with no key, and adds up:

* every prompt played (its duration, see below), a menu's prompt before each wait,
* each menu's ``timeout_s`` (the wait after its prompt),
* and, when the route is a queue, what the dialplan plays before ``Queue()``: the
  recording notice (``recording.notice``), played once per call.

It is the worst case of the no-input path: prompts are played to their end. A
self-service reached without a key (not in a sane config) is taken to end at an agent.

Prompt durations come from a function of the prompt id. `estimate_seconds` is the
default: the built WAV's length when given one, else the text's length at
``CHARS_PER_SECOND`` (espeak-ng at our speed reads about 4.5-5 Chinese characters
a second, a human voice about 4; 4 keeps the estimate on the slow, safe side). Pure:
the WAV reading is in `wav_seconds`, which callers pass in.
"""

from __future__ import annotations

import datetime as dt
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ivr.callflow import SelfService, SetRoute, inbound_flow
from ivr.menu import Collect, Play, Timeout
from model.config import Config
from model.destinations import QueueDest

__all__ = ["CHARS_PER_SECOND", "NoInputTime", "describe", "entries", "estimate_seconds", "no_input_time", "over_budget",
           "wav_seconds"]

#: speaking rate for a prompt without audio: characters (digits read one by one) per second
CHARS_PER_SECOND = 4.0
#: the same for a prompt in a language written in Latin letters (access.languages, e.g. English): espeak-ng's
#: en-us reads "For English, press 8." (18 characters) in 1.43 s at our speed; 11 keeps it on the slow side
LATIN_CHARS_PER_SECOND = 11.0


@dataclass(frozen=True)
class NoInputTime:
    """Seconds from answer to the route for a silent caller, with what makes them up."""

    seconds: float
    #: (what, seconds) in call order: `play:ID`, `wait:MENU_PROMPT`, `dialplan:ID`
    steps: list[tuple[str, float]] = field(default_factory=list)
    #: the route's label (`queue:general`, ...)
    route: str = ""
    queued: bool = False


def estimate_seconds(config: Config, wav_seconds_of: Callable[[str], float | None] | None = None
                     ) -> Callable[[str], float]:
    """A prompt id → seconds function: the WAV's length when `wav_seconds_of` knows it, else text length."""
    voices = config.access.prompt_voices()
    def seconds(prompt: str) -> float:
        if wav_seconds_of is not None:
            known = wav_seconds_of(prompt)
            if known is not None:
                return known
        text = config.prompts.get(prompt, "")
        chars = sum(1 for ch in text if not ch.isspace())
        latin = prompt in voices and text.isascii()
        return chars / (LATIN_CHARS_PER_SECOND if latin else CHARS_PER_SECOND)
    return seconds


def wav_seconds(prompts_dir: Path) -> Callable[[str], float | None]:
    """Reads `<prompts_dir>/<id>.wav` lengths (None when absent or unreadable)."""
    def of(prompt: str) -> float | None:
        try:
            with wave.open(str(prompts_dir / f"{prompt}.wav"), "rb") as w:
                return w.getnframes() / float(w.getframerate())
        except (OSError, EOFError, wave.Error):
            return None
    return of


def no_input_time(config: Config, dialed: str, now: dt.datetime,
                  seconds: Callable[[str], float] | None = None) -> NoInputTime:
    """Worst-case seconds from answer to the route for a caller to `dialed` who presses nothing."""
    dur = seconds or estimate_seconds(config)
    steps: list[tuple[str, float]] = []
    flow = inbound_flow(config, dialed, "", now)
    answer: object = None
    route = ""
    queued = False
    try:
        while True:
            action = flow.send(answer)
            answer = None
            if isinstance(action, Play):
                steps.append((f"play:{action.prompt}", dur(action.prompt)))
            elif isinstance(action, Collect):
                steps.append((f"play:{action.prompt}", dur(action.prompt)))
                steps.append((f"wait:{action.prompt}", float(action.timeout_s)))
                answer = Timeout()
            elif isinstance(action, SelfService):
                answer = QueueDest(queue=config.center.general_queue)
            elif isinstance(action, SetRoute):
                route = action.dest.label()
                queued = isinstance(action.dest, QueueDest)
    except StopIteration:
        pass
    if queued and config.recording.notice:
        steps.append((f"dialplan:{config.recording.notice}", dur(config.recording.notice)))
    return NoInputTime(round(sum(s for _, s in steps), 2), steps, route, queued)


def entries(config: Config) -> list[str]:
    """Every number the center answers: the center number, then each legacy line."""
    return [config.center.number, *config.legacy_lines]


def over_budget(config: Config, now: dt.datetime, seconds: Callable[[str], float] | None = None
                ) -> list[tuple[str, NoInputTime]]:
    """The entries whose silent caller reaches their route later than `center.no_input_budget_s`.

    A route that hangs up (a retired line's notice) is not a wait for an agent and is left out.
    """
    out = []
    for number in entries(config):
        t = no_input_time(config, number, now, seconds)
        if t.route != "hangup" and t.seconds > config.center.no_input_budget_s:
            out.append((number, t))
    return out


def describe(t: NoInputTime) -> str:
    """`18.8 s to queue:general (play:greeting 2.2 + wait:main_menu 3.0 + ...)`."""
    parts = " + ".join(f"{what} {s:.1f}" for what, s in t.steps)
    return f"{t.seconds:.1f} s to {t.route}" + (f" ({parts})" if parts else "")
