"""Issue 17 item 2: the suggestion (category, the city's sub-classification, department) and the summary fields
made from a transcript, and loading another classifier by name (a real entry point, a module:attr path)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from admin.check import classifier_problems
from model.config import Transcripts
from model.loading import default_config_path, load_config
from model.transcript_rules import ENTRY_POINT_GROUP, SummaryRules
from ticketbridge.categorize import (BadSuggestion, ClassifierNotFound, KeywordClassifier, available, checked,
                                     load_classifier, mask_numbers, suggest, summarize, tidy)
from ticketbridge.transcript import (Evidence, Suggestion, Summary, Transcript, Utterance, from_json, merge,
                                     suggestion_lines, to_json)


def U(side: str, start: float, text: str) -> Utterance:
    return Utterance(side, start, start + 1.0, text, 0.9)


def T(*utts: Utterance) -> Transcript:
    return Transcript(tuple(merge([u for u in utts if u.side == "caller"], [u for u in utts if u.side == "agent"])))


def settings(**kw: object) -> Transcripts:
    base: dict[str, object] = {"categories": [
        {"name": "噪音扰民", "category": "投诉举报", "department": "生态环境局", "keywords": {"噪音": 2, "太吵": 1}},
        {"name": "供水", "category": "求助", "department": "自来水公司", "keywords": ["停水", "漏水"]},
        {"name": "一般咨询", "category": "咨询", "weight": 0.5, "keywords": ["请问", "咨询"]}]}
    base.update(kw)
    return Transcripts.model_validate(base)


# --------------------------------------------------------------------------- the keyword classifier


def test_the_rule_with_the_most_weight_heard_wins_with_its_department_and_evidence() -> None:
    s = settings()
    got = KeywordClassifier(s).classify(T(U("agent", 0, "您好 请问 有 什么 可以 帮您"),
                                          U("caller", 2, "楼下 噪音 太吵 了 噪音 一直 不停")))
    assert got == Suggestion("投诉举报", "噪音扰民", "生态环境局", 10.0,
                             (Evidence("噪音", "caller", 2), Evidence("太吵", "caller", 1)), "keywords")
    # 噪音 ×2 said by the caller (weight 2, caller ×2) = 8, 太吵 = 2; the agent's 请问 scores 一般咨询 0.5 only


def test_weights_sides_ties_and_the_minimum() -> None:
    s = settings()
    k = KeywordClassifier(s)
    # the caller's word counts caller_weight (2) times the agent's: 漏水 by the agent (1) < 噪音 by the caller (4)
    assert k.classify(T(U("caller", 1, "噪音"), U("agent", 0, "漏水"))).category == "投诉举报"  # type: ignore[union-attr]
    s2 = settings(caller_weight=0)
    assert KeywordClassifier(s2).classify(T(U("caller", 1, "噪音"), U("agent", 0, "漏水"))).category == "求助"  # type: ignore[union-attr]
    # a tie goes to the rule listed first: 太吵 (1×2) against 停水 + 漏水 (1×2 each)? no: 4 > 2; 太吵 vs 停水: tie
    assert k.classify(T(U("caller", 1, "太吵 停水"))).subcategory == "噪音扰民"  # type: ignore[union-attr]
    # the rule's weight: 请问 by the caller scores 2 × 0.5 = 1 (min_score 1: suggested); raise the minimum: none
    assert k.classify(T(U("caller", 1, "请问"))).category == "咨询"  # type: ignore[union-attr]
    assert KeywordClassifier(settings(min_score=1.5)).classify(T(U("caller", 1, "请问"))) is None
    # spaces and case never hide a word; nothing heard, nothing suggested
    assert k.classify(T(U("caller", 1, "噪 音"))).category == "投诉举报"  # type: ignore[union-attr]
    assert k.classify(T(U("caller", 1, "今天 天气 很好"))) is None
    assert KeywordClassifier(Transcripts()).classify(T(U("caller", 1, "噪音"))) is None  # no rules


def test_rules_are_checked_when_the_config_loads() -> None:
    r = settings().categories[1]
    assert r.keywords == {"停水": 1.0, "漏水": 1.0}  # a list: weight 1 each
    for bad, message in (
            ({"name": "x", "category": "表扬", "keywords": ["好"]}, "category"),
            ({"name": "x", "category": "咨询", "keywords": [" "]}, "empty"),
            ({"name": "x", "category": "咨询", "keywords": {"好": 0}}, "above 0"),
            ({"name": "x", "category": "咨询", "keywords": []}, "at least one"),
            ({"name": "x", "category": "咨询", "keywords": ["好"], "extra": 1}, "extra")):
        with pytest.raises(ValidationError, match=message):
            Transcripts.model_validate({"categories": [bad]})
    with pytest.raises(ValidationError, match="given twice"):
        Transcripts.model_validate({"categories": [{"name": "x", "category": "咨询", "keywords": ["a"]}] * 2})
    with pytest.raises(ValidationError, match="not a regular expression"):
        SummaryRules(place_patterns=["(路"])


def test_the_shipped_rules_in_chinese() -> None:
    cfg = load_config(default_config_path())
    t = cfg.transcripts
    assert t.classifier == "keywords" and len(t.categories) >= 5
    got = suggest(T(U("agent", 0, "您好 12345"),
                    U("caller", 2, "我 住在 朝阳 区 幸福 小区 楼下 广场舞 太吵 了 每天 晚上 九点 到 十一点"),
                    U("caller", 9, "地址 是 建设路 十二 号 在 人民广场 旁边")), load_classifier(t), t)
    assert got.suggestion is not None
    assert (got.suggestion.category, got.suggestion.subcategory, got.suggestion.department) == \
        ("投诉举报", "生态环境/噪音扰民", "生态环境局")
    assert got.summary.places == ("朝阳区", "幸福小区", "建设路十二号", "人民广场")
    assert got.summary.times == ("每天晚上九点", "十一点")
    # every shipped department is one the intake form offers
    from live.screenpop import departments

    assert {r.department for r in t.categories if r.department} <= set(departments(cfg))


# --------------------------------------------------------------------------- summary fields


def test_summary_is_the_callers_words_only_never_invented() -> None:
    rules = SummaryRules(places=["幸福小区"], request_max_chars=20)
    s = summarize(T(U("agent", 0, "您好 请问 您 在 哪里 幸福小区 吗"), U("caller", 2, "嗯"),
                    U("caller", 4, "我 的 电话 是 幺三八 零零 零零 幺二三四 家 在 幸福小区 昨天 下午 三点 停水 了 到 现在 还 没 来"),
                    U("caller", 9, "谢谢 请 尽快")).utterances, rules)
    # the first utterance of 6 characters or more (嗯 is not the request), numbers masked, cut to 20
    assert s.request == "我的电话是138******34家在幸…" and len(s.request) == 20 and s.request_at == 4.0
    assert s.places == ("幸福小区",)
    assert s.times == ("昨天下午三点",)
    assert s.numbers == ("138******34",)
    # the agent's words are never the caller's: an agent-only call has no summary at all
    assert not summarize(T(U("agent", 0, "您好 幸福小区 昨天 下午 三点 13800001234")).utterances, rules)
    assert summarize((), rules) == Summary()


def test_numbers_and_times_and_tidy_text() -> None:
    assert mask_numbers("打 13800001234 或 幺三八零零零零幺二三四 工单 1234", 7) == "打 138******34 或 138******34 工单 1234"
    assert tidy("我 要 投诉  Seoul  station") == "我要投诉 Seoul station"
    times = summarize([U("caller", 0, "十一月 三十 号 上午 十点 半 还有 周末 和 3月5日")], SummaryRules()).times
    assert times == ("十一月三十号", "上午十点半", "周末", "3月5日")
    # places: names as configured, patterns over the recogniser's words (a Han run stops at a space)
    rules = SummaryRules(places=["Seoul Station"], place_patterns=["[\u4e00-\u9fff]{1,6} ?区"])
    assert summarize([U("caller", 0, "我 住在 朝阳 区 近 seoul station")], rules).places == ("朝阳区", "Seoul Station")


def test_json_keeps_suggestion_and_summary_and_reads_older_transcripts() -> None:
    s = settings()
    t = suggest(T(U("agent", 0, "您好"), U("caller", 2, "楼下 噪音 太吵 电话 13800001234")), KeywordClassifier(s), s)
    back = from_json(to_json(t))
    assert back == t
    raw = json.loads(to_json(t))
    assert raw["v"] == 2 and raw["suggested_category"] == "投诉举报" and raw["suggested_by"] == ["噪音", "太吵"]
    assert raw["summary"]["numbers"] == ["138******34"]
    lines = suggestion_lines(back)
    assert lines[0] == ("suggested category 投诉举报 (噪音扰民 / 生态环境局), score 6, heard: 噪音×1 市民, 太吵×1 市民; "
                        "by keywords, the agent decides")
    assert lines[1:] == ["诉求摘要: [00:02] 楼下噪音太吵电话 138******34", "提及的号码: 138******34"]
    # a transcript stored before the suggestion had its own fields (v1)
    old = from_json(json.dumps({"v": 1, "utterances": [], "suggested_category": "咨询", "suggested_by": ["请问"]}))
    assert old is not None and old.suggested_category == "咨询" and old.suggested_by == ("请问",)
    assert old.summary == Summary()
    none = from_json(json.dumps({"v": 2, "utterances": [], "suggestion": None, "summary": None}))
    assert none is not None and none.suggestion is None and suggestion_lines(none) == []


# --------------------------------------------------------------------------- other classifiers

PLUGIN = textwrap.dedent('''
    from ticketbridge.transcript import Evidence, Suggestion

    class Mine:
        def __init__(self, settings):
            self.department = settings.categories[0].department if settings.categories else ""

        def classify(self, transcript):
            if "help" in transcript.side_text("caller"):
                return Suggestion("求助", "plugin", self.department, 0.9, (Evidence("help", "caller", 1),))
            return None

    def factory(settings):
        return Mine(settings)

    def wrong(settings):
        return Suggestion("咨询")

    class Odd:
        def __init__(self, settings):
            pass

        def classify(self, transcript):
            return Suggestion("表扬")
    ''')


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real installed distribution on sys.path: a module and a dist-info declaring its entry points."""
    (tmp_path / "hl_test_classifier.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "hl_test_classifier-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hl-test-classifier\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nmine = hl_test_classifier:factory\nbroken = hl_test_classifier:nowhere\n"
        "odd = hl_test_classifier:Odd\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("hl_test_classifier", None)


def test_a_classifier_from_an_entry_point(plugin_dir: Path) -> None:
    assert {"keywords", "mine", "broken", "odd"} <= set(available())
    s = settings(classifier="mine")
    c = load_classifier(s)
    got = suggest(T(U("caller", 1, "please help 噪音")), c, s)
    assert got.suggestion == Suggestion("求助", "plugin", "生态环境局", 0.9, (Evidence("help", "caller", 1),), "mine")
    assert got.summary.request == "please help 噪音"  # the summary is ours, whatever the classifier
    assert suggest(T(U("caller", 1, "噪音 噪音")), c, s).suggestion is None  # the plugin decides, not our rules
    # the same by its module:attr path
    assert load_classifier(settings(classifier="hl_test_classifier:factory")).classify(
        T(U("caller", 1, "help"))).category == "求助"  # type: ignore[union-attr]


def test_a_classifier_that_cannot_be_loaded_is_a_clear_error(plugin_dir: Path) -> None:
    with pytest.raises(ClassifierNotFound, match=f"no such classifier.*{ENTRY_POINT_GROUP}: .*mine"):
        load_classifier(settings(classifier="bert"))
    with pytest.raises(ClassifierNotFound, match="does not load: AttributeError"):
        load_classifier(settings(classifier="broken"))
    with pytest.raises(ClassifierNotFound, match="cannot import 'no_such_module'"):
        load_classifier(settings(classifier="no_such_module:f"))
    with pytest.raises(ClassifierNotFound, match="has no 'nothing'"):
        load_classifier(settings(classifier="hl_test_classifier:nothing"))
    with pytest.raises(TypeError, match="has no classify"):
        load_classifier(settings(classifier="hl_test_classifier:wrong"))
    # `hotline check` says it, located to the file's line
    cfg = load_config(default_config_path())
    cfg.transcripts.classifier = "bert"
    (p,) = classifier_problems(cfg, "hotline.yaml", {("transcripts", "classifier"): 7})
    assert (p.field, p.line) == ("transcripts.classifier", 7) and "'bert': no such classifier" in p.message
    cfg.transcripts.classifier = "mine"
    assert classifier_problems(cfg, "hotline.yaml", {}) == []


def test_a_suggestion_outside_the_national_categories_is_refused(plugin_dir: Path) -> None:
    with pytest.raises(BadSuggestion, match="'表扬', not one of 咨询"):
        suggest(T(U("caller", 1, "x")), load_classifier(settings(classifier="odd")), settings(classifier="odd"))
    with pytest.raises(BadSuggestion, match="not a Suggestion"):
        checked("投诉举报", "x")
    assert checked(None, "x") is None


async def test_the_worker_keeps_the_transcript_when_the_classifier_fails(plugin_dir: Path, tmp_path: Path) -> None:
    from hotline.transcriber import Job, Transcriber

    cfg = load_config(default_config_path())
    cfg.transcripts.classifier = "odd"
    tr = Transcriber(cfg, store=None, monitor_dir=tmp_path)
    job = Job("L1", "T1", "x.wav", 0.0)
    got = await tr.annotate(T(U("caller", 1, "楼下 噪音 太吵 怎么 办")), job)
    assert got.suggestion is None and got.summary.request == "楼下噪音太吵怎么办" and len(got.utterances) == 1
    # one that cannot be loaded at all: transcripts and summaries still made, no suggestion
    cfg.transcripts.classifier = "bert"
    tr = Transcriber(cfg, store=None, monitor_dir=tmp_path)
    assert tr.classifier is None
    got = await tr.annotate(T(U("caller", 1, "楼下 噪音 太吵 怎么 办")), job)
    assert got.suggestion is None and got.summary.request
    # the built-in one
    cfg.transcripts.classifier = "keywords"
    got = await Transcriber(cfg, store=None, monitor_dir=tmp_path).annotate(T(U("caller", 1, "楼下 噪音")), job)
    assert got.suggested_category == "投诉举报"
