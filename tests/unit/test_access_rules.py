"""Issue 18: priority (老年人优先), language and dialect seats, campaigns — config, call flow, check, explain, KPIs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner

from admin.explain import explain_call
from hotline.cli import main
from ivr.callflow import SetRoute, inbound_flow
from ivr.menu import Collect, Timeout
from ivr.prompts import DEFAULT_VOICE, _speakable
from model.config import Config
from model.contract import Var
from model.hours import local
from model.loading import default_config_path, load_config
from ticketbridge.kpi import compute

MONDAY_10 = local(dt.datetime(2026, 11, 30, 10, 0))
IN_CAMPAIGN = local(dt.datetime(2026, 7, 1, 10, 0))


def shipped() -> Config:
    return load_config(default_config_path())


def run(cfg: Config, caller: str, keys: list[str], at: dt.datetime = MONDAY_10) -> tuple[list[str], SetRoute]:
    """Drive the flow: `keys` are pressed at the first interruptible plays (barge-in); prompts heard, route."""
    flow = inbound_flow(cfg, "12345", caller, at)
    heard: list[str] = []
    answer: object = None
    pending = list(keys)
    while True:
        action = flow.send(answer)
        answer = None
        name = type(action).__name__
        if name == "Play":
            heard.append(action.prompt)  # type: ignore[attr-defined]
            if pending and action.interruptible:  # type: ignore[attr-defined]
                answer = pending.pop(0)
        elif isinstance(action, Collect):
            heard.append(action.prompt)
            answer = Timeout()
        elif name == "Now":
            answer = at
        elif isinstance(action, SetRoute):
            return heard, action


def test_a_listed_caller_hears_no_menu_and_queues_with_priority() -> None:
    cfg = shipped()
    heard, route = run(cfg, "+86 139-0000-0001", [])
    assert heard == ["greeting", "emergency_notice"]
    vars_ = dict(route.variables)
    assert vars_[Var.QUEUE] == "general" and vars_[Var.QUEUE_PRIO] == "10" and vars_[Var.PRIORITY] == "listed"
    assert route.priority == "listed"
    # an unlisted caller meets the menu and has no priority
    heard, route = run(cfg, "13800000000", [])
    assert "main_menu" in heard and Var.QUEUE_PRIO not in dict(route.variables) and route.priority is None


def test_the_priority_key_in_the_greeting_does_the_same() -> None:
    heard, route = run(shipped(), "13800000000", ["9"])
    assert heard == ["greeting", "emergency_notice"] and route.priority == "key"
    assert dict(route.variables)[Var.QUEUE_PRIO] == "10"


def test_english_path_plays_english_prompts_and_its_own_recording_notice() -> None:
    cfg = shipped()
    heard, route = run(cfg, "13800000000", [None, "8"])  # type: ignore[list-item]  # during the offer
    assert heard == ["greeting", "emergency_notice", "english_offer", "english_welcome", "english_recording_notice"]
    vars_ = dict(route.variables)
    assert vars_[Var.QUEUE] == "english" and vars_[Var.LANGUAGE] == "en" and vars_[Var.RECORDING_NOTICED] == "1"
    assert cfg.access.prompt_voices()["english_offer"] == "en-us"
    # English text is spoken as written (no 幺二三 digit reading)
    assert _speakable("Press 12345", "en-us") == "Press 12345" and _speakable("拨打12345", DEFAULT_VOICE) != "拨打12345"


def test_the_dialect_queue_from_the_menu_is_recorded_as_its_language() -> None:
    flow_cfg = shipped()
    exp = explain_call(flow_cfg, "12345", None, MONDAY_10, ["6"])
    assert exp.final == "queue:minnan"
    assert any(s.kind == "language" and "闽南话" in s.text for s in exp.steps)


def test_campaign_key_only_within_its_dates_and_its_queue_outside_goes_elsewhere() -> None:
    cfg = shipped()
    heard, route = run(cfg, "13800000000", [None, None, "7"], IN_CAMPAIGN)  # type: ignore[list-item]
    assert "campaign_offer" in heard and dict(route.variables)[Var.QUEUE] == "campaign_flood"
    heard, route = run(cfg, "13800000000", [], MONDAY_10)
    assert "campaign_offer" not in heard
    exp = explain_call(cfg, "12345", None, MONDAY_10, ["7"])  # 7 is no key outside the dates: invalid in the menu
    assert exp.final.startswith("queue:general")


def test_check_names_the_field_of_every_access_problem(tmp_path: Path) -> None:
    text = default_config_path().read_text(encoding="utf-8")
    text = text.replace('      key: "7"', '      key: "8"').replace("    queue: english\n", "    queue: englsh\n")
    text = text.replace("      start: 2026-06-01", "      start: 2026-10-01")
    (tmp_path / "hotline.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "elderly_numbers.txt").write_text("13900000001\n# comment\nnot-a-number 13700000000\n")
    r = CliRunner().invoke(main, ["check", "-c", str(tmp_path / "hotline.yaml"), "--skip-secrets", "--json"])
    assert r.exit_code == 1
    out = json.loads(r.output)
    texts = [p["text"] if isinstance(p, dict) else p for p in out.get("problems", out.get("errors", []))]
    joined = "\n".join(texts)
    assert "access.campaigns.flood: end (2026-09-30) is before start (2026-10-01)" in joined
    # (the model refuses the dates first; fix them and the graph's checks speak)
    text = text.replace("      start: 2026-10-01", "      start: 2026-06-01")
    (tmp_path / "hotline.yaml").write_text(text, encoding="utf-8")
    r = CliRunner().invoke(main, ["check", "-c", str(tmp_path / "hotline.yaml"), "--skip-secrets", "--json"])
    out = json.loads(r.output)
    joined = "\n".join(p["text"] if isinstance(p, dict) else p for p in out.get("problems", out.get("errors", [])))
    assert "access.languages.en.queue: queue 'englsh' is not defined under queues" in joined
    assert "access.campaigns.flood.key: key '8' is already access.languages.en.key" in joined
    assert "elderly_numbers.txt:3: access.priority.numbers_file: not a phone number" in joined
    assert "13700000000" not in r.output  # the list is personal data


def test_kpis_count_priority_calls_and_languages() -> None:
    rows = [{"outcome": "answered", "agent": "1001", "priority": "listed", "queue": "general"},
            {"outcome": "abandoned_in_queue", "priority": "key", "queue": "general"},
            {"outcome": "answered", "agent": "1004", "language": "en", "queue": "english"},
            {"outcome": "answered", "agent": "1001", "queue": "general"}]
    f = compute(rows)
    assert f.priority_calls == 2 and f.priority_answered == 1 and f.languages == {"en": 1}


def test_a_language_queue_reports_its_language_and_the_ticket_keeps_it_however_the_caller_came() -> None:
    from routing.dialplan import RenderInputs, render
    from ticketbridge.assembler import Assembler

    cfg = shipped()
    ext = render(cfg, RenderInputs(ami_secret="x", seat_secrets={k: "x" for k in cfg.seats}))["extensions.conf"]
    minnan = ext[ext.index("[hotline-queue-minnan]"):]
    minnan = minnan[:minnan.index("\n[")]
    assert "UserEvent(HotlineLanguage,Code: nan)" in minnan
    general = ext[ext.index("[hotline-queue-general]"):]
    assert "HotlineLanguage" not in general[:general.index("\n[")]
    # an agent's transfer into the dialect queue: no IVR route says a language, the queue's event does
    a = Assembler()
    caller = "PJSIP/carrier-00000001"
    head = {"Privilege": "call,all", "Linkedid": "L1"}
    a.feed({**head, "Event": "Newchannel", "Uniqueid": "L1", "Timestamp": "1.0", "Channel": caller,
            "CallerIDNum": "13800000000", "Exten": "12345", "Context": "hotline-inbound"})
    a.feed({**head, "Event": "UserEvent", "UserEvent": "HotlineRoute", "Uniqueid": "L1", "Timestamp": "2.0",
            "Line": "", "Mode": "center", "Dest": "queue:general", "Category": "", "Fallback": "0"})
    a.feed({**head, "Event": "UserEvent", "UserEvent": "HotlineLanguage", "Code": "nan", "Uniqueid": "L2",
            "Timestamp": "3.0", "Channel": "Local/s@hotline-queue-minnan-00000002;2"})
    records = a.feed({**head, "Event": "Hangup", "Uniqueid": "L2", "Timestamp": "4.0", "Cause": "16",
                      "Channel": "Local/s@hotline-queue-minnan-00000002;2"})
    records += a.feed({**head, "Event": "Hangup", "Uniqueid": "L1", "Timestamp": "4.1", "Channel": caller,
                       "Cause": "16"})
    assert [r.language for r in records] == ["nan"] and records[0].priority is None


# ------------------------------------------------------------------ sign-language (video) seats


def run_video(cfg: Config, dialed: str = "12345", caller: str = "13800000000") -> tuple[list[str], SetRoute]:
    flow = inbound_flow(cfg, dialed, caller, MONDAY_10, video=True)
    heard: list[str] = []
    answer: object = None
    while True:
        action = flow.send(answer)
        answer = None
        if type(action).__name__ == "Play" or isinstance(action, Collect):
            heard.append(action.prompt)  # type: ignore[union-attr]
            answer = Timeout() if isinstance(action, Collect) else None
        elif type(action).__name__ == "Now":
            answer = MONDAY_10
        elif isinstance(action, SetRoute):
            return heard, action


def test_a_video_call_goes_to_the_sign_language_seats_with_nothing_spoken() -> None:
    cfg = shipped()
    assert cfg.access.languages["csl"].video and cfg.seats["1006"].video and cfg.carriers["telecom"].video
    heard, route = run_video(cfg)
    vars_ = dict(route.variables)
    assert heard == [] and vars_[Var.QUEUE] == "sign" and vars_[Var.LANGUAGE] == "csl" and route.language == "csl"
    # a listed elderly caller who calls with video keeps the priority in the sign-language queue
    heard, route = run_video(cfg, caller="13900000001")
    assert dict(route.variables)[Var.QUEUE] == "sign" and route.priority == "listed"
    # a line with its own seats keeps them (only the 12345 flow is replaced)
    _, route = run_video(cfg, dialed="12333")
    assert dict(route.variables)[Var.QUEUE] == "line_12333"
    # the same call without video meets the greeting and the menu
    heard, route = run(cfg, "13800000000", [])
    assert "main_menu" in heard and dict(route.variables)[Var.QUEUE] == "general"
    # a center with no sign-language seats: a video call is an ordinary call
    cfg.access.languages["csl"].video = False
    heard, route = run_video(cfg)
    assert "main_menu" in heard and dict(route.variables)[Var.QUEUE] == "general"


def test_video_seats_and_trunks_allow_the_video_codecs_and_the_dialplan_routes_video_calls() -> None:
    from routing.dialplan import RenderInputs, render
    from wire.conf import parse

    cfg = shipped()
    files = render(cfg, RenderInputs(ami_secret="x", seat_secrets={k: "x" for k in cfg.seats}))
    pj = parse(files["pjsip.conf"], "pjsip.conf")

    def allows(name: str) -> list[str]:
        """The allow lines of a seat's own sections (its endpoint; the auth and aor have none)."""
        return [i.value for s in pj.sections if s.name == name for i in s.items if i.key == "allow"]

    assert allows("1006") == ["h264,vp8"] and allows("1001") == []  # (the template gives both ulaw,alaw)
    ext = files["extensions.conf"]
    inbound = ext[ext.index("[hotline-inbound]"):]
    inbound = inbound[:inbound.index("\n[")]
    assert 'Set(HOTLINE_VIDEO=${IF($["${CHANNEL(videonativeformat)}" =~ "h264|vp8"]?1:)})' in inbound
    # with the controller down a video caller still reaches the sign-language queue
    assert 'ExecIf($["${HOTLINE_VIDEO}" = "1"]?Set(HOTLINE_FALLBACK_QUEUE=sign))' in inbound
    assert inbound.index("HOTLINE_VIDEO=") < inbound.index("AGI(")
    cfg.access.languages["csl"].video = False
    ext = render(cfg, RenderInputs(ami_secret="x", seat_secrets={k: "x" for k in cfg.seats}))["extensions.conf"]
    assert "HOTLINE_VIDEO" not in ext


