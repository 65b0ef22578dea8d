"""Several controllers sharing one database (issue 16 item 3): `leases`, one row per job that only one
controller may run at a time (the CDR replay of an Asterisk node, its agents' automatic actions), held by
its owner until `until`; a controller of lower `rank` (earlier in asterisk.fastagi.controllers) takes it over.

Revision ID: 0013_leases
Revises: 0012_access
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_leases"
down_revision = "0012_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("leases")
