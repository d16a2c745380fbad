"""voice_uploads: recordings waiting for the WebSocket's `voice` frame; speech cache sizes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

- voice_uploads: a recorded question uploaded with `POST .../voice/uploads`, kept until a
  turn uses it (deleted in the transaction that stores the user message) or `expires_at`
  passes; deleted with its conversation. The bytes live in the database so that the socket
  that sends the frame may be on another server process than the upload.
- speech_cache.size_bytes and used_at: the cache is bounded by SPEECH_CACHE_MAX_BYTES, the
  least recently heard answers going first.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "voice_uploads",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "conversation_id",
            UUID(as_uuid=True),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("duration_seconds", sa.Float, nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Each upload counts the user's waiting recordings and clears everyone's expired ones.
    op.create_index("ix_voice_uploads_user", "voice_uploads", ["user_id"])
    op.create_index("ix_voice_uploads_expires", "voice_uploads", ["expires_at"])
    op.add_column(
        "speech_cache",
        sa.Column("size_bytes", sa.Integer, nullable=False, server_default="0"),
    )
    op.add_column("speech_cache", sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE speech_cache SET size_bytes = octet_length(data), used_at = created_at")
    op.alter_column("speech_cache", "used_at", nullable=False)
    op.create_index("ix_speech_cache_used", "speech_cache", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_speech_cache_used", table_name="speech_cache")
    op.drop_column("speech_cache", "used_at")
    op.drop_column("speech_cache", "size_bytes")
    op.drop_table("voice_uploads")
