"""Shared test settings: where the real parts are, and that CI never skips them silently."""

from __future__ import annotations

import os

import pytest

IN_CI = bool(os.environ.get("CI"))
PG_URL = os.environ.get("HOTLINE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def require(condition: bool, why: str) -> None:
    """Skip locally when a real part is missing; in CI that is a failure, never a silent skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must have this real part: {why}")
    pytest.skip(why)
