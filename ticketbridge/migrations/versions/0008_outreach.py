"""Automatic callbacks and 回访: claims on callbacks (owner + lease), give-up marks, and the follow-ups table.

callbacks.owner / lease_until: the controller dialing it and until when its claim holds (a controller that
died mid-dial loses the claim when the lease runs out); gave_up_at: the scheduler's rules ended it (window
over, attempts used up, number refused). followups: one per ticket that reached 办结, with the citizen's
answer (resolved, rating on its scale) once given.

Revision ID: 0008_outreach
Revises: 0007_agent_help
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_outreach"
down_revision = "0007_agent_help"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("callbacks", sa.Column("owner", sa.String(64)))
    op.add_column("callbacks", sa.Column("lease_until", TS))
    op.add_column("callbacks", sa.Column("gave_up_at", TS))
    op.create_table(
        "followups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_result", sa.String(200)),
        sa.Column("since", TS, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("lease_until", TS),
        sa.Column("gave_up_at", TS),
        sa.Column("resolved", sa.Boolean),
        sa.Column("rating", sa.Integer),
        sa.Column("scale", sa.Integer),
        sa.Column("answered_at", TS),
        sa.UniqueConstraint("ticket_id", name="uq_followups_ticket_id"),
    )
    op.create_index("ix_followups_status", "followups", ["status"])
    op.create_index("ix_followups_since", "followups", ["since"])


def downgrade() -> None:
    op.drop_index("ix_followups_since", "followups")
    op.drop_index("ix_followups_status", "followups")
    op.drop_table("followups")
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_column("gave_up_at")
        batch.drop_column("lease_until")
        batch.drop_column("owner")
