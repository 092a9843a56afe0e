"""Restriction and objection history (issue 19, privacy policy §5).

Revision ID: a0007
Revises: a0006
"""

import sqlalchemy as sa
from alembic import op

revision = "a0007"
down_revision = "a0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "restrictions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restrictions")),
    )
    op.create_index(op.f("ix_restrictions_subject_id"), "restrictions", ["subject_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_restrictions_subject_id"), table_name="restrictions")
    op.drop_table("restrictions")
