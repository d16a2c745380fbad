"""documents.ocr_confidence: how sure OCR was of a scanned document's text

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

Null for documents that needed no OCR (every document stored before this revision).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("ocr_confidence", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("documents", "ocr_confidence")
