"""Issue 14: property-based fuzzing (hypothesis) of the AGI reply parser, the AMI message parser and
the config loader. Bounded: a fixed number of examples each and a per-example deadline, no database."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.loading import ConfigError, parse_config
from wire.ami import encode_action, parse_message
from wire.fastagi import AgiError, parse_reply

BOUNDED = settings(max_examples=300, deadline=timedelta(seconds=1), database=None,
                   suppress_health_check=[HealthCheck.too_slow])

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@BOUNDED
@given(_text)
def test_parse_reply_never_raises_anything_but_agierror(raw: str) -> None:
    try:
        r = parse_reply(raw)
    except AgiError:
        return
    assert 100 <= r.code <= 999 and r.raw == raw


@BOUNDED
@given(st.integers(-1, 255), st.one_of(st.none(), st.text(st.characters(blacklist_characters="\r\n",
                                                                           blacklist_categories=("Cs",)),
                                                             max_size=50)),
       st.one_of(st.none(), st.integers(0, 10**9)))
def test_parse_reply_reads_back_what_asterisk_writes(result: int, data: str | None, endpos: int | None) -> None:
    line = f"200 result={result}"
    if data is not None:
        line += f" ({data})"
    if endpos is not None:
        line += f" endpos={endpos}"
    r = parse_reply(line)
    assert (r.code, r.result, r.endpos) == (200, str(result), endpos)
    if data is not None:
        assert r.data == data


@BOUNDED
@given(_text)
def test_parse_message_never_raises(text: str) -> None:
    msg = parse_message(text)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in msg.items())


_key = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_-]{0,15}\Z")
_value = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=60)


@BOUNDED
@given(st.dictionaries(_key, _value, max_size=8))
def test_encoded_actions_parse_back(headers: dict[str, str]) -> None:
    headers = {k: v for k, v in headers.items() if k not in ("Action", "ActionID")}
    raw = encode_action("Setvar", "id-1", headers).decode("utf-8")
    msg = parse_message(raw.rstrip("\r\n"))
    assert msg["Action"] == "Setvar" and msg["ActionID"] == "id-1"
    for k, v in headers.items():
        assert msg[k] == v


_yaml_atoms = st.sampled_from(["a", "1", "12315", "- ", ": ", "\n", "  ", "&x ", "*x", "[", "]", "{", "}",
                               ",", "'", '"', "#", "center", "queues", "menus", "legacy_lines", "!!str ",
                               "<<: ", "2026-02-30", "null", "~", "|", ">", "\t", "张"])


@settings(max_examples=300, deadline=timedelta(seconds=2), database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_yaml_atoms, max_size=60).map("".join))
def test_config_loader_only_ever_reports_config_errors(text: str) -> None:
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as e:
        assert all(p.file == "fuzz.yaml" for p in e.problems)
