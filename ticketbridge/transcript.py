"""A call's transcript: the caller's and the agent's utterances merged into one dialogue. Pure: no I/O.

Each direction of an answered call is recorded to its own file (MixMonitor's r()/t(), started at the
same moment), decoded separately (ivr/transcribe.py), so an utterance's side is known for certain and
its times — seconds from the recording's start — are on one clock for both sides. `merge` orders them
by time into a dialogue; the ticket keeps it as JSON in its `transcript` column (`to_json`/`from_json`),
with the suggested category (`suggest_category`: keyword rules from config, never applied without the
agent). A transcript is personal data: it is shown (`hotline tickets show`), never logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
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
class Transcript:
    utterances: tuple[Utterance, ...] = ()
    #: the category the keyword rules suggest (None: no rule matched); the agent decides
    suggested_category: str | None = None
    #: the words that made the suggestion
    suggested_by: tuple[str, ...] = ()
    #: length of the recording (s)
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def side_text(self, side: str) -> str:
        return " ".join(u.text for u in self.utterances if u.side == side)

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.utterances)


def merge(caller: Iterable[Utterance], agent: Iterable[Utterance]) -> list[Utterance]:
    """Both sides in one dialogue, by start time (the caller first on a tie: they called); empty text dropped."""
    both = [u for u in [*caller, *agent] if u.text.strip()]
    return sorted(both, key=lambda u: (u.start, SIDES.index(u.side) if u.side in SIDES else 2, u.end))


def to_json(t: Transcript) -> str:
    d: dict[str, Any] = {"v": 1, "utterances": [asdict(u) for u in t.utterances],
                         "suggested_category": t.suggested_category, "suggested_by": list(t.suggested_by),
                         "duration_s": t.duration_s}
    if t.extra:
        d["extra"] = t.extra
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


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
    return Transcript(tuple(utts), d.get("suggested_category"), tuple(d.get("suggested_by") or ()),
                      float(d.get("duration_s") or 0.0), dict(d.get("extra") or {}))


def _clock(s: float) -> str:
    m, sec = divmod(max(0, int(s)), 60)
    return f"{m:02d}:{sec:02d}"


def dialogue_lines(t: Transcript) -> list[str]:
    """`[00:03] 市民: 我想投诉噪音` — one line per utterance, in time order."""
    return [f"[{_clock(u.start)}] {LABELS.get(u.side, u.side)}: {u.text}" for u in t.utterances]


def _flat(text: str) -> str:
    return "".join(text.split()).lower()


def suggest_category(caller_text: str, agent_text: str, rules: Mapping[str, Sequence[str]]
                     ) -> tuple[str | None, tuple[str, ...]]:
    """The category whose words are heard most (a word the caller says counts 2, the agent's 1), and those
    words; (None, ()) when no word of any rule is heard. Ties go to the category listed first in the rules
    (the city's classification standard puts the more specific first). Spaces are ignored."""
    caller, agent = _flat(caller_text), _flat(agent_text)
    best: tuple[float, str, tuple[str, ...]] | None = None
    for category, words in rules.items():
        score, hits = 0.0, []
        for w in words:
            ww = _flat(w)
            if not ww:
                continue
            n = 2 * caller.count(ww) + agent.count(ww)
            if n:
                score += n
                hits.append(w)
        if score and (best is None or score > best[0]):
            best = (score, category, tuple(hits))
    return (best[1], best[2]) if best else (None, ())


def build(caller: Iterable[Utterance], agent: Iterable[Utterance], rules: Mapping[str, Sequence[str]],
          duration_s: float = 0.0) -> Transcript:
    """The transcript of one call: the merged dialogue and the suggested category."""
    utts = merge(caller, agent)
    t = Transcript(tuple(utts), duration_s=duration_s)
    cat, by = suggest_category(t.side_text("caller"), t.side_text("agent"), rules)
    return Transcript(t.utterances, cat, by, duration_s)


def transcript_lines(raw: str | None) -> list[str]:
    """A ticket's transcript as printed (`hotline tickets show`): the suggestion, then the dialogue; [] if none."""
    t = from_json(raw)
    if t is None:
        return []
    out = []
    if t.suggested_category:
        out.append(f"  suggested category {t.suggested_category} (heard: {', '.join(t.suggested_by)}; "
                   f"the agent decides)")
    out += ["  " + line for line in dialogue_lines(t)]
    return out


def transcript_dict(raw: str | None) -> dict[str, Any] | None:
    """A ticket's transcript as JSON data (`hotline tickets show --json`); None if none."""
    t = from_json(raw)
    return None if t is None else json.loads(to_json(t))
