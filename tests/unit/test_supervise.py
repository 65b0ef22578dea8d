"""Supervisors' intervention: the pure decision (routing/supervise.py), its AMI adapter against a fake
AMI (routing/supervise_service.py), the seat phone's AGI script, the config rules and the dialplan."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from ivr.supervisor_phone import SupervisorPhone
from model.config import Config, Seat
from model.contract import Context, Event, Var
from model.loading import load_config
from routing.dialplan import RenderInputs, render
from routing.supervise import (BASE_OPTIONS, NO_CALL_PROMPT, NOT_AN_AGENT, NOT_IN_CALL, NOT_SUPERVISOR, REFUSED_PROMPT,
                               SWITCH_KEYS, UNKNOWN_AGENT, UNKNOWN_MODE, UNKNOWN_SEAT, LiveChannel, Mode, Refusal,
                               Release, Spy, agent_channel, chanspy_options, decide, mode_of_code, spy_modes)
from routing.supervise_service import NO_UID, SupervisionService

AGENT_LEG = "PJSIP/1001-0000000a"
CALLER = ("Local/12358@hotline-inbound-00000003;1", "Local/12358@hotline-inbound-00000003;2")


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config("config/hotline.yaml")


def live(*extra: LiveChannel) -> list[LiveChannel]:
    """A caller talking to agent 1001 (linkedid L1), plus `extra`."""
    return [LiveChannel(CALLER[0], "L1", "", "Up"), LiveChannel(CALLER[1], "L1", "B1", "Up"),
            LiveChannel(AGENT_LEG, "L1", "B1", "Up"), *extra]


# ------------------------------------------------------------------ options per mode


def test_each_mode_has_its_chanspy_options_and_release_has_none() -> None:
    assert chanspy_options("listen") == BASE_OPTIONS
    assert chanspy_options(Mode.WHISPER) == BASE_OPTIONS + "w"
    assert chanspy_options(Mode.BARGE) == BASE_OPTIONS + "B"
    for opt in "qbESX":  # quiet, bridged only, end with the agent's leg or nothing to spy, keys leave to the switch
        assert opt in BASE_OPTIONS
    assert "d" not in BASE_OPTIONS  # ChanSpy's own switching reports nothing: ours (X) is recorded
    assert "w" not in chanspy_options("listen") and "B" not in chanspy_options("listen")
    with pytest.raises(ValueError):
        chanspy_options(Mode.RELEASE)
    with pytest.raises(ValueError):
        chanspy_options("spy")
    assert spy_modes() == {"listen": "qbESX", "whisper": "qbESXw", "barge": "qbESXB"}
    assert {k: m.value for k, m in SWITCH_KEYS.items()} == {"4": "listen", "5": "whisper", "6": "barge"}


# ------------------------------------------------------------------ who may intervene on what


@pytest.mark.parametrize("mode", ["listen", "whisper", "barge"])
def test_a_supervisor_seat_spies_on_the_agents_bridged_leg(cfg: Config, mode: str) -> None:
    d = decide(cfg, mode, "9001", "1001", live())
    assert d == Spy(Mode(mode), "9001", "1001", AGENT_LEG, "L1", chanspy_options(mode))


@pytest.mark.parametrize("mode", ["listen", "release"])
def test_an_action_bound_to_a_call_is_refused_once_the_agent_is_on_another(cfg: Config, mode: str) -> None:
    """The API names the call the supervisor chose: an agent who moved on meanwhile is never the target."""
    assert isinstance(decide(cfg, mode, "9001", "1001", live(), "L1"), (Spy, Release))
    d = decide(cfg, mode, "9001", "1001", live(), "L0")
    assert isinstance(d, Refusal) and d.reason == NOT_IN_CALL and "no longer on call L0" in d.detail


def test_force_release_hangs_up_every_channel_of_that_call_only(cfg: Config) -> None:
    other = [LiveChannel("PJSIP/1002-0000000b", "L2", "B2", "Up"), LiveChannel("Local/x;2", "L2", "B2", "Up")]
    d = decide(cfg, "release", "9001", "1001", live(*other))
    assert isinstance(d, Release) and d.linkedid == "L1"
    assert set(d.channels) == {*CALLER, AGENT_LEG}


@pytest.mark.parametrize("seat", ["1001", "1002", "1003"])
def test_an_agents_seat_is_refused_with_the_supervisor_only_prompt(cfg: Config, seat: str) -> None:
    for mode in Mode:
        d = decide(cfg, mode.value, seat, "1002" if seat == "1001" else "1001", live())
        assert isinstance(d, Refusal) and d.reason == NOT_SUPERVISOR and d.prompt == REFUSED_PROMPT


def test_refusals_name_why(cfg: Config) -> None:
    cases = {
        ("listen", "7777", "1001"): UNKNOWN_SEAT,
        ("listen", "9001", "4242"): UNKNOWN_AGENT,
        ("listen", "9001", "9001"): NOT_AN_AGENT,   # not one's own seat
        ("spy", "9001", "1001"): UNKNOWN_MODE,
        ("", "9001", "1001"): UNKNOWN_MODE,
    }
    for (mode, seat, agent), reason in cases.items():
        d = decide(cfg, mode, seat, agent, live())
        assert isinstance(d, Refusal) and d.reason == reason, (mode, seat, agent, d)
        assert d.detail


def test_another_supervisor_is_not_a_target(cfg: Config) -> None:
    c = cfg.model_copy(deep=True)
    c.seats["9002"] = Seat(name="副班长", role="supervisor", secret_env="X")
    legs = [LiveChannel("PJSIP/9002-00000001", "L9", "B9", "Up")]
    d = decide(c, "listen", "9001", "9002", legs)
    assert isinstance(d, Refusal) and d.reason == NOT_AN_AGENT


def test_an_agent_not_in_a_call_is_refused_with_its_own_prompt(cfg: Config) -> None:
    not_in_call = [
        [],                                                                # no channel at all
        [LiveChannel("PJSIP/1001-0000000c", "L3", "", "Ringing")],          # ringing, not bridged
        [LiveChannel("PJSIP/1001-0000000c", "L3", "B3", "Ringing")],        # not up
        [LiveChannel("PJSIP/10010-0000000d", "L4", "B4", "Up")],            # seat 10010, not 1001
        [LiveChannel("PJSIP/1002-0000000e", "L5", "B5", "Up")],             # another agent's call
    ]
    for channels in not_in_call:
        d = decide(cfg, "listen", "9001", "1001", channels)
        assert isinstance(d, Refusal) and d.reason == NOT_IN_CALL and d.prompt == NO_CALL_PROMPT, channels


def test_decisions_by_the_thousand_only_supervisors_ever_spy_and_only_on_a_live_agent_leg(cfg: Config) -> None:
    seats = [*cfg.seats, "7777", ""]
    modes = [m.value for m in Mode] + ["x"]
    states = ["Up", "Ringing", ""]
    n = 0
    for mode, seat, agent, state, bridged in itertools.product(modes, seats, seats, states, (True, False)):
        legs = [LiveChannel(f"PJSIP/{agent}-00000001", "L", "B" if bridged else "", state)] if agent else []
        d = decide(cfg, mode, seat, agent, legs + [LiveChannel("Local/c;2", "L", "B", "Up")])
        n += 1
        if isinstance(d, (Spy, Release)):
            assert cfg.seats[seat].role == "supervisor" and cfg.seats[agent].role == "agent" and seat != agent
            assert bridged and state in ("Up", "")
        if isinstance(d, Spy):
            assert d.target == f"PJSIP/{agent}-00000001" and d.options == chanspy_options(mode)
    assert n > 1000


def test_agent_channel_picks_the_newest_bridged_leg() -> None:
    a = LiveChannel("PJSIP/1001-00000001", "L1", "B1", "Up")
    b = LiveChannel("PJSIP/1001-00000002", "L2", "B2", "Up")
    assert agent_channel("1001", [a, b]) == b
    assert agent_channel("1001", [LiveChannel.from_ami({"Channel": "pjsip/1001-00000003", "Linkedid": "L",
                                                         "BridgeId": "x", "ChannelStateDesc": "Up"})]) is not None


def test_feature_codes_map_to_modes(cfg: Config) -> None:
    assert {c: mode_of_code(cfg, c) for c in ("*61", "*62", "*63", "*69", "*64", "*51")} == {
        "*61": Mode.LISTEN, "*62": Mode.WHISPER, "*63": Mode.BARGE, "*69": Mode.RELEASE, "*64": None, "*51": None}


# ------------------------------------------------------------------ configuration


def test_seats_default_to_the_agent_role_and_the_shipped_config_has_a_supervisor_seat(cfg: Config) -> None:
    assert Seat(name="x").role == "agent"
    assert cfg.seats["9001"].role == "supervisor" and cfg.seats["9001"].secret_env == "HOTLINE_SEAT_9001_SECRET"
    assert not any("9001" in q.members for q in cfg.queues.values())  # a supervisor takes no queue calls
    with pytest.raises(ValidationError):
        Seat(name="x", role="boss")


def test_check_locates_a_supervisor_code_clashing_with_an_agents_code(tmp_path, monkeypatch) -> None:
    from pathlib import Path

    from click.testing import CliRunner

    from hotline.cli import main

    for ext in ("1001", "1002", "1003", "9001"):
        monkeypatch.setenv(f"HOTLINE_SEAT_{ext}_SECRET", f"seat-pw-{ext}-k7Qm2x")
    text = Path("config/hotline.yaml").read_text(encoding="utf-8").replace('    listen: "*61"', '    listen: "*5"')
    bad = tmp_path / "hotline.yaml"
    bad.write_text(text, encoding="utf-8")
    (tmp_path / "custom").mkdir()
    r = CliRunner().invoke(main, ["check", "-c", str(bad), "--custom", str(tmp_path / "custom")])
    line = text[: text.index('    listen: "*5"')].count("\n") + 1
    assert r.exit_code == 1
    assert (f"{bad}:{line}: supervision.feature_codes.listen: supervisor code *5 clashes with "
            "agents.feature_codes.sign_in (*51)") in r.output, r.output


@pytest.mark.parametrize("codes, why", [
    ({"listen": "*6", "whisper": "*62"}, "one is a prefix of the other"),
    ({"barge": "*61"}, "one is a prefix of the other"),
    ({"release": "69"}, "must be '*' followed by digits"),
    ({"release": "*6a"}, "must be '*' followed by digits"),
])
def test_clashing_or_undialable_supervisor_codes_are_refused(cfg: Config, codes: dict[str, str], why: str) -> None:
    data = cfg.model_dump()
    data["supervision"]["feature_codes"].update(codes)
    with pytest.raises(ValidationError, match=why.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        Config.model_validate(data)


# ------------------------------------------------------------------ the dialplan


def test_rendered_dialplan_sends_codes_to_the_controller_and_sessions_to_chanspy(cfg: Config) -> None:
    files = render(cfg, RenderInputs(ami_secret="a", seat_secrets={k: "pw-long-enough-1" for k in cfg.seats}))
    ext = files["extensions.conf"]
    seats = ext.split(f"[{Context.SEATS}]", 1)[1].split("\n[", 1)[0]
    for code in ("*61", "*62", "*63", "*69"):
        assert f"exten => _{code}X!,1," in seats
        assert f"/supervise,{code},${{EXTEN:3}})" in seats
    assert f"GotoIf($[\"${{{Var.SPY_TARGET}}}\" != \"\"]?{Context.SUPERVISE},spy,1)" in seats
    sup = ext.split(f"[{Context.SUPERVISE}]", 1)[1].split("\n[", 1)[0]
    assert f"Set(SPY_EXIT_CONTEXT={Context.SUPERVISE_KEYS})" in sup
    assert f"ChanSpy(${{{Var.SPY_TARGET}}},${{{Var.SPY_OPTIONS}}})" in sup
    attach = sup.index(f"UserEvent({Event.SUPERVISE},Step: attach,")
    assert sup.index("same => n,Set(SPY_EXIT_CONTEXT") < attach < sup.index("ChanSpy(")  # switches re-announce
    keys = ext.split(f"[{Context.SUPERVISE_KEYS}]", 1)[1].split("\n[", 1)[0]
    for key, mode in SWITCH_KEYS.items():
        block = keys.split(f"exten => {key},1,", 1)[1].split("exten =>", 1)[0]
        assert f"Set({Var.SPY_OPTIONS}={chanspy_options(mode)})" in block
        assert f"UserEvent({Event.SUPERVISE},Step: switch," in block and f"Mode: {mode.value}" in block
        assert f"Goto({Context.SUPERVISE},spy,2)" in block
    # a phone cannot reach the session context: the seats' context does not include it
    assert f"include => {Context.SUPERVISE}" not in ext


# ------------------------------------------------------------------ the AMI adapter


class FakeAmi:
    def __init__(self, channels: list[dict[str, str]]) -> None:
        self.channels = channels
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.handlers: dict[str, list[Any]] = {}

    def on_event(self, name: str, cb: Any) -> None:
        self.handlers.setdefault(name, []).append(cb)

    async def action_list(self, name: str, **headers: Any) -> list[dict[str, str]]:
        assert name == "CoreShowChannels"
        return self.channels

    async def action(self, name: str, raise_on_error: bool = True, **headers: Any) -> dict[str, str]:
        self.actions.append((name, headers))
        return {"Response": "Success"}

    async def originate(self, channel: str, **kw: Any) -> str:
        self.actions.append(("Originate", {"Channel": channel, **kw}))
        return "id"

    async def push(self, **ev: str) -> None:
        for cb in self.handlers.get(ev["Event"], []):
            r = cb(dict(ev))
            if r is not None:
                await r


def ami_rows() -> list[dict[str, str]]:
    return [{"Channel": c.channel, "Linkedid": c.linkedid, "BridgeId": c.bridge, "ChannelStateDesc": c.state}
            for c in live()]


def service(cfg: Config, *, audit_fails: bool = False):
    ami, audits, released = FakeAmi(ami_rows()), [], []

    async def audit(action: str, asked: dict[str, Any], uid: int, user: str) -> None:
        if audit_fails:
            raise RuntimeError("read-only database")
        audits.append((action, asked, uid, user, len(ami.actions)))

    async def on_release(d: Release, actor: str) -> None:
        released.append((d, actor, len(ami.actions)))

    svc = SupervisionService(ami, cfg, audit, on_release=on_release)
    svc.attach()
    return svc, ami, audits, released


async def test_api_listen_audits_first_then_rings_the_supervisor_into_the_session(cfg: Config) -> None:
    svc, ami, audits, _ = service(cfg)
    r = await svc.intervene("listen", "9001", "1001", actor="supervisor:wang", uid=1000, user="wang")
    assert r == {"ok": True, "mode": "listen", "seat": "9001", "agent": "1001", "linkedid": "L1",
                 "channel": AGENT_LEG, "ringing": "PJSIP/9001"}
    [(action, asked, uid, user, actions_before)] = audits
    assert (action, uid, user, actions_before) == ("supervise listen", 1000, "wang", 0)
    assert asked == {"mode": "listen", "seat": "9001", "agent": "1001", "via": "api", "actor": "supervisor:wang",
                     "result": "ringing", "linkedid": "L1", "channel": AGENT_LEG}
    [(name, h)] = ami.actions
    assert name == "Originate" and h["Channel"] == "PJSIP/9001" and h["context"] == Context.SUPERVISE
    assert h["exten"] == "spy" and h["timeout_ms"] == cfg.supervision.ring_s * 1000
    assert h["variables"] == {Var.SPY_TARGET: AGENT_LEG, Var.SPY_OPTIONS: "qbESX", Var.SPY_MODE: "listen",
                              Var.SPY_AGENT: "1001", Var.SPY_CALL: "L1", Var.SPY_SEAT: "9001"}


async def test_nothing_is_done_when_the_audit_row_cannot_be_written(cfg: Config) -> None:
    svc, ami, _, released = service(cfg, audit_fails=True)
    for mode in ("barge", "release"):
        r = await svc.intervene(mode, "9001", "1001", actor="a")
        assert r["ok"] is False and r["reason"] == "audit_failed" and "audit log" in r["error"]
    d = await svc.phone("listen", "9001", "1001")
    assert isinstance(d, Refusal) and d.reason == "audit_failed" and d.prompt == REFUSED_PROMPT
    assert ami.actions == [] and released == []


async def test_a_refusal_is_recorded_and_nothing_is_sent(cfg: Config) -> None:
    svc, ami, audits, _ = service(cfg)
    r = await svc.intervene("barge", "1002", "1001", actor="x", uid=1000, user="u")
    assert r["ok"] is False and r["reason"] == NOT_SUPERVISOR
    assert audits[0][0] == "supervise barge" and audits[0][1]["result"] == "refused"
    assert audits[0][1]["reason"] == NOT_SUPERVISOR and ami.actions == []


async def test_release_notes_the_ticket_then_hangs_up_every_leg(cfg: Config) -> None:
    svc, ami, audits, released = service(cfg)
    r = await svc.intervene("release", "9001", "1001", actor="supervisor:li", uid=0, user="root", via="cli")
    assert r["ok"] and r["linkedid"] == "L1" and set(r["channels"]) == {*CALLER, AGENT_LEG}
    assert audits[0][1]["result"] == "released" and audits[0][1]["via"] == "cli" and audits[0][4] == 0
    [(d, actor, actions_before)] = released
    assert d.linkedid == "L1" and actor == "supervisor:li" and actions_before == 0  # noted before the hang-up
    assert sorted(h["Channel"] for n, h in ami.actions if n == "Hangup") == sorted([*CALLER, AGENT_LEG])


async def test_phone_decisions_are_recorded_as_the_seat(cfg: Config) -> None:
    svc, ami, audits, _ = service(cfg)
    d = await svc.phone("whisper", "9001", "1001")
    assert isinstance(d, Spy) and d.options == "qbESXw" and ami.actions == []  # the dialplan runs ChanSpy
    assert audits[0][2:4] == (NO_UID, "seat:9001") and audits[0][1]["via"] == "phone"
    assert audits[0][1]["result"] == "started"
    d = await svc.phone("release", "9001", "1001")
    assert isinstance(d, Release) and [n for n, _ in ami.actions] == ["Hangup"] * 3


async def test_a_key_switch_reported_by_the_dialplan_is_recorded(cfg: Config) -> None:
    svc, ami, audits, _ = service(cfg)
    await ami.push(Event="UserEvent", UserEvent=Event.SUPERVISE.value, Step="switch", Seat="9001", Agent="1001",
                   Mode="barge", Call="L1", Target=AGENT_LEG)
    await ami.push(Event="UserEvent", UserEvent="HotlinePrompt", Prompt="x")  # not ours: ignored
    await ami.push(Event="ChanSpyStart", SpyerChannel="PJSIP/9001-1", SpyeeChannel=AGENT_LEG)  # logged only
    assert [(a, asked["result"], asked["mode"], asked["linkedid"], asked["via"]) for a, asked, *_ in audits] == [
        ("supervise barge", "switched", "barge", "L1", "key")]


# ------------------------------------------------------------------ the seat phone (AGI)


class FakeSession:
    def __init__(self, channel: str, *args: str) -> None:
        self.env = {"agi_channel": channel}
        self.args = list(args)
        self.done: list[tuple[str, Any]] = []

    async def answer(self) -> None:
        self.done.append(("answer", None))

    async def user_event(self, name: str, **headers: Any) -> None:
        self.done.append(("event", (name, headers)))

    async def stream_file(self, name: str, escape: str = "") -> None:
        self.done.append(("play", name))

    async def set_variable(self, name: str, value: Any) -> None:
        self.done.append(("set", (name, value)))


async def test_the_seat_phone_sets_the_session_or_plays_why_not(cfg: Config) -> None:
    svc, _, _, _ = service(cfg)
    phone = SupervisorPhone(svc)
    s = FakeSession("PJSIP/9001-00000002", "*62", "1001")
    await phone.script(s)
    assert dict(v for k, v in s.done if k == "set") == {
        Var.SPY_TARGET: AGENT_LEG, Var.SPY_OPTIONS: "qbESXw", Var.SPY_MODE: "whisper", Var.SPY_AGENT: "1001",
        Var.SPY_CALL: "L1", Var.SPY_SEAT: "9001"}
    s = FakeSession("PJSIP/1003-00000003", "*61", "1001")
    await phone.script(s)
    assert not [x for x in s.done if x[0] == "set"]
    assert ("play", "hotline/supervisor_refused") in s.done
    [(_, (name, headers))] = [x for x in s.done if x[0] == "event"]
    assert name == Event.PROMPT and headers["Prompt"] == "supervisor_refused" and headers["Result"] == NOT_SUPERVISOR
    s = FakeSession("PJSIP/9001-00000004", "*61", "1002")  # 1002 has no call
    await phone.script(s)
    assert ("play", "hotline/supervisor_no_call") in s.done


# ------------------------------------------------------------------ `hotline supervise` (the control socket)


def test_cli_asks_the_controller_and_the_socket_says_who_asked(tmp_path, monkeypatch) -> None:
    import getpass
    import os
    import pwd

    from click.testing import CliRunner

    from hotline.cli import main
    from hotline.control import control_socket_path
    from tests.unit.test_control import ThreadedServer

    monkeypatch.setenv("HOTLINE_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("HOTLINE_INSTANCE", raising=False)
    args = ["supervise", "listen", "--seat", "9001", "--agent", "1001"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 3 and "controller is not running" in r.output, r.output

    asked: list[dict[str, Any]] = []

    async def controller(request: dict[str, Any]) -> dict[str, Any]:
        asked.append(request)
        if request["seat"] != "9001":
            return {"ok": False, "reason": NOT_SUPERVISOR, "error": "seat 1002 is not a supervisor seat (role: agent)"}
        return {"ok": True, "mode": request["mode"], "seat": "9001", "agent": "1001", "linkedid": "L1",
                "ringing": "PJSIP/9001"}

    with ThreadedServer(control_socket_path(), controller):
        r = CliRunner().invoke(main, [*args, "--actor", "班长:wang"])
        refused = CliRunner().invoke(main, ["supervise", "barge", "--seat", "1002", "--agent", "1001"])
    assert r.exit_code == 0 and "监听" in r.output and "seat 9001 is ringing" in r.output and "L1" in r.output
    assert asked[0] == {"op": "supervise", "mode": "listen", "seat": "9001", "agent": "1001", "actor": "班长:wang",
                        "peer": {"uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name}}
    assert refused.exit_code == 1 and "not a supervisor seat" in refused.output
    assert asked[1]["actor"] == f"supervisor:{getpass.getuser()}"
    bad = CliRunner().invoke(main, ["supervise", "spy", "--seat", "9001", "--agent", "1001"])
    assert bad.exit_code == 2
