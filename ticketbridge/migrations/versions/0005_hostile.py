"""Calls the controller saw only in part: tickets.cdr_check (`due`: correct from the CDR; `corrected`: done).

Revision ID: 0005_hostile
Revises: 0004_audit_log
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_hostile"
down_revision = "0004_audit_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("cdr_check", sa.String(10)))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("cdr_check")
