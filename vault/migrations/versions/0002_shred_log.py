"""Shred log: every process evicts a shredded subject's cached data keys.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shred_log",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_shred_log"),
    )


def downgrade() -> None:
    op.drop_table("shred_log")
