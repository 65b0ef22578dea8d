"""`$HOTLINE_EVENT_LOOP` picks the controller's event loop: asyncio by default, uvloop on request (issue 15)."""

from __future__ import annotations

import asyncio

import pytest

from hotline.cli_base import EVENT_LOOP_ENV, event_loop_factory

from tests.conftest import require


def test_default_is_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert event_loop_factory() is None
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    assert event_loop_factory() is None


def test_an_unknown_loop_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "trio")
    with pytest.raises(SystemExit) as e:
        event_loop_factory()
    assert e.value.code == 2


def test_uvloop_when_asked_and_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import uvloop
    except ImportError:
        require(False, "the uvloop extra (scripts/bootstrap installs it): pip install -e '.[uvloop]'")
    monkeypatch.setenv(EVENT_LOOP_ENV, "uvloop")
    factory = event_loop_factory()
    assert factory is uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(asyncio.sleep(0, "ran")) == "ran"
