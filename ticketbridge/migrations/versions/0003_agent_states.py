"""Seat agents: agent_states (the current state of each agent, restored at start) and agent_events (every change).

Revision ID: 0003_agent_states
Revises: 0002_recording_purged_at
Create Date: 2026-03-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_agent_states"
down_revision = "0002_recording_purged_at"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agent_states",
        sa.Column("agent", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False, server_default=""),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("queues", sa.JSON, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "agent_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("old", sa.String(16), nullable=False),
        sa.Column("new", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False, server_default=""),
        sa.Column("old_reason", sa.String(32), nullable=False, server_default=""),
        sa.Column("seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("actor", sa.String(64)),
        sa.Column("why", sa.String(200), nullable=False, server_default=""),
        sa.Column("queue", sa.String(64), nullable=False, server_default=""),
        sa.Column("linkedid", sa.String(64), nullable=False, server_default=""),
    )
    op.create_index("ix_agent_events_agent", "agent_events", ["agent"])
    op.create_index("ix_agent_events_at", "agent_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_agent_events_at", "agent_events")
    op.drop_index("ix_agent_events_agent", "agent_events")
    op.drop_table("agent_events")
    op.drop_table("agent_states")
