"""Initial ticket store: tickets, history, callbacks, outbox and the daily ticket sequence.

Revision ID: 0001_initial
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_no", sa.String(20), nullable=False),
        sa.Column("query_password_hash", sa.String(200), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("dialed", sa.String(32), nullable=False),
        sa.Column("legacy_line", sa.String(32)),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("requested_dest", sa.String(200)),
        sa.Column("actual_dest", sa.String(200)),
        sa.Column("category", sa.String(32)),
        sa.Column("ivr_path", sa.JSON, nullable=False),
        sa.Column("queue", sa.String(64)),
        sa.Column("queue_wait_s", sa.Float),
        sa.Column("agent", sa.String(128)),
        sa.Column("answered_at", TS),
        sa.Column("talk_s", sa.Float),
        sa.Column("transfers", sa.JSON, nullable=False),
        sa.Column("participants", sa.JSON, nullable=False),
        sa.Column("survey_rating", sa.Integer),
        sa.Column("survey_scale", sa.Integer),
        sa.Column("self_query", sa.JSON),
        sa.Column("recording", sa.String(500)),
        sa.Column("transcript", sa.Text),
        sa.Column("handled_by", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("started_at", TS),
        sa.Column("ended_at", TS),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("urgent", sa.Boolean, nullable=False),
        sa.Column("deadline_at", TS),
        sa.Column("callback_needed", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("ticket_no", name="uq_tickets_ticket_no"),
        sa.UniqueConstraint("linkedid", name="uq_tickets_linkedid"),
    )
    for col in ("caller", "dialed", "outcome", "state", "callback_needed", "created_at"):
        op.create_index(f"ix_tickets_{col}", "tickets", [col])

    op.create_table(
        "ticket_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("from_value", sa.String(200)),
        sa.Column("to_value", sa.String(200)),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_ticket_history_ticket_id", "ticket_history", ["ticket_id"])

    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_result", sa.String(200)),
        sa.Column("at", TS, nullable=False),
        sa.UniqueConstraint("ticket_id", name="uq_callbacks_ticket_id"),
    )
    op.create_index("ix_callbacks_status", "callbacks", ["status"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_no", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("delivered_at", TS),
        sa.Column("dead_at", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
    )
    op.create_index("ix_outbox_ticket_no", "outbox", ["ticket_no"])
    op.create_index("ix_outbox_next_attempt_at", "outbox", ["next_attempt_at"])

    op.create_table(
        "ticket_seq",
        sa.Column("day", sa.String(8), primary_key=True),
        sa.Column("last", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("ticket_seq", "outbox", "callbacks", "ticket_history", "tickets"):
        op.drop_table(table)
