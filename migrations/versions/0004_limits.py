"""per-user rate counters

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Rate state lives in PostgreSQL so limits hold across server processes.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_counters",
        sa.Column("user_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("action", sa.String(16), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    # Serves the per-user token quota: SUM(token_count) over a user's recent messages,
    # reached through conversations (user_id) and this (conversation_id, created_at).
    op.create_index(
        "ix_messages_conversation_created", "messages", ["conversation_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_messages_conversation_created", table_name="messages")
    op.drop_table("rate_counters")
