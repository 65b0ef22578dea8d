"""`hotline tokens`: the live API's bearer tokens (live/tokens.py) — create (shown once), list, revoke.

The store keeps only each token's SHA-256; `create` prints the token once and never again. The
controller serves the API (config `api:`) only once a token exists; a revoked token is refused at
its next request. Exit 0 done, 1 refused (bad role/seat, nothing to revoke), 3 store unreachable.
"""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

import click

from hotline.cli_base import EXIT_BAD, fail
from hotline.cli_tickets import _setup_logs, store_options, with_store
from live.tokens import ROLES, TokenError, check_new, new_token, token_hash


def register(main: click.Group) -> None:
    main.add_command(tokens)


@click.group()
def tokens() -> None:
    """Bearer tokens of the live API (roles: agent bound to a seat, supervisor, admin)."""
    _setup_logs()  # logs on stderr: stdout carries the token alone


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry
        return f"uid {os.getuid()}"


@tokens.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", required=True, help="who holds it (张班长, 1001 王芳 …)")
@click.option("--seat", default=None, help="the seat (agent ID) the token is bound to; required for --role agent")
@store_options
def create(role: str, name: str, seat: str | None, config_path: str | None, store_url: str | None) -> None:
    """Make a token and print it ONCE (only its hash is kept)."""

    @with_store
    async def go(store: Any, cfg: Any) -> None:
        try:
            check_new(role, name, seat, set(cfg.seats))
        except TokenError as e:
            fail(str(e), EXIT_BAD)
        token = new_token()
        row = await store.create_token(name=name, role=role, seat=seat, token_hash=token_hash(token),
                                       created_by=_who())
        click.echo(token)
        click.echo(f"token {row.id} for {name} ({role}{', seat ' + seat if seat else ''}): shown once, "
                   f"keep it safe; send it as 'Authorization: Bearer <token>'", err=True)

    go(config_path=config_path, store_url=store_url)


@tokens.command("list")
@click.option("--all", "show_all", is_flag=True, help="revoked tokens too")
@click.option("--json", "as_json", is_flag=True)
@store_options
def list_cmd(show_all: bool, as_json: bool, config_path: str | None, store_url: str | None) -> None:
    """Tokens: id, name, role, seat, created, last used (never the token itself)."""

    @with_store
    async def go(store: Any, cfg: Any) -> None:
        for r in await store.tokens(revoked=show_all):
            d = {"id": r.id, "name": r.name, "role": r.role, "seat": r.seat, "created_at": r.created_at,
                 "created_by": r.created_by, "last_used_at": r.last_used_at, "revoked_at": r.revoked_at}
            if as_json:
                click.echo(json.dumps(d, ensure_ascii=False, default=str))
                continue
            when = lambda t: t.strftime("%Y-%m-%d %H:%M") if t else "-"  # noqa: E731
            click.echo(f"{r.id:<4} {r.name:<12} {r.role:<10} seat {r.seat or '-':<6} created {when(r.created_at)} "
                       f"by {r.created_by or '-'}  last used {when(r.last_used_at)}"
                       + (f"  REVOKED {when(r.revoked_at)}" if r.revoked_at else ""))

    go(config_path=config_path, store_url=store_url)


@tokens.command("revoke")
@click.argument("key")
@store_options
def revoke(key: str, config_path: str | None, store_url: str | None) -> None:
    """Revoke the token(s) with this id or name; refused at their next request."""

    @with_store
    async def go(store: Any, cfg: Any) -> None:
        rows = await store.revoke_token(key)
        if not rows:
            fail(f"no live token with id or name {key!r}", EXIT_BAD)
        for r in rows:
            click.echo(f"revoked token {r.id} ({r.name}, {r.role})")

    go(config_path=config_path, store_url=store_url)
