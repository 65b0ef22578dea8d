"""A call's transcript: the caller's and the agent's utterances merged into one dialogue. Pure: no I/O.

Each direction of an answered call is recorded to its own file (MixMonitor's r()/t(), started at the
same moment), decoded separately (ivr/transcribe.py), so an utterance's side is known for certain and
its times — seconds from the recording's start — are on one clock for both sides. `merge` orders them
by time into a dialogue; the ticket keeps it as JSON in its `transcript` column (`to_json`/`from_json`),
with the suggestion made from it (`Suggestion`: category, the city's sub-classification, department, score
and the words heard, by ticketbridge/categorize.py — never applied without the agent) and the summary fields
(`Summary`: 诉求摘要, places, times, masked numbers the caller said). A transcript is personal data: it is
shown (`hotline tickets show`, the agent's screen pop), never logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Side = Literal["caller", "agent"]
SIDES: tuple[Side, ...] = ("caller", "agent")
#: what a side is called in the printed dialogue
LABELS: dict[str, str] = {"caller": "市民", "agent": "座席"}


@dataclass(frozen=True)
class Utterance:
    side: str
    #: seconds from the start of the recording
    start: float
    end: float
    text: str
    #: mean word confidence 0..1
    conf: float = 0.0


@dataclass(frozen=True)
class Evidence:
    """A word that made a suggestion: who said it and how often."""

    word: str
    side: str
    count: int = 1


@dataclass(frozen=True)
class Suggestion:
    """What a classifier suggests for the call; the agent decides (nothing applies it by itself)."""

    #: a national category (model.destinations.Category)
    category: str
    #: the city's sub-classification (the rule's name), '' none
    subcategory: str = ""
    #: 承办单位, '' none
    department: str = ""
    score: float = 0.0
    evidence: tuple[Evidence, ...] = ()
    #: which classifier made it (transcripts.classifier)
    classifier: str = ""

    @property
    def words(self) -> tuple[str, ...]:
        out: list[str] = []
        for e in self.evidence:
            if e.word not in out:
                out.append(e.word)
        return tuple(out)


@dataclass(frozen=True)
class Summary:
    """Fields taken from what the caller said, word for word (ticketbridge/categorize.py `summarize`)."""

    #: 诉求摘要: the caller's first long utterance, cut short, numbers masked ('' none)
    request: str = ""
    #: when it was said (s from the recording's start)
    request_at: float | None = None
    #: 地点: place names and addresses heard
    places: tuple[str, ...] = ()
    #: 时间: times mentioned
    times: tuple[str, ...] = ()
    #: 提及的号码: numbers said, masked
    numbers: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.request or self.places or self.times or self.numbers)


@dataclass(frozen=True)
class Transcript:
    utterances: tuple[Utterance, ...] = ()
    #: the classifier's suggestion (None: nothing matched); the agent decides
    suggestion: Suggestion | None = None
    summary: Summary = Summary()
    #: length of the recording (s)
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def side_text(self, side: str) -> str:
        return " ".join(u.text for u in self.utterances if u.side == side)

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.utterances)

    @property
    def suggested_category(self) -> str | None:
        return self.suggestion.category if self.suggestion else None

    @property
    def suggested_by(self) -> tuple[str, ...]:
        """The words that made the suggestion."""
        return self.suggestion.words if self.suggestion else ()


def merge(caller: Iterable[Utterance], agent: Iterable[Utterance]) -> list[Utterance]:
    """Both sides in one dialogue, by start time (the caller first on a tie: they called); empty text dropped."""
    both = [u for u in [*caller, *agent] if u.text.strip()]
    return sorted(both, key=lambda u: (u.start, SIDES.index(u.side) if u.side in SIDES else 2, u.end))


def suggestion_dict(s: Suggestion | None) -> dict[str, Any] | None:
    return None if s is None else {**asdict(s), "words": list(s.words)}


def summary_dict(s: Summary) -> dict[str, Any]:
    return asdict(s)


def to_json(t: Transcript) -> str:
    d: dict[str, Any] = {"v": 2, "utterances": [asdict(u) for u in t.utterances],
                         "suggestion": suggestion_dict(t.suggestion), "summary": summary_dict(t.summary),
                         # v1 readers' fields
                         "suggested_category": t.suggested_category, "suggested_by": list(t.suggested_by),
                         "duration_s": t.duration_s}
    if t.extra:
        d["extra"] = t.extra
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def _strs(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in v) if isinstance(v, list) else ()


def _suggestion(d: dict[str, Any]) -> Suggestion | None:
    s = d.get("suggestion")
    if isinstance(s, dict) and s.get("category"):
        ev = tuple(Evidence(str(e.get("word", "")), str(e.get("side", "?")), int(e.get("count", 1)))
                   for e in s.get("evidence") or () if isinstance(e, dict))
        return Suggestion(str(s["category"]), str(s.get("subcategory") or ""), str(s.get("department") or ""),
                          float(s.get("score") or 0.0), ev, str(s.get("classifier") or ""))
    if d.get("suggested_category"):  # a v1 transcript: the category and its words only
        words = _strs(d.get("suggested_by"))
        return Suggestion(str(d["suggested_category"]), evidence=tuple(Evidence(w, "?") for w in words),
                          score=float(len(words)), classifier="keywords")
    return None


def _summary(d: dict[str, Any]) -> Summary:
    s = d.get("summary")
    if not isinstance(s, dict):
        return Summary()
    at = s.get("request_at")
    return Summary(str(s.get("request") or ""), float(at) if isinstance(at, (int, float)) else None,
                   _strs(s.get("places")), _strs(s.get("times")), _strs(s.get("numbers")))


def from_json(raw: str | None) -> Transcript | None:
    """The transcript stored on a ticket; None when there is none. Plain text (an older ticket's free
    text) becomes one utterance of unknown side rather than an error."""
    if not raw or not raw.strip():
        return None
    try:
        d = json.loads(raw)
    except ValueError:
        d = None
    if not isinstance(d, dict) or not isinstance(d.get("utterances"), list):
        return Transcript((Utterance("?", 0.0, 0.0, raw.strip()),))
    utts = []
    for u in d["utterances"]:
        if isinstance(u, dict):
            utts.append(Utterance(str(u.get("side", "?")), float(u.get("start", 0.0)), float(u.get("end", 0.0)),
                                  str(u.get("text", "")), float(u.get("conf", 0.0))))
    return Transcript(tuple(utts), _suggestion(d), _summary(d), float(d.get("duration_s") or 0.0),
                      dict(d.get("extra") or {}))


def _clock(s: float) -> str:
    m, sec = divmod(max(0, int(s)), 60)
    return f"{m:02d}:{sec:02d}"


def dialogue_lines(t: Transcript) -> list[str]:
    """`[00:03] 市民: 我想投诉噪音` — one line per utterance, in time order."""
    return [f"[{_clock(u.start)}] {LABELS.get(u.side, u.side)}: {u.text}" for u in t.utterances]


def transcript_lines(raw: str | None) -> list[str]:
    """A ticket's transcript as printed (`hotline tickets show`): the suggestion, then the dialogue; [] if none."""
    t = from_json(raw)
    if t is None:
        return []
    out = ["  " + line for line in suggestion_lines(t)]
    out += ["  " + line for line in dialogue_lines(t)]
    return out


def suggestion_lines(t: Transcript) -> list[str]:
    """The suggestion and the summary as `hotline tickets show` prints them (nothing when there is none)."""
    out = []
    s = t.suggestion
    if s is not None:
        where = " / ".join(x for x in (s.subcategory, s.department) if x)
        heard = ", ".join(f"{e.word}×{e.count} {LABELS.get(e.side, e.side)}" for e in s.evidence)
        out.append(f"suggested category {s.category}" + (f" ({where})" if where else "")
                   + f", score {s.score:g}, heard: {heard or '-'}; by {s.classifier or '?'}, the agent decides")
    m = t.summary
    if m.request:
        at = f"[{_clock(m.request_at)}] " if m.request_at is not None else ""
        out.append(f"诉求摘要: {at}{m.request}")
    for label, values in (("地点", m.places), ("时间", m.times), ("提及的号码", m.numbers)):
        if values:
            out.append(f"{label}: {'、'.join(values)}")
    return out


def transcript_dict(raw: str | None) -> dict[str, Any] | None:
    """A ticket's transcript as JSON data (`hotline tickets show --json`); None if none."""
    t = from_json(raw)
    return None if t is None else json.loads(to_json(t))
