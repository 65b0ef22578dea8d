"""The caller's loop: SMS rows in the outbox (their own endpoint, a sealed secret erased once sent) and
deadline reminders (the deadline a ticket's reminder was written for).

Revision ID: 0010_caller_loop
Revises: 0009_agent_ids
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_caller_loop"
down_revision = "0009_agent_ids"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # which receiver a row goes to: the provincial platform (every ticket change so far) or the SMS gateway
    op.add_column("outbox", sa.Column("endpoint", sa.String(16), nullable=False, server_default="platform"))
    op.create_index("ix_outbox_endpoint", "outbox", ["endpoint"])
    # an SMS row's query password, sealed (AES-GCM, key outside the database); NULL once the gateway took it
    op.add_column("outbox", sa.Column("secret", sa.Text()))
    op.add_column("tickets", sa.Column("reminded_for", TS))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("reminded_for")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_endpoint")
        batch.drop_column("secret")
        batch.drop_column("endpoint")
