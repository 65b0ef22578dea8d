"""Alembic environment for the ticket store.

TicketStore.open() runs the upgrade programmatically and hands over its own
connection (already inside a locked transaction) in `config.attributes["connection"]`.
From the command line (`alembic -c ticketbridge/migrations/alembic.ini upgrade head`)
the URL comes from `-x url=…` or HOTLINE_STORE_URL.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from alembic import context

from ticketbridge.schema import Base

target_metadata = Base.metadata
config = context.config


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("HOTLINE_STORE_URL")
    if not url:
        raise SystemExit("give the database as -x url=… or HOTLINE_STORE_URL")
    return url


async def _run_async() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())
