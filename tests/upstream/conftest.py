"""Upstream-check suite: the pinned panoramisk/pyst2 releases still have the defects we work around.

Every test here asserts that a defect listed in ../shared/LIBRARIES.md is STILL PRESENT in
the exact release pinned by the ``upstream`` extra of pyproject.toml. The day upstream fixes
one (and we bump the pin), its test fails and names the workaround that may be dropped.

A missing or differently-versioned package is a failure with a clear message, never a
skip: a check that silently does not run would let a dead workaround live forever.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def pinned_versions() -> dict[str, str]:
    """{'panoramisk': '1.4', 'pyst2': '0.5.1'} from ``[project.optional-dependencies] upstream``."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins: dict[str, str] = {}
    for req in data["project"]["optional-dependencies"]["upstream"]:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([A-Za-z0-9_.+-]+)\s*", req)
        assert m, f"upstream extra must pin exact versions (name==version), got {req!r}"
        pins[m.group(1).lower()] = m.group(2)
    return pins


def _require(dist: str, module: str) -> ModuleType:
    pins = pinned_versions()
    want = pins.get(dist)
    if want is None:
        pytest.fail(f"{dist} is not pinned in the 'upstream' extra of pyproject.toml")
    try:
        have: str | None = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        have = None
    if have is None:
        pytest.fail(f"{dist}=={want} is not installed: the upstream-check suite needs the 'upstream' extra "
                    f"(.venv/bin/pip install -e '.[test,upstream]'; scripts/bootstrap does this)", pytrace=False)
    if have != want:
        pytest.fail(f"{dist} {have} is installed but the 'upstream' extra pins {want}: these checks are "
                    f"about {want}; reinstall with .venv/bin/pip install -e '.[test,upstream]'", pytrace=False)
    return importlib.import_module(module)


@pytest.fixture
def panoramisk() -> ModuleType:
    """The pinned panoramisk package (fails the test, clearly, when it is missing or another version)."""
    mod = _require("panoramisk", "panoramisk")
    importlib.import_module("panoramisk.fast_agi")
    importlib.import_module("panoramisk.manager")
    return mod


@pytest.fixture
def pyst2() -> ModuleType:
    """The pinned pyst2 package, imported as ``asterisk`` (its agi, manager and config modules)."""
    mod = _require("pyst2", "asterisk")
    for sub in ("agi", "manager", "config"):
        importlib.import_module(f"asterisk.{sub}")
    return mod


@pytest.fixture(autouse=True)
def _quiet_upstream_logs() -> Iterator[None]:
    """panoramisk logs tracebacks from its own threads here; formatting a traceback runs the AST
    compiler (3.11 caret hints), which is not safe in two threads at once. The tests assert on
    behaviour, not on upstream's log lines."""
    logger = logging.getLogger("panoramisk")
    saved = logger.propagate, logger.handlers[:]
    logger.propagate = False
    logger.handlers[:] = [logging.NullHandler()]
    try:
        yield
    finally:
        logger.propagate, logger.handlers[:] = saved[0], saved[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/upstream carries the ``upstream`` marker (``-m 'not upstream'`` leaves it out)."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.upstream)
