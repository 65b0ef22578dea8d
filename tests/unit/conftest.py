"""Fixtures shared by unit test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.unit.live_world import LiveWorld, close_world, open_world


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[LiveWorld]:
    """The live API and its pages served for real on a free port, over a fake AMI (tests/unit/live_world.py)."""
    w = await open_world(tmp_path)
    yield w
    await close_world(w)
