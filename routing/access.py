"""Every caller in their language and ability (issue 18): which keys the greeting accepts, and where they go.

Pure: the call-flow core (ivr/callflow.py) asks it, so the live IVR, `hotline explain` and the
no-input figure (ivr/no_input.py) see the same choices.

* 老年人优先: `access.priority.key` — the caller skips the menu and joins the queue with app_queue priority
  (the center's list of numbers does the same without a key: `PriorityAccess.listed`);
* a language path (`access.languages`): foreign-language or dialect seats, with its own prompts;
* a campaign 专席 (`access.campaigns`): only between its dates; outside them its queue is replaced by
  `otherwise` (never a dead end).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from model.config import Config

__all__ = ["AccessChoice", "campaign_queue", "greeting_choices", "language_of_queue"]


@dataclass(frozen=True)
class AccessChoice:
    """One key the greeting accepts besides the menu's."""

    kind: Literal["priority", "language", "campaign"]
    key: str
    #: the language code or campaign name ("" for priority)
    code: str
    queue: str
    #: a prompt offering it, played after the emergency notice while keys are accepted (None: none)
    offer: str | None

    @property
    def label(self) -> str:
        """How the ticket's IVR path and `explain` name it: `priority`, `language:en`, `campaign:NAME`."""
        return self.kind if self.kind == "priority" else f"{self.kind}:{self.code}"


def greeting_choices(config: Config, day: dt.date) -> list[AccessChoice]:
    """The keys accepted during the greeting on `day`, in offer order: languages, campaigns on that day, priority."""
    a = config.access
    out = [AccessChoice("language", lang.key, code, lang.queue, lang.offer)
           for code, lang in a.languages.items() if lang.key]
    out += [AccessChoice("campaign", c.key, name, c.queue, c.offer)
            for name, c in a.campaigns.items() if c.key and c.on(day)]
    if a.priority.key:
        out.append(AccessChoice("priority", a.priority.key, "", a.priority.queue or config.center.general_queue,
                                a.priority.offer))
    return out


def campaign_queue(config: Config, queue: str, day: dt.date) -> tuple[str, str | None]:
    """A queue a caller is about to join, with the campaigns' dates applied: (queue, note or None)."""
    for name, c in config.access.campaigns.items():
        if c.queue == queue and not c.on(day):
            to = c.otherwise or config.center.general_queue
            return to, f"campaign {name} ({c.name}) runs {c.start}..{c.end}: queue:{to} instead"
    return queue, None


def language_of_queue(config: Config, queue: str) -> str | None:
    """The language code whose seats `queue` is, or None."""
    return next((code for code, lang in config.access.languages.items() if lang.queue == queue), None)
