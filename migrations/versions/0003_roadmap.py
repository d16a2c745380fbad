"""templates, custom instructions, generation metadata, message versions, feedback, shares

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("template_id", sa.String(64)))
    op.add_column("conversations", sa.Column("instructions", sa.Text))
    # False once the user names the conversation: the title chain never overwrites that.
    op.add_column(
        "conversations",
        sa.Column("title_auto", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    # Which prompt files (name + sha256), model and retrieval settings produced an answer.
    op.add_column(
        "messages", sa.Column("generation", pg.JSONB, nullable=False, server_default="{}")
    )
    # Regenerate and edit keep old versions: they are marked superseded, not deleted.
    op.add_column("messages", sa.Column("superseded_at", sa.DateTime(timezone=True)))
    op.add_column("messages", sa.Column("replaces_id", pg.UUID(as_uuid=True)))

    op.create_table(
        "message_feedback",
        sa.Column(
            "message_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rating IN (-1, 1)", name="ck_feedback_rating"),
    )
    # Serves the per-user feedback summary (WHERE user_id = ?).
    op.create_index("ix_feedback_user", "message_feedback", ["user_id"])

    op.create_table(
        "conversation_shares",
        sa.Column(
            "conversation_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("grantee_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Serves "conversations shared with me" (WHERE grantee_id = ?).
    op.create_index("ix_shares_grantee", "conversation_shares", ["grantee_id"])


def downgrade() -> None:
    op.drop_table("conversation_shares")
    op.drop_table("message_feedback")
    op.drop_column("messages", "replaces_id")
    op.drop_column("messages", "superseded_at")
    op.drop_column("messages", "generation")
    op.drop_column("conversations", "title_auto")
    op.drop_column("conversations", "instructions")
    op.drop_column("conversations", "template_id")
