"""Agent IDs (工号): which agent works each seat (agent_states.agent_id), and each event's seat and cause.

agent_events.agent is from now on the agent ID (it was the seat's key, which is still every seat's default
agent ID); agent_events.seat the seat; agent_events.cause the input that moved the agent (connected,
ring_no_answer, hot_desk, pin_wrong, …) so per-agent KPIs count answers and misses exactly.

Revision ID: 0009_agent_ids
Revises: 0008_outreach
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_agent_ids"
down_revision = "0008_outreach"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_states") as t:
        t.add_column(sa.Column("agent_id", sa.String(32)))
    with op.batch_alter_table("agent_events") as t:
        t.add_column(sa.Column("seat", sa.String(32), nullable=False, server_default=""))
        t.add_column(sa.Column("cause", sa.String(24), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("agent_events") as t:
        t.drop_column("cause")
        t.drop_column("seat")
    with op.batch_alter_table("agent_states") as t:
        t.drop_column("agent_id")
