"""token reservations: the quota holds an estimate for each turn in progress

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Concurrent sends each see the others' reservations, so they cannot all pass the quota check
before any of them has stored its tokens.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_reservations",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        # A turn cut off by a crash never settles; its reservation lapses at this time.
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_token_reservations_user", "token_reservations", ["user_id", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_token_reservations_user", table_name="token_reservations")
    op.drop_table("token_reservations")
