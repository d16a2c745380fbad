"""documents and the vector index registry

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The chunk table itself (`chunks`) is created at start-up by langchain-postgres' PGEngine,
because its vector dimension depends on the configured embedder; `vector_index` records
which embedder built it.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("filename", sa.String(300), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="processing"),
        sa.Column("error", sa.Text),
        sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("page_count", sa.Integer),
        # Extracted text: citations point into it, and `reindex` re-embeds from it.
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("pages", pg.JSONB, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('processing', 'ready', 'failed')", name="ck_doc_status"),
    )
    # Serves the duplicate check on upload (same user, same bytes) and enforces it.
    op.create_index("ux_documents_user_sha", "documents", ["user_id", "sha256"], unique=True)
    # Serves the document list (WHERE user_id = ? ORDER BY created_at DESC).
    op.create_index(
        "ix_documents_user_created", "documents", ["user_id", sa.text("created_at DESC")]
    )

    op.create_table(
        "vector_index",
        sa.Column("table_name", sa.String(63), primary_key=True),
        sa.Column("embedding_model", sa.String(200), nullable=False),
        sa.Column("dimensions", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS chunks")
    op.drop_table("vector_index")
    op.drop_table("documents")
