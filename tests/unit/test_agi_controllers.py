"""`asterisk.fastagi.controllers` (issue 16 item 3): the list the dialplan tries in order, checked by
`hotline check` with located errors, and rendered as one AGI step per controller where the next is tried
only when Asterisk could not reach the one before (AGISTATUS FAILURE)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotline import cli_admin
from hotline.cli import main
from model.loading import default_config_path, load_config, load_located
from routing.dialplan import RenderInputs, render

SHIPPED = default_config_path()
LINE = "  fastagi: {host: 127.0.0.1, port: 4573, backlog: 1024, command_timeout_s: 30, controllers: []}"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_AMI_SECRET", "ami-pw-long-enough")
    monkeypatch.setattr(cli_admin, "_local_asterisk", lambda: None)


def with_controllers(tmp_path: Path, value: str) -> tuple[Path, int]:
    text = SHIPPED.read_text(encoding="utf-8")
    assert LINE in text
    p = tmp_path / "hotline.yaml"
    p.write_text(text.replace(LINE, LINE.replace("controllers: []", f"controllers: {value}")), encoding="utf-8")
    return p, text[: text.index(LINE)].count("\n") + 1


def extensions(cfg) -> str:  # noqa: ANN001
    return render(cfg, RenderInputs(ami_secret="x", seat_secrets={k: "s" for k in cfg.seats}))["extensions.conf"]


@pytest.mark.parametrize("value,says", [
    ("[127.0.0.1]", "is not host:port"),
    ("['10.0.0.5:99999']", "is not host:port"),
    ("['10.0.0.5:4573', '10.0.0.5:4573']", "listed twice"),
    ("['0.0.0.0:4573']", "wildcard"),
    ("['a b:4573']", "is not host:port"),
    ("['h:1,x']", "is not host:port"),
    ("['h:1)/evil']", "is not host:port"),
])
def test_bad_controller_lists_are_located_by_check(tmp_path: Path, value: str, says: str) -> None:
    path, line = with_controllers(tmp_path, value)
    loaded = load_located(path)
    assert loaded.config is None
    [p] = [p for p in loaded.problems if "controllers" in p.field]
    assert says in p.message and p.file == str(path) and p.line == line, p
    r = CliRunner().invoke(main, ["check", "--skip-secrets", "-c", str(path), "--json"], catch_exceptions=False)
    assert r.exit_code == 1
    [q] = [q for q in json.loads(r.stdout)["problems"] if "controllers" in q["field"]]
    assert says in q["message"] and q["line"] == line


def test_no_list_is_this_controller_only_and_renders_as_before() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.asterisk.fastagi.agi_targets() == ["127.0.0.1:4573"]
    conf = extensions(cfg)
    assert "HOTLINE_AGI = agi://127.0.0.1:4573\n" in conf and "HOTLINE_AGI_2" not in conf
    assert "AGISTATUS}\" != \"FAILURE\"" not in conf  # one controller: no failover steps at all


def test_two_controllers_each_agi_step_tries_the_second_only_when_the_first_was_unreachable(tmp_path: Path) -> None:
    path, _ = with_controllers(tmp_path, "['10.0.0.5:4573', '[fd00::6]:4574']")
    cfg = load_config(path)
    conf = extensions(cfg)
    assert "HOTLINE_AGI = agi://10.0.0.5:4573\nHOTLINE_AGI_2 = agi://[fd00::6]:4574\n" in conf
    steps = re.findall(r"same => n,AGI\(\$\{HOTLINE_AGI\}/([a-z_]+)", conf) + \
        re.findall(r"exten => s,1,AGI\(\$\{HOTLINE_AGI\}/([a-z_]+)", conf)
    assert {"inbound", "survey", "callback_offer", "followup", "agent", "supervise"} <= set(steps)
    # after every first try: on to the second only on FAILURE, the same script and arguments
    for m in re.finditer(r"AGI\(\$\{HOTLINE_AGI\}/(.*)\)\n(.*)\n(.*)\n(.*)\n", conf):
        script, guard, second, done = m.groups()
        assert guard.endswith('GotoIf($["${AGISTATUS}" != "FAILURE"]?agi_done)'), guard
        assert second.endswith(f"AGI(${{HOTLINE_AGI_2}}/{script})"), second
        assert done.startswith(" same => n(agi_done),"), done
    # the inbound call still falls back to the queue when neither answered
    inbound = conf[conf.index("[hotline-inbound]"):]
    assert inbound.index("AGI(${HOTLINE_AGI_2}/inbound,${CHANNEL(linkedid)}") < inbound.index('!= "SUCCESS"]?fallback)')


def test_controllers_on_other_hosts_need_postgresql(tmp_path: Path) -> None:
    path, _ = with_controllers(tmp_path, "['10.0.0.5:4573', '10.0.0.6:4573']")
    r = CliRunner().invoke(main, ["check", "--skip-secrets", "-c", str(path), "--json"], catch_exceptions=False)
    [p] = [p for p in json.loads(r.stdout)["problems"] if p["field"] == "asterisk.fastagi.controllers"]
    assert "PostgreSQL" in p["message"] and p["line"] is not None
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("controllers: ['10.0.0.5:4573', '10.0.0.6:4573']",
                                 "controllers: ['127.0.0.1:4573', '127.0.0.1:4574']"), encoding="utf-8")
    r = CliRunner().invoke(main, ["check", "--skip-secrets", "-c", str(path), "--json"], catch_exceptions=False)
    assert not [p for p in json.loads(r.stdout)["problems"] if p["field"] == "asterisk.fastagi.controllers"]


def test_rank_is_the_place_in_the_list() -> None:
    from model.config import FastAgiSettings

    assert FastAgiSettings().rank() == 0
    two = ["10.0.0.5:4573", "10.0.0.6:4573"]
    assert FastAgiSettings(host="10.0.0.6", controllers=two).rank() == 1
    assert FastAgiSettings(host="0.0.0.0", port=4573, controllers=["10.0.0.5:4574", "10.0.0.6:4573"]).rank() == 1
    assert FastAgiSettings(host="10.0.0.9", controllers=two).rank() == 2  # not listed: after all of them
