"""The .conf parser: Asterisk's syntax as config.c reads it, and each pyst2 defect (LIBRARIES.md) as a regression."""

from __future__ import annotations

from pathlib import Path

import pytest

from wire.conf import ConfParseError, dialplan_steps, load, load_tree, parse

PJSIP = """\
[transport-udp]
type = transport
bind = 127.0.0.1:5060

[seat-endpoint](!)
type = endpoint
context = hotline-seats
allow = ulaw

[1001](seat-endpoint)
auth = 1001-auth
aors = 1001
"""


# ------------------------------------------------------------------ pyst2 defects (LIBRARIES.md)


def test_pyst2_defect_template_marker_is_parsed() -> None:
    conf = parse(PJSIP, "pjsip.conf")
    assert not conf.errors
    tpl = conf.section("seat-endpoint")
    assert tpl is not None and tpl.template and tpl.line == 5
    assert "seat-endpoint" not in conf.names()


def test_pyst2_defect_inheritance_from_template() -> None:
    conf = parse(PJSIP, "pjsip.conf")
    seat = conf.section("1001")
    assert seat is not None and seat.inherits == ["seat-endpoint"]
    values = conf.values(seat)
    assert values["type"] == "endpoint" and values["context"] == "hotline-seats" and values["aors"] == "1001"


def test_pyst2_defect_include_is_followed(tmp_path: Path) -> None:
    (tmp_path / "custom").mkdir()
    (tmp_path / "extensions.conf").write_text("[a]\nexten => 1,1,NoOp()\n#include \"custom/*.conf\"\n[b]\n")
    (tmp_path / "custom" / "x.conf").write_text("exten => 2,1,NoOp(in a)\n[site-x]\nexten => 3,1,NoOp()\n")
    (tmp_path / "custom" / "y.conf").write_text("[site-y]\nexten => 4,1,NoOp()\n")
    conf = load(tmp_path / "extensions.conf")
    assert not conf.errors
    assert conf.names() == ["a", "site-x", "site-y", "b"]
    a = conf.section("a")
    assert a is not None
    # an included file continues the current section, like Asterisk
    assert [(i.value, Path(i.file).name, i.line) for i in a.items] == [
        ("1,1,NoOp()", "extensions.conf", 2), ("2,1,NoOp(in a)", "x.conf", 1)]
    assert conf.includes[0].resolved == (str(tmp_path / "custom/x.conf"), str(tmp_path / "custom/y.conf"))


def test_pyst2_defect_escaped_semicolon_is_kept() -> None:
    conf = parse("[g]\nx = a\\;b ; a real comment\ny = plain;cut\n", "g.conf")
    sec = conf.section("g")
    assert sec is not None
    assert sec.get("x") == "a;b"
    assert sec.get("y") == "plain"


# ------------------------------------------------------------------ syntax


def test_object_and_plain_assignments_and_lines() -> None:
    conf = parse("; head\n[ctx]\nexten=>_X.,1,Answer()\n same => n,Set(A=b=c)\nkey=val\n", "e.conf")
    items = conf.section("ctx").items  # type: ignore[union-attr]
    assert [(i.key, i.value, i.object, i.line) for i in items] == [
        ("exten", "_X.,1,Answer()", True, 3), ("same", "n,Set(A=b=c)", True, 4), ("key", "val", False, 5)]


def test_block_comments_nest_and_span_lines() -> None:
    conf = parse("[a]\nx = 1 ;-- gone\n y = 2 ;-- inner --; still gone\n--;\nz = 3\n", "b.conf")
    assert conf.section("a").get("y") is None  # type: ignore[union-attr]
    assert conf.values(conf.section("a")) == {"x": "1", "z": "3"}  # type: ignore[arg-type]
    unclosed = parse("[a]\n;-- never closed\nx = 1\n", "u.conf")
    assert [(e.line, "never closed" in e.message) for e in unclosed.errors] == [(2, True)]


def test_multiple_templates_and_addition() -> None:
    text = "[t1](!)\na = 1\n[t2](!)\nb = 2\n[x](!,t1)\n[y](t1,t2)\nc = 3\n[y](+)\nd = 4\n"
    conf = parse(text, "m.conf")
    assert not conf.errors
    assert conf.section("x").template  # type: ignore[union-attr]
    y = conf.sections_named("y")
    assert y[0].inherits == ["t1", "t2"] and y[1].add
    assert conf.values(y[0]) == {"a": "1", "b": "2", "c": "3"}


