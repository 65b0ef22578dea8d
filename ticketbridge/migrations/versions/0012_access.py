"""Every caller in their language and ability (issue 18): tickets.priority (老年人优先: listed / key) and
tickets.language (the language path taken: en, nan, …).

Revision ID: 0012_access
Revises: 0011_cdr_check_query_limits
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_access"
down_revision = "0011_cdr_check_query_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("priority", sa.String(16)))
    op.add_column("tickets", sa.Column("language", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("language")
        batch.drop_column("priority")
