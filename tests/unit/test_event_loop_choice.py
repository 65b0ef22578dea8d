"""`$HOTLINE_EVENT_LOOP` picks the controller's event loop: uvloop by default, asyncio's own on request (issue 15)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from hotline.cli_base import EVENT_LOOP_ENV, event_loop_factory


def test_default_is_uvloop_and_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in (None, "", "uvloop", " UVLoop "):
        if value is None:
            monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
        else:
            monkeypatch.setenv(EVENT_LOOP_ENV, value)
        assert event_loop_factory() is uvloop.new_event_loop
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        assert runner.run(asyncio.sleep(0, "ran")) == "ran"
        assert isinstance(runner.get_loop(), uvloop.Loop)


def test_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    assert event_loop_factory() is None


def test_an_unknown_loop_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "trio")
    with pytest.raises(SystemExit) as e:
        event_loop_factory()
    assert e.value.code == 2
    assert "HOTLINE_EVENT_LOOP='trio'" in capsys.readouterr().err
