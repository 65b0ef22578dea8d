"""Recording retention: tickets.recording_purged_at (when the recording file was deleted; the name stays).

Revision ID: 0002_recording_purged_at
Revises: 0001_initial
Create Date: 2026-03-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_recording_purged_at"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("tickets", sa.Column("recording_purged_at", TS))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("recording_purged_at")
