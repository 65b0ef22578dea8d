"""Issue 14.12: hostile configuration files are refused fast, located, and never exhaust the process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from model.loading import ConfigError, load_config, load_located, parse_config

ROOT = Path(__file__).resolve().parents[2]

#: 418 bytes that expand to 9**9 (387 million) strings: "billion laughs" in YAML
BOMB = "\n".join(
    ["a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    + [f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi")]
) + "\n"


def test_alias_bomb_is_refused_fast_by_load_located(tmp_path: Path) -> None:
    f = tmp_path / "hotline.yaml"
    f.write_text(BOMB, encoding="utf-8")
    t0 = time.monotonic()
    loaded = load_located(f)
    assert time.monotonic() - t0 < 2.0
    assert loaded.config is None
    assert any("alias" in p.message for p in loaded.problems), loaded.problems
    assert all(p.file == str(f) for p in loaded.problems)


def test_alias_bomb_is_refused_fast_by_load_config(tmp_path: Path) -> None:
    f = tmp_path / "hotline.yaml"
    f.write_text(BOMB, encoding="utf-8")
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert time.monotonic() - t0 < 2.0
    assert "alias" in str(e.value)


def test_recursive_alias_and_deep_nesting_are_refused() -> None:
    with pytest.raises(ConfigError, match="refused|not valid YAML"):
        parse_config("a: &a [*a]\n")
    with pytest.raises(ConfigError, match="refused|not valid YAML"):
        parse_config("a: " + "[" * 5000 + "]" * 5000 + "\n")


def test_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        parse_config("# " + "x" * (2 * 1024 * 1024) + "\n")


def test_modest_aliases_and_the_shipped_config_still_load() -> None:
    load_config(ROOT / "config" / "hotline.yaml")
    text = (ROOT / "config" / "hotline.yaml").read_text(encoding="utf-8")
    with pytest.raises(ConfigError) as e:  # an unknown top-level key using an alias: reported, not refused
        parse_config(text + "\nx_anchor: &h [1, 2]\nx_again: *h\n")
    assert "unknown key" in str(e.value) and "alias" not in str(e.value)
