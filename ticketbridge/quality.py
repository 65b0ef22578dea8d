"""质检: quality checks of one transcribed call, and their totals per agent. Pure: no I/O.

The rules are config `transcripts.qa` (model.config.QualityRules): the greeting said early, no
forbidden words, the ticket number read back, no long silence, no talking over the caller. A call starts
at 100 and each failed check takes its points off (never below 0); a check whose words are not
configured is not made. `hotline qa` lists the calls and the per-agent means.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from model.config import QualityRules
from ticketbridge.transcript import Transcript

#: spoken digits → digits (a recogniser writes 一二三 or 幺 for 1 on the phone)
_DIGITS = str.maketrans({"零": "0", "〇": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
                         "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"})


@dataclass(frozen=True)
class Finding:
    check: str
    #: what was found, without personal data (times, the rule's own words)
    detail: str
    points: float


@dataclass(frozen=True)
class CallScore:
    ticket_no: str
    agent: str | None
    score: float
    findings: tuple[Finding, ...] = ()


@dataclass
class AgentScore:
    agent: str
    calls: int = 0
    total: float = 0.0
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return self.total / self.calls if self.calls else 0.0


def _flat(text: str) -> str:
    return "".join(text.split()).lower()


def to_digits(text: str) -> str:
    """Spoken digits written as digits: "幺三八" → "138" (other characters unchanged)."""
    return text.translate(_DIGITS)


def spoken_digits(text: str) -> str:
    """Only the digits said, in order (Han digits included): "工单 一二 34" → "1234"."""
    return "".join(c for c in to_digits(text) if c.isdigit())


def score_call(t: Transcript, rules: QualityRules, *, ticket_no: str, agent: str | None) -> CallScore:
    pts = rules.points
    found: list[Finding] = []
    agent_utts = [u for u in t.utterances if u.side == "agent"]
    if rules.greeting:
        early = _flat(" ".join(u.text for u in agent_utts if u.start <= rules.greeting_within_s))
        if not any(_flat(g) and _flat(g) in early for g in rules.greeting):
            found.append(Finding("greeting", f"no greeting in the first {rules.greeting_within_s:g} s",
                                 pts.get("greeting", 0.0)))
    said = _flat(t.side_text("agent"))
    for w in rules.forbidden:
        n = said.count(_flat(w)) if _flat(w) else 0
        if n:
            found.append(Finding("forbidden", f"said {w!r} ×{n}", pts.get("forbidden", 0.0)))
    if rules.readback and agent_utts:
        want = "".join(c for c in ticket_no if c.isdigit())[-rules.readback_digits:]
        if want and want not in spoken_digits(t.side_text("agent")):
            found.append(Finding("readback", "the ticket number was not read back", pts.get("readback", 0.0)))
    utts = sorted(t.utterances, key=lambda u: u.start)
    spoken_until = None
    for u in utts:
        if spoken_until is not None and u.start - spoken_until > rules.max_silence_s:
            found.append(Finding("silence", f"{u.start - spoken_until:.0f} s silent at {spoken_until:.0f} s",
                                 pts.get("silence", 0.0)))
        spoken_until = u.end if spoken_until is None else max(spoken_until, u.end)
    callers = [u for u in utts if u.side == "caller"]
    for a in agent_utts:
        for c in callers:
            if c.start < a.start < c.end and min(a.end, c.end) - a.start > rules.talk_over_s:
                found.append(Finding("talk_over", f"over the caller at {a.start:.0f} s", pts.get("talk_over", 0.0)))
                break
    score = max(0.0, 100.0 - sum(f.points for f in found))
    return CallScore(ticket_no, agent, score, tuple(found))


def by_agent(scores: Iterable[CallScore]) -> list[AgentScore]:
    """Per agent (calls without an agent under "-"): calls, mean score, how often each check failed."""
    out: dict[str, AgentScore] = {}
    for s in scores:
        a = out.setdefault(s.agent or "-", AgentScore(s.agent or "-"))
        a.calls += 1
        a.total += s.score
        for f in {f.check for f in s.findings}:
            a.failed[f] = a.failed.get(f, 0) + 1
    return sorted(out.values(), key=lambda a: (a.mean, a.agent))