def test_errors_name_file_and_line_and_all_are_reported() -> None:
    text = "orphan = 1\n[ok]\nno equals here\n[broken\n[z](missing)\n[w](+)\n= nothing\n#exec /bin/true\n#frobnicate\n"
    conf = parse(text, "bad.conf")
    got = [(e.file, e.line) for e in conf.errors]
    assert got == [("bad.conf", n) for n in (1, 3, 4, 5, 6, 7, 8, 9)]
    assert "before any [section]" in conf.errors[0].message
    assert "'missing'" in conf.errors[3].message
    assert str(conf.errors[1]).startswith("bad.conf:3: ")


def test_strict_load_raises_with_every_issue(tmp_path: Path) -> None:
    f = tmp_path / "a.conf"
    f.write_text("x = 1\n[s]\nbad\n")
    with pytest.raises(ConfParseError) as e:
        load(f, strict=True)
    assert [i.line for i in e.value.issues] == [1, 3]
    assert f"{f}:1:" in str(e.value)


def test_missing_include_vs_tryinclude(tmp_path: Path) -> None:
    f = tmp_path / "a.conf"
    f.write_text('[s]\n#tryinclude "nothere/*.conf"\n#tryinclude gone.conf\n#include "absent.conf"\n')
    conf = load(f)
    assert [(e.line, "absent.conf" in e.message) for e in conf.errors] == [(4, True)]


def test_include_relative_to_config_dir(tmp_path: Path) -> None:
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "a.conf").write_text('[a]\n#include "custom/b.conf"\n')
    (tmp_path / "custom" / "b.conf").write_text("k = v\n")
    assert load(tmp_path / "custom" / "a.conf", config_dir=tmp_path).section("a").get("k") == "v"  # type: ignore[union-attr]
    # without config_dir the name is taken relative to the including file
    assert load(tmp_path / "custom" / "a.conf").errors


def test_include_cycle_is_an_error_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("[a]\n#include b.conf\n")
    (tmp_path / "b.conf").write_text("#include a.conf\n")
    conf = load(tmp_path / "a.conf")
    assert any("includes itself" in e.message for e in conf.errors)


def test_load_tree_follows_globs_in_memory() -> None:
    files = {
        "extensions.conf": '[hotline-inbound]\nexten => _X.,1,NoOp()\n#tryinclude "custom/*.conf"\n',
        "custom/a.conf": "[site-a]\nexten => 1,1,NoOp()\n",
        "custom/deeper/b.conf": "[never]\n",
    }
    conf = load_tree(files, "extensions.conf")
    assert not conf.errors
    assert conf.names() == ["hotline-inbound", "site-a"]
    assert conf.section("site-a").file == "custom/a.conf"  # type: ignore[union-attr]


def test_dialplan_steps_fill_in_same_and_labels() -> None:
    conf = parse("[c]\nexten => 100,1,Answer()\n same => n(top),Dial(PJSIP/1,30,tT)\nsame => n,Hangup()\n"
                 "[d]\nsame => n,NoOp()\nexten => 1,x,NoOp()\nexten => 2\n", "e.conf")
    steps, issues = dialplan_steps(conf)
    assert [(s.context, s.exten, s.priority, s.label, s.app) for s in steps[:3]] == [
        ("c", "100", "1", None, "Answer()"), ("c", "100", "n", "top", "Dial(PJSIP/1,30,tT)"), ("c", "100", "n", None, "Hangup()")]
    assert [i.line for i in issues] == [6, 7, 8]


def test_rendered_files_parse_cleanly() -> None:
    """Every file we render must read without a problem (the same check `hotline check` runs)."""
    from model.loading import default_config_path, load_config
    from routing.dialplan import RenderInputs, render

    cfg = load_config(default_config_path())
    files = render(cfg, RenderInputs(ami_secret="x", seat_secrets={k: "s" for k in cfg.seats}, with_sim=True))
    for name in files:
        conf = load_tree(files, name)
        assert not conf.errors, (name, conf.errors)
    ext = load_tree(files, "extensions.conf")
    assert "hotline-inbound" in ext.names()
    assert not dialplan_steps(ext)[1]
