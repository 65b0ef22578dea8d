"""From a call's transcript to what the agent is offered (issue 17 item 2): a suggested category with the
city's sub-classification and department, and a few summary fields. Pure, apart from loading a plugin.

**The suggestion** comes from a classifier named by `transcripts.classifier`:
- `keywords` (built in, `KeywordClassifier`): the rules of `transcripts.categories` (the city's
  classification standard: rule name → national category, department, words with weights). Each word heard
  scores its weight × (`caller_weight` when the caller says it, 1 when the agent does) × the rule's weight;
  the rule scoring most wins (the first listed on a tie: put the specific before the general), if it reaches
  `min_score`. The words, who said them and how often are kept as evidence.
- another one, trusted code installed beside the hotline: `package.module:factory`, or a name registered in
  the Python entry-point group `hotline12345.classifiers` (a package's `[project.entry-points.
  "hotline12345.classifiers"] mine = "package.module:factory"`). `factory(settings)` gets the `transcripts`
  settings and returns an object with `classify(transcript) -> Suggestion | None` (the `Classifier`
  protocol). Its suggestion is checked (`checked`: a national category, a number score) like ours.

**The summary** (`summarize`, from the caller's side only, word for word — nothing is invented): 诉求摘要 the
caller's first utterance of `request_min_chars` or more, cut to `request_max_chars`; 地点 the configured
place names heard, and `place_patterns` matched over the words as the recogniser spaced them (a pattern's
Han run stops at a word boundary: "[一-龥]{1,6} ?区" finds 朝阳区, not 我住在朝阳区); 时间 the times
mentioned (`time_patterns`, over the text without spaces); 提及的号码 runs of digits
(spoken 一二三/幺 too) of `number_min_digits` or more, masked. Long numbers are masked in the 诉求摘要 too.

Nothing here applies anything: the agent sees the suggestion on the screen pop and takes it into the intake
form with one click, then saves (live/pages); `hotline tickets show` prints it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from model.config import Transcripts
from model.destinations import Category
from model.privacy import mask_number
from model.transcript_rules import ENTRY_POINT_GROUP, KEYWORDS, SummaryRules
from ticketbridge.quality import to_digits
from ticketbridge.transcript import Evidence, Suggestion, Summary, Transcript, Utterance

_HAN = "\u3400-\u9fff"
#: a digit, written or spoken
_DIGIT_CHARS = "0-9零〇一幺二两三四五六七八九"


@runtime_checkable
class Classifier(Protocol):
    """Suggests a category for a transcript (None: no idea). Must be quick and never raise on odd text."""

    def classify(self, transcript: Transcript) -> Suggestion | None: ...


class ClassifierNotFound(LookupError):
    """`transcripts.classifier` names nothing that can be loaded; the message says what exists."""


class BadSuggestion(ValueError):
    """A classifier answered something that cannot be stored (the message holds no transcript text)."""


def flat(text: str) -> str:
    """Text compared with keywords: no spaces (vosk spaces Chinese words apart), lower case."""
    return "".join(text.split()).lower()


def tidy(text: str) -> str:
    """Text shown: the spaces vosk puts between Han words removed, other spaces kept (Korean, Latin)."""
    text = " ".join(text.split())
    return re.sub(rf"(?<=[{_HAN}]) (?=[{_HAN}])", "", text)


# ---------------------------------------------------------------------------------------------- keywords
class KeywordClassifier:
    """The built-in classifier: `transcripts.categories` word rules."""

    name = KEYWORDS

    def __init__(self, settings: Transcripts) -> None:
        self.rules = list(settings.categories)
        self.caller_weight = settings.caller_weight
        self.min_score = settings.min_score

    def classify(self, transcript: Transcript) -> Suggestion | None:
        texts = {side: flat(transcript.side_text(side)) for side in ("caller", "agent")}
        side_weight = {"caller": self.caller_weight, "agent": 1.0}
        best: Suggestion | None = None
        for rule in self.rules:
            score, evidence = 0.0, []
            for word, weight in rule.keywords.items():
                w = flat(word)
                for side, text in texts.items():
                    n = text.count(w) if w else 0
                    if n:
                        score += n * weight * side_weight[side] * rule.weight
                        evidence.append(Evidence(word, side, n))
            if score >= self.min_score and (best is None or score > best.score):
                best = Suggestion(rule.category.value, rule.name, rule.department, round(score, 3),
                                  tuple(evidence), KEYWORDS)
        return best


# ---------------------------------------------------------------------------------------------- plugins
def _builtin(settings: Transcripts) -> Classifier:
    return KeywordClassifier(settings)


def available() -> list[str]:
    """The classifier names that can be given: the built-in one and the entry points installed."""
    names = [KEYWORDS]
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in names:
            names.append(ep.name)
    return names


def _factory(name: str) -> Any:
    if name == KEYWORDS:
        return _builtin
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            obj: Any = importlib.import_module(module)
        except ImportError as e:
            raise ClassifierNotFound(f"transcripts.classifier {name!r}: cannot import {module!r} ({e})") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ClassifierNotFound(f"transcripts.classifier {name!r}: {module!r} has no {attr!r}")
            obj = getattr(obj, part)
        return obj
    found = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name))
    if not found:
        raise ClassifierNotFound(
            f"transcripts.classifier {name!r}: no such classifier (built in: {KEYWORDS}; entry points in "
            f"group {ENTRY_POINT_GROUP}: {', '.join(available()[1:]) or 'none installed'}; or give "
            "'package.module:factory')")
    try:
        return found[0].load()
    except Exception as e:  # noqa: BLE001 - a broken plugin is a configuration error, said as one
        raise ClassifierNotFound(f"transcripts.classifier {name!r}: entry point {found[0].value!r} "
                                 f"does not load: {type(e).__name__}: {e}") from None


def load_classifier(settings: Transcripts) -> Classifier:
    """The classifier `settings.classifier` names, made from the settings; ClassifierNotFound when it cannot
    be loaded, TypeError when what it names does not make a classifier."""
    name = settings.classifier
    factory = _factory(name)
    if not callable(factory):
        raise TypeError(f"transcripts.classifier {name!r} is not callable: it must be factory(settings)")
    made = factory(settings)
    if not callable(getattr(made, "classify", None)):
        raise TypeError(f"transcripts.classifier {name!r}: factory(settings) returned {type(made).__name__}, "
                        "which has no classify(transcript)")
    return made  # type: ignore[no-any-return]


def checked(s: Any, name: str) -> Suggestion | None:
    """A classifier's answer made safe to store: a national category, plain values; BadSuggestion otherwise."""
    if s is None:
        return None
    if not isinstance(s, Suggestion):
        raise BadSuggestion(f"classifier {name!r} returned {type(s).__name__}, not a Suggestion")
    try:
        category = Category(s.category)
    except ValueError:
        raise BadSuggestion(f"classifier {name!r} suggested {str(s.category)[:20]!r}, not one of "
                         + ", ".join(c.value for c in Category)) from None
    try:
        evidence = tuple(Evidence(str(e.word)[:40], str(e.side)[:10], int(e.count)) for e in tuple(s.evidence)[:50])
        score = float(s.score)
    except (AttributeError, TypeError, ValueError):
        raise BadSuggestion(f"classifier {name!r}: score must be a number and evidence Evidence items") from None
    return Suggestion(category.value, str(s.subcategory or "")[:64], str(s.department or "")[:64],
                      score, evidence, str(s.classifier or name)[:200])


