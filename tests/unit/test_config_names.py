"""Config names and dial strings cannot inject into Asterisk's files (issue 14 item 13).

A newline in a queue name added `exten => 666,1,System(...)` to the rendered dialplan and a seat
name added a PJSIP section; `check` passed both. Keys take a safe alphabet; display names and
dial strings refuse control characters and `;[]()` (dial strings also `,`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model.loading import ConfigError, load_config

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


def _hostile(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    edit(data)
    p = tmp_path / "hotline.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return p


def _seat_key(d: dict) -> None:
    d["seats"]["1001]\n[evil"] = d["seats"].pop("1001")


def _queue_name(d: dict) -> None:
    d["queues"]["general"]["name"] = "综合受理\nexten => 666,1,System(touch /tmp/pwned)"


def _seat_name(d: dict) -> None:
    d["seats"]["1001"]["name"] = "话务员\n[emergency-open](!)\ntype=endpoint"


def _dial(d: dict) -> None:
    d["transfer_targets"]["110"]["dial"] = "Local/110@emergency-sim,30,G(x)"


def _queue_key(d: dict) -> None:
    d["queues"]["bad;key"] = d["queues"]["expert"]


def _member(d: dict) -> None:
    d["queues"]["general"]["members"].append("1001)\nexten")


@pytest.mark.parametrize("edit", [_seat_key, _queue_name, _seat_name, _dial, _queue_key, _member],
                         ids=["seat-key", "queue-name-newline", "seat-name-section", "dial-options", "queue-key",
                              "queue-member"])
def test_hostile_names_are_located_config_errors(tmp_path: Path, edit) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_hostile(tmp_path, edit))
    assert str(err.value)


def test_the_shipped_config_still_loads() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.queues["general"].name == "综合受理"


def test_a_seat_key_longer_than_the_agents_table_is_refused_with_its_line() -> None:
    """Review finding: agent_states.agent is 32 wide; a longer seat key would make every agent save fail."""
    import pytest as _pytest

    from model.loading import ConfigError, default_config_path, parse_config

    text = default_config_path().read_text(encoding="utf-8")
    long_key = "s" * 33
    text = text.replace('  "1001": {name: 话务员一号', f'  "{long_key}": {{name: 话务员一号', 1)
    with _pytest.raises(ConfigError) as e:
        parse_config(text, "hotline.yaml")
    assert any("longer than 32" in p.message and p.line for p in e.value.problems)
