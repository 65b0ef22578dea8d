"""Carrier trunks, the outbound policy, SIP apart from AMI, per-seat secrets: rendering, check, the allow-list."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from admin.check import check_config
from model.config import Config
from model.loading import default_config_path, load_config, parse_config
from routing.dialplan import Layout, RenderInputs, render
from routing.outbound import did_map, outbound_refusal, pattern_regex
from ticketbridge.callbacks import CallbackDialer, CallbackError
from wire.conf import dialplan_steps, load_tree, parse

SHIPPED = default_config_path()
STRONG = {f"HOTLINE_SEAT_{e}_SECRET": f"Seat-{e}-k7Qm2xZp" for e in ("1001", "1002", "1003", "1004", "1005", "1006", "9001")}


def shipped(**update) -> Config:
    cfg = load_config(SHIPPED)
    return cfg.model_copy(update=update) if update else cfg


def with_yaml(extra: str) -> Config:
    return parse_config(SHIPPED.read_text(encoding="utf-8") + "\n" + extra, "t.yaml")


def rendered(cfg: Config, **kw) -> dict[str, str]:
    return render(cfg, RenderInputs(ami_secret="a" * 16, seat_secrets={k: "s" * 16 for k in cfg.seats},
                                    layout=Layout(), **kw))


def sections(text: str, name: str) -> list:
    return [s for s in parse(text, "pjsip.conf").sections if s.name == name]


# ------------------------------------------------------------------ the allow-list (one rule)


@pytest.mark.parametrize("number", ["13800000000", "18912345678", "057187654321", "01012345678", "87654321",
                                    "110", "119", "120", "122", "95598", "96116"])
def test_domestic_numbers_and_configured_targets_may_go_out(number: str) -> None:
    assert outbound_refusal(shipped(), number) is None


@pytest.mark.parametrize("number", ["0044207946000", "00861380000000", "+442079460000", "95588", "96196",
                                    "114", "12345", "1380000000", "10086", "12315", "*72", "", "abc"])
def test_international_premium_and_short_codes_are_refused(number: str) -> None:
    assert outbound_refusal(shipped(), number)


def test_targets_are_allowed_only_when_configured_so() -> None:
    cfg = shipped()
    off = cfg.model_copy(update={"outbound": cfg.outbound.model_copy(update={"allow_transfer_targets": False})})
    assert outbound_refusal(off, "110") and outbound_refusal(off, "95598")


def test_asterisk_patterns_mean_what_asterisk_means() -> None:
    assert pattern_regex("_1[3-9]XXXXXXXXX").match("13912345678")
    assert not pattern_regex("_1[3-9]XXXXXXXXX").match("12912345678")
    assert pattern_regex("_NXXZ").match("2001") and not pattern_regex("_NXXZ").match("2000")
    assert pattern_regex("_0.").match("01") and not pattern_regex("_0.").match("0")
    assert pattern_regex("_0!").match("0") and pattern_regex("110").match("110")
    assert not pattern_regex("110").match("1100")


# ------------------------------------------------------------------ rendering


def test_outbound_context_is_rendered_with_the_allow_list_and_a_refusal() -> None:
    files = rendered(shipped())
    conf = load_tree(files, "extensions.conf")
    assert dialplan_steps(conf)[1] == []
    ext = files["extensions.conf"]
    body = ext[ext.index("[hotline-outbound]"):]
    assert "exten => _1[3-9]XXXXXXXXX,1," in body and "Dial(PJSIP/${EXTEN}@telecom,30)" in body
    assert "exten => 110,1," in body and "exten => 95598,1," in body
    assert "exten => _[+*#0-9]!,1,UserEvent(HotlineOutboundDenied" in body
    assert "Hangup(21)" in body


def test_no_carrier_means_outbound_is_refused_not_improvised() -> None:
    cfg = shipped(carriers={}, outbound=shipped().outbound.model_copy(update={"carrier": None}))
    body = rendered(cfg)["extensions.conf"]
    body = body[body.index("[hotline-outbound]"):]
    assert "Dial(" not in body.split("#tryinclude")[0] and "no outbound route" in body


def test_ip_carrier_renders_endpoint_identify_and_did_context() -> None:
    files = rendered(shipped())
    pj = files["pjsip.conf"]
    ep = [s for s in sections(pj, "telecom") if s.get("type") == "endpoint"][0]
    # the shipped trunk carries video calls too (sign-language seats): asterisk.sip.video_codecs after the audio
    assert ep.get("context") == "hotline-carrier-telecom"
    assert [i.value for i in ep.items if i.key == "allow"] == ["alaw,ulaw", "h264,vp8"]
    assert ep.get("max_video_streams") == "1"
    assert ep.get("trust_id_inbound") == "yes" and ep.get("outbound_auth") is None
    ident = sections(pj, "telecom-identify")[0]
    assert [i.value for i in ident.items if i.key == "match"] == ["192.0.2.10", "192.0.2.11"]
    assert not sections(pj, "telecom-reg")
    ext = files["extensions.conf"]
    assert "exten => 057112315,1,Goto(hotline-inbound,12315,1)" in ext
    assert "exten => 12345,1,Goto(hotline-inbound,12345,1)" in ext
    carrier = ext[ext.index("[hotline-carrier-telecom]"):ext.index("[hotline-did-telecom]")]
    # the dialed number is looked for in Diversion, then To, then the Request-URI; unknown → the 12345 flow
    assert carrier.index("REDIRECTING(from-num)") < carrier.index("PJSIP_HEADER(read,To)") < carrier.index(
        "${FILTER(0-9,${EXTEN})}")
    assert carrier.rstrip().endswith("Goto(hotline-inbound,12345,1)")


def test_a_caller_from_the_carrier_cannot_reach_outbound_or_seats() -> None:
    """From a carrier's context the only ways on are its DID context and hotline-inbound; in the queues the
    caller may not transfer (Queue option t, never T)."""
    ext = rendered(shipped())["extensions.conf"]
    conf = load_tree({"extensions.conf": ext}, "extensions.conf")
    for step in dialplan_steps(conf)[0]:
        if step.context.startswith(("hotline-carrier-", "hotline-did-")):
            assert "hotline-outbound" not in step.app and "hotline-seats" not in step.app
            assert not step.app.startswith(("Dial", "Gosub", "Originate")), step.app
            if step.app.startswith("Goto"):
                assert "hotline-did-" in step.app or "hotline-inbound," in step.app, step.app
    for line in ext.splitlines():
        if "Queue(hotline-" in line:
            opts = line.split("Queue(")[1].split(",")[1]
            assert "T" not in opts


def test_registering_carrier_renders_registration_with_its_secret() -> None:
    cfg = with_yaml("")
    cfg = cfg.model_copy(update={"carriers": {"unicom": cfg.carriers["telecom"].model_copy(update={
        "auth": "register", "host": "sip.carrier.example", "username": "0571123450", "match": [],
        "secret_env": "HOTLINE_CARRIER_UNICOM_SECRET", "codecs": ["g722", "alaw"]})}})
    pj = rendered(cfg, carrier_secrets={"unicom": "carrier-Secret-1"})["pjsip.conf"]
    reg = sections(pj, "unicom-reg")[0]
    assert reg.get("server_uri") == "sip:sip.carrier.example:5060"
    assert reg.get("client_uri") == "sip:0571123450@sip.carrier.example:5060"
    assert reg.get("outbound_auth") == "unicom-auth"
    assert sections(pj, "unicom-auth")[0].get("password") == "carrier-Secret-1"
    assert [i.value for i in sections(pj, "unicom-identify")[0].items if i.key == "match"] == ["sip.carrier.example"]
    ep = [s for s in sections(pj, "unicom") if s.get("type") == "endpoint"][0]
    assert [i.value for i in ep.items if i.key == "allow"] == ["g722,alaw", "h264,vp8"]
    assert ep.get("outbound_auth") == "unicom-auth"
    problems = check_config(cfg, environ=STRONG, check_secrets=True)
    assert any(p.field == "carriers.unicom" and "HOTLINE_CARRIER_UNICOM_SECRET" in p.message for p in problems)
    assert not [p for p in check_config(cfg, environ={**STRONG, "HOTLINE_CARRIER_UNICOM_SECRET": "x" * 20})
                if p.field.startswith("carriers")]


def test_sip_binds_apart_from_ami_with_optional_tls_and_srtp() -> None:
    cfg = with_yaml("")
    cfg.asterisk.sip.bind = "10.1.2.3"
    cfg.asterisk.ami.host = "127.0.0.1"
    pj = rendered(cfg)["pjsip.conf"]
    assert sections(pj, "transport-udp")[0].get("bind") == "10.1.2.3:5060"
    assert not sections(pj, "transport-tls")
    cfg = parse_config(SHIPPED.read_text(encoding="utf-8").replace(
        "sip: {bind: 127.0.0.1, port: 5060}",
        "sip: {bind: 0.0.0.0, port: 5070, tls: {port: 5071, cert_file: /etc/t.crt, key_file: /etc/t.key}}").replace(
        "secret_env: HOTLINE_SEAT_1001_SECRET}", "secret_env: HOTLINE_SEAT_1001_SECRET, transport: tls, srtp: true}"),
        "t.yaml")
    pj = rendered(cfg)["pjsip.conf"]
    assert sections(pj, "transport-udp")[0].get("bind") == "0.0.0.0:5070"
    tls = sections(pj, "transport-tls")[0]
    assert tls.get("bind") == "0.0.0.0:5071" and tls.get("cert_file") == "/etc/t.crt"
    seat = [s for s in sections(pj, "1001") if s.get("type") is None or s.get("auth")][0]
    assert seat.get("transport") == "transport-tls" and seat.get("media_encryption") == "sdes"
    assert [s for s in sections(pj, "1002") if s.get("auth")][0].get("media_encryption") is None


def test_old_sip_port_key_still_reads() -> None:
    cfg = parse_config(SHIPPED.read_text(encoding="utf-8").replace("sip: {bind: 127.0.0.1, port: 5060}",
                                                                    "sip_port: 5080"), "t.yaml")
    assert cfg.asterisk.sip.port == 5080 and cfg.asterisk.sip_port == 5080
    assert cfg.asterisk.sip.bind == "127.0.0.1"


# ------------------------------------------------------------------ check


def fields(cfg: Config, **kw) -> dict[str, str]:
    return {p.field: p.message for p in check_config(cfg, environ=STRONG, **kw)}


def test_shipped_config_with_strong_per_seat_secrets_is_clean() -> None:
    assert check_config(shipped(), environ=STRONG) == []


def test_check_refuses_weak_and_shared_seat_secrets() -> None:
    got = {p.field: p.message for p in check_config(shipped(), environ={
        **STRONG, "HOTLINE_SEAT_1001_SECRET": "12345678901234", "HOTLINE_SEAT_1002_SECRET": "short"})}
    assert "digits only" in got["seats.1001"] and "too short" in got["seats.1002"]
    assert "seats.1003" not in got
    cfg = with_yaml("")
    for seat in cfg.seats.values():
        seat.secret_env = "HOTLINE_SEAT_SECRET"
    got = {p.field: p.message for p in check_config(cfg, environ={"HOTLINE_SEAT_SECRET": "Shared-secret-123"})}
    assert "share $HOTLINE_SEAT_SECRET" in got["seats.1001"] and "seats.1003" in got


def test_check_refuses_outbound_targets_off_the_allow_list_and_carrier_bypasses() -> None:
    cfg = with_yaml("")
    cfg.legacy_lines["96196"].forward_to = "0044207946000"
    cfg.transfer_targets["110"].dial = "PJSIP/110@telecom"
    cfg.transfer_targets["119"].dial = "Local/95588@hotline-outbound"
    got = fields(cfg)
    assert "outbound policy" in got["legacy_lines.96196.forward_to"]
    assert "bypasses the outbound policy" in got["transfer_targets.110.dial"]
    assert "95588" in got["transfer_targets.119.dial"]


def test_check_finds_carrier_mistakes() -> None:
    cfg = with_yaml("")
    t = cfg.carriers["telecom"]
    cfg.carriers = {"telecom": t.model_copy(update={"dids": {"0571-12399": "12399", "abc": "12345"},
                                                    "codecs": ["alaw", "mp3"]}),
                    "1001": t.model_copy(update={"auth": "register"})}
    cfg.outbound.allow = [*cfg.outbound.allow, "_00X."]
    cfg.outbound.carrier = "mobile"
    got = fields(cfg, check_secrets=False)
    assert "neither the center number" in got["carriers.telecom.dids.0571-12399"]
    assert "not a phone number" in got["carriers.telecom.dids.abc"]
    assert "mp3" in got["carriers.telecom.codecs.1"]
    about_1001 = " | ".join(p.message for p in check_config(cfg, check_secrets=False) if p.field == "carriers.1001")
    assert "name of a seat" in about_1001 and "needs secret_env" in about_1001
    assert "username" in got["carriers.1001.username"]
    assert "international" in got["outbound.allow.5"]
    assert "not defined" in got["outbound.carrier"]


def test_check_says_when_forwarding_has_no_outbound_route() -> None:
    cfg = with_yaml("")
    cfg.carriers = {}
    cfg.outbound.carrier = None
    cfg.legacy_lines["96196"].forward_to = "057187654321"
    assert "no outbound route" in fields(cfg)["legacy_lines.96196.forward_to"]


def test_did_map_normalises_and_keeps_hotline_numbers() -> None:
    cfg = shipped()
    m = did_map(cfg, cfg.carriers["telecom"].model_copy(update={"dids": {"+86-571-12345": "12345"}}))
    assert m["8657112345"] == "12345" and m["12315"] == "12315" and m["12345"] == "12345"


# ------------------------------------------------------------------ callbacks use the same rule


class _Store:
    def __init__(self, caller: str) -> None:
        self.cb = SimpleNamespace(id=1, status="pending", caller=caller, last_result=None)
        self.marked: list[tuple] = []
        self.claimed = False

    async def callback_for(self, no):  # noqa: ANN001
        return self.cb

    async def mark_callback(self, cid, status, result, actor=""):  # noqa: ANN001
        self.marked.append((status, result))

    async def claim_owed(self, kind, cid, owner, *, lease_s, actor=None):  # noqa: ANN001
        self.claimed = True
        return None  # stop before dialing


@pytest.mark.parametrize("caller,refused", [("0044207946000", True), ("95588", True), ("13800000000", False)])
def test_callback_numbers_pass_the_outbound_policy_before_anything_is_dialed(caller: str, refused: bool) -> None:
    cfg = shipped()
    store = _Store(caller)
    dialer = CallbackDialer(store, None, cfg.callbacks, policy=cfg)
    with pytest.raises(CallbackError) as e:
        asyncio.run(dialer.call_back("260101000001"))
    if refused:
        assert "outbound policy" in str(e.value) and not store.claimed
        assert store.marked == [("failed", "refused by the outbound policy")]
    else:
        assert store.claimed and "being called back" in str(e.value)


def test_check_guards_automatic_calls_dial_strings_and_route() -> None:
    cfg = shipped()
    cfg.callbacks.auto.enabled = cfg.followups.auto.enabled = True
    assert fields(cfg) == {}  # the shipped config with both turned on is clean
    cfg.callbacks.dial = "PJSIP/{number}@telecom"
    cfg.followups.dial = "Local/13800000000@hotline-outbound"
    got = fields(cfg)
    assert "bypasses the outbound policy" in got["callbacks.dial"]
    assert "{number}" in got["followups.dial"]
    cfg = shipped()
    cfg.followups.auto.enabled = True
    cfg.carriers, cfg.outbound.carrier = {}, None
    assert "no outbound route" in fields(cfg)["followups.auto.enabled"]
    cfg.followups.auto.hours = "nights"
    assert "not defined under hours" in fields(cfg)["followups.auto.hours"]
