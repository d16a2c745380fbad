"""Images and voice in the chat: attachments and voice on messages, kept originals, speech cache

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

- messages.attachments: the documents (photos, scans) a user message carries, as the
  message's JSON lists them; [] for every message stored before this revision.
- messages.voice: for a question sent as speech, its transcript, language and duration.
- attachment_originals: an uploaded image's own bytes, so a vision-capable model can be
  shown the picture (documents keep only the extracted text); deleted with the document.
- speech_cache: an answer spoken once is not synthesised again (per message, voice, format);
  deleted with the message.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("attachments", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    op.add_column("messages", sa.Column("voice", JSONB, nullable=True))
    op.create_table(
        "attachment_originals",
        sa.Column(
            "document_id",
            UUID(as_uuid=True),
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "speech_cache",
        sa.Column(
            "message_id",
            UUID(as_uuid=True),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("voice", sa.String(100), primary_key=True),
        sa.Column("format", sa.String(8), primary_key=True),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("speech_cache")
    op.drop_table("attachment_originals")
    op.drop_column("messages", "voice")
    op.drop_column("messages", "attachments")