def test_check_validates_the_video_settings() -> None:
    from model.config import LanguageSeats
    from routing.graph import validate

    def problems(cfg: Config) -> dict[str, str]:
        return {p.field: p.message for p in validate(cfg, prompt_exists=lambda _: True)}

    assert not [f for f in problems(shipped()) if "video" in f or f.startswith(("access", "queues.sign"))]
    cfg = shipped()
    cfg.asterisk.sip.video_codecs = ["h264", "mpeg2"]
    cfg.access.languages["hk"] = LanguageSeats(name="香港手语", queue="sign", video=True)
    cfg.queues["sign"].members = ["1005"]
    cfg.carriers["telecom"].video = False
    got = problems(cfg)
    assert "unknown video codec 'mpeg2'" in got["asterisk.sip.video_codecs.1"]
    assert "only one language takes the video calls: csl already does" in got["access.languages.hk.video"]
    assert "no seat with video: true" in got["queues.sign.members"]
    assert "no carrier has video: true" in got["carriers"]
    # a language that speaks nothing needs no espeak voice (csl, hk); one with prompts does
    assert "access.languages.hk.voice" not in got and "access.languages.csl.voice" not in got
    cfg.access.languages["hk"].prompts = ["minnan_welcome"]
    assert "no espeak-ng voice known for 'hk'" in problems(cfg)["access.languages.hk.voice"]
    cfg = shipped()
    cfg.asterisk.sip.video_codecs = []
    assert "needs at least one video codec" in problems(cfg)["asterisk.sip.video_codecs"]


def test_explain_prints_each_access_path() -> None:
    """`hotline explain` on the shipped config: every path of issue 18, by the options an admin would give."""
    cases = [
        (["--from", "13900000001"], "final destination: queue:general", "老年人优先 (listed)"),
        (["--digits", "9"], "final destination: queue:general", "老年人优先 (key)"),
        (["--digits", "8"], "final destination: queue:english", "language en"),
        (["--digits", "6"], "final destination: queue:minnan", "language nan"),
        (["--video"], "final destination: queue:sign", "a video call: the sign-language seats"),
        (["--digits", "7", "--at", "2026-07-01 10:00"], "final destination: queue:campaign_flood", "campaign:flood"),
        (["--digits", "7", "--at", "2026-11-30 10:00"], "final destination: queue:general", "invalid"),
        (["--to", "12301"], "final destination: queue:tourism", "12301"),
        (["--to", "961017"], "final destination: queue:general", "求助"),
    ]
    for args, final, says in cases:
        r = CliRunner().invoke(main, ["explain", "--at", "2026-11-30 10:00", *args])
        assert r.exit_code == 0, (args, r.output)
        assert final in r.output and says in r.output, (args, r.output)
