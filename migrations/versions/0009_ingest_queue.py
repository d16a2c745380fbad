"""the ingestion queue: procrastinate's schema, stored upload files, document progress

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Uploads are indexed by jobs on a procrastinate queue (in this same database), so:
- `document_files` keeps an upload's bytes until a worker has extracted its text (any
  worker on any machine can take the job, so the bytes live in the database, not on a disk);
- `documents.text` is null until then, and `status` gains `queued`;
- `progress` ({"done", "total", "unit"}), `error_code` and `error_detail` say how far
  indexing got and why it failed.

procrastinate's own tables and functions come from the schema file of the installed
version, which this revision pins: a later procrastinate is brought in by a new revision
that runs its shipped migration files (procrastinate/sql/migrations/) for the versions in
between.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PROCRASTINATE_VERSION = "3.10."  # the schema file this revision applies


def _procrastinate_schema() -> str:
    import procrastinate
    from procrastinate.schema import SchemaManager

    version = procrastinate.__version__
    if not version.startswith(PROCRASTINATE_VERSION):
        raise RuntimeError(
            f"migration 0007 applies procrastinate {PROCRASTINATE_VERSION}x's schema, but "
            f"{version} is installed; install the version in requirements.txt"
        )
    return SchemaManager.get_schema()


def upgrade() -> None:
    op.execute("ALTER TABLE documents DROP CONSTRAINT ck_doc_status")
    op.create_check_constraint(
        "ck_doc_status", "documents", "status IN ('queued', 'processing', 'ready', 'failed')"
    )
    op.alter_column("documents", "text", nullable=True)
    op.add_column("documents", sa.Column("progress", pg.JSONB, nullable=True))
    op.add_column("documents", sa.Column("error_code", sa.String(64), nullable=True))
    op.add_column("documents", sa.Column("error_detail", pg.JSONB, nullable=True))
    # Workers look for documents left without a job every few seconds (jobs.py, orphans).
    op.create_index(
        "ix_documents_unfinished",
        "documents",
        ["updated_at"],
        postgresql_where=sa.text("status IN ('queued', 'processing')"),
    )
    op.create_table(
        "document_files",
        sa.Column(
            "document_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    # The raw driver connection: the schema file is many statements with `%` and `:` in
    # them, which SQLAlchemy's text() and psycopg's parameter syntax would both rewrite.
    op.get_bind().connection.driver_connection.execute(_procrastinate_schema())


def downgrade() -> None:
    # Everything procrastinate's schema file created is named procrastinate_*.
    op.execute(
        """
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT tablename FROM pg_tables
                     WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate\\_%'
            LOOP EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename); END LOOP;
            FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
            LOOP EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.f); END LOOP;
            FOR r IN SELECT t.typname FROM pg_type t
                     JOIN pg_namespace n ON n.oid = t.typnamespace
                     WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\\_%'
                       AND t.typtype IN ('e', 'c')
            LOOP EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname); END LOOP;
        END $$;
        """
    )
    op.drop_table("document_files")
    op.drop_index("ix_documents_unfinished", table_name="documents")
    op.drop_column("documents", "error_detail")
    op.drop_column("documents", "error_code")
    op.drop_column("documents", "progress")
    op.execute("UPDATE documents SET text = '' WHERE text IS NULL")
    op.alter_column("documents", "text", nullable=False)
    op.execute("UPDATE documents SET status = 'processing' WHERE status = 'queued'")
    op.execute("ALTER TABLE documents DROP CONSTRAINT ck_doc_status")
    op.create_check_constraint(
        "ck_doc_status", "documents", "status IN ('processing', 'ready', 'failed')"
    )