# ---------------------------------------------------------------------------------------------- summary
def _digit_runs(text: str, min_digits: int) -> list[tuple[int, int, str]]:
    """(start, end, digits) of each run of written or spoken digits at least `min_digits` long."""
    out = []
    for m in re.finditer(f"[{_DIGIT_CHARS}]+", text):
        digits = to_digits(m.group())
        if len(digits) >= min_digits and digits.isdigit():
            out.append((m.start(), m.end(), digits))
    return out


def mask_numbers(text: str, min_digits: int) -> str:
    """Every run of `min_digits` or more digits (spoken ones too) masked: 13800001234 → 138******34."""
    for start, end, digits in reversed(_digit_runs(text, min_digits)):
        text = text[:start] + mask_number(digits) + text[end:]
    return text


def _found(text: str, patterns: Iterable[str]) -> list[str]:
    """Matches of the patterns in the text, in the order they occur, none inside an earlier one."""
    spans: list[tuple[int, int, str]] = []
    for p in patterns:
        for m in re.finditer(p, text):
            if m.group() and not any(s < m.end() and m.start() < e for s, e, _ in spans):
                spans.append((m.start(), m.end(), m.group()))
    return [found for _, _, found in sorted(spans)]


def summarize(utterances: Iterable[Utterance], rules: SummaryRules) -> Summary:
    """The summary fields of what the caller said (see the module's docstring)."""
    caller = [u for u in utterances if u.side == "caller" and u.text.strip()]
    request, request_at = "", None
    for u in caller:
        if len(flat(u.text)) >= rules.request_min_chars:
            shown = mask_numbers(tidy(u.text), rules.number_min_digits)
            request = shown if len(shown) <= rules.request_max_chars else shown[:rules.request_max_chars - 1] + "…"
            request_at = u.start
            break
    by_flat = {flat(p): p for p in rules.places if flat(p)}  # a configured name is shown as configured
    places: list[str] = []
    times: list[str] = []
    numbers: list[str] = []
    for u in caller:  # utterance by utterance: nothing is joined across two of them
        text = flat(u.text)
        # names anywhere; patterns over the words as the recogniser spaced them, so that "[一-龥]{1,6} ?区"
        # finds "朝阳 区" in "我 住在 朝阳 区" rather than "我住在朝阳区"
        spaced = " ".join(u.text.split())
        found = sorted([(text.find(k), v) for k, v in by_flat.items() if k in text]
                       + [(text.find(flat(f)), tidy(f)) for f in _found(spaced, rules.place_patterns)])
        _add(places, (v for _, v in found))
        _add(times, _found(text, rules.time_patterns))
        _add(numbers, (mask_number(d) for _, _, d in _digit_runs(text, rules.number_min_digits)))
    n = rules.max_items
    return Summary(request, request_at, tuple(places[:n]), tuple(times[:n]), tuple(numbers[:n]))


def _add(into: list[str], found: Iterable[str]) -> None:
    for f in found:
        if f not in into:
            into.append(f)


def suggest(t: Transcript, classifier: Classifier | None, settings: Transcripts, *, name: str = "") -> Transcript:
    """The transcript with its summary and, when a classifier is given, its checked suggestion."""
    s = checked(classifier.classify(t), name or settings.classifier) if classifier is not None else None
    return Transcript(t.utterances, s, summarize(t.utterances, settings.summary), t.duration_s, t.extra)
