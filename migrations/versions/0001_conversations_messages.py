"""conversations and messages

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("title", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("total_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("messages_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_message_preview", sa.Text),
        # Lease that serialises turns on one conversation across processes without
        # holding a database connection for the whole model call.
        sa.Column("turn_lock_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'archived', 'deleted')", name="ck_conv_status"),
    )
    # Serves the list endpoint (WHERE user_id = ? [AND status ...] ORDER BY last_message_at
    # DESC, id DESC LIMIT/OFFSET), its count, and the per-user token stats (user_id prefix).
    op.create_index(
        "ix_conversations_user_recent",
        "conversations",
        ["user_id", sa.text("last_message_at DESC"), sa.text("id DESC")],
    )

    op.create_table(
        "messages",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        # Insertion order; timestamps can tie within one transaction.
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column(
            "conversation_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="complete"),
        sa.Column("token_count", sa.Integer),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("model", sa.String(200)),
        sa.Column("referenced_documents", pg.JSONB, nullable=False, server_default="[]"),
        sa.Column("citations", pg.JSONB, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant', 'system')", name="ck_msg_role"),
        sa.CheckConstraint("status IN ('complete', 'interrupted', 'failed')", name="ck_msg_status"),
    )
    # Serves loading a conversation's messages in order, the bounded history window
    # (ORDER BY seq DESC LIMIT n), and the ON DELETE CASCADE lookup.
    op.create_index("ix_messages_conversation_seq", "messages", ["conversation_id", "seq"])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("conversations")
