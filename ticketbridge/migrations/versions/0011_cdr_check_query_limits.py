"""Calls the controller saw only in part: tickets.cdr_check (`due`: correct from the CDR; `corrected`: done);
self-query guesses across calls: self_query_failures (when, a keyed hash of the caller, the ticket tried).

Revision ID: 0011_cdr_check_query_limits
Revises: 0010_caller_loop
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_cdr_check_query_limits"
down_revision = "0010_caller_loop"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("cdr_check", sa.String(10)))
    op.create_table(
        "self_query_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caller_key", sa.String(64), nullable=False, server_default=""),
        sa.Column("ticket_no", sa.String(20), nullable=False, server_default=""),
    )
    op.create_index("ix_self_query_failures_at", "self_query_failures", ["at"])
    op.create_index("ix_self_query_failures_caller_key", "self_query_failures", ["caller_key"])
    op.create_index("ix_self_query_failures_ticket_no", "self_query_failures", ["ticket_no"])


def downgrade() -> None:
    op.drop_table("self_query_failures")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("cdr_check")
