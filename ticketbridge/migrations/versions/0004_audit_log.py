"""The audit log: who saw personal data (`--show-numbers`), durably, by real uid, what was asked, how many rows.

Revision ID: 0004_audit_log
Revises: 0003_agent_states
Create Date: 2026-03-13
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_audit_log"
down_revision = "0003_agent_states"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uid", sa.Integer, nullable=False),
        sa.Column("user", sa.String(64), nullable=False, server_default=""),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("asked", sa.JSON, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", "audit_log")
    op.drop_table("audit_log")
