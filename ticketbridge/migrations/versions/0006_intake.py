"""The agent's intake (受理) of a call: 诉求内容, 承办单位, 当场解答 or 派单, who saved it and when.

Revision ID: 0006_intake
Revises: 0005_api_tokens
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_intake"
down_revision = "0005_api_tokens"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("request_text", sa.Text))
        batch.add_column(sa.Column("department", sa.String(64)))
        batch.add_column(sa.Column("disposition", sa.String(16)))
        batch.add_column(sa.Column("intake_agent", sa.String(32)))
        batch.add_column(sa.Column("intake_at", TS))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        for name in ("intake_at", "intake_agent", "disposition", "department", "request_text"):
            batch.drop_column(name)
