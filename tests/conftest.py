"""Shared test settings: where the real parts are, and that CI never skips them silently."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import structlog

IN_CI = bool(os.environ.get("CI"))
PG_URL = os.environ.get("HOTLINE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def require(condition: bool, why: str) -> None:
    """Skip locally when a real part is missing; in CI that is a failure, never a silent skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must have this real part: {why}")
    pytest.skip(why)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a parallel run (pytest-xdist worker), hand out the end-to-end modules first, those with more tests
    first, then the rest likewise: a module of real calls takes minutes and must not start last, while the
    many short unit modules fill the workers' ends evenly. xdist keeps this order (--no-loadscope-reorder in
    pyproject.toml); a serial run keeps pytest's own order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    per_file = Counter(item.nodeid.split("::", 1)[0] for item in items)

    def order(item: pytest.Item) -> tuple[bool, int, str]:
        f = item.nodeid.split("::", 1)[0]
        return (not f.startswith("tests/e2e/"), -per_file[f], f)

    items.sort(key=order)  # stable: a module's own tests keep their order


@pytest.fixture(autouse=True)
def _structlog_as_found():  # noqa: ANN202
    """Each test logs with the structlog configuration it found. A CLI test runs setup_logging, which binds
    structlog to the sys.stderr of that moment (that test's capture) behind an INFO filter; a later test in
    the same process (a pytest-xdist worker runs many modules) would log into that dead capture and lose
    its debug lines (test_privacy's capfd saw nothing, test_assembler missed a debug line)."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
