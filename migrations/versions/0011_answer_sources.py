"""conversations.answer_sources: the sources of the answer being generated, for resuming it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

Written with `answer_text` when a client resumes the stream (the `sources` frame it missed,
as clients see them); null when no answer is being generated or it has no sources.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("answer_sources", JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("conversations", "answer_sources")
