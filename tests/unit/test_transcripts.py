"""Transcripts (issue 17): the dialogue merge, the suggested category, 质检 scoring, and the worker's queue."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hotline.transcriber import Transcriber
from model.config import Config, QualityRules, Transcripts
from model.contract import side_recording
from model.transcript_rules import CategoryRule
from ticketbridge.assembler import CallRecord
from ticketbridge.categorize import KeywordClassifier, suggest
from ticketbridge.quality import by_agent, score_call, spoken_digits
from ticketbridge.store import TicketStore
from ticketbridge.transcript import Transcript, Utterance, dialogue_lines, from_json, merge, to_json, transcript_lines


def U(side: str, start: float, end: float, text: str) -> Utterance:
    return Utterance(side, start, end, text, 0.9)


def rules(simple: dict[str, list[str]]) -> list[CategoryRule]:
    """category → words, as rules named after their category (no department)."""
    return [CategoryRule(name=cat, category=cat, keywords=words) for cat, words in simple.items()]  # type: ignore[arg-type]


def build(caller: list[Utterance], agent: list[Utterance], simple: dict[str, list[str]],
          duration_s: float = 0.0) -> Transcript:
    """What the worker makes of two decoded sides with the keyword classifier of these rules."""
    settings = Transcripts(categories=rules(simple))
    return suggest(Transcript(tuple(merge(caller, agent)), duration_s=duration_s), KeywordClassifier(settings), settings)


# --------------------------------------------------------------------------- the dialogue


def test_merge_orders_both_sides_by_time_and_keeps_each_side() -> None:
    caller = [U("caller", 3.0, 5.0, "我要投诉"), U("caller", 9.0, 11.0, "楼下 噪音")]
    agent = [U("agent", 0.5, 2.0, "您好 12345"), U("agent", 6.0, 8.0, "请讲"), U("agent", 12.0, 13.0, "   ")]
    d = merge(caller, agent)
    assert [(u.side, u.text) for u in d] == [("agent", "您好 12345"), ("caller", "我要投诉"), ("agent", "请讲"),
                                             ("caller", "楼下 噪音")]  # the empty utterance is dropped
    # a tie: the caller first (they called)
    assert [u.side for u in merge([U("caller", 1.0, 2.0, "a")], [U("agent", 1.0, 1.5, "b")])] == ["caller", "agent"]


def test_dialogue_prints_time_and_side_and_survives_json() -> None:
    t = build([U("caller", 65.2, 67.0, "我要投诉噪音")], [U("agent", 0.4, 2.0, "您好")], {"投诉举报": ["投诉"]}, 70.0)
    back = from_json(to_json(t))
    assert back == t
    assert dialogue_lines(back) == ["[00:00] 座席: 您好", "[01:05] 市民: 我要投诉噪音"]
    lines = transcript_lines(to_json(t))
    assert lines[0].startswith("  suggested category 投诉举报 (投诉举报), score 2, heard: 投诉×1 市民")
    assert lines[1] == "  诉求摘要: [01:05] 我要投诉噪音"
    assert lines[2:] == ["  [00:00] 座席: 您好", "  [01:05] 市民: 我要投诉噪音"]
    assert transcript_lines(None) == [] and transcript_lines("") == []
    # an older ticket's free text is shown, not an error
    assert dialogue_lines(from_json("plain words")) == ["[00:00] ?: plain words"]


# --------------------------------------------------------------------------- suggested category

RULES = {"投诉举报": ["投诉", "举报"], "咨询": ["问一下", "咨询"], "求助": ["帮忙", "救"]}


def test_category_from_keyword_rules_caller_words_weigh_double() -> None:
    def cat(caller: str, agent: str, simple: dict[str, list[str]] = RULES) -> tuple[str | None, tuple[str, ...]]:
        t = build([U("caller", 1, 2, caller)], [U("agent", 0, 1, agent)], simple)
        return t.suggested_category, t.suggested_by

    assert cat("我 想 投诉 楼下", "") == ("投诉举报", ("投诉",))
    # the agent says 咨询 twice (2), the caller 举报 once (2): a tie goes to the rule listed first
    assert cat("我要举报", "咨询 咨询")[0] == "投诉举报"
    assert cat("我问一下 咨询 一下", "投诉")[0] == "咨询"
    assert cat("今天天气好", "您好") == (None, ())
    assert cat("", "", {}) == (None, ())


# --------------------------------------------------------------------------- 质检

QA = QualityRules(greeting=["您好"], forbidden=["不知道", "烦"], readback=True, readback_digits=4,
                  max_silence_s=10.0, talk_over_s=1.0)


def test_a_good_call_scores_100() -> None:
    t = Transcript(tuple(merge([U("caller", 3, 6, "我要投诉")],
                               [U("agent", 0.5, 2, "您好 一二三四五"), U("agent", 7, 12, "您的工单号 2026 0001 二三四五")])))
    s = score_call(t, QA, ticket_no="202600012345", agent="1001")
    assert s.score == 100 and s.findings == ()


def test_each_rule_takes_its_points() -> None:
    t = Transcript(tuple(merge(
        [U("caller", 1.0, 6.0, "我 要 投诉 楼下 噪音")],
        [U("agent", 20.0, 21.0, "嗯"),  # greeting missing in the first 15 s, 14 s silent before it
         U("agent", 22.0, 30.0, "我不知道 别烦我 不知道"),  # forbidden: 不知道 (once as a rule) and 烦
         ])))
    s = score_call(t, QA, ticket_no="202600012345", agent="1002")
    checks = [f.check for f in s.findings]
    assert checks.count("greeting") == 1 and checks.count("forbidden") == 2 and "readback" in checks
    assert checks.count("silence") == 1
    assert s.score == max(0.0, 100 - 20 - 30 - 30 - 20 - 10)
    assert "不知道" in next(f.detail for f in s.findings if f.check == "forbidden")


def test_talk_over_is_the_agent_starting_inside_the_callers_utterance() -> None:
    rules = QualityRules(readback=False)
    over = Transcript(tuple(merge([U("caller", 0, 6, "我要说的事情很长")], [U("agent", 2, 5, "好的 好的")])))
    short = Transcript(tuple(merge([U("caller", 0, 6, "我要说的事情很长")], [U("agent", 5.5, 8, "好的")])))
    after = Transcript(tuple(merge([U("caller", 0, 6, "我要说的事情很长")], [U("agent", 6.2, 8, "好的")])))
    assert [f.check for f in score_call(over, rules, ticket_no="1", agent="a").findings] == ["talk_over"]
    assert score_call(short, rules, ticket_no="1", agent="a").findings == ()  # 0.5 s overlap: allowed
    assert score_call(after, rules, ticket_no="1", agent="a").score == 100


def test_per_agent_means_and_failed_checks_worst_first() -> None:
    good = Transcript((U("agent", 0, 1, "您好 二三四五"),))
    bad = Transcript((U("agent", 0, 1, "喂"),))
    scores = [score_call(good, QA, ticket_no="x2345", agent="1001"),
              score_call(bad, QA, ticket_no="y2345", agent="1002"),
              score_call(good, QA, ticket_no="z2345", agent="1002")]
    agents = by_agent(scores)
    assert [(a.agent, a.calls) for a in agents] == [("1002", 2), ("1001", 1)]
    assert agents[0].mean == (60 + 100) / 2 and agents[0].failed == {"greeting": 1, "readback": 1}
    assert spoken_digits("工单 幺二 34 五") == "12345"


# --------------------------------------------------------------------------- the worker


def _record(linkedid: str, *, outcome: str = "answered", recording: str | None = "hotline/20260101/x.wav"
            ) -> CallRecord:
    return CallRecord(linkedid=linkedid, caller="13800000000", dialed="12345", outcome=outcome, recording=recording)


class FakeStore:
    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    async def save_transcript(self, linkedid: str, transcript: str, *, note: str = "") -> str:
        self.saved[linkedid] = transcript
        return "T-" + linkedid


def _shipped() -> Config:
    from model.loading import default_config_path, load_config

    return load_config(default_config_path())


def _config(**kw: Any) -> Config:
    cfg = _shipped()
    cfg.transcripts.enabled = True
    cfg.transcripts.categories = rules({"投诉举报": ["투표"]})
    for k, v in kw.items():
        setattr(cfg.transcripts, k, v)
    return cfg


def _write_sides(root: Path, recording: str) -> None:
    for side in ("caller", "agent"):
        f = root / side_recording(recording, side)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"RIFF" + b"\0" * 100)
        old = time.time() - 5
        import os
        os.utime(f, (old, old))


def test_offer_takes_only_complete_answered_recorded_calls_once_and_never_blocks(tmp_path: Path) -> None:
    tr = Transcriber(_config(queue_max=2), FakeStore(), tmp_path)
    saved = SimpleNamespace(ticket_no="T1")
    assert not tr.offer(_record("a", outcome="in_progress"), saved)
    assert not tr.offer(_record("b", outcome="abandoned"), saved)
    assert not tr.offer(_record("c", recording=None), saved)
    assert tr.offer(_record("d"), saved)
    assert not tr.offer(_record("d"), saved)  # the same call saved again (a CDR rebuild)
    assert tr.offer(_record("e"), saved)
    started = time.monotonic()
    assert not tr.offer(_record("f"), saved)  # full: dropped at once, counted
    assert time.monotonic() - started < 0.05 and tr.dropped == 1 and tr.queue.qsize() == 2


async def test_worker_decodes_off_the_loop_and_the_ticket_gets_the_dialogue(tmp_path: Path) -> None:
    store = FakeStore()
    gate = threading.Event()
    seen: list[tuple[str, str]] = []

    def decode(caller_file: str, agent_file: str) -> dict[str, Any]:
        gate.wait(5)  # a slow decode: the event loop must stay free meanwhile
        seen.append((Path(caller_file).name, Path(agent_file).name))
        return {"duration_s": 9.0, "caller": [{"start": 2.0, "end": 4.0, "text": "투표 하고 싶어요", "conf": 0.8}],
                "agent": [{"start": 0.2, "end": 1.0, "text": "안녕하세요", "conf": 0.9}]}

    recs = [f"hotline/20260101/{i}.wav" for i in ("1.1", "2.1")]
    for r in recs:
        _write_sides(tmp_path, r)
    pool = ThreadPoolExecutor(1)
    tr = Transcriber(_config(), store, tmp_path, executor=pool, settle_s=0.1, decode=decode)
    task = asyncio.create_task(tr.run())
    try:
        for i, r in enumerate(recs):
            assert tr.offer(_record(f"L{i}", recording=r), SimpleNamespace(ticket_no=f"T{i}"))
        # while the worker is stuck in a decode, the loop answers at once (calls never wait on transcripts)
        t0 = time.monotonic()
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert time.monotonic() - t0 < 1.0
        assert tr.offer(_record("L9", recording="hotline/20260101/9.wav"), SimpleNamespace(ticket_no="T9"))
        gate.set()
        await asyncio.wait_for(_until(lambda: len(store.saved) == 2), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pool.shutdown()
    assert seen[0] == ("1.1-caller.wav", "1.1-agent.wav")
    t = from_json(store.saved["L0"])
    assert [(u.side, u.text) for u in t.utterances] == [("agent", "안녕하세요"), ("caller", "투표 하고 싶어요")]
    assert t.suggested_category == "投诉举报"
    # the per-direction files are gone (the mixed recording is the record)
    assert not list(tmp_path.rglob("*-caller.wav")) and not list(tmp_path.rglob("*-agent.wav"))


async def _until(pred: Any) -> None:
    while not pred():
        await asyncio.sleep(0.02)


async def test_store_keeps_the_transcript_and_the_purge_removes_it(tmp_path: Path) -> None:
    store = TicketStore(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", _shipped())
    await store.open()
    try:
        rec = CallRecord(linkedid="L1", caller="13800000000", dialed="12345", outcome="answered", agent="1001",
                         recording="hotline/20260101/L1.wav", started_at=time.time(), ended_at=time.time())
        saved = await store.save_call(rec)
        t = build([U("caller", 1, 2, "我要投诉")], [U("agent", 0, 1, "您好")], RULES)
        assert await store.save_transcript("L1", to_json(t)) == saved.ticket_no
        assert await store.save_transcript("nope", to_json(t)) is None
        rows = await store.transcripts(since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        assert [r.ticket_no for r in rows] == [saved.ticket_no] and from_json(rows[0].transcript) == t
        assert await store.transcripts(agent="9999") == []
        # a later save of the same call (e.g. the CDR) does not lose it
        await store.save_call(rec)
        assert (await store.get_ticket(saved.ticket_no)).transcript == to_json(t)
        hist = await store.history(saved.ticket_no)
        assert any(h.field == "transcript" for h in hist)
        assert all("投诉" not in (h.note or "") for h in hist)  # the history says it arrived, not what it says
        await store.mark_recording_purged([saved.ticket_no], actor="test", note="old")
        assert (await store.get_ticket(saved.ticket_no)).transcript is None
        assert await store.save_transcript("L1", to_json(t)) is None  # nor written again after the purge
    finally:
        await store.close()


def test_per_direction_recording_when_the_controller_asks_for_it() -> None:
    """The controller asks per call (HOTLINE_TRANSCRIBE=1 from the inbound AGI when transcripts are on), so
    turning transcripts on needs no new dialplan; the files are named like side_recording names them."""
    from model.loading import default_config_path, load_config
    from routing.dialplan import RenderInputs, render

    cfg = load_config(default_config_path())
    ext = render(cfg, RenderInputs(ami_secret="x", seat_secrets={k: "s" for k in cfg.seats}))["extensions.conf"]
    opts = [line for line in ext.splitlines() if "MONITOR_OPTIONS" in line]
    assert len(opts) == len(cfg.queues) and all(
        '$["${HOTLINE_TRANSCRIBE}" = "1"]?Set(MONITOR_OPTIONS=r(${MONITOR_FILENAME}-caller.wav)'
        't(${MONITOR_FILENAME}-agent.wav))' in line for line in opts)
    assert side_recording("hotline/20260101/1.2.wav", "caller") == "hotline/20260101/1.2-caller.wav"


# --------------------------------------------------------------------------- speech navigation's grammar


def test_grammar_is_the_menus_words_han_also_by_character_and_unk() -> None:
    from ivr.speech import grammar_phrases

    assert grammar_phrases(["投诉", "问 一下", "네", "", "  ", "投诉"]) == [
        "投诉", "投 诉", "问 一下", "问 一 下", "네", "[unk]"]


def test_the_menu_asks_with_its_words_as_grammar() -> None:
    from ivr.menu import AGENT_WORDS, Collect, MenuEngine
    from model.destinations import MenuDest

    cfg = _shipped()
    cfg.speech.model = "/nonexistent"
    cfg.menus["main"].speech = {"1": ["咨询"], "2": ["投诉", "举报"]}
    engine = MenuEngine(cfg, dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    step = engine.start(MenuDest(menu="main"))
    collect = next(a for a in step.actions if isinstance(a, Collect))
    assert collect.speech and collect.words == ("咨询", "投诉", "举报", *AGENT_WORDS)


# --------------------------------------------------------------------------- `hotline qa`


def test_qa_command_scores_per_agent_and_per_call(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from hotline.cli import main

    url = f"sqlite+aiosqlite:///{tmp_path / 'qa.db'}"

    async def fill() -> dict[str, str]:
        st = TicketStore(url, _shipped())
        await st.open()
        try:
            out = {}
            for lid, agent in (("g.1", "1001"), ("b.1", "1002"), ("n.1", "1002")):
                now = time.time()
                saved = await st.save_call(CallRecord(linkedid=lid, caller="13800000000", dialed="12345",
                                                      outcome="answered", agent=agent, recording=f"hotline/x/{lid}.wav",
                                                      started_at=now, ended_at=now))
                out[lid] = saved.ticket_no
                digits = " ".join(saved.ticket_no[-4:])
                if lid == "g.1":
                    t = build([U("caller", 3, 5, "我要投诉")], [U("agent", 0, 1, "您好"), U("agent", 6, 8, f"工单 {digits}")],
                              {})
                elif lid == "b.1":
                    t = build([U("caller", 3, 5, "我要投诉")], [U("agent", 0, 1, "喂 不知道")], {})
                else:
                    continue  # untranscribed: not scored
                await st.save_transcript(lid, to_json(t))
            return out
        finally:
            await st.close()

    nos = asyncio.run(fill())
    r = CliRunner().invoke(main, ["qa", "--store", url, "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    calls = {c["ticket_no"]: c for c in data["calls"]}
    assert set(calls) == {nos["g.1"], nos["b.1"]}
    assert calls[nos["g.1"]]["score"] == 100
    assert {f["check"] for f in calls[nos["b.1"]]["findings"]} == {"greeting", "forbidden", "readback"}
    assert [(a["agent"], a["calls"]) for a in data["agents"]] == [("1002", 1), ("1001", 1)]
    r = CliRunner().invoke(main, ["qa", "--store", url, "--by", "call"], catch_exceptions=False)
    assert nos["b.1"] in r.output and "all checks passed" in r.output
    r = CliRunner().invoke(main, ["qa", "--store", url, "--agent", "1001"], catch_exceptions=False)
    assert "1001" in r.output and "1002" not in r.output
    r = CliRunner().invoke(main, ["tickets", "show", nos["g.1"], "--store", url], catch_exceptions=False)
    assert "transcript:" in r.output and "市民: 我要投诉" in r.output and "座席: 您好" in r.output


def test_the_screen_pop_shows_the_suggestion_but_keeps_the_category() -> None:
    from live.screenpop import screen_pop

    cfg = _shipped()
    at = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    settings = cfg.transcripts
    t = suggest(Transcript(tuple(merge([U("caller", 1, 3, "楼下 噪音 太吵 我要投诉")], [U("agent", 0, 1, "您好 请讲")]))),
                KeywordClassifier(settings), settings)
    this = SimpleNamespace(ticket_no="261130000009", started_at=at, created_at=at, category="咨询", state="accepted",
                           request_text=None, department=None, disposition=None, transcript=to_json(t))
    call = {"linkedid": "1.1", "caller": "13812345678", "category": "咨询", "agent": "1001"}
    pop = screen_pop(call, this, [], cfg, now=0.0, full_numbers=False)
    assert pop["ticket"]["suggested_category"] == "投诉举报" and "噪音" in pop["ticket"]["suggested_by"]
    assert pop["ticket"]["category"] == "咨询"  # the suggestion is never applied for the agent
    bare = SimpleNamespace(**{**vars(this), "transcript": None})
    assert screen_pop(call, bare, [], cfg, now=0.0, full_numbers=False)["ticket"]["suggested_category"] is None
    # the dialogue does not travel to the page: only the rule's words and the caller's 诉求摘要
    assert "请讲" not in str(pop) and "utterances" not in str(pop)
    assert pop["ticket"]["summary"]["request"] == "楼下噪音太吵我要投诉"
    s = pop["ticket"]["suggestion"]
    assert (s["subcategory"], s["department"]) == ("生态环境/噪音扰民", "生态环境局")


def test_night_workers_only_inside_the_night() -> None:
    t = Transcripts(workers=1, night_workers=2, night="22:00-07:00")
    assert [t.workers_at(h) for h in ("21:59", "22:00", "03:00", "06:59", "07:00", "12:00")] == [1, 2, 2, 2, 1, 1]
    assert Transcripts(workers=2).workers_at("03:00") == 2
    assert Transcripts(workers=1, night_workers=3, night="01:00-05:00").workers_at("00:30") == 1
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        Transcripts(night="late")
