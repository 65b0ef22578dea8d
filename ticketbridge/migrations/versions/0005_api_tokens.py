"""The live API's bearer tokens: name, role (agent/supervisor/admin), the seat an agent's token is bound to,
the token's SHA-256 only (shown once at creation, never stored), created/revoked/last used.

Revision ID: 0005_api_tokens
Revises: 0004_audit_log
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_api_tokens"
down_revision = "0004_audit_log"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("seat", sa.String(32)),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("revoked_at", TS),
        sa.Column("last_used_at", TS),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
