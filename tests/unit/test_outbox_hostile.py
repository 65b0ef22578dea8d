"""The outbox pusher is safe to point at the platform (issue 14 item 11): https only, always with its
token, a minimal documented payload (the caller masked), and a bounded read of the answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from model.config import OutboxSettings
from model.loading import load_config
from ticketbridge.assembler import CallRecord
from ticketbridge.outbox import PUSHED_FIELDS, OutboxPusher, OutboxRefused
from ticketbridge.store import TicketStore

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[TicketStore]:
    st = TicketStore(f"sqlite+aiosqlite:///{tmp_path}/t.db", load_config(SHIPPED))
    await st.open()
    yield st
    await st.close()


def test_plain_http_and_a_missing_token_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="https"):
        OutboxSettings(url="http://platform.example/tickets", token_env="T")
    with pytest.raises(ValidationError, match="token_env"):
        OutboxSettings(url="https://platform.example/tickets")
    OutboxSettings(url="http://127.0.0.1:9/x", token_env="T", allow_http=True)  # the tests' explicit flag
    with pytest.raises(OutboxRefused):
        OutboxPusher(None, "http://platform.example/tickets")
    settings = OutboxSettings(url="https://platform.example/tickets", token_env="HOTLINE_TEST_OUTBOX_TOKEN")
    monkeypatch.delenv("HOTLINE_TEST_OUTBOX_TOKEN", raising=False)
    with pytest.raises(OutboxRefused, match="HOTLINE_TEST_OUTBOX_TOKEN"):
        OutboxPusher.from_config(None, settings)
    monkeypatch.setenv("HOTLINE_TEST_OUTBOX_TOKEN", "  ")
    with pytest.raises(OutboxRefused):
        OutboxPusher.from_config(None, settings)
    monkeypatch.setenv("HOTLINE_TEST_OUTBOX_TOKEN", "s3cret")
    p = OutboxPusher.from_config(None, settings)
    assert p is not None and p.headers == {"Authorization": "Bearer s3cret"}


async def test_the_payload_is_minimal_and_masks_the_caller(store: TicketStore) -> None:
    now = time.time()
    await store.save_call(CallRecord(
        linkedid="m.1", caller="13812345678", dialed="12345", outcome="answered", started_at=now - 60, ended_at=now,
        participants=[("caller", "PJSIP/trunk-1")], ivr_path=["menu:main", "key:1"], transcript="我家地址是…",
        recording="m.1.wav", self_query={"tried": ["260303000001", "260303000002"], "found": False}))
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={})

    pusher = OutboxPusher(store, "https://platform.example/tickets", transport=httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        assert await pusher.push_once(client) == 1
    [payload] = sent
    assert set(payload) <= {"event", "caller", *PUSHED_FIELDS} and payload["caller"] == "138******78"
    text = str(payload)
    for leak in ("13812345678", "260303000001", "PJSIP", "地址", "m.1.wav", "m.1", "menu:main"):
        assert leak not in text, leak
    [row] = await store.outbox_list()
    assert "self_query" not in row.payload and row.payload["caller"] == "138******78"  # not kept in the outbox either


async def test_only_a_bounded_part_of_the_answer_is_read(store: TicketStore) -> None:
    await store.save_call(CallRecord(linkedid="b.1", caller="13812345678", outcome="answered"))
    read = 0

    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            nonlocal read
            for _ in range(100_000):  # 100 MB if read to the end
                read += 1
                yield b"x" * 1024

    transport = httpx.MockTransport(lambda r: httpx.Response(500, stream=Endless()))
    pusher = OutboxPusher(store, "https://platform.example/tickets", max_response_bytes=4096)
    async with httpx.AsyncClient(transport=transport) as client:
        await pusher.push_once(client)
    assert read <= 5
    [row] = await store.outbox_list()
    assert row.last_error is not None and row.last_error.startswith("HTTP 500: xxx") and len(row.last_error) < 300


def test_run_refuses_to_start_without_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from hotline.cli import main

    cfg = tmp_path / "hotline.yaml"
    cfg.write_text(SHIPPED.read_text(encoding="utf-8") + "\noutbox:\n  url: https://platform.example/tickets\n"
                   "  token_env: HOTLINE_TEST_OUTBOX_TOKEN\n", encoding="utf-8")
    monkeypatch.delenv("HOTLINE_TEST_OUTBOX_TOKEN", raising=False)
    r = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    assert r.exit_code == 3 and "HOTLINE_TEST_OUTBOX_TOKEN" in r.output
