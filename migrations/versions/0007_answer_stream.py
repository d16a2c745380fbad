"""conversations.answer_id, answer_text: the answer being generated, for resuming it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

`answer_id` is the id the answer in progress will have (set with the turn's lease, cleared
with it); `answer_text` is its text so far, written when a client resumes the stream from
another server process. Both are null when no answer is being generated.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("answer_id", UUID(as_uuid=True), nullable=True))
    op.add_column("conversations", sa.Column("answer_text", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("conversations", "answer_text")
    op.drop_column("conversations", "answer_id")
