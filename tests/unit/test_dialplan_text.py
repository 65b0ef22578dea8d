"""Free text in the rendered dialplan is read by Asterisk as we meant it (a ';' must not start a comment)."""

from __future__ import annotations

from admin.check import check_config
from model.loading import default_config_path, load_config
from routing.dialplan import Layout, RenderInputs, dialplan_text, render
from wire.conf import dialplan_steps, load_tree, parse


def test_an_unescaped_semicolon_in_an_application_is_found_as_asterisk_would() -> None:
    conf = parse("[x]\nexten => s,1,UserEvent(A,To: keeps waiting; if full)\n"
                 " same => n,UserEvent(A,To: a\\; b)\n same => n,GotoIf($[\"${X}\" = \"\"]?y)\n", "extensions.conf")
    issues = dialplan_steps(conf)[1]
    assert [i.line for i in issues] == [2]
    assert "no closing parenthesis" in issues[0].message and "\\;" in issues[0].message


def test_dialplan_text_escapes_what_would_cut_or_split_an_argument() -> None:
    assert dialplan_text("keeps waiting; if full, queue:general") == "keeps waiting\\; if full\\, queue:general"
    assert dialplan_text("热线(分中心)") == "热线[分中心]"


def test_the_shipped_config_renders_lines_asterisk_reads_whole() -> None:
    cfg = load_config(default_config_path())
    files = render(cfg, RenderInputs(ami_secret="a" * 16, seat_secrets={k: "s" * 16 for k in cfg.seats},
                                     layout=Layout()))
    conf = load_tree(files, "extensions.conf")
    assert dialplan_steps(conf)[1] == []
    overflow = [s.app for s in dialplan_steps(conf)[0] if s.app.startswith("UserEvent(HotlineOverflow")]
    # read back whole: the text after the ";" is still part of the UserEvent
    assert overflow and all(a.endswith("if full\\, queue:general)") for a in overflow if "keeps waiting" in a)


def test_check_reports_a_rendered_line_asterisk_would_cut() -> None:
    cfg = load_config(default_config_path())
    t = cfg.transfer_targets["110"]
    bad = cfg.model_copy(update={"transfer_targets": {**cfg.transfer_targets,
                                                      "110": t.model_copy(update={"name": "公安; 报警"})}})
    files = render(bad, RenderInputs(ami_secret="a" * 16, seat_secrets={k: "s" * 16 for k in cfg.seats},
                                     layout=Layout()))
    assert "NoOp(公安\\; 报警)" in files["extensions.conf"]  # escaped, so nothing to report
    problems = check_config(bad, files={**files, "extensions.conf": files["extensions.conf"].replace("\\;", ";")},
                            check_secrets=False)
    assert any(p.field == "render" and "no closing parenthesis" in p.message for p in problems)
