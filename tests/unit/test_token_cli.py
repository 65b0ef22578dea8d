"""`hotline tokens create|list|revoke` against a real SQLite store: shown once, kept hashed, refused when wrong."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from hotline.cli import main
from live.tokens import TOKEN_PREFIX, token_hash
from ticketbridge.store import TicketStore


def run(url: str, *args: str):
    return CliRunner().invoke(main, ["tokens", *args, "--store", url], catch_exceptions=False)


def test_a_token_is_shown_once_and_only_its_hash_is_kept(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    r = run(url, "create", "--role", "supervisor", "--name", "张班长")
    assert r.exit_code == 0
    token = r.stdout.splitlines()[0]
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    listed = run(url, "list").stdout
    assert "张班长" in listed and "supervisor" in listed and token not in listed
    raw = sqlite3.connect(tmp_path / "t.db").execute("select token_hash from api_tokens").fetchall()
    assert raw == [(token_hash(token),)]

    async def lookup() -> object:
        store = TicketStore(url)
        await store.open()
        try:
            return await store.token_by_hash(token_hash(token))
        finally:
            await store.close()

    assert asyncio.run(lookup()) is not None
    r = run(url, "revoke", "张班长")
    assert r.exit_code == 0 and "revoked" in r.stdout
    assert asyncio.run(lookup()) is None
    assert "REVOKED" in run(url, "list", "--all").stdout and "张班长" not in run(url, "list").stdout
    assert run(url, "revoke", "张班长").exit_code == 1


def test_an_agent_token_needs_a_configured_seat(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    r = run(url, "create", "--role", "agent", "--name", "王芳")
    assert r.exit_code == 1 and "--seat" in r.stderr
    r = run(url, "create", "--role", "agent", "--name", "王芳", "--seat", "9999")
    assert r.exit_code == 1 and "not a configured seat" in r.stderr
    assert run(url, "create", "--role", "agent", "--name", "王芳", "--seat", "1001").exit_code == 0
    assert run(url, "create", "--role", "root", "--name", "x").exit_code == 2
