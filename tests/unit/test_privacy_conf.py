"""Asterisk's own logs carry no caller numbers (issue "Ready for real traffic", item 9): the rendered files."""

from __future__ import annotations

from model.loading import default_config_path, load_config
from routing.dialplan import Layout, RenderInputs, render
from wire.conf import parse


def _files() -> dict[str, str]:
    cfg = load_config(default_config_path())
    return render(cfg, RenderInputs(ami_secret="a" * 16, seat_secrets={k: "s" * 16 for k in cfg.seats},
                                    with_sim=True, layout=Layout()))


def test_no_verbose_output_and_no_queue_log() -> None:
    files = _files()
    ast = parse(files["asterisk.conf"], "asterisk.conf")
    options = ast.values(ast.section("options"))
    assert options.get("verbose") == "0"  # the console (console.log) shows no executed dialplan line
    logger = parse(files["logger.conf"], "logger.conf")
    assert logger.values(logger.section("general")).get("queue_log") == "no"  # ENTERQUEUE lines: callers' numbers
    for channel, levels in logger.values(logger.section("logfiles")).items():
        assert "verbose" not in levels and "dtmf" not in levels and "debug" not in levels, channel


def test_no_dialplan_line_logs_the_caller_id() -> None:
    for name, text in _files().items():
        for line in text.splitlines():
            if any(app in line for app in ("NoOp(", "Verbose(", "Log(")):
                assert "CALLERID" not in line.upper(), (name, line)
