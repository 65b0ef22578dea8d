"""多援一 help periods: a group of agents added to another queue until an end time (who, when, why, ended by whom).

Revision ID: 0007_agent_help
Revises: 0006_intake
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_agent_help"
down_revision = "0006_intake"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agent_help",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("agents", sa.JSON, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("until", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False, server_default=""),
        sa.Column("why", sa.String(200), nullable=False, server_default=""),
        sa.Column("ended_at", TS),
        sa.Column("ended_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("end_why", sa.String(200), nullable=False, server_default=""),
    )
    op.create_index("ix_agent_help_ended_at", "agent_help", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_agent_help_ended_at", "agent_help")
    op.drop_table("agent_help")
