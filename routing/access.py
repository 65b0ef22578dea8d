"""Every caller in their language and ability (issue 18): which keys the greeting accepts, and where they go.

Pure: the call-flow core (ivr/callflow.py) asks it, so the live IVR, `hotline explain` and the
no-input figure (ivr/no_input.py) see the same choices.

* 老年人优先: `access.priority.key` — the caller skips the menu and joins the queue with app_queue priority
  (the center's list of numbers does the same without a key: `PriorityAccess.listed`);
* a language path (`access.languages`): foreign-language or dialect seats, with its own prompts;
* a video call: the sign-language seats (`video: true`), with no spoken greeting or menu;
* a campaign 专席 (`access.campaigns`): only between its dates; outside them its queue is replaced by
  `otherwise` (never a dead end).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from model.config import Config

__all__ = ["AccessChoice", "campaign_queue", "greeting_choices", "language_of_queue", "video_language",
           "video_problems", "video_queue"]


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


def video_language(config: Config) -> str | None:
    """The code of the language whose seats take video calls (sign language: `video: true`), or None."""
    return next((code for code, lang in config.access.languages.items() if lang.video), None)


def video_queue(config: Config) -> str | None:
    """The queue a call that arrives with video joins (the sign-language seats), or None: video changes nothing."""
    code = video_language(config)
    return config.access.languages[code].queue if code else None


#: video codecs Asterisk can pass through between two legs (format names as PJSIP's `allow` takes them)
VIDEO_CODECS = frozenset({"h264", "vp8", "vp9", "h263", "h263p"})


def video_problems(config: Config) -> list[tuple[tuple, str]]:
    """The sign-language (video) settings: (field path, message) for each problem (`hotline check`)."""
    out: list[tuple[tuple, str]] = []
    sip = config.asterisk.sip
    for i, codec in enumerate(sip.video_codecs):
        if codec not in VIDEO_CODECS:
            out.append((("asterisk", "sip", "video_codecs", i),
                        f"unknown video codec {codec!r} (one of {', '.join(sorted(VIDEO_CODECS))})"))
    langs = [code for code, lang in config.access.languages.items() if lang.video]
    uses = ([("access", "languages", c, "video") for c in langs]
            + [("seats", e, "video") for e, s in config.seats.items() if s.video]
            + [("carriers", n, "video") for n, c in config.carriers.items() if c.video])
    if uses and not sip.video_codecs:
        out.append((("asterisk", "sip", "video_codecs"), f"{'.'.join(uses[0])} needs at least one video codec"))
    for code in langs[1:]:
        out.append((("access", "languages", code, "video"),
                    f"only one language takes the video calls: {langs[0]} already does"))
    for code in langs[:1]:
        q = config.queues.get(config.access.languages[code].queue)
        if q is None:
            continue  # the undefined queue is reported by the graph check
        cams = [m for m in q.members if m in config.seats and config.seats[m].video]
        if not cams:
            out.append((("queues", config.access.languages[code].queue, "members"),
                        f"the sign-language queue ({code}) has no seat with video: true among its members: video "
                        "callers would reach a phone without a camera"))
    if langs and not any(c.video for c in config.carriers.values()) and config.carriers:
        out.append((("carriers",), f"no carrier has video: true: video calls from outside cannot reach the "
                                   f"sign-language seats ({langs[0]})"))
    return out
